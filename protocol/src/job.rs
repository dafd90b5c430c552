//! A job as the orchestrators record it: its workflow state, attempts, history,
//! outputs and last error. Both orchestrators produce these records, so the API, the CLI
//! and the dead-letter queue read one shape.

use serde::{Deserialize, Serialize};

use crate::error::JobError;
use crate::message::{Output, SourceMetadata};
use crate::rendition::Rendition;
pub use crate::workflow::JobState;

/// One step of a job's history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    /// When, RFC 3339 UTC.
    pub at: String,
    /// The workflow state entered.
    pub state: JobState,
    /// The attempt it concerns.
    pub attempt: u32,
    /// The failure, for `CheckResult` after a failed attempt and for `DeadLetter`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<JobError>,
    /// The backoff chosen, for `Retry`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    /// The ceiling the backoff was drawn under, for `Retry`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ceiling_ms: Option<u64>,
    /// A free-form remark (`succeeded`, `redriven from the DLQ`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Everything known of a job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobRecord {
    /// The job's id.
    pub job_id: String,
    /// Where it is now.
    pub state: JobState,
    /// Attempts started so far (in the current run, after a redrive).
    pub attempts: u32,
    /// Bucket of the original.
    pub source_bucket: String,
    /// Key of the original.
    pub source_key: String,
    /// Bucket of the renditions.
    pub destination_bucket: String,
    /// What was asked for.
    pub renditions: Vec<Rendition>,
    /// When it was created, RFC 3339 UTC.
    pub created_at: String,
    /// When it last changed, RFC 3339 UTC.
    pub updated_at: String,
    /// What was written, once it succeeded.
    pub outputs: Vec<Output>,
    /// What the engine read from the source, once it succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<SourceMetadata>,
    /// The last failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<JobError>,
    /// Every step so far, oldest first.
    pub history: Vec<HistoryEntry>,
}
