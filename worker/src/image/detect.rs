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
        }
    }
}

/// Sniffs the format from magic bytes.
///
/// # Errors
/// [`ImageError::NotAnImage`] for empty or unrecognised bytes, and
/// [`ImageError::Unsupported`] for image formats recognised but not read (HEIF, AVIF, JPEG XL…).
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
        let brand = String::from_utf8_lossy(&bytes[8..12]).into_owned();
        return Err(ImageError::Unsupported(format!("ISO media file (brand {brand:?}: HEIF/AVIF) cannot be read")));
    }
    if starts(&[0xFF, 0x0A]) || starts(b"\0\0\0\x0cJXL ") {
        return Err(ImageError::Unsupported("JPEG XL cannot be read".into()));
    }
    Err(ImageError::NotAnImage("no known image signature at the start of the data".into()))
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
        assert!(matches!(detect(b"\0\0\0\x1cftypheic\0\0\0\0"), Err(ImageError::Unsupported(_))));
    }
}
