//! How a worker tells the orchestrator about an attempt, whichever orchestrator it is. The embedded orchestrator
//! reads a reports queue ([`QueueReporter`]); Step Functions takes task-token calls.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use protocol::error::JobError;
use protocol::message::{Job, Processed, Report, ReportKind};

use crate::queue::Queue;

/// Why a report did not go through.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The orchestrator no longer waits for this attempt (it timed out or was resolved):
    /// the job message can be deleted.
    #[error("the attempt is already resolved: {0}")]
    Stale(String),
    /// The report could not be delivered; keep the message so it is tried again.
    #[error("report not delivered: {0}")]
    Failed(String),
}

/// Where reports go.
#[async_trait]
pub trait Reporter: Send + Sync + std::fmt::Debug {
    /// The worker is still busy with this attempt.
    ///
    /// # Errors
    /// [`ReportError`].
    async fn heartbeat(&self, job: &Job) -> Result<(), ReportError>;

    /// The attempt ended.
    ///
    /// # Errors
    /// [`ReportError`].
    async fn finish(&self, job: &Job, outcome: &Result<Processed, JobError>) -> Result<(), ReportError>;
}

/// Reports as messages on a queue, for the embedded orchestrator.
#[derive(Clone, Debug)]
pub struct QueueReporter {
    reports: Arc<dyn Queue>,
}

impl QueueReporter {
    /// Reports onto `reports`.
    pub fn new(reports: Arc<dyn Queue>) -> Self {
        Self { reports }
    }

    async fn send(&self, report: Report) -> Result<(), ReportError> {
        self.reports
            .send(&report.to_json(), Duration::ZERO)
            .await
            .map(|_| ())
            .map_err(|e| ReportError::Failed(e.to_string()))
    }
}

#[async_trait]
impl Reporter for QueueReporter {
    async fn heartbeat(&self, job: &Job) -> Result<(), ReportError> {
        self.send(Report::new(job, ReportKind::Heartbeat)).await
    }

    async fn finish(&self, job: &Job, outcome: &Result<Processed, JobError>) -> Result<(), ReportError> {
        let kind = match outcome {
            Ok(done) => ReportKind::Succeeded { outputs: done.outputs.clone(), metadata: Some(done.metadata.clone()) },
            Err(error) => ReportKind::Failed { error: error.clone() },
        };
        self.send(Report::new(job, kind)).await
    }
}
