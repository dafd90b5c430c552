//! The blob-store contract: buckets of keyed objects with a content type. The local
//! backend keeps them in folders ([`local::LocalBlobStore`]); S3 is another backend.

pub mod local;

use std::fmt::Debug;

use async_trait::async_trait;
use bytes::Bytes;

use protocol::error::{ErrorClass, JobError};
pub use protocol::keys::KeyError;

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

impl From<KeyError> for BlobError {
    fn from(e: KeyError) -> Self {
        BlobError::InvalidName { name: e.name, reason: e.reason }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_classified() {
        let nf = BlobError::NotFound { bucket: "b".into(), key: "k".into() };
        assert_eq!(JobError::from(nf).code, "SourceMissing");
        let svc = BlobError::Service { message: "SlowDown".into(), retryable: true };
        assert!(JobError::from(svc).is_retryable());
    }
}
