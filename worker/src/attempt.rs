//! One delivery of a job message, start to finish — the only place that decides what a
//! worker does with a message, used by the long-poll [`Runner`](crate::Runner) and by the
//! Lambda handler alike:
//!
//! ```text
//! read the body ─not a job──▶ dead-letter queue ─▶ delete
//!      │
//!      ├─delivered too often─▶ report PoisonMessage ───────────────┐
//!      └─hold (heartbeats, lease) + process_job ─▶ report outcome ─┤
//!                      └─hard stop─▶ release now                   ├─reported / stale ─▶ delete
//!                                                                  └─not delivered ──▶ back to the queue
//! ```
//!
//! What differs between the adapters is explicit in [`Hold`]: whether the message's lease
//! is renewed while the job runs (SQS visibility; a Lambda's batch is held by the service),
//! whether a hard stop can interrupt it, and whether an undeliverable report backs off by
//! the delivery count.

use std::time::Duration;

use async_trait::async_trait;
use backon::{ExponentialBuilder, Retryable};
use pipeline_core::queue::Queue;
use pipeline_core::report::{ReportError, Reporter};
use pipeline_core::{crash, telemetry};
use protocol::JobError;
use protocol::message::{Job, Processed};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::process::{WorkerDeps, process_job};

/// What every attempt needs, built once and lent to each.
#[derive(Clone, Debug)]
pub struct Attempts {
    /// Storage, limits and faults for `process_job`.
    pub deps: std::sync::Arc<WorkerDeps>,
    /// Where outcomes and heartbeats go.
    pub reporter: std::sync::Arc<dyn Reporter>,
    /// Where unreadable job messages go.
    pub dead_letters: std::sync::Arc<dyn Queue>,
    /// How often a busy job heartbeats (and renews its lease).
    pub heartbeat_every: Duration,
    /// A message delivered more often than this is reported as poison instead of processed.
    pub max_receive_count: u32,
}

/// One delivery of a message.
#[derive(Clone, Copy, Debug)]
pub struct Delivery<'a> {
    /// The queue's id for the message, for logs.
    pub message_id: &'a str,
    /// The body.
    pub body: &'a str,
    /// How many times the queue has delivered it, this time included, when it says.
    pub receive_count: Option<u32>,
    /// When the message was first sent (ms since the epoch), when the queue says.
    pub sent_at_ms: Option<u64>,
}

/// Renews a message's lease while its job runs.
#[async_trait]
pub trait Lease: Send + Sync {
    /// Keeps the message hidden from other workers for another period.
    async fn renew(&self);
}

/// How the adapter holds a message while its job runs.
#[derive(Clone, Copy, Default)]
pub struct Hold<'a> {
    /// Renewed at every heartbeat; `None` when the service holds the message.
    pub lease: Option<&'a dyn Lease>,
    /// Cancelled when the worker must stop now: the attempt is abandoned and released.
    pub hard_stop: Option<&'a CancellationToken>,
    /// After a report that could not be delivered, hide the message for `2^receive_count`
    /// seconds (up to 256 s), so an orchestrator outage is not hammered.
    pub backoff_by_receive_count: bool,
}

/// What the adapter does with the message afterwards.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Disposition {
    /// Finished with: delete it.
    Delete,
    /// Hand it back to the queue for another delivery, visible again after `after`
    /// (`None`: when its current lease runs out).
    Release {
        /// When it may be delivered again.
        after: Option<Duration>,
        /// Why, for logs and batch responses.
        reason: String,
    },
}

impl Attempts {
    /// Runs one delivery to its end and says what becomes of the message.
    pub async fn run(&self, delivery: Delivery<'_>, hold: Hold<'_>) -> Disposition {
        let job = match Job::from_json(delivery.body) {
            Ok(job) => job,
            Err(e) => return self.dead_letter(delivery, &e.to_string()).await,
        };
        let span = tracing::info_span!("job", job_id = %job.job_id, attempt = job.attempt, key = ?job.source_key,
                                       message_id = %delivery.message_id);
        self.run_job(&job, delivery, hold).instrument(span).await
    }

    async fn run_job(&self, job: &Job, delivery: Delivery<'_>, hold: Hold<'_>) -> Disposition {
        tracing::info!(receive_count = delivery.receive_count, "job received");
        let started = std::time::Instant::now();
        if let Some(sent) = delivery.sent_at_ms {
            let waited = protocol::time::now_ms().saturating_sub(i64::try_from(sent).unwrap_or(i64::MAX));
            telemetry::stage("queue_wait", waited.max(0) as f64 / 1000.0);
        }
        let outcome = match delivery.receive_count {
            Some(n) if n > self.max_receive_count => {
                Err(JobError::permanent("PoisonMessage", format!("delivered {n} times without completing")))
            }
            _ => {
                let work = async {
                    tokio::select! {
                        outcome = process_job(job, &self.deps) => outcome,
                        () = self.keep_alive(job, hold.lease) => Err(JobError::retryable("Internal", "heartbeat loop ended")),
                    }
                };
                let stopped = async {
                    match hold.hard_stop {
                        Some(stop) => stop.cancelled().await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    outcome = work => outcome,
                    () = stopped => {
                        tracing::warn!("released unfinished at shutdown");
                        return Disposition::Release { after: Some(Duration::ZERO), reason: "shutting down".into() };
                    }
                }
            }
        };
        let (label, code) = match &outcome {
            Ok(_) => ("succeeded", String::new()),
            Err(e) if e.is_retryable() => ("retryable", e.code.clone()),
            Err(e) => ("permanent", e.code.clone()),
        };
        metrics::counter!(telemetry::ATTEMPTS, "outcome" => label, "error" => code).increment(1);
        metrics::histogram!(telemetry::ATTEMPT_SECONDS).record(started.elapsed().as_secs_f64());
        if outcome.is_ok() {
            crash::reach(crash::OUTPUTS_WRITTEN);
        }
        match report(self.reporter.as_ref(), job, &outcome).await {
            Ok(()) => {
                crash::reach(crash::REPORTED);
                Disposition::Delete
            }
            Err(ReportError::Stale(why)) => {
                tracing::info!(%why, "attempt already resolved; dropping the message");
                Disposition::Delete
            }
            Err(ReportError::Failed(why)) => {
                let after = hold
                    .backoff_by_receive_count
                    .then(|| Duration::from_secs(1 << delivery.receive_count.unwrap_or(1).min(8)));
                tracing::error!(error = %why, retry_in = ?after, "could not report; the job will be redelivered");
                Disposition::Release { after, reason: format!("report not delivered: {why}") }
            }
        }
    }

    /// Heartbeats the orchestrator (and renews the lease) every interval until dropped.
    async fn keep_alive(&self, job: &Job, lease: Option<&dyn Lease>) {
        let mut ticks = tokio::time::interval(self.heartbeat_every);
        // The first tick of an interval is immediate; the first heartbeat is due one interval in.
        ticks.tick().await;
        loop {
            ticks.tick().await;
            if let Some(lease) = lease {
                lease.renew().await;
            }
            let sent = self.reporter.heartbeat(job).await;
            if let Err(e) = &sent {
                tracing::warn!(error = %e, "heartbeat not delivered");
            }
            metrics::counter!(telemetry::HEARTBEATS, "result" => if sent.is_ok() { "sent" } else { "failed" })
                .increment(1);
        }
    }

    /// A body that is not a job goes to the dead-letter queue at once: retrying cannot
    /// make it readable. Only if that send fails does it go back to the queue, whose
    /// redrive policy is the backstop.
    async fn dead_letter(&self, delivery: Delivery<'_>, error: &str) -> Disposition {
        tracing::error!(message_id = %delivery.message_id, %error, "unreadable job message; dead-lettering it");
        match self.dead_letters.send(delivery.body, Duration::ZERO).await {
            Ok(_) => Disposition::Delete,
            Err(e) => Disposition::Release {
                after: None,
                reason: format!("unreadable, and the dead-letter queue refused it: {e}"),
            },
        }
    }
}

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
