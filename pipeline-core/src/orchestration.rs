//! What the producer and the CLI need of an orchestrator, whichever runs the workflow:
//! start a job, read its state and history. The embedded engine implements it over
//! SQLite; a Step Functions implementation reads executions instead.

use std::fmt::Debug;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::JobError;
use crate::message::{Job, Output};
use crate::rendition::Rendition;

/// Where a job is in `ImageProcessingWorkflow`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobState {
    /// Queued for a worker, or being processed.
    ProcessImage,
    /// Waiting out its backoff before the next attempt.
    Retry,
    /// Failed for good; being put on the dead-letter queue.
    DeadLetter,
    /// Every rendition written.
    Success,
    /// Failed for good and dead-lettered.
    Fail,
}

impl JobState {
    /// The state's name, as in the workflow definition.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::ProcessImage => "ProcessImage",
            JobState::Retry => "Retry",
            JobState::DeadLetter => "DeadLetter",
            JobState::Success => "Success",
            JobState::Fail => "Fail",
        }
    }

    /// Reads a state name.
    pub fn parse(name: &str) -> Option<Self> {
        [JobState::ProcessImage, JobState::Retry, JobState::DeadLetter, JobState::Success, JobState::Fail]
            .into_iter()
            .find(|s| s.as_str() == name)
    }

    /// Whether the job has ended.
    pub fn is_terminal(self) -> bool {
        matches!(self, JobState::Success | JobState::Fail)
    }
}

/// One step of a job's history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    /// When, RFC 3339 UTC.
    pub at: String,
    /// The workflow state entered (`ProcessImage`, `CheckResult`, `Retry`, ...).
    pub state: String,
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
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
    pub metadata: Option<serde_json::Value>,
    /// The last failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<JobError>,
    /// Every step so far, oldest first.
    pub history: Vec<HistoryEntry>,
}

/// Why an orchestrator call failed.
#[derive(Debug, thiserror::Error)]
#[error("orchestrator: {message}")]
pub struct OrchestratorError {
    /// What went wrong.
    pub message: String,
}

impl OrchestratorError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Self { message: message.into() }
    }
}

/// Starts jobs and tells their state.
#[async_trait]
pub trait Orchestrator: Send + Sync + Debug {
    /// Starts `ImageProcessingWorkflow` for a new job.
    ///
    /// # Errors
    /// The job could not be recorded or started.
    async fn start(&self, job: Job) -> Result<(), OrchestratorError>;

    /// The job's record, or `None` if there is no such job.
    ///
    /// # Errors
    /// The store could not be read.
    async fn get(&self, job_id: &str) -> Result<Option<JobRecord>, OrchestratorError>;

    /// The most recent jobs, newest first, without their history.
    ///
    /// # Errors
    /// The store could not be read.
    async fn list(&self, limit: usize) -> Result<Vec<JobRecord>, OrchestratorError>;
}
