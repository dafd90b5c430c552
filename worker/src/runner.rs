//! The long-poll loop: receive only as many jobs as there are free slots, keep each
//! one's visibility (and the orchestrator's deadline) alive with heartbeats while it
//! runs, report, then delete. On shutdown it stops receiving and lets the jobs it
//! holds finish until a deadline, then releases the rest for another worker.

use std::sync::Arc;
use std::time::Duration;

use pipeline_core::JobError;
use pipeline_core::message::Job;
use pipeline_core::queue::{MAX_BATCH, Queue, Received};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::execute::report;
use crate::process::{WorkerDeps, process_job};
use crate::report::{ReportError, Reporter};

/// How the loop paces itself.
#[derive(Clone, Copy, Debug)]
pub struct RunnerConfig {
    /// Jobs processed at once.
    pub concurrency: usize,
    /// Visibility timeout of each receive, renewed by heartbeats.
    pub visibility: Duration,
    /// How often a busy job renews its visibility and tells the orchestrator it lives.
    pub heartbeat_every: Duration,
    /// Longest wait of one long poll.
    pub poll_wait: Duration,
    /// On shutdown, how long held jobs may run before they are released.
    pub drain_deadline: Duration,
    /// A message delivered more often than this is failed as poison instead of processed.
    pub max_receive_count: u32,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        Self {
            concurrency: std::thread::available_parallelism().map_or(2, usize::from),
            visibility: Duration::from_secs(60),
            heartbeat_every: Duration::from_secs(20),
            poll_wait: Duration::from_secs(20),
            drain_deadline: Duration::from_secs(30),
            max_receive_count: 5,
        }
    }
}

/// Everything the loop talks to.
#[derive(Clone, Debug)]
pub struct Runner {
    /// Where jobs come from.
    pub jobs: Arc<dyn Queue>,
    /// Where unreadable job messages go.
    pub dead_letters: Arc<dyn Queue>,
    /// Where outcomes go.
    pub reporter: Arc<dyn Reporter>,
    /// What processing needs.
    pub deps: Arc<WorkerDeps>,
    /// Pacing.
    pub config: RunnerConfig,
}

impl Runner {
    /// Runs until `shutdown` is cancelled, then drains.
    pub async fn run(self, shutdown: CancellationToken) {
        let slots = Arc::new(Semaphore::new(self.config.concurrency.max(1)));
        let hard_stop = CancellationToken::new();
        let mut tasks = JoinSet::new();
        tracing::info!(queue = self.jobs.name(), concurrency = self.config.concurrency, "worker started");
        loop {
            let first = tokio::select! {
                () = shutdown.cancelled() => break,
                p = Arc::clone(&slots).acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            };
            let mut permits = vec![first];
            while permits.len() < MAX_BATCH {
                match Arc::clone(&slots).try_acquire_owned() {
                    Ok(p) => permits.push(p),
                    Err(_) => break,
                }
            }
            // Not raced against shutdown: a receive dropped half-way could leave messages hidden.
            let received = self.jobs.receive(permits.len(), self.config.poll_wait, self.config.visibility).await;
            if shutdown.is_cancelled() {
                for m in received.iter().flatten() {
                    let _ = self.jobs.change_visibility(&m.receipt, Duration::ZERO).await;
                }
                break;
            }
            let messages = match received {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %e, "receiving jobs failed; backing off");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            for message in messages {
                let Some(permit) = permits.pop() else { break };
                let (me, hard_stop) = (self.clone(), hard_stop.clone());
                tasks.spawn(async move {
                    me.handle(message, hard_stop).await;
                    drop(permit);
                });
            }
            while tasks.try_join_next().is_some() {}
        }
        tracing::info!(held = tasks.len(), "worker draining");
        let drained =
            tokio::time::timeout(self.config.drain_deadline, async { while tasks.join_next().await.is_some() {} })
                .await;
        if drained.is_err() {
            tracing::warn!(held = tasks.len(), "drain deadline passed; releasing held jobs");
            hard_stop.cancel();
            while tasks.join_next().await.is_some() {}
        }
        tracing::info!("worker stopped");
    }

    async fn handle(&self, message: Received, hard_stop: CancellationToken) {
        let job = match Job::from_json(&message.body) {
            Ok(job) => job,
            Err(e) => {
                tracing::error!(message_id = %message.message_id, error = %e, "unreadable job message; dead-lettering it");
                if self.dead_letters.send(&message.body, Duration::ZERO).await.is_ok() {
                    self.delete(&message).await;
                }
                return;
            }
        };
        let span = tracing::info_span!("job", job_id = %job.job_id, attempt = job.attempt, key = %job.source_key);
        self.run_job(job, message, hard_stop).instrument(span).await;
    }

    async fn run_job(&self, job: Job, message: Received, hard_stop: CancellationToken) {
        let outcome = if message.receive_count > self.config.max_receive_count {
            Err(JobError::permanent(
                "PoisonMessage",
                format!("delivered {} times without completing", message.receive_count),
            ))
        } else {
            let work = async {
                tokio::select! {
                    outcome = process_job(&job, &self.deps) => Some(outcome),
                    () = self.keep_alive(&job, &message) => None,
                }
            };
            tokio::select! {
                outcome = work => outcome.unwrap_or_else(|| Err(JobError::retryable("Internal", "heartbeat loop ended"))),
                () = hard_stop.cancelled() => {
                    tracing::warn!("released unfinished at shutdown");
                    let _ = self.jobs.change_visibility(&message.receipt, Duration::ZERO).await;
                    return;
                }
            }
        };
        match report(self.reporter.as_ref(), &job, &outcome).await {
            Ok(()) => self.delete(&message).await,
            Err(ReportError::Stale(why)) => {
                tracing::info!(%why, "attempt already resolved; dropping the message");
                self.delete(&message).await;
            }
            Err(e) => {
                // Back off by delivery count, so an orchestrator outage is not hammered.
                let wait = Duration::from_secs(1 << message.receive_count.min(8));
                tracing::error!(error = %e, retry_in = ?wait, "could not report; the job will be redelivered");
                let _ = self.jobs.change_visibility(&message.receipt, wait).await;
            }
        }
    }

    /// Renews the message's visibility and heartbeats the orchestrator until dropped.
    async fn keep_alive(&self, job: &Job, message: &Received) {
        let mut ticks = tokio::time::interval(self.config.heartbeat_every);
        // The first tick of an interval is immediate; the first heartbeat is due one interval in.
        ticks.tick().await;
        loop {
            ticks.tick().await;
            if let Err(e) = self.jobs.change_visibility(&message.receipt, self.config.visibility).await {
                tracing::warn!(error = %e, "could not extend visibility");
            }
            if let Err(e) = self.reporter.heartbeat(job).await {
                tracing::warn!(error = %e, "heartbeat not delivered");
            }
        }
    }

    async fn delete(&self, message: &Received) {
        if let Err(e) = self.jobs.delete(&message.receipt).await {
            tracing::warn!(error = %e, "could not delete a finished job message");
        }
    }
}
