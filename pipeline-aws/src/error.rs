//! SDK failures reduced to what callers act on: the service's error code, and whether
//! trying again may help. Folded into the core's [`BlobError`] and [`QueueError`].

use std::error::Error as StdError;

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use pipeline_core::blob::BlobError;
use pipeline_core::queue::QueueError;

/// Error codes that mean "slow down", from S3, SQS and the shared AWS protocols.
const THROTTLING: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "SlowDown",
    "RequestTimeout",
    "RequestTimeoutException",
    "InternalError",
    "ServiceUnavailable",
    "KMS.ThrottlingException",
    "ProvisionedThroughputExceededException",
];

/// One failed AWS call.
#[derive(Debug, thiserror::Error)]
#[error("{operation} failed: {message}")]
pub struct AwsError {
    /// The API operation, e.g. `GetObject`.
    pub operation: &'static str,
    /// The service's error code, when it answered with one.
    pub code: Option<String>,
    /// The HTTP status, when a response arrived.
    pub status: Option<u16>,
    /// A sentence for logs: the code, the service's message and the transport's cause.
    pub message: String,
    /// Throttling, 5xx, timeouts and connection failures: yes. Access denied, validation: no.
    pub retryable: bool,
}

impl AwsError {
    /// Reduces an SDK error to its code, status and class.
    pub fn from_sdk<E>(operation: &'static str, err: &SdkError<E, HttpResponse>) -> Self
    where
        E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
    {
        let status = err.raw_response().map(|r| r.status().as_u16());
        let code = err.code().map(str::to_owned);
        let retryable = match err {
            SdkError::ConstructionFailure(_) => false,
            SdkError::DispatchFailure(d) => !d.is_user(),
            SdkError::TimeoutError(_) | SdkError::ResponseError(_) => true,
            SdkError::ServiceError(_) => {
                status.is_some_and(|s| s >= 500 || s == 429) || code.as_deref().is_some_and(|c| THROTTLING.contains(&c))
            }
            _ => true,
        };
        let message = match (&code, err.message()) {
            (Some(code), Some(msg)) => format!("{code}: {msg}"),
            (Some(code), None) => match status {
                Some(s) => format!("{code} (HTTP {s})"),
                None => code.clone(),
            },
            _ => DisplayErrorContext(err).to_string(),
        };
        Self { operation, code, status, message, retryable }
    }

    /// Whether the service answered with one of `codes`.
    pub fn has_code(&self, codes: &[&str]) -> bool {
        self.code.as_deref().is_some_and(|c| codes.contains(&c))
    }
}

impl From<AwsError> for BlobError {
    fn from(e: AwsError) -> Self {
        BlobError::Service { retryable: e.retryable, message: e.to_string() }
    }
}

impl From<AwsError> for QueueError {
    fn from(e: AwsError) -> Self {
        QueueError::Service { retryable: e.retryable, message: e.to_string() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(code: &str, status: u16) -> AwsError {
        use aws_sdk_s3::error::ErrorMetadata;
        use aws_sdk_s3::operation::get_object::GetObjectError;
        use aws_sdk_s3::primitives::SdkBody;
        let meta = ErrorMetadata::builder().code(code).message("said the service").build();
        let raw = HttpResponse::new(status.try_into().expect("status"), SdkBody::empty());
        let err = SdkError::service_error(GetObjectError::generic(meta), raw);
        AwsError::from_sdk("GetObject", &err)
    }

    #[test]
    fn throttling_and_5xx_are_retryable() {
        assert!(from("SlowDown", 503).retryable);
        assert!(from("ThrottlingException", 400).retryable);
        assert!(from("RequestThrottled", 403).retryable);
        assert!(from("Whatever", 500).retryable);
        assert!(from("TooMany", 429).retryable);
    }

    #[test]
    fn client_errors_are_permanent() {
        let denied = from("AccessDenied", 403);
        assert!(!denied.retryable);
        assert!(denied.has_code(&["AccessDenied"]));
        assert_eq!(denied.status, Some(403));
        assert_eq!(denied.to_string(), "GetObject failed: AccessDenied: said the service");
        assert!(matches!(BlobError::from(denied), BlobError::Service { retryable: false, .. }));
        assert!(matches!(QueueError::from(from("Oops", 502)), QueueError::Service { retryable: true, .. }));
    }
}
