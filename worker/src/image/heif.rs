//! HEIF/HEIC and AVIF input through libheif: the primary image only (no depth maps, thumbnails
//! or sequences), its grid assembled and its transformations (`irot`, `imir`, `clap`) applied
//! by libheif, so the pixels come out upright and the Exif orientation is not applied again.
//!
//! The header facts come from the boxes (`ispe`, `colr`, the metadata items) before any pixel
//! is decoded, and the engine's limits and budget are checked on them as for every format.
//! Colour: an ICC profile (`prof`, `rICC`) is carried into outputs as a JPEG's is. For an
//! `nclx` description libheif converts YCbCr to RGB by its matrix; RGB in other primaries or on
//! another tone curve than sRGB's is described by a profile made from the `nclx` values, which
//! then takes the same path as an embedded one (converted to sRGB, or kept).

use super::decode::{Decoded, Probe};
use super::detect::SourceFormat;
use super::geometry::Plan;
use super::{ImageError, Limits};

/// Decodes the primary image of a HEIF or AVIF file, calling `on_header` before decoding.
///
/// # Errors
/// Whatever `on_header` returns; [`ImageError::Unsupported`] for a codec or feature libheif
/// does not decode here (or the engine built without the `heif` feature);
/// [`ImageError::Corrupt`] for anything else libheif refuses.
#[cfg(not(feature = "heif"))]
pub fn decode(
    _input: &[u8],
    format: SourceFormat,
    _limits: &Limits,
    _on_header: impl FnOnce(&Probe) -> Result<Vec<Plan>, ImageError>,
) -> Result<Decoded, ImageError> {
    Err(ImageError::Unsupported(format!("{} input is not built into this engine", format.name())))
}

#[cfg(feature = "heif")]
pub use with_libheif::decode;

#[cfg(feature = "heif")]
mod with_libheif {
    use std::sync::OnceLock;

    use libheif_rs::{
        ColorProfile as _, ColorProfileNCLX, ColorSpace, DecodingOptions, HeifContext, HeifError, HeifErrorCode,
        ImageHandle, LibHeif, RgbChroma, SecurityLimits, color_profile_types,
    };
    use moxcms::{CicpColorPrimaries, CicpProfile, ColorProfile, MatrixCoefficients, TransferCharacteristics};

    use super::super::check_limits;
    use super::super::metadata::{ExifSummary, parse_exif, usable_icc, xmp_has_gps};
    use super::super::pixels::{Pixels, zeroed};
    use super::{Decoded, ImageError, Limits, Plan, Probe, SourceFormat};

    /// libheif's global state (its built-in codecs), set up once for the process.
    fn libheif() -> &'static LibHeif {
        static LIB: OnceLock<LibHeif> = OnceLock::new();
        LIB.get_or_init(LibHeif::new)
    }

    /// Decodes the primary image; see [`super::decode`].
    pub fn decode(
        input: &[u8],
        format: SourceFormat,
        limits: &Limits,
        on_header: impl FnOnce(&Probe) -> Result<Vec<Plan>, ImageError>,
    ) -> Result<Decoded, ImageError> {
        let lib = libheif();
        let mut ctx = HeifContext::new().map_err(from_heif)?;
        ctx.set_security_limits(&security_limits(limits)).map_err(from_heif)?;
        // One render is one task (as the AVIF encoder): a grid's tiles decode in turn.
        ctx.set_max_decoding_threads(1);
        ctx.read_bytes(input).map_err(from_heif)?;
        let handle = ctx.primary_image_handle().map_err(from_heif)?;
        // The coded size (`ispe`, before rotation and cropping) is what gets allocated; the
        // handle's size is the upright one the renditions are planned on.
        let (ispe_w, ispe_h) = (handle.ispe_width(), handle.ispe_height());
        if ispe_w > 0 && ispe_h > 0 {
            check_limits(ispe_w as u32, ispe_h as u32, limits)?;
        }
        let mut probe = probe(&handle, format);
        probe.coded_pixels = Some(u64::try_from(ispe_w).unwrap_or(0) * u64::try_from(ispe_h).unwrap_or(0));
        let plans = on_header(&probe)?;
        let pixels = pixels(lib, &handle, &probe)?;
        Ok(Decoded { probe, pixels, plans })
    }

    /// libheif's own limits, from the engine's: no image (or grid tile) over the pixel limit,
    /// and its allocations within what the budget reserves for the largest image.
    fn security_limits(limits: &Limits) -> SecurityLimits {
        let mut security = SecurityLimits::new();
        security.set_max_image_size_pixels(limits.max_pixels);
        security.set_max_total_memory(limits.max_pixels.saturating_mul(16).saturating_add(64 << 20));
        security
    }

    /// The header facts. The orientation is 1: libheif applies `irot` and `imir` itself, and an
    /// Exif orientation in a HEIF file only repeats them (the spec has readers ignore it).
    fn probe(handle: &ImageHandle, format: SourceFormat) -> Probe {
        let mut exif = None;
        let mut xmp = None;
        for block in handle.all_metadata() {
            match &block.item_type.0 {
                // Four bytes of offset to the TIFF header, then the header (often after `Exif\0\0`).
                b"Exif" if exif.is_none() => {
                    let skip = block.raw_data.get(..4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize);
                    let tiff = skip.and_then(|s| block.raw_data.get(4usize.saturating_add(s)..));
                    exif = Some(parse_exif(tiff.unwrap_or_default()));
                }
                b"mime" if block.content_type == "application/rdf+xml" && xmp.is_none() => xmp = Some(block.raw_data),
                _ => {}
            }
        }
        let icc_raw = handle
            .color_profile_raw()
            .filter(|p| [color_profile_types::PROF, color_profile_types::R_ICC].contains(&p.profile_type()))
            .map(|p| p.data)
            .or_else(|| handle.color_profile_nclx().and_then(|nclx| nclx_icc(&nclx)));
        let icc_present = icc_raw.is_some();
        let icc = icc_raw.and_then(usable_icc);
        let gray = matches!(handle.preferred_decoding_colorspace(), Ok(ColorSpace::Monochrome));
        Probe {
            format,
            width: handle.width(),
            height: handle.height(),
            orientation: 1,
            icc_dropped: icc_present && icc.is_none(),
            icc,
            exif: exif.map(|e| ExifSummary { orientation: None, ..e }),
            has_xmp: xmp.is_some(),
            xmp_gps: xmp.as_deref().is_some_and(xmp_has_gps),
            color_space: if gray { "gray" } else { "rgb" },
            bit_depth: handle.luma_bits_per_pixel().clamp(1, 16),
            has_alpha: handle.has_alpha_channel(),
            progressive: None,
            coded_pixels: None,
        }
    }

    /// An ICC profile for an `nclx` colour description whose primaries or tone curve are not
    /// sRGB's (Display P3, BT.2020, a gamma curve…), so the pixels libheif hands back in that
    /// colour space go through the same conversion to sRGB as a profile's. `None` for sRGB —
    /// BT.709 primaries with the sRGB or BT.709 curves, or unspecified — and for what moxcms
    /// cannot describe as a profile (PQ and HLG have no ICC tone curve).
    fn nclx_icc(nclx: &ColorProfileNCLX) -> Option<Vec<u8>> {
        const BT709: u8 = 1;
        const UNSPECIFIED: u8 = 2;
        const SRGB_LIKE_CURVES: [u8; 5] = [1, 6, 13, 14, 15];
        let primaries = match nclx.color_primaries() as u8 {
            UNSPECIFIED => BT709,
            p => p,
        };
        let transfer = match nclx.transfer_characteristics() as u8 {
            UNSPECIFIED => 13,
            t => t,
        };
        if primaries == BT709 && SRGB_LIKE_CURVES.contains(&transfer) {
            return None;
        }
        let cicp = CicpProfile {
            color_primaries: CicpColorPrimaries::try_from(primaries).ok()?,
            transfer_characteristics: TransferCharacteristics::try_from(transfer).ok()?,
            matrix_coefficients: MatrixCoefficients::Identity,
            full_range: true,
        };
        let profile = ColorProfile::new_from_cicp(cicp);
        // Set last, once the primaries and the curve are both known.
        profile.red_trc.as_ref()?;
        profile.encode().ok()
    }

    /// Decodes to interleaved 8-bit RGB or RGBA, transformations applied, and copies it out
    /// of libheif's padded rows.
    fn pixels(lib: &LibHeif, handle: &ImageHandle, probe: &Probe) -> Result<Pixels, ImageError> {
        let (chroma, channels) = if probe.has_alpha { (RgbChroma::Rgba, 4) } else { (RgbChroma::Rgb, 3) };
        let mut options = DecodingOptions::new().ok_or(ImageError::Allocation(0))?;
        options.set_convert_hdr_to_8bit(true);
        options.set_num_codec_threads(1);
        let image = lib.decode(handle, ColorSpace::Rgb(chroma), Some(options)).map_err(from_heif)?;
        let planes = image.planes();
        let plane = planes.interleaved.ok_or_else(|| corrupt("the decoder returned no interleaved plane"))?;
        if (plane.width, plane.height) != (probe.width, probe.height)
            || usize::from(plane.storage_bits_per_pixel) != 8 * channels
        {
            return Err(corrupt(&format!(
                "decoded {}×{} at {} bits a pixel; the header declares {}×{}",
                plane.width, plane.height, plane.storage_bits_per_pixel, probe.width, probe.height
            )));
        }
        let (width, height) = (plane.width as usize, plane.height as usize);
        let row = width * channels;
        let mut data = zeroed(width, height, channels)?;
        for (y, out) in data.chunks_exact_mut(row).enumerate() {
            let start = y * plane.stride;
            let src = plane.data.get(start..start + row).ok_or_else(|| corrupt("a decoded row is short"))?;
            out.copy_from_slice(src);
        }
        Ok(Pixels { data, width: probe.width, height: probe.height, channels: channels as u8 })
    }

    fn corrupt(what: &str) -> ImageError {
        ImageError::Corrupt(format!("HEIF: {what}"))
    }

    /// A codec or feature missing here is unsupported; everything else libheif refuses
    /// (including its security limits, passed only when the content contradicts its header)
    /// is a damaged file.
    fn from_heif(e: HeifError) -> ImageError {
        let what = format!("HEIF: {} ({:?}/{:?})", e.message.trim(), e.code, e.sub_code);
        match e.code {
            HeifErrorCode::UnsupportedFileType | HeifErrorCode::UnsupportedFeature => ImageError::Unsupported(what),
            _ => ImageError::Corrupt(what),
        }
    }
}
