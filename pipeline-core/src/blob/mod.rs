//! The blob-store contract: buckets of keyed objects with a content type. The local
//! backend keeps them in folders ([`local::LocalBlobStore`]); S3 is another backend.

pub mod local;

use std::fmt::Debug;

use async_trait::async_trait;
use bytes::Bytes;

use protocol::error::{ErrorClass, JobError};

/// The longest key accepted, in bytes (S3's limit).
pub const MAX_KEY_BYTES: usize = 1024;

/// What is known of a stored object without reading it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobMeta {
    /// The object's key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// MIME type, as stored or guessed from the key.
    pub content_type: String,
    /// `Cache-Control`, when one was stored.
    pub cache_control: Option<String>,
    /// Names this version of the object: S3's ETag, or the local file's size and
    /// modification time. A rewritten object gets a new one. `None` in listings that do
    /// not carry it.
    pub version: Option<String>,
}

/// An object read whole.
#[derive(Clone, Debug)]
pub struct Blob {
    /// Its metadata.
    pub meta: BlobMeta,
    /// Its bytes.
    pub body: Bytes,
}

/// Headers stored with an object.
#[derive(Clone, Debug, Default)]
pub struct PutOptions {
    /// MIME type; guessed from the key when absent.
    pub content_type: Option<String>,
    /// `Cache-Control` header for the object.
    pub cache_control: Option<String>,
}

/// Why a blob operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// No such object (or bucket).
    #[error("s3://{bucket}/{key} does not exist")]
    NotFound {
        /// The bucket asked for.
        bucket: String,
        /// The key asked for.
        key: String,
    },
    /// The object is bigger than the caller allows.
    #[error("s3://{bucket}/{key} is {size} bytes, more than the {limit}-byte limit")]
    TooLarge {
        /// The bucket asked for.
        bucket: String,
        /// The key asked for.
        key: String,
        /// The object's size.
        size: u64,
        /// The caller's limit.
        limit: u64,
    },
    /// A key or bucket name this store refuses.
    #[error("invalid name {name:?}: {reason}")]
    InvalidName {
        /// The offending key or bucket.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Local file-system failure. The message names the object and the kind of failure, never
    /// a file's path (nor the underlying error's own text, which may hold one).
    #[error("storage i/o error on {object}: {}", .source.kind())]
    Io {
        /// The object involved (`bucket/key`), or the part of the store.
        object: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A remote service failure; `retryable` says whether trying again may help.
    #[error("storage service error: {message}")]
    Service {
        /// What the service said.
        message: String,
        /// Throttling, 5xx, timeouts: yes. Access denied: no.
        retryable: bool,
    },
}

impl BlobError {
    /// Retry or not.
    pub fn class(&self) -> ErrorClass {
        match self {
            BlobError::NotFound { .. } | BlobError::TooLarge { .. } | BlobError::InvalidName { .. } => {
                ErrorClass::Permanent
            }
            BlobError::Io { .. } => ErrorClass::Retryable,
            BlobError::Service { retryable, .. } => {
                if *retryable {
                    ErrorClass::Retryable
                } else {
                    ErrorClass::Permanent
                }
            }
        }
    }
}

impl From<BlobError> for JobError {
    fn from(e: BlobError) -> Self {
        let code = match &e {
            BlobError::NotFound { .. } => "SourceMissing",
            BlobError::TooLarge { .. } => "TooLarge",
            BlobError::InvalidName { .. } => "InvalidKey",
            BlobError::Io { .. } => "StorageIo",
            BlobError::Service { .. } => "StorageService",
        };
        JobError { class: e.class(), code: code.into(), message: e.to_string() }
    }
}

/// Buckets of objects. Implementations are shared by many tasks and must be cheap to call concurrently.
#[async_trait]
pub trait BlobStore: Send + Sync + Debug {
    /// Reads an object whole, refusing one larger than `max_bytes` before reading it.
    ///
    /// # Errors
    /// [`BlobError::NotFound`], [`BlobError::TooLarge`], or a storage failure.
    async fn get(&self, bucket: &str, key: &str, max_bytes: u64) -> Result<Blob, BlobError>;

    /// Reads an object's metadata.
    ///
    /// # Errors
    /// [`BlobError::NotFound`] or a storage failure.
    async fn head(&self, bucket: &str, key: &str) -> Result<BlobMeta, BlobError>;

    /// Writes an object atomically: readers see the old object or the whole new one.
    ///
    /// # Errors
    /// [`BlobError::InvalidName`] or a storage failure.
    async fn put(&self, bucket: &str, key: &str, body: Bytes, options: &PutOptions) -> Result<(), BlobError>;

    /// Deletes an object; deleting a missing object succeeds.
    ///
    /// # Errors
    /// A storage failure.
    async fn delete(&self, bucket: &str, key: &str) -> Result<(), BlobError>;

    /// Lists the objects whose keys start with `prefix`, in key order.
    ///
    /// # Errors
    /// A storage failure.
    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<BlobMeta>, BlobError>;
}

/// Checks an object key: non-empty, at most [`MAX_KEY_BYTES`], no leading `/`, no `..`
/// segment, and only characters every backend and message carries unchanged: no control
/// character (C0, DEL or C1: a newline or a NUL in a key could forge a log line or cut a
/// path), no backslash (a path separator elsewhere), no Unicode noncharacter (SQS refuses
/// U+FFFE and U+FFFF in a message body, and the others are not for interchange).
///
/// # Errors
/// [`BlobError::InvalidName`] saying which rule the key breaks.
pub fn validate_key(key: &str) -> Result<(), BlobError> {
    let reason = if key.is_empty() {
        Some("key is empty")
    } else if key.len() > MAX_KEY_BYTES {
        Some("key is longer than 1024 bytes")
    } else if key.starts_with('/') {
        Some("key starts with '/'")
    } else if key.chars().any(char::is_control) {
        Some("key contains a control character")
    } else if key.contains('\\') {
        Some("key contains a backslash")
    } else if key.chars().any(is_noncharacter) {
        Some("key contains a Unicode noncharacter")
    } else if key.split('/').any(|s| s == "..") {
        Some("key contains a '..' segment")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(BlobError::InvalidName { name: key.into(), reason }),
        None => Ok(()),
    }
}

/// U+FDD0–U+FDEF and the last two code points of every plane (U+FFFE, U+FFFF, U+1FFFE, ...).
fn is_noncharacter(c: char) -> bool {
    let c = u32::from(c);
    (0xFDD0..=0xFDEF).contains(&c) || c & 0xFFFE == 0xFFFE
}

/// Checks a bucket name by S3's rules: 3–63 of `a-z 0-9 . -`, starting and ending with a letter or digit.
///
/// # Errors
/// [`BlobError::InvalidName`].
pub fn validate_bucket(bucket: &str) -> Result<(), BlobError> {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = bucket.as_bytes();
    let ok = (3..=63).contains(&bytes.len())
        && bytes.iter().all(|&b| alnum(b) || b == b'.' || b == b'-')
        && bytes.first().copied().is_some_and(alnum)
        && bytes.last().copied().is_some_and(alnum)
        && !bucket.contains("..");
    if ok {
        Ok(())
    } else {
        Err(BlobError::InvalidName {
            name: bucket.into(),
            reason: "bucket names are 3-63 characters of a-z, 0-9, '.' and '-'",
        })
    }
}

/// A MIME type from a key's extension, for objects stored without one.
pub fn guess_content_type(key: &str) -> &'static str {
    let ext = key.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    match ext.as_str() {
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "avif" => "image/avif",
        "bmp" => "image/bmp",
        "tif" | "tiff" => "image/tiff",
        "heic" => "image/heic",
        "json" => "application/json",
        "txt" => "text/plain",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked() {
        let longest = "x".repeat(1024);
        let good_keys = [
            "a.jpg",
            "dir/sub/a b.jpg",
            "..a/b..",
            longest.as_str(),
            "caf\u{e9}/\u{65e5}\u{672c}.jpg",
            "emoji-\u{1F600}.png",
            "last-bmp-\u{FFFD}.jpg",
            "after-surrogates-\u{E000}.jpg",
            "plane-16-\u{10FFFD}.jpg",
            "a+b=c&d;e,f@g#h(i)[j]{k}~'!$%.jpg",
        ];
        for good in good_keys {
            assert!(validate_key(good).is_ok(), "{good}");
        }
        let long = "x".repeat(1025);
        let bad_keys = [
            "",
            "/abs.jpg",
            "a/../b",
            "..",
            "../x",
            "a/..",
            "nul\0.jpg",
            long.as_str(),
            "line\nbreak.jpg",
            "cr\r.jpg",
            "tab\t.jpg",
            "esc\u{1b}[31m.jpg",
            "del\u{7f}.jpg",
            "c1-\u{85}.jpg",
            "c1-\u{9f}.jpg",
            "back\\slash.jpg",
            "dir\\..\\x.jpg",
            "nonchar-\u{FFFE}.jpg",
            "nonchar-\u{FFFF}.jpg",
            "nonchar-\u{FDD0}.jpg",
            "nonchar-\u{FDEF}.jpg",
            "nonchar-\u{1FFFE}.jpg",
            "nonchar-\u{10FFFF}.jpg",
        ];
        for bad in bad_keys {
            assert!(validate_key(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn buckets_are_checked() {
        for good in ["original", "resized", "my.bucket-1"] {
            assert!(validate_bucket(good).is_ok(), "{good}");
        }
        for bad in ["", "ab", "Upper", "-lead", "trail.", "a..b", "under_score", "../etc"] {
            assert!(validate_bucket(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn errors_are_classified() {
        let nf = BlobError::NotFound { bucket: "b".into(), key: "k".into() };
        assert_eq!(JobError::from(nf).code, "SourceMissing");
        let svc = BlobError::Service { message: "SlowDown".into(), retryable: true };
        assert!(JobError::from(svc).is_retryable());
    }
}
