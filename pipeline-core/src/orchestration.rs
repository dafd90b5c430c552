//! What the producer and the CLI need of an orchestrator, whichever runs the workflow:
//! start a job, read its state and history. The embedded engine implements it over
//! SQLite; a Step Functions implementation reads executions instead.

use std::fmt::Debug;

use async_trait::async_trait;
use protocol::JobError;
use protocol::job::JobRecord;
use protocol::message::Job;

/// Why an orchestrator call failed.
#[derive(Debug, thiserror::Error)]
#[error("orchestrator: {message}")]
pub struct OrchestratorError {
    /// What went wrong.
    pub message: String,
    /// A job with this id already exists (trying again cannot help); otherwise the
    /// orchestrator or its store failed, and a later try may pass.
    pub conflict: bool,
}

impl OrchestratorError {
    /// The orchestrator or its store failed.
    pub fn new(message: impl Into<String>) -> Self {
        Self { message: message.into(), conflict: false }
    }

    /// Another job already holds this id.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self { message: message.into(), conflict: true }
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

    /// Records an input that cannot become a job as a failed job with the reason `error`:
    /// dead-lettered at once, never run. Refusing an id already known is a conflict.
    ///
    /// # Errors
    /// A conflict for a known id; otherwise the refusal could not be recorded.
    async fn refuse(&self, job: Job, error: JobError) -> Result<(), OrchestratorError>;

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

    /// The ids of jobs as this process sees them end, for waiters that would otherwise poll
    /// [`Orchestrator::get`]; `None` when the orchestrator cannot tell (waiters poll). A
    /// receiver that falls behind is told it lagged and should read its job again; a job
    /// ended by another process is not announced, so waiters still poll, rarely.
    fn ended(&self) -> Option<tokio::sync::broadcast::Receiver<String>> {
        None
    }
}
