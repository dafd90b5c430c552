//! JPEG through libjpeg-turbo: marker scanning (ICC, Exif, XMP, Adobe), DCT-scaled decoding,
//! CMYK/YCCK conversion, and 4:2:0 encoding with the ICC profile embedded.

use turbojpeg::{Colorspace, Compressor, DecompressHeader, Decompressor, Image, PixelFormat, ScalingFactor, Subsamp};

use super::ImageError;
use super::metadata::MAX_ICC_BYTES;
use super::pixels::Pixels;

/// The application segments the engine cares about, found before the first scan.
#[derive(Debug, Default)]
pub struct Markers<'a> {
    /// The reassembled ICC profile, if all its APP2 chunks are present.
    pub icc: Option<Vec<u8>>,
    /// An ICC profile over [`MAX_ICC_BYTES`] was left unassembled.
    pub icc_oversized: bool,
    /// The Exif payload (a TIFF structure), without the `Exif\0\0` prefix.
    pub exif: Option<&'a [u8]>,
    /// The XMP packet.
    pub xmp: Option<&'a [u8]>,
    /// An Adobe APP14 segment is present: CMYK data is stored inverted.
    pub adobe: bool,
}

const ICC_SIG: &[u8] = b"ICC_PROFILE\0";
const XMP_SIG: &[u8] = b"http://ns.adobe.com/xap/1.0/\0";
const ICC_CHUNK_MAX: usize = 65_533 - ICC_SIG.len() - 2;

/// Walks the marker segments up to the first scan. Malformed lengths end the walk quietly:
/// the decoder, not this scan, decides whether the file is corrupt.
pub fn scan_markers(bytes: &[u8]) -> Markers<'_> {
    let mut m = Markers::default();
    let mut icc_chunks: Vec<(u8, u8, &[u8])> = Vec::new();
    let mut pos = 2;
    while pos + 4 <= bytes.len() {
        if bytes[pos] != 0xFF {
            break;
        }
        let marker = bytes[pos + 1];
        if marker == 0xFF {
            pos += 1;
            continue;
        }
        if marker == 0xD8 || marker == 0x01 || (0xD0..=0xD7).contains(&marker) {
            pos += 2;
            continue;
        }
        if marker == 0xDA || marker == 0xD9 {
            break;
        }
        let len = usize::from(u16::from_be_bytes([bytes[pos + 2], bytes[pos + 3]]));
        let Some(seg) = bytes.get(pos + 4..pos + 2 + len.max(2)) else { break };
        match marker {
            0xE1 if seg.starts_with(b"Exif\0\0") => m.exif = Some(&seg[6..]),
            0xE1 if seg.starts_with(XMP_SIG) => m.xmp = Some(&seg[XMP_SIG.len()..]),
            0xE2 if seg.starts_with(ICC_SIG) && seg.len() > ICC_SIG.len() + 2 => {
                let (seq, count) = (seg[ICC_SIG.len()], seg[ICC_SIG.len() + 1]);
                icc_chunks.push((seq, count, &seg[ICC_SIG.len() + 2..]));
            }
            0xEE if seg.starts_with(b"Adobe") => m.adobe = true,
            _ => {}
        }
        pos += 2 + len;
    }
    icc_chunks.sort_by_key(|c| c.0);
    let complete = !icc_chunks.is_empty()
        && icc_chunks
            .iter()
            .enumerate()
            .all(|(i, c)| usize::from(c.0) == i + 1 && usize::from(c.1) == icc_chunks.len());
    let icc_len: usize = icc_chunks.iter().map(|c| c.2.len()).sum();
    m.icc_oversized = complete && icc_len > MAX_ICC_BYTES;
    if complete && !m.icc_oversized {
        m.icc = Some(icc_chunks.iter().flat_map(|c| c.2.iter().copied()).collect());
    }
    m
}

fn tj_err(e: turbojpeg::Error) -> ImageError {
    ImageError::Corrupt(format!("JPEG: {e}"))
}

/// Reads the frame header (size, colour space, progressive) without decoding.
///
/// # Errors
/// [`ImageError::Corrupt`] when libjpeg-turbo cannot parse the header.
pub fn read_header(bytes: &[u8]) -> Result<DecompressHeader, ImageError> {
    let mut d = Decompressor::new().map_err(tj_err)?;
    d.read_header(bytes).map_err(tj_err)
}

/// libjpeg warnings that still leave a complete image (extraneous bytes, odd markers); any
/// other failure, including a premature end of data, means the pixels cannot be trusted.
fn is_benign_warning(msg: &str) -> bool {
    !msg.to_ascii_lowercase().contains("premature end")
        && (msg.contains("extraneous bytes")
            || msg.contains("Invalid SOS parameters")
            || msg.contains("Unsupported marker")
            || msg.contains("unknown JFIF revision")
            || msg.contains("thumbnail image size"))
}

/// For a progressive JPEG decoded at 1/8 scale, where luma goes through a 1×1 inverse DCT that
/// reads only the DC coefficient, returns a copy without the luma AC scans: same pixels, a
/// fraction of the Huffman decoding. Chroma scans stay (subsampled chroma is decoded at 2×2 and
/// needs its first AC coefficients). `None` when the stream does not end cleanly (the full
/// decode then reports why) or has no recognisable frame header.
fn without_ac_scans(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(bytes.len() / 2);
    let mut luma_id = None;
    let mut kept_luma_ac = false;
    let mut pos = 2;
    out.extend_from_slice(&bytes[..2]);
    loop {
        let marker = *bytes.get(pos + 1)?;
        if bytes[pos] != 0xFF {
            return None;
        }
        if marker == 0xFF {
            pos += 1;
            continue;
        }
        if marker == 0xD9 {
            out.extend_from_slice(&[0xFF, 0xD9]);
            return Some(out);
        }
        let len = usize::from(u16::from_be_bytes([*bytes.get(pos + 2)?, *bytes.get(pos + 3)?]));
        let seg_end = pos + 2 + len;
        if marker == 0xC2 {
            // SOF2: length, precision, height, width, Nf, then the first component's id.
            luma_id = Some(*bytes.get(pos + 10)?);
        }
        if marker != 0xDA {
            out.extend_from_slice(bytes.get(pos..seg_end)?);
            pos = seg_end;
            continue;
        }
        // SOS: length, Ns, Ns × (Cs, Td/Ta), Ss, Se, Ah/Al — then entropy-coded data up to
        // the next marker that is neither a stuffed 0xFF00 nor a restart marker.
        let ns = usize::from(*bytes.get(pos + 4)?);
        let only_luma = ns == 1 && Some(*bytes.get(pos + 5)?) == luma_id;
        let ss = *bytes.get(pos + 5 + 2 * ns)?;
        let mut end = seg_end;
        loop {
            let ff = end + bytes.get(end..)?.iter().position(|&b| b == 0xFF)?;
            match *bytes.get(ff + 1)? {
                0x00 | 0xD0..=0xD7 | 0xFF => end = ff + 1,
                _ => {
                    end = ff;
                    break;
                }
            }
        }
        // The first luma AC scan stays: libjpeg-turbo smooths the DC of a file with no AC data
        // at all (for previews), which would change the pixels.
        if ss == 0 || !only_luma || !kept_luma_ac {
            kept_luma_ac |= only_luma && ss > 0;
            out.extend_from_slice(&bytes[pos..end]);
        }
        pos = end;
    }
}

/// Decodes at 1/`shrink` scale (1, 2, 4 or 8) to gray or RGB; CMYK and YCCK become RGB.
///
/// # Errors
/// [`ImageError::Corrupt`] for truncated or damaged data.
pub fn decode(bytes: &[u8], header: &DecompressHeader, shrink: u32, adobe: bool) -> Result<Pixels, ImageError> {
    let mut d = Decompressor::new().map_err(tj_err)?;
    // A hostile progressive file can carry thousands of tiny scans; real ones have < 20.
    d.set_scan_limit(500).map_err(tj_err)?;
    let factor = if header.is_lossless { ScalingFactor::ONE } else { ScalingFactor::new(1, shrink as usize) };
    d.set_scaling_factor(factor).map_err(tj_err)?;
    let scaled = header.scaled(factor);
    let (format, channels) = match header.colorspace {
        Colorspace::Gray => (PixelFormat::GRAY, 1u8),
        Colorspace::CMYK | Colorspace::YCCK => (PixelFormat::CMYK, 4),
        _ => (PixelFormat::RGB, 3),
    };
    let dc_only =
        if header.is_progressive && factor == ScalingFactor::ONE_EIGHTH { without_ac_scans(bytes) } else { None };
    let bytes = dc_only.as_deref().unwrap_or(bytes);
    let pitch = scaled.width * usize::from(channels);
    let mut data = super::pixels::zeroed(scaled.width, scaled.height, usize::from(channels))?;
    let out = Image { pixels: data.as_mut_slice(), width: scaled.width, pitch, height: scaled.height, format };
    if let Err(e) = d.decompress(bytes, out) {
        let msg = e.to_string();
        if !is_benign_warning(&msg) {
            return Err(ImageError::Corrupt(format!("JPEG: {msg}")));
        }
    }
    let (w, h) = (u32::try_from(scaled.width), u32::try_from(scaled.height));
    let (Ok(width), Ok(height)) = (w, h) else {
        return Err(ImageError::Corrupt("JPEG: dimensions overflow".into()));
    };
    let px = Pixels { data, width, height, channels };
    Ok(if channels == 4 { px.cmyk_to_rgb(adobe) } else { px })
}

/// Encodes gray or RGB pixels as baseline JPEG (4:2:0 for colour) and embeds `icc`.
///
/// # Errors
/// [`ImageError::Encode`] if libjpeg-turbo fails.
pub fn encode(px: &Pixels, quality: u8, icc: Option<&[u8]>, exif: Option<&[u8]>) -> Result<Vec<u8>, ImageError> {
    let enc_err = |e: turbojpeg::Error| ImageError::Encode(format!("JPEG: {e}"));
    let (format, subsamp) = match px.channels {
        1 => (PixelFormat::GRAY, Subsamp::Gray),
        3 => (PixelFormat::RGB, Subsamp::Sub2x2),
        n => return Err(ImageError::Encode(format!("JPEG: cannot encode {n} channels"))),
    };
    let mut c = Compressor::new().map_err(enc_err)?;
    c.set_quality(i32::from(quality.clamp(1, 100))).map_err(enc_err)?;
    c.set_subsamp(subsamp).map_err(enc_err)?;
    let width = px.width as usize;
    let image = Image {
        pixels: px.data.as_slice(),
        width,
        pitch: width * usize::from(px.channels),
        height: px.height as usize,
        format,
    };
    let jpeg = c.compress_to_vec(image).map_err(enc_err)?;
    // More than 255 chunks cannot be numbered; such a profile (> 16 MB) is dropped.
    let icc = icc.filter(|icc| !icc.is_empty() && icc.len() <= 255 * ICC_CHUNK_MAX);
    // One APP1 segment holds at most 65 533 bytes after its length.
    let exif = exif.filter(|exif| EXIF_SIG.len() + exif.len() <= 65_533);
    Ok(if icc.is_none() && exif.is_none() { jpeg } else { embed_metadata(&jpeg, icc, exif) })
}

/// The APP1 signature before a TIFF-structured Exif block.
const EXIF_SIG: &[u8] = b"Exif\0\0";

/// Inserts an APP1 `Exif` segment and APP2 `ICC_PROFILE` segments after SOI and any JFIF APP0.
fn embed_metadata(jpeg: &[u8], icc: Option<&[u8]>, exif: Option<&[u8]>) -> Vec<u8> {
    let mut at = 2;
    if jpeg.get(2..4) == Some(&[0xFF, 0xE0]) {
        at = 4 + usize::from(u16::from_be_bytes([jpeg[4], jpeg[5]]));
    }
    let icc = icc.unwrap_or_default();
    let chunks: Vec<&[u8]> = icc.chunks(ICC_CHUNK_MAX).collect();
    let exif_len = exif.map_or(0, |e| 4 + EXIF_SIG.len() + e.len());
    let mut out = Vec::with_capacity(jpeg.len() + exif_len + icc.len() + 18 * chunks.len());
    out.extend_from_slice(&jpeg[..at]);
    if let Some(exif) = exif {
        out.extend_from_slice(&[0xFF, 0xE1]);
        out.extend_from_slice(&((2 + EXIF_SIG.len() + exif.len()) as u16).to_be_bytes());
        out.extend_from_slice(EXIF_SIG);
        out.extend_from_slice(exif);
    }
    for (i, chunk) in chunks.iter().enumerate() {
        let len = 2 + ICC_SIG.len() + 2 + chunk.len();
        out.extend_from_slice(&[0xFF, 0xE2]);
        out.extend_from_slice(&(len as u16).to_be_bytes());
        out.extend_from_slice(ICC_SIG);
        out.extend_from_slice(&[(i + 1) as u8, chunks.len() as u8]);
        out.extend_from_slice(chunk);
    }
    out.extend_from_slice(&jpeg[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn icc_round_trips_through_markers() {
        let px = Pixels { data: vec![200; 16 * 16 * 3], width: 16, height: 16, channels: 3 };
        let icc: Vec<u8> = (0..150_000u32).map(|i| (i % 251) as u8).collect();
        let exif = b"MM\0*\0\0\0\x08\0\0\0\0\0\0";
        let jpeg = encode(&px, 80, Some(&icc), Some(exif)).expect("test input is valid");
        let m = scan_markers(&jpeg);
        assert_eq!(m.icc.as_deref(), Some(icc.as_slice()));
        assert_eq!(m.exif, Some(&exif[..]), "the Exif block in its APP1");
        let huge = vec![7u8; MAX_ICC_BYTES + 1];
        let plain = encode(&px, 80, None, None).expect("test input is valid");
        let with_huge = embed_metadata(&plain, Some(&huge), None);
        let m = scan_markers(&with_huge);
        assert!(m.icc.is_none() && m.icc_oversized, "left unassembled");
        assert!(m.exif.is_none() && m.xmp.is_none());
        let h = read_header(&jpeg).expect("test input is valid");
        assert_eq!((h.width, h.height), (16, 16));
        let back = decode(&jpeg, &h, 1, false).expect("test input is valid");
        assert!(back.data.iter().all(|&v| v.abs_diff(200) <= 2));
    }

    #[test]
    fn dropping_ac_scans_keeps_eighth_scale_pixels() {
        let (w, h) = (256usize, 192usize);
        let data: Vec<u8> = (0..w * h * 3).map(|i| ((i * 7919) % 251) as u8 ^ ((i / (w * 3)) as u8)).collect();
        for subsamp in [Subsamp::Sub2x2, Subsamp::None, Subsamp::Gray] {
            let mut c = Compressor::new().expect("compressor");
            c.set_progressive(true).expect("progressive");
            c.set_quality(90).expect("quality");
            c.set_subsamp(subsamp).expect("subsampling");
            let image = Image { pixels: data.as_slice(), width: w, pitch: w * 3, height: h, format: PixelFormat::RGB };
            let jpeg = c.compress_to_vec(image).expect("encodes");
            let slim = without_ac_scans(&jpeg).expect("clean stream");
            assert!(slim.len() < jpeg.len() * 4 / 5, "{subsamp:?}: {} of {} bytes kept", slim.len(), jpeg.len());
            let header = read_header(&jpeg).expect("header");
            let mut full = Decompressor::new().expect("decompressor");
            full.set_scaling_factor(ScalingFactor::ONE_EIGHTH).expect("scale");
            let format = if subsamp == Subsamp::Gray { PixelFormat::GRAY } else { PixelFormat::RGB };
            let pitch = w / 8 * format.size();
            let mut want = vec![0u8; pitch * (h / 8)];
            let out = Image { pixels: want.as_mut_slice(), width: w / 8, pitch, height: h / 8, format };
            full.decompress(&jpeg, out).expect("full decode");
            let got = decode(&jpeg, &header, 8, false).expect("slim decode");
            assert!(got.data == want, "{subsamp:?}: pixels differ");
            assert_eq!(without_ac_scans(&jpeg[..jpeg.len() - 100]), None, "truncated streams go to the decoder");
        }
    }
}
