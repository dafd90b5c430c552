//! Why a request to start a job was refused, in the protocol's terms: each reason has a
//! stable code and a class — permanent (the same request can never pass) or retryable
//! (storage or the orchestrator failed). The HTTP API maps them to status codes; the
//! watcher and the S3 intakes only ask whether to try again.

use crate::error::ErrorClass;

/// A refused intake.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IntakeError {
    /// A bucket outside the allow-list.
    #[error("bucket {bucket:?} is not in the allow-list {allowed:?}")]
    NotAllowed {
        /// The bucket asked for.
        bucket: String,
        /// The buckets allowed.
        allowed: Vec<String>,
    },
    /// A key no backend should carry.
    #[error("{0}")]
    InvalidKey(String),
    /// Renditions that break the rules or the limits.
    #[error("{0}")]
    InvalidRendition(String),
    /// The source object does not exist.
    #[error("{bucket}/{key} does not exist")]
    SourceMissing {
        /// Its bucket.
        bucket: String,
        /// Its key.
        key: String,
    },
    /// A job with this id already exists.
    #[error("{0}")]
    Conflict(String),
    /// Storage or the orchestrator failed; a later try may pass.
    #[error("{0}")]
    Unavailable(String),
}

impl IntakeError {
    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            IntakeError::NotAllowed { .. } => "BucketNotAllowed",
            IntakeError::InvalidKey(_) => "InvalidKey",
            IntakeError::InvalidRendition(_) => "InvalidRendition",
            IntakeError::SourceMissing { .. } => "SourceNotFound",
            IntakeError::Conflict(_) => "JobExists",
            IntakeError::Unavailable(_) => "ServiceUnavailable",
        }
    }

    /// Whether trying the same request again may pass.
    pub fn class(&self) -> ErrorClass {
        match self {
            IntakeError::Unavailable(_) => ErrorClass::Retryable,
            _ => ErrorClass::Permanent,
        }
    }

    /// Whether trying the same request again may pass.
    pub fn is_retryable(&self) -> bool {
        self.class() == ErrorClass::Retryable
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_failures_of_the_services_are_retryable() {
        let missing = IntakeError::SourceMissing { bucket: "original".into(), key: "a.jpg".into() };
        let cases = [
            (IntakeError::NotAllowed { bucket: "x".into(), allowed: vec![] }, "BucketNotAllowed", false),
            (IntakeError::InvalidKey("..".into()), "InvalidKey", false),
            (IntakeError::InvalidRendition("no box".into()), "InvalidRendition", false),
            (missing.clone(), "SourceNotFound", false),
            (IntakeError::Conflict("job j exists".into()), "JobExists", false),
            (IntakeError::Unavailable("S3 503".into()), "ServiceUnavailable", true),
        ];
        for (error, code, retryable) in cases {
            assert_eq!((error.code(), error.is_retryable()), (code, retryable), "{error}");
        }
        assert_eq!(missing.to_string(), "original/a.jpg does not exist");
    }
}
