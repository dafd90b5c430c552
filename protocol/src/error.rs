//! Every failure a job can meet is folded into one [`JobError`] whose [`ErrorClass`]
//! tells the orchestrator what to do: retry it, or dead-letter it at once.

use serde::{Deserialize, Serialize};

/// What the caller must do about a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum ErrorClass {
    /// Trying again cannot help: not an image, corrupt, too large, source missing, bucket not allowed.
    Permanent,
    /// Trying again may help: throttling, 5xx, timeouts, shutdown, a lost worker.
    Retryable,
}

/// A classified failure, as carried in reports, job history and dead letters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error, utoipa::ToSchema)]
#[error("{code}: {message}")]
pub struct JobError {
    /// Retry or not.
    pub class: ErrorClass,
    /// A stable machine-readable name, such as `NotAnImage` or `WorkerLost`.
    pub code: String,
    /// A human-readable reason.
    pub message: String,
}

impl JobError {
    /// A failure that retrying cannot fix.
    pub fn permanent(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self { class: ErrorClass::Permanent, code: code.into(), message: message.into() }
    }

    /// A failure that may pass if tried again.
    pub fn retryable(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self { class: ErrorClass::Retryable, code: code.into(), message: message.into() }
    }

    /// Whether the orchestrator may retry the job.
    pub fn is_retryable(&self) -> bool {
        self.class == ErrorClass::Retryable
    }
}
