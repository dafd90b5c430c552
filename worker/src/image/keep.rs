//! What of the source's metadata the outputs carry, by the job's [`MetadataPolicy`].
//!
//! Kept Exif fields are written into a fresh Exif block that holds nothing else: the source's
//! block is never copied, so GPS, maker notes, serial numbers and thumbnails cannot travel with
//! it. The colour profile is embedded when kept (and the format can carry one); otherwise the
//! pixels are converted to sRGB and written without a profile, so dropping it never changes
//! how the image looks.

use std::io::Cursor;

use exif::experimental::Writer;
use exif::{Field, In, Tag, Value};
use moxcms::{ColorProfile, Layout, TransformOptions};
use protocol::metadata::{KeptMetadata, MetadataPolicy};
use protocol::rendition::Format;

use super::decode::Probe;
use super::metadata::icc_color_space;
use super::pixels::Pixels;

/// What one render's outputs carry, worked out once from the probe and the policy.
pub struct Carried {
    /// The kept profile, embedded in outputs that can hold it.
    icc: Option<Vec<u8>>,
    /// The conversion to sRGB for outputs that do not embed the profile.
    srgb: Option<Srgb>,
    /// The Exif block (TIFF structure, no `Exif\0\0` prefix) of the kept fields.
    pub exif: Option<Vec<u8>>,
    /// What the source had and the policy kept, for the sidecar.
    pub kept: Vec<KeptMetadata>,
}

/// A transform from the source's profile to sRGB, for RGB(A) or gray(+alpha) pixels.
struct Srgb {
    /// The profile describes gray samples (else RGB).
    gray: bool,
    profile: ColorProfile,
}

impl Carried {
    /// Works out what `probe`'s outputs carry under `policy`.
    pub fn new(probe: &Probe, policy: &MetadataPolicy) -> Self {
        let exif = probe.exif.as_ref();
        let mut kept = Vec::new();
        let mut fields = Vec::new();
        let mut text = |what: KeptMetadata, tag: Tag, value: Option<&String>, kept: &mut Vec<KeptMetadata>| {
            if let Some(v) = value.filter(|_| policy.keeps(what)) {
                fields.push(ascii_field(tag, v));
                kept.push(what);
            }
        };
        text(KeptMetadata::Copyright, Tag::Copyright, exif.and_then(|e| e.copyright.as_ref()), &mut kept);
        text(KeptMetadata::Artist, Tag::Artist, exif.and_then(|e| e.artist.as_ref()), &mut kept);
        if let Some((time, offset)) = exif.and_then(|e| e.capture_time.as_deref()).and_then(exif_time) {
            if policy.keeps(KeptMetadata::CaptureTime) {
                // Under the tag it was read from: `DateTime` is not a capture time to promote.
                let original = exif.is_some_and(|e| e.capture_time_original);
                fields.push(ascii_field(if original { Tag::DateTimeOriginal } else { Tag::DateTime }, &time));
                if let Some(offset) = offset {
                    fields.push(ascii_field(Tag::OffsetTimeOriginal, &offset));
                }
                kept.push(KeptMetadata::CaptureTime);
            }
        }
        let exif = (!fields.is_empty()).then(|| write_exif(&fields)).flatten();
        // Under `strip` no profile is written, whatever it is: converted away where moxcms
        // can, else dropped (a profile it cannot read is also a blob not on the allow-list).
        let icc = probe.icc.clone().filter(|_| policy.keeps(KeptMetadata::Icc));
        if icc.is_some() {
            kept.push(KeptMetadata::Icc);
        }
        kept.sort_unstable();
        Self { icc, srgb: probe.icc.as_deref().and_then(Srgb::from_icc), exif, kept }
    }

    /// The pixels as `format` should be written, and the profile to embed with them: the kept
    /// profile when `format` can carry it and it describes the colour model the encoder writes
    /// (WebP and AVIF always write colour; AVIF carries no profile); else none, the pixels
    /// converted to sRGB where the profile allows.
    pub fn prepare(&self, px: Pixels, format: Format) -> (Pixels, Option<&[u8]>) {
        let writes_color = matches!(format, Format::Webp | Format::Avif) || px.channels >= 3;
        let model: &[u8] = if writes_color { b"RGB " } else { b"GRAY" };
        let embeds = self.icc.as_deref().filter(|icc| format != Format::Avif && icc_color_space(icc) == Some(model));
        match embeds {
            Some(icc) => (px, Some(icc)),
            None => (self.to_srgb(px), None),
        }
    }

    /// `px` converted to sRGB from the source's profile, when it has one moxcms can read.
    pub fn to_srgb(&self, px: Pixels) -> Pixels {
        match &self.srgb {
            Some(srgb) => srgb.apply(px),
            None => px,
        }
    }
}

impl Srgb {
    /// A conversion from `icc`, if moxcms reads the profile and it describes RGB or gray.
    fn from_icc(icc: &[u8]) -> Option<Self> {
        let gray = match icc_color_space(icc)? {
            b"RGB " => false,
            b"GRAY" => true,
            _ => return None,
        };
        let profile = ColorProfile::new_from_slice(icc).ok()?;
        // Built once here so a profile moxcms cannot transform from is found before any output.
        let probe = if gray { Layout::Gray } else { Layout::Rgb };
        let srgb = Self { gray, profile };
        srgb.transform(probe).map(|_| srgb)
    }

    fn transform(&self, layout: Layout) -> Option<Box<moxcms::Transform8BitExecutor>> {
        let target = if self.gray { srgb_gray() } else { ColorProfile::new_srgb() };
        self.profile.create_transform_8bit(layout, &target, layout, TransformOptions::default()).ok()
    }

    /// `px` in sRGB; unchanged when its colour model is not the profile's (a gray image with
    /// an RGB profile has nothing the profile describes).
    fn apply(&self, px: Pixels) -> Pixels {
        let layout = match (px.channels, self.gray) {
            (1, true) => Layout::Gray,
            (2, true) => Layout::GrayAlpha,
            (3, false) => Layout::Rgb,
            (4, false) => Layout::Rgba,
            _ => return px,
        };
        let Some(transform) = self.transform(layout) else { return px };
        let mut out = vec![0; px.data.len()];
        match transform.transform(&px.data, &mut out) {
            Ok(()) => Pixels { data: out, ..px },
            Err(_) => px,
        }
    }
}

/// Gray with sRGB's tone curve and white: what a viewer assumes of a gray image without a
/// profile.
fn srgb_gray() -> ColorProfile {
    let srgb = ColorProfile::new_srgb();
    let mut gray = ColorProfile::new_gray_with_gamma(2.2);
    gray.gray_trc = srgb.red_trc.clone();
    gray
}

/// A text field (already bounded when read: `metadata::parse_exif`).
fn ascii_field(tag: Tag, text: &str) -> Field {
    Field { tag, ifd_num: In::PRIMARY, value: Value::Ascii(vec![text.as_bytes().to_vec()]) }
}

/// `2024-01-02T03:04:05+01:00` → (`2024:01:02 03:04:05`, `+01:00`): Exif's spelling of the
/// capture time the probe read.
fn exif_time(iso: &str) -> Option<(String, Option<String>)> {
    let (date_time, offset) = (iso.get(..19)?, iso.get(19..).filter(|o| !o.is_empty()));
    let time = date_time.replacen('-', ":", 2).replacen('T', " ", 1);
    Some((time, offset.map(str::to_owned)))
}

fn write_exif(fields: &[Field]) -> Option<Vec<u8>> {
    let mut writer = Writer::new();
    for field in fields {
        writer.push_field(field);
    }
    let mut out = Cursor::new(Vec::new());
    writer.write(&mut out, false).ok()?;
    Some(out.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_times_go_back_to_the_exif_spelling() {
        assert_eq!(exif_time("2021-07-04T12:30:59"), Some(("2021:07:04 12:30:59".into(), None)));
        assert_eq!(exif_time("2021-07-04T12:30:59+02:00"), Some(("2021:07:04 12:30:59".into(), Some("+02:00".into()))));
        assert_eq!(exif_time("2021"), None);
    }

    #[test]
    fn the_written_block_reads_back_with_only_the_kept_fields() {
        let fields = [ascii_field(Tag::Copyright, "© Ada"), ascii_field(Tag::DateTimeOriginal, "2021:07:04 12:30:59")];
        let block = write_exif(&fields).expect("written");
        let exif = exif::Reader::new().read_raw(block).expect("reads");
        let copyright = exif.get_field(Tag::Copyright, In::PRIMARY).expect("copyright");
        assert!(matches!(&copyright.value, Value::Ascii(parts) if parts == &["© Ada".as_bytes()]));
        assert!(exif.get_field(Tag::DateTimeOriginal, In::PRIMARY).is_some());
        assert_eq!(exif.fields().filter(|f| f.tag != Tag::ExifIFDPointer).count(), 2);
    }
}
