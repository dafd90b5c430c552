//! The long-poll loop: receive only as many jobs as there are free slots and run each
//! through [`Attempts::run`], holding it by renewing its visibility; delete or release it
//! as the attempt decides. On shutdown it stops receiving and lets the jobs it
//! holds finish until a deadline, then releases the rest for another worker.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pipeline_core::queue::{MAX_BATCH, Queue, Received};
use pipeline_core::telemetry;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::attempt::{Attempts, Delivery, Disposition, Hold, Lease};
use crate::process::{JOBS_PER_RENDER, WorkerDeps};
use pipeline_core::report::Reporter;

/// The longest poll on a queue this machine answers ([`Queue::answers_locally`]).
const LOCAL_POLL_WAIT: Duration = Duration::from_millis(250);

/// How the loop paces itself.
#[derive(Clone, Copy, Debug)]
pub struct RunnerConfig {
    /// Renders at once (the cores given to the worker); the loop holds
    /// [`JOBS_PER_RENDER`] times as many jobs, so their downloads, writes and reports overlap
    /// the renders.
    pub concurrency: usize,
    /// Visibility timeout of each receive, renewed by heartbeats.
    pub visibility: Duration,
    /// How often a busy job renews its visibility and tells the orchestrator it lives.
    pub heartbeat_every: Duration,
    /// Longest wait of one long poll (at most a quarter second on a queue this machine answers).
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
            // Short enough that a stopping worker is not kept waiting on a receive.
            poll_wait: Duration::from_secs(5),
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
        let held = self.config.concurrency.max(1) * JOBS_PER_RENDER;
        let slots = Arc::new(Semaphore::new(held));
        metrics::gauge!(telemetry::WORKER_SLOTS).increment(held as f64);
        let busy = metrics::gauge!(telemetry::WORKER_SLOTS_BUSY);
        let hard_stop = CancellationToken::new();
        let attempts = Arc::new(self.attempts());
        let mut tasks = JoinSet::new();
        // A queue this machine answers wakes a receive on a send and bills no request, so
        // short polls cost nothing and let a stopping worker go at once.
        let wait = if self.jobs.answers_locally() {
            self.config.poll_wait.min(LOCAL_POLL_WAIT)
        } else {
            self.config.poll_wait
        };
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
            let received = self.jobs.receive(permits.len(), wait, self.config.visibility).await;
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
                let (me, attempts, hard_stop) = (self.clone(), Arc::clone(&attempts), hard_stop.clone());
                let busy = Busy::start(busy.clone());
                tasks.spawn(async move {
                    me.handle(&attempts, message, hard_stop).await;
                    drop((busy, permit));
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
        metrics::gauge!(telemetry::WORKER_SLOTS).decrement(held as f64);
        tracing::info!("worker stopped");
    }

    /// The attempt logic, with this runner's pacing.
    fn attempts(&self) -> Attempts {
        Attempts {
            deps: Arc::clone(&self.deps),
            reporter: Arc::clone(&self.reporter),
            dead_letters: Arc::clone(&self.dead_letters),
            heartbeat_every: self.config.heartbeat_every,
            max_receive_count: self.config.max_receive_count,
        }
    }

    /// One message through [`Attempts::run`], holding it by renewing its visibility.
    async fn handle(&self, attempts: &Attempts, message: Received, hard_stop: CancellationToken) {
        let lease = Visibility { queue: self.jobs.as_ref(), receipt: &message.receipt, period: self.config.visibility };
        let delivery = Delivery {
            message_id: &message.message_id,
            body: &message.body,
            receive_count: Some(message.receive_count),
            sent_at_ms: message.sent_at_ms,
        };
        let hold = Hold { lease: Some(&lease), hard_stop: Some(&hard_stop), backoff_by_receive_count: true };
        match attempts.run(delivery, hold).await {
            Disposition::Delete => {
                if let Err(e) = self.jobs.delete(&message.receipt).await {
                    tracing::warn!(error = %e, "could not delete a finished job message");
                }
            }
            Disposition::Release { after: Some(after), .. } => {
                let _ = self.jobs.change_visibility(&message.receipt, after).await;
            }
            // Left hidden: the queue hands it out again when its visibility runs out.
            Disposition::Release { after: None, .. } => {}
        }
    }
}

/// A received message's visibility, renewed while its job runs.
struct Visibility<'a> {
    queue: &'a dyn Queue,
    receipt: &'a str,
    period: Duration,
}

#[async_trait]
impl Lease for Visibility<'_> {
    async fn renew(&self) {
        if let Err(e) = self.queue.change_visibility(self.receipt, self.period).await {
            tracing::warn!(error = %e, "could not extend visibility");
        }
    }
}

/// A busy slot on the gauge, for as long as it lives (a task that panics gives it back too).
struct Busy(metrics::Gauge);

impl Busy {
    fn start(gauge: metrics::Gauge) -> Self {
        gauge.increment(1.0);
        Self(gauge)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}
