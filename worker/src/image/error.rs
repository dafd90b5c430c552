//! Why the engine refused or failed an image, and how that folds into a job failure.

use protocol::JobError;

/// A failure of [`render`](super::render). Every variant is permanent: the same bytes
/// will fail the same way on any retry.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum ImageError {
    /// The bytes are not an image of any known format (empty, text, …).
    #[error("not an image: {0}")]
    NotAnImage(String),
    /// An image format or a feature of it that the engine does not handle.
    #[error("unsupported image: {0}")]
    Unsupported(String),
    /// The image is damaged: truncated, bad checksums, inconsistent headers.
    #[error("corrupt image: {0}")]
    Corrupt(String),
    /// The input exceeds one of the [`Limits`](super::Limits).
    #[error("image too large: {what} is {actual}, the limit is {limit}")]
    TooLarge {
        /// Which quantity is over the limit: `bytes`, `pixels`, `width`, `height`, or the
        /// render's `estimated memory (bytes)` against the memory budget.
        what: &'static str,
        /// The value the input declares.
        actual: u64,
        /// The configured limit.
        limit: u64,
    },
    /// A pixel buffer could not be allocated: a size the limits should have refused, or a
    /// machine out of memory. An error rather than the process abort of an infallible allocation.
    #[error("cannot allocate {0} bytes for pixels")]
    Allocation(u64),
    /// A rendition asks for something the engine cannot produce.
    #[error("invalid rendition: {0}")]
    InvalidRendition(String),
    /// An encoder failed to write an output.
    #[error("encoding failed: {0}")]
    Encode(String),
}

impl ImageError {
    /// The stable machine-readable code used in reports and dead letters.
    pub fn code(&self) -> &'static str {
        match self {
            ImageError::NotAnImage(_) => "NotAnImage",
            ImageError::Unsupported(_) => "UnsupportedFormat",
            ImageError::Corrupt(_) => "CorruptImage",
            ImageError::TooLarge { .. } | ImageError::Allocation(_) => "TooLarge",
            ImageError::InvalidRendition(_) => "InvalidRendition",
            ImageError::Encode(_) => "EncodeFailed",
        }
    }
}

impl From<ImageError> for JobError {
    fn from(e: ImageError) -> Self {
        JobError::permanent(e.code(), e.to_string())
    }
}

/// Maps an `image` crate error raised while reading a source.
pub(crate) fn from_image_error(e: image::ImageError) -> ImageError {
    use image::ImageError as E;
    match e {
        E::Limits(l) => ImageError::Corrupt(format!("decoder allocation limit reached: {l}")),
        E::Unsupported(u) => ImageError::Unsupported(u.to_string()),
        E::Decoding(d) => ImageError::Corrupt(d.to_string()),
        E::Parameter(p) => ImageError::Corrupt(p.to_string()),
        E::IoError(io) => ImageError::Corrupt(format!("truncated or unreadable data: {io}")),
        E::Encoding(x) => ImageError::Encode(x.to_string()),
    }
}
