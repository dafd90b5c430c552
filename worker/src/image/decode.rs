//! From bytes to 8-bit pixels: read the header, let the caller check limits and plan, then
//! decode (JPEG through libjpeg-turbo at a DCT scale, HEIF and AVIF through libheif, the rest
//! through the `image` crate).

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader};

use super::container::{gif_frame_sizes, png_chunk_len, png_has_chunk};
use super::detect::SourceFormat;
use super::error::from_image_error;
use super::geometry::{Plan, any_shrink, dct_shrink};
use super::metadata::{ExifSummary, parse_exif, usable_icc, xmp_has_gps};
use super::pixels::Pixels;
use super::{ImageError, Limits, check_limits, jpeg, webp_native};

/// What a PNG's metadata chunks (ICC, Exif, text and XMP) may take in memory together.
const PNG_METADATA_BYTES: u64 = 8 << 20;

/// What the header says, known before any pixel is decoded.
#[derive(Clone, Debug)]
pub struct Probe {
    /// Detected format.
    pub format: SourceFormat,
    /// Stored width.
    pub width: u32,
    /// Stored height.
    pub height: u32,
    /// EXIF orientation, 1–8.
    pub orientation: u8,
    /// Embedded ICC profile, if plausible and small enough to carry into outputs.
    pub icc: Option<Vec<u8>>,
    /// The source has an ICC profile that is not carried: too large or malformed.
    pub icc_dropped: bool,
    /// Facts from the Exif block, if any.
    pub exif: Option<ExifSummary>,
    /// An XMP packet is present.
    pub has_xmp: bool,
    /// An XMP packet records GPS.
    pub xmp_gps: bool,
    /// `rgb`, `gray`, `cmyk` or `ycck`.
    pub color_space: &'static str,
    /// Bits per sample.
    pub bit_depth: u8,
    /// Alpha channel present.
    pub has_alpha: bool,
    /// Progressive JPEG.
    pub progressive: Option<bool>,
    /// The pixels the decoder produces before cropping, when more than `width × height`: a
    /// HEIF image's coded size (`ispe`), of which a `clap` crop may show less.
    pub coded_pixels: Option<u64>,
}

/// A decoded source: header facts, pixels (possibly DCT-reduced) and the renditions' plans.
pub struct Decoded {
    /// Header facts.
    pub probe: Probe,
    /// The pixels, at full size or 1/2, 1/4, 1/8 for JPEG.
    pub pixels: Pixels,
    /// One plan per rendition, in full-resolution stored coordinates.
    pub plans: Vec<Plan>,
}

/// Reads the header, calls `on_header` (limit checks and planning), then decodes.
///
/// # Errors
/// Whatever `on_header` returns, or the decoder's [`ImageError`].
pub fn decode(
    input: &[u8],
    format: SourceFormat,
    limits: &Limits,
    on_header: impl FnOnce(&Probe) -> Result<Vec<Plan>, ImageError>,
) -> Result<Decoded, ImageError> {
    match format {
        SourceFormat::Jpeg => decode_jpeg(input, on_header),
        SourceFormat::Heif | SourceFormat::Avif => super::heif::decode(input, format, limits, on_header),
        other => decode_with_image(input, other, limits, on_header),
    }
}

fn decode_jpeg(
    input: &[u8],
    on_header: impl FnOnce(&Probe) -> Result<Vec<Plan>, ImageError>,
) -> Result<Decoded, ImageError> {
    let header = jpeg::read_header(input)?;
    let markers = jpeg::scan_markers(input);
    let exif = markers.exif.map(parse_exif);
    let (Ok(width), Ok(height)) = (u32::try_from(header.width), u32::try_from(header.height)) else {
        return Err(ImageError::Corrupt("JPEG: dimensions overflow".into()));
    };
    let color_space = match header.colorspace {
        turbojpeg::Colorspace::Gray => "gray",
        turbojpeg::Colorspace::CMYK => "cmyk",
        turbojpeg::Colorspace::YCCK => "ycck",
        _ => "rgb",
    };
    let icc_present = markers.icc.is_some() || markers.icc_oversized;
    let icc = markers.icc.and_then(usable_icc);
    let probe = Probe {
        format: SourceFormat::Jpeg,
        width,
        height,
        orientation: exif.as_ref().and_then(|e| e.orientation).unwrap_or(1),
        icc_dropped: icc_present && icc.is_none(),
        icc,
        exif,
        has_xmp: markers.xmp.is_some(),
        xmp_gps: markers.xmp.is_some_and(xmp_has_gps),
        color_space,
        bit_depth: 8,
        has_alpha: false,
        progressive: Some(header.is_progressive),
        coded_pixels: None,
    };
    let plans = on_header(&probe)?;
    let pixels = jpeg::decode(input, &header, dct_shrink(&plans), markers.adobe)?;
    Ok(Decoded { probe, pixels, plans })
}

fn image_format(format: SourceFormat) -> ImageFormat {
    match format {
        SourceFormat::Jpeg => ImageFormat::Jpeg,
        SourceFormat::Png => ImageFormat::Png,
        SourceFormat::Webp => ImageFormat::WebP,
        SourceFormat::Gif => ImageFormat::Gif,
        SourceFormat::Bmp => ImageFormat::Bmp,
        SourceFormat::Tiff => ImageFormat::Tiff,
        SourceFormat::Heif | SourceFormat::Avif => unreachable!("HEIF and AVIF are decoded by libheif"),
    }
}

fn decode_with_image(
    input: &[u8],
    format: SourceFormat,
    limits: &Limits,
    on_header: impl FnOnce(&Probe) -> Result<Vec<Plan>, ImageError>,
) -> Result<Decoded, ImageError> {
    if format == SourceFormat::Png {
        // The PNG decoder panics on a palette that is not whole RGB entries (found by fuzzing;
        // the panic would be caught, but a file breaking the spec is refused by name instead).
        if let Some(len) = png_chunk_len(input, b"PLTE").filter(|&n| n == 0 || n % 3 != 0 || n > 768) {
            return Err(ImageError::Corrupt(format!("PNG: a PLTE chunk of {len} bytes (1 to 256 RGB entries)")));
        }
    }
    let mut reader = ImageReader::with_format(Cursor::new(input), image_format(format));
    let mut image_limits = image::Limits::default();
    // Dimensions are checked by the caller from the header; this bounds everything else the
    // decoder allocates (16-bit RGBA at the pixel limit, plus room for metadata and palettes).
    image_limits.max_alloc = Some(limits.max_pixels.saturating_mul(8).saturating_add(64 << 20));
    if format == SourceFormat::Png {
        // The PNG decoder reads (and inflates) every metadata chunk with the header, within the
        // allocation limit it is created with and keeps. Created with a small one, an `iCCP`
        // that inflates past it is dropped unread; the pixels get the full limit below.
        let mut header_limits = image_limits.clone();
        header_limits.max_alloc = Some(PNG_METADATA_BYTES);
        reader.limits(header_limits);
    } else {
        reader.limits(image_limits.clone());
    }
    let mut dec = reader.into_decoder().map_err(from_image_error)?;
    if format == SourceFormat::Png {
        dec.set_limits(image_limits).map_err(from_image_error)?;
    }
    let (width, height) = dec.dimensions();
    if format == SourceFormat::Gif {
        // The canvas is checked by the caller; a frame may declare more, and the decoder
        // allocates a frame's buffer before reading its data.
        for (w, h) in gif_frame_sizes(input) {
            check_limits(w.max(1), h.max(1), limits)?;
        }
    }
    let icc = dec.icc_profile().ok().flatten().filter(|p| !p.is_empty());
    let icc_present = icc.is_some() || (format == SourceFormat::Png && png_has_chunk(input, b"iCCP"));
    let icc = icc.and_then(usable_icc);
    let xmp = dec.xmp_metadata().ok().flatten();
    let exif = match format {
        SourceFormat::Tiff => Some(parse_exif(input)),
        _ => dec.exif_metadata().ok().flatten().map(|raw| parse_exif(&raw)),
    };
    let orientation = match exif.as_ref().and_then(|e| e.orientation) {
        Some(o) => o,
        None => dec.orientation().map(|o| o.to_exif()).unwrap_or(1),
    };
    let original = dec.original_color_type();
    let color = dec.color_type();
    let channels = original.channel_count().max(1);
    let probe = Probe {
        format,
        width,
        height,
        orientation,
        icc_dropped: icc_present && icc.is_none(),
        icc,
        exif: exif.filter(|e| format != SourceFormat::Tiff || *e != ExifSummary::default()),
        has_xmp: xmp.is_some(),
        xmp_gps: xmp.as_deref().is_some_and(xmp_has_gps),
        color_space: if color.has_color() { "rgb" } else { "gray" },
        bit_depth: (original.bits_per_pixel() / u16::from(channels)).clamp(1, 32) as u8,
        has_alpha: color.has_alpha(),
        progressive: None,
        coded_pixels: None,
    };
    let plans = on_header(&probe)?;
    if format == SourceFormat::Webp {
        drop(dec);
        if let Some(pixels) = webp_native::decode(input, any_shrink(&plans))? {
            return Ok(Decoded { probe, pixels, plans });
        }
        // Animated: the `image` decoder gives the first frame.
        let dec = ImageReader::with_format(Cursor::new(input), ImageFormat::WebP).into_decoder();
        let img = DynamicImage::from_decoder(dec.map_err(from_image_error)?).map_err(from_image_error)?;
        return Ok(Decoded { probe, pixels: to_pixels(img), plans });
    }
    let img = DynamicImage::from_decoder(dec).map_err(from_image_error)?;
    Ok(Decoded { probe, pixels: to_pixels(img), plans })
}

/// Converts any decoded image to 8-bit gray, gray+alpha, RGB or RGBA.
fn to_pixels(img: DynamicImage) -> Pixels {
    let (width, height) = (img.width(), img.height());
    let (data, channels) = match img {
        DynamicImage::ImageLuma8(b) => (b.into_raw(), 1),
        DynamicImage::ImageLumaA8(b) => (b.into_raw(), 2),
        DynamicImage::ImageRgb8(b) => (b.into_raw(), 3),
        DynamicImage::ImageRgba8(b) => (b.into_raw(), 4),
        other => {
            let c = other.color();
            match (c.has_color(), c.has_alpha()) {
                (false, false) => (other.to_luma8().into_raw(), 1),
                (false, true) => (other.to_luma_alpha8().into_raw(), 2),
                (true, false) => (other.to_rgb8().into_raw(), 3),
                (true, true) => (other.to_rgba8().into_raw(), 4),
            }
        }
    };
    Pixels { data, width, height, channels }
}
