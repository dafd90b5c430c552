//! Why a workflow engine step failed.

use pipeline_core::job_store::StoreError;
use pipeline_core::orchestration::OrchestratorError;
use pipeline_core::queue::QueueError;
use pipeline_core::sqlite::DbError;

/// Why an engine step failed. All but [`EngineError::Exists`] are worth retrying later.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A job with this id was already submitted.
    #[error("job {0} already exists")]
    Exists(String),
    /// The SQLite file failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The job store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A queue failed.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// Another orchestrator failed.
    #[error(transparent)]
    Orchestrator(#[from] OrchestratorError),
}

impl From<EngineError> for OrchestratorError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Orchestrator(e) => e,
            e @ EngineError::Exists(_) => OrchestratorError::conflict(e.to_string()),
            other => OrchestratorError::new(other.to_string()),
        }
    }
}
