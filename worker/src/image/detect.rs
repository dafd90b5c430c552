//! Recognises an input's format from its first bytes, never from a file name.

use super::ImageError;

/// The formats the engine reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceFormat {
    /// JPEG (JFIF, Exif, Adobe).
    Jpeg,
    /// PNG.
    Png,
    /// WebP, lossy or lossless, still or animated.
    Webp,
    /// GIF 87a/89a.
    Gif,
    /// Windows bitmap.
    Bmp,
    /// TIFF, either byte order.
    Tiff,
    /// HEIF: HEIC (HEVC) and the other non-AV1 HEIF brands.
    Heif,
    /// AVIF: HEIF with AV1.
    Avif,
}

impl SourceFormat {
    /// The lowercase name reported in metadata.
    pub fn name(self) -> &'static str {
        match self {
            SourceFormat::Jpeg => "jpeg",
            SourceFormat::Png => "png",
            SourceFormat::Webp => "webp",
            SourceFormat::Gif => "gif",
            SourceFormat::Bmp => "bmp",
            SourceFormat::Tiff => "tiff",
            SourceFormat::Heif => "heif",
            SourceFormat::Avif => "avif",
        }
    }
}

/// Sniffs the format from magic bytes.
///
/// # Errors
/// [`ImageError::NotAnImage`] for empty or unrecognised bytes, and
/// [`ImageError::Unsupported`] for image formats recognised but not read (JPEG XL, ISO media
/// files that are not HEIF: video, camera raw…).
pub fn detect(bytes: &[u8]) -> Result<SourceFormat, ImageError> {
    if bytes.is_empty() {
        return Err(ImageError::NotAnImage("the file is empty".into()));
    }
    let starts = |m: &[u8]| bytes.starts_with(m);
    if starts(&[0xFF, 0xD8, 0xFF]) {
        return Ok(SourceFormat::Jpeg);
    }
    if starts(b"\x89PNG\r\n\x1a\n") {
        return Ok(SourceFormat::Png);
    }
    if bytes.len() >= 12 && starts(b"RIFF") && &bytes[8..12] == b"WEBP" {
        return Ok(SourceFormat::Webp);
    }
    if starts(b"GIF87a") || starts(b"GIF89a") {
        return Ok(SourceFormat::Gif);
    }
    if bytes.len() >= 14 && starts(b"BM") {
        return Ok(SourceFormat::Bmp);
    }
    if starts(b"II*\0") || starts(b"MM\0*") {
        return Ok(SourceFormat::Tiff);
    }
    if bytes.len() >= 12 && &bytes[4..8] == b"ftyp" {
        return heif_brand(bytes);
    }
    if starts(&[0xFF, 0x0A]) || starts(b"\0\0\0\x0cJXL ") {
        return Err(ImageError::Unsupported("JPEG XL cannot be read".into()));
    }
    Err(ImageError::NotAnImage("no known image signature at the start of the data".into()))
}

/// HEIF image brands (ISO/IEC 23008-12) for HEVC and its generic structural brands.
const HEIF_BRANDS: [&[u8; 4]; 10] =
    [b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"msf1"];
/// AVIF brands: still image and sequence.
const AVIF_BRANDS: [&[u8; 4]; 2] = [b"avif", b"avis"];

/// Reads an `ftyp` box: AVIF when its major or a compatible brand is AVIF's, HEIF when one is
/// a HEIF brand, anything else (MP4 video, camera raw…) is not an image the engine reads.
fn heif_brand(bytes: &[u8]) -> Result<SourceFormat, ImageError> {
    let size = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    let major = &bytes[8..12];
    // Compatible brands follow the major brand and its minor version, to the box's end.
    // (`get` is `None` when the box or the data ends before the list would start.)
    let compatible = bytes.get(16..size.min(bytes.len())).unwrap_or_default().chunks_exact(4);
    let brands = || std::iter::once(major).chain(compatible.clone());
    if brands().any(|b| AVIF_BRANDS.iter().any(|a| a.as_slice() == b)) {
        return Ok(SourceFormat::Avif);
    }
    if brands().any(|b| HEIF_BRANDS.iter().any(|h| h.as_slice() == b)) {
        return Ok(SourceFormat::Heif);
    }
    let brand = String::from_utf8_lossy(major).into_owned();
    Err(ImageError::Unsupported(format!("ISO media file of brand {brand:?} (not HEIF or AVIF) cannot be read")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_by_content() {
        assert_eq!(detect(b"\xFF\xD8\xFF\xE0rest"), Ok(SourceFormat::Jpeg));
        assert_eq!(detect(b"\x89PNG\r\n\x1a\nIHDR"), Ok(SourceFormat::Png));
        assert_eq!(detect(b"RIFF\0\0\0\0WEBPVP8 "), Ok(SourceFormat::Webp));
        assert_eq!(detect(b"GIF89a...."), Ok(SourceFormat::Gif));
        assert_eq!(detect(b"MM\0*\0\0\0\x08"), Ok(SourceFormat::Tiff));
        assert!(matches!(detect(b""), Err(ImageError::NotAnImage(_))));
        assert!(matches!(detect(b"hello, world\n"), Err(ImageError::NotAnImage(_))));
        assert_eq!(detect(b"\0\0\0\x18ftypheic\0\0\0\0mif1heic"), Ok(SourceFormat::Heif));
        assert_eq!(detect(b"\0\0\0\x18ftypavif\0\0\0\0avifmif1"), Ok(SourceFormat::Avif));
        // A generic HEIF brand: the compatible brands tell AVIF from HEIC.
        assert_eq!(detect(b"\0\0\0\x18ftypmif1\0\0\0\0mif1avif"), Ok(SourceFormat::Avif));
        assert_eq!(detect(b"\0\0\0\x14ftypmsf1\0\0\0\0hevc"), Ok(SourceFormat::Heif));
        // Cut short inside the box, before or in its list of brands: read as far as it goes.
        for len in 12..=17 {
            let cut = &b"\0\0\0\x18ftypheic\0\0\0\0mif1"[..len];
            assert_eq!(detect(cut), Ok(SourceFormat::Heif), "{len} bytes");
        }
        // Brands past the box's declared end are not its own.
        assert!(matches!(detect(b"\0\0\0\x10ftypisom\0\0\0\0heic"), Err(ImageError::Unsupported(_))));
        assert!(matches!(detect(b"\0\0\0\x18ftypisom\0\0\0\0isomavc1"), Err(ImageError::Unsupported(_))));
        assert!(matches!(detect(b"\0\0\0\x18ftypcrx \0\0\0\0crx isom"), Err(ImageError::Unsupported(_))));
    }
}
