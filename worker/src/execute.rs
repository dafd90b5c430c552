//! One attempt, processed and reported: what every adapter around `process_job` shares.
//! The long-poll loop adds queue visibility on top; the Lambda handler uses it as is.

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use pipeline_core::JobError;
use pipeline_core::message::Job;

use crate::process::{Processed, WorkerDeps, process_job};
use crate::report::{ReportError, Reporter};

/// Reports an attempt's outcome, retrying transient delivery failures with backoff.
///
/// # Errors
/// [`ReportError::Stale`] when the orchestrator no longer waits for the attempt (drop the
/// message); [`ReportError::Failed`] when delivery kept failing (keep it for redelivery).
pub async fn report(
    reporter: &dyn Reporter,
    job: &Job,
    outcome: &Result<Processed, JobError>,
) -> Result<(), ReportError> {
    match outcome {
        Ok(done) => tracing::info!(outputs = done.outputs.len(), "job done"),
        Err(e) => tracing::warn!(code = %e.code, class = ?e.class, reason = %e.message, "job failed"),
    }
    let send = || async { reporter.finish(job, outcome).await };
    send.retry(ExponentialBuilder::default().with_min_delay(Duration::from_millis(200)).with_max_times(4))
        .when(|e| matches!(e, ReportError::Failed(_)))
        .await
}

/// Processes `job`, heartbeating the orchestrator every `heartbeat_every` meanwhile, and
/// reports the outcome.
///
/// # Errors
/// As [`report`].
pub async fn execute(
    job: &Job,
    deps: &WorkerDeps,
    reporter: &dyn Reporter,
    heartbeat_every: Duration,
) -> Result<(), ReportError> {
    let beats = async {
        let mut ticks = tokio::time::interval(heartbeat_every);
        // The first tick of an interval is immediate; the first heartbeat is due one interval in.
        ticks.tick().await;
        loop {
            ticks.tick().await;
            if let Err(e) = reporter.heartbeat(job).await {
                tracing::warn!(error = %e, "heartbeat not delivered");
            }
        }
    };
    let outcome = tokio::select! {
        outcome = process_job(job, deps) => outcome,
        () = beats => Err(JobError::retryable("Internal", "heartbeat loop ended")),
    };
    report(reporter, job, &outcome).await
}
