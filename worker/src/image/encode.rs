//! Output encoders: JPEG (libjpeg-turbo, 4:2:0), PNG, lossy WebP (libwebp), AVIF (rav1e).
//! What metadata they carry is decided by [`super::keep`]: at most an ICC profile and a fresh
//! Exif block of kept fields (AVIF carries neither: its encoder cannot).

use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{ExtendedColorType, ImageEncoder};
use protocol::rendition::{Format, Rendition};

use super::metadata::icc_color_space;
use super::pixels::Pixels;
use super::{ImageError, jpeg};

/// The ICC profile if it describes the colour model of the pixels being written.
fn matching_icc<'a>(icc: Option<&'a [u8]>, px: &Pixels) -> Option<&'a [u8]> {
    let want: &[u8] = if px.channels <= 2 { b"GRAY" } else { b"RGB " };
    icc.filter(|p| icc_color_space(p) == Some(want))
}

/// Encodes upright pixels for `r`, flattening alpha on white for JPEG, with the ICC profile
/// (when it matches the pixels' colour model) and the Exif block given.
///
/// # Errors
/// [`ImageError::Encode`] on encoder failure.
pub fn encode(px: Pixels, r: &Rendition, icc: Option<&[u8]>, exif: Option<&[u8]>) -> Result<Vec<u8>, ImageError> {
    match r.format {
        Format::Jpeg => {
            let px = px.flatten_on_white();
            jpeg::encode(&px, r.quality, matching_icc(icc, &px), exif)
        }
        Format::Png => encode_png(&px, matching_icc(icc, &px), exif),
        Format::Webp => {
            let px = px.to_color();
            encode_webp(&px, r.quality, matching_icc(icc, &px), exif)
        }
        Format::Avif => encode_avif(&px.to_color(), r.quality),
    }
}

/// AVIF at rav1e speed 8: fast enough for thumbnails, still well under JPEG's size.
fn encode_avif(px: &Pixels, quality: u8) -> Result<Vec<u8>, ImageError> {
    let (w, h) = (px.width as usize, px.height as usize);
    let encoder = ravif::Encoder::new()
        .with_quality(f32::from(quality.clamp(1, 100)))
        .with_alpha_quality(f32::from(quality.clamp(1, 100)))
        .with_speed(8)
        .with_num_threads(Some(1));
    let encoded = if px.has_alpha() {
        let rgba: Vec<ravif::RGBA8> =
            px.data.chunks_exact(4).map(|c| ravif::RGBA8::new(c[0], c[1], c[2], c[3])).collect();
        encoder.encode_rgba(ravif::Img::new(&rgba[..], w, h))
    } else {
        let rgb: Vec<ravif::RGB8> = px.data.chunks_exact(3).map(|c| ravif::RGB8::new(c[0], c[1], c[2])).collect();
        encoder.encode_rgb(ravif::Img::new(&rgb[..], w, h))
    };
    encoded.map(|e| e.avif_file).map_err(|e| ImageError::Encode(format!("AVIF: {e}")))
}

fn encode_png(px: &Pixels, icc: Option<&[u8]>, exif: Option<&[u8]>) -> Result<Vec<u8>, ImageError> {
    let color = match px.channels {
        1 => ExtendedColorType::L8,
        2 => ExtendedColorType::La8,
        3 => ExtendedColorType::Rgb8,
        _ => ExtendedColorType::Rgba8,
    };
    let mut out = Vec::new();
    let mut enc = PngEncoder::new_with_quality(&mut out, CompressionType::Fast, FilterType::Adaptive);
    if let Some(icc) = icc {
        // An encoder that cannot embed a profile still writes a valid image.
        let _ = enc.set_icc_profile(icc.to_vec());
    }
    if let Some(exif) = exif {
        // An `eXIf` chunk, as the PNG 1.5 extensions define it.
        let _ = enc.set_exif_metadata(exif.to_vec());
    }
    enc.write_image(&px.data, px.width, px.height, color).map_err(|e| ImageError::Encode(format!("PNG: {e}")))?;
    Ok(out)
}

/// The settings of every WebP output, still or animated: libwebp's default preset at
/// `quality` (1–100), method 4.
pub(super) fn webp_config(quality: u8) -> Result<webp::WebPConfig, ImageError> {
    let mut config =
        webp::WebPConfig::new().map_err(|()| ImageError::Encode("WebP: libwebp version mismatch".into()))?;
    config.quality = f32::from(quality.clamp(1, 100));
    config.method = 4;
    Ok(config)
}

fn encode_webp(px: &Pixels, quality: u8, icc: Option<&[u8]>, exif: Option<&[u8]>) -> Result<Vec<u8>, ImageError> {
    let enc = match px.channels {
        3 => webp::Encoder::from_rgb(&px.data, px.width, px.height),
        _ => webp::Encoder::from_rgba(&px.data, px.width, px.height),
    };
    let mem = enc.encode_advanced(&webp_config(quality)?).map_err(|e| ImageError::Encode(format!("WebP: {e:?}")))?;
    Ok(if icc.is_none() && exif.is_none() {
        mem.to_vec()
    } else {
        webp_with_metadata(&mem, icc, exif, px.width, px.height, px.has_alpha())
    })
}

/// Rewrites a WebP file into the extended layout with an `ICCP` chunk before the image data
/// and an `EXIF` chunk after it, as the container specification orders them.
pub(super) fn webp_with_metadata(
    webp: &[u8],
    icc: Option<&[u8]>,
    exif: Option<&[u8]>,
    width: u32,
    height: u32,
    alpha: bool,
) -> Vec<u8> {
    let Some(body) = webp.get(12..) else { return webp.to_vec() };
    let (mut flags, rest) = match body.get(..4) {
        Some(b"VP8X") if body.len() >= 18 => (body[8], &body[18..]),
        _ => (0u8, body),
    };
    flags |= if icc.is_some() { 0x20 } else { 0 } | if exif.is_some() { 0x08 } else { 0 };
    flags |= if alpha { 0x10 } else { 0 };
    let extra = icc.map_or(0, <[u8]>::len) + exif.map_or(0, <[u8]>::len);
    let mut out = Vec::with_capacity(webp.len() + extra + 40);
    out.extend_from_slice(b"RIFF\0\0\0\0WEBPVP8X");
    out.extend_from_slice(&10u32.to_le_bytes());
    out.extend_from_slice(&[flags, 0, 0, 0]);
    out.extend_from_slice(&(width - 1).to_le_bytes()[..3]);
    out.extend_from_slice(&(height - 1).to_le_bytes()[..3]);
    let chunk = |out: &mut Vec<u8>, name: &[u8], data: &[u8]| {
        out.extend_from_slice(name);
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(data);
        if data.len() % 2 == 1 {
            out.push(0);
        }
    };
    if let Some(icc) = icc {
        chunk(&mut out, b"ICCP", icc);
    }
    out.extend_from_slice(rest);
    if let Some(exif) = exif {
        chunk(&mut out, b"EXIF", exif);
    }
    let riff_size = (out.len() - 8) as u32;
    out[4..8].copy_from_slice(&riff_size.to_le_bytes());
    out
}
