//! What the engine reports about a source: format, size, orientation, colour, camera and
//! capture facts from Exif, and whether location data was present (it never reaches outputs).

use exif::{In, Reader, Tag, Value};
pub use protocol::message::SourceMetadata;

/// The parts of an Exif block the engine uses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExifSummary {
    /// Orientation tag (1–8), if present and valid.
    pub orientation: Option<u8>,
    /// Camera make.
    pub make: Option<String>,
    /// Camera model.
    pub model: Option<String>,
    /// Capture time, ISO-8601 shaped.
    pub capture_time: Option<String>,
    /// The capture time is the `DateTimeOriginal` tag's (else `DateTime`'s, when the file was
    /// last written, and no offset applies).
    pub capture_time_original: bool,
    /// A GPS IFD is present.
    pub has_gps: bool,
    /// Exif `Copyright` (the photographer's part), kept only when a job asks.
    pub copyright: Option<String>,
    /// Exif `Artist`, kept only when a job asks.
    pub artist: Option<String>,
}

/// The longest credit (`Copyright`, `Artist`) read, in characters.
const MAX_CREDIT_CHARS: usize = 1000;

fn ascii(exif: &exif::Exif, tag: Tag) -> Option<String> {
    text(exif, tag, 128)
}

/// The first string of an ASCII field, trimmed, at most `max_chars` long.
fn text(exif: &exif::Exif, tag: Tag, max_chars: usize) -> Option<String> {
    let field = exif.get_field(tag, In::PRIMARY)?;
    let Value::Ascii(parts) = &field.value else { return None };
    let text = String::from_utf8_lossy(parts.first()?);
    let text = text.trim_matches(|c: char| c == '\0' || c.is_whitespace());
    (!text.is_empty()).then(|| text.chars().take(max_chars).collect())
}

/// `2024:01:02 03:04:05` → `2024-01-02T03:04:05`; anything else is dropped.
fn iso_time(raw: &str) -> Option<String> {
    let b = raw.as_bytes();
    // ASCII first: the slices below cut at byte offsets, which must be char boundaries.
    let shaped = b.len() >= 19
        && b[..19].is_ascii()
        && b[4] == b':'
        && b[7] == b':'
        && (b[10] == b' ' || b[10] == b'T')
        && b[13] == b':'
        && b[16] == b':';
    if !shaped || raw[..19].contains("0000:00:00") {
        return None;
    }
    Some(format!("{}-{}-{}T{}", &raw[0..4], &raw[5..7], &raw[8..10], &raw[11..19]))
}

/// The Orientation tag (1–8) read straight from IFD0 of a TIFF structure, for blocks the Exif
/// parser rejects whole (a broken maker note, an IFD offset past the end): a damaged block
/// elsewhere must not leave the picture on its side.
fn ifd0_orientation(raw: &[u8]) -> Option<u8> {
    const ORIENTATION: u16 = 0x0112;
    const SHORT: u16 = 3;
    let le = match raw.get(..4)? {
        b"II*\0" => true,
        b"MM\0*" => false,
        _ => return None,
    };
    let u16_at = |at: usize| {
        let b = raw.get(at..at.checked_add(2)?)?;
        Some(if le { u16::from_le_bytes([b[0], b[1]]) } else { u16::from_be_bytes([b[0], b[1]]) })
    };
    let ifd = raw.get(4..8).map(|b| [b[0], b[1], b[2], b[3]])?;
    let ifd = usize::try_from(if le { u32::from_le_bytes(ifd) } else { u32::from_be_bytes(ifd) }).ok()?;
    let entries = usize::from(u16_at(ifd)?);
    let entry = (0..entries).map(|i| ifd + 2 + 12 * i).find(|&e| u16_at(e) == Some(ORIENTATION))?;
    let value = (u16_at(entry + 2)? == SHORT).then(|| u16_at(entry + 8)).flatten()?;
    u8::try_from(value).ok().filter(|v| (1..=8).contains(v))
}

/// Parses a TIFF-structured Exif block. What a damaged block still holds is kept (at least its
/// IFD0 orientation); the rest is left out: metadata problems never fail a job.
pub fn parse_exif(raw: &[u8]) -> ExifSummary {
    let parsed = Reader::new().continue_on_error(true).read_raw(raw.to_vec());
    let Ok(exif) = parsed.or_else(|e| e.distill_partial_result(|_| {})) else {
        return ExifSummary { orientation: ifd0_orientation(raw), ..ExifSummary::default() };
    };
    let orientation = exif
        .get_field(Tag::Orientation, In::PRIMARY)
        .and_then(|f| f.value.get_uint(0))
        .and_then(|v| u8::try_from(v).ok())
        .filter(|v| (1..=8).contains(v))
        .or_else(|| ifd0_orientation(raw));
    let original = ascii(&exif, Tag::DateTimeOriginal);
    let capture_time_original = original.is_some();
    let time = original.or_else(|| ascii(&exif, Tag::DateTime));
    let capture_time = time.as_deref().and_then(iso_time).map(|t| match ascii(&exif, Tag::OffsetTimeOriginal) {
        Some(off) if capture_time_original && off.len() == 6 && (off.starts_with('+') || off.starts_with('-')) => {
            t + &off
        }
        _ => t,
    });
    let has_gps = exif.fields().any(|f| f.tag.context() == exif::Context::Gps)
        || exif.get_field(Tag::GPSInfoIFDPointer, In::PRIMARY).is_some();
    ExifSummary {
        orientation,
        make: ascii(&exif, Tag::Make),
        model: ascii(&exif, Tag::Model),
        capture_time,
        capture_time_original,
        has_gps,
        copyright: text(&exif, Tag::Copyright, MAX_CREDIT_CHARS),
        artist: text(&exif, Tag::Artist, MAX_CREDIT_CHARS),
    }
}

/// Whether an XMP packet records a position.
pub fn xmp_has_gps(xmp: &[u8]) -> bool {
    xmp.windows(11).any(|w| w == b"GPSLatitude") || xmp.windows(12).any(|w| w == b"GPSLongitude")
}

/// The largest ICC profile carried into outputs (1 MiB; real ones are a few kB, a few
/// hundred for print profiles with large tables).
pub const MAX_ICC_BYTES: usize = 1 << 20;

/// The profile, if it looks like an ICC profile (the `acsp` signature, a declared size within
/// the bytes, at most [`MAX_ICC_BYTES`]), cut to its declared size; `None` otherwise.
pub fn usable_icc(icc: Vec<u8>) -> Option<Vec<u8>> {
    const HEADER_AND_TAG_COUNT: usize = 132;
    let declared = icc.get(..4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)?;
    let plausible = icc.get(36..40) == Some(b"acsp")
        && (HEADER_AND_TAG_COUNT..=MAX_ICC_BYTES).contains(&declared)
        && declared <= icc.len();
    plausible.then(|| {
        let mut icc = icc;
        icc.truncate(declared);
        icc
    })
}

/// The colour space an ICC profile describes (`RGB `, `GRAY`, `CMYK`…), from its header.
pub fn icc_color_space(icc: &[u8]) -> Option<&[u8]> {
    icc.get(16..20)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_iso_shaped() {
        assert_eq!(iso_time("2021:07:04 12:30:59").as_deref(), Some("2021-07-04T12:30:59"));
        assert_eq!(iso_time("0000:00:00 00:00:00"), None);
        assert_eq!(iso_time("yesterday"), None);
        assert_eq!(iso_time("2021:07:04 12:30:5é"), None, "a multi-byte character across byte 19");
        assert_eq!(iso_time("2021:07:04 12:30:59é"), Some("2021-07-04T12:30:59".into()));
    }

    #[test]
    fn only_plausible_small_icc_profiles_are_kept() {
        let profile = |declared: u32, len: usize| {
            let mut p = vec![0u8; len];
            p[..4].copy_from_slice(&declared.to_be_bytes());
            p[36..40].copy_from_slice(b"acsp");
            p
        };
        assert_eq!(usable_icc(profile(200, 200)).map(|p| p.len()), Some(200));
        assert_eq!(usable_icc(profile(200, 201)).map(|p| p.len()), Some(200), "padding is cut");
        assert_eq!(usable_icc(profile(300, 200)), None, "declares more than it has");
        assert_eq!(usable_icc(profile(64, 200)), None, "shorter than a header");
        let big = MAX_ICC_BYTES + 2;
        assert_eq!(usable_icc(profile(big as u32, big)), None, "over the cap");
        let mut unsigned = profile(200, 200);
        unsigned[36] = b'x';
        assert_eq!(usable_icc(unsigned), None);
        assert_eq!(usable_icc(vec![0; 3]), None);
    }

    #[test]
    fn damaged_exif_is_ignored() {
        assert_eq!(parse_exif(b"II*\0garbage"), ExifSummary::default());
        assert_eq!(ifd0_orientation(b"MM\0*\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01\0\x08\0\0"), Some(8));
        assert_eq!(ifd0_orientation(b"MM\0*\xff\xff\xff\xff"), None);
        assert!(xmp_has_gps(b"<exif:GPSLatitude>1,2N</exif:GPSLatitude>"));
    }
}
