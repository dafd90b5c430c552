//! The workflow engine: runs `ImageProcessingWorkflow` for every job, with state and
//! history in a [`JobStore`] (SQLite embedded, DynamoDB on AWS). Every event — a submission,
//! a worker's report, a timer — goes through the protocol's pure [`step`]; this module only
//! has the store apply the step to the job atomically, and carries out its effects (send the
//! job, send the dead letter) after the store has it. So reports delivered twice, or several
//! engines on one store, cannot move a job twice, and a crash between the write and a send
//! is finished by the timers: an attempt is marked unsent in the same write (an outbox)
//! until the queue has it.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pipeline_core::job_store::{Change, Decide, JobStore, StoredJob};
use pipeline_core::orchestration::{Orchestrator, OrchestratorError};
use pipeline_core::queue::Queue;
use pipeline_core::sqlite::{Db, DbError};
use pipeline_core::{crash, telemetry};
use protocol::dead_letter::DeadLetter;
use protocol::job::{JobRecord, JobState};
use protocol::message::{Job, Output, Report, ReportKind, SourceMetadata};
use protocol::time::{Clock, SystemClock};
use protocol::workflow::{Effect, Event, Ignored, Policy, Transition, step};
use tokio_util::sync::CancellationToken;

pub use crate::error::EngineError;
use crate::store::SqliteJobs;

/// The queues the engine talks through.
#[derive(Clone, Debug)]
pub struct Queues {
    /// Where jobs go to workers.
    pub jobs: Arc<dyn Queue>,
    /// Where workers report.
    pub reports: Arc<dyn Queue>,
    /// Where failed jobs go, with their history.
    pub dead_letters: Arc<dyn Queue>,
}

/// The workflow engine. Cheap to clone; every clone works on the same store.
#[derive(Clone, Debug)]
pub struct EmbeddedEngine {
    store: Arc<dyn JobStore>,
    queues: Queues,
    policy: Policy,
    clock: Arc<dyn Clock>,
    /// The id of every job that ends here, for `?wait` requests (see [`Orchestrator::ended`]).
    ended: tokio::sync::broadcast::Sender<String>,
    /// How long reports may gather after a short batch.
    report_window: Duration,
}

/// Ends announced but not yet read before a waiter counts as lagging.
const ENDED_BACKLOG: usize = 1024;

/// What applying an event did, for logs and tests.
#[derive(Clone, Debug, PartialEq)]
pub enum Applied {
    /// The job moved on to this state.
    Moved(JobState),
    /// A heartbeat pushed the worker-lost deadline back.
    Extended,
    /// Nothing to do: unknown job, an earlier attempt, or a job already ended.
    Ignored(Ignored),
}

/// Decides the step `event` makes of the job as stored (`None`: unknown); `new_job` is
/// recorded when the job is new. Pure but for the jitter draw, so a store may ask again.
fn decide(
    stored: Option<StoredJob>,
    new_job: Option<&Job>,
    event: Event<'_>,
    outputs: Option<&(Vec<Output>, Option<SourceMetadata>)>,
    policy: &Policy,
    now: i64,
) -> Result<Change, Ignored> {
    let transition = step(stored.as_ref().map(|r| r.position), event, policy, fastrand::f64(), now)?;
    let (mut job, insert) = match (stored, new_job) {
        (Some(stored), _) => (stored.job, false),
        (None, Some(job)) => (job.clone(), true),
        (None, None) => return Err(Ignored::Unknown),
    };
    // A redrive processes the source as it is now: fixing it is what redrives are for.
    let replace_job = matches!(event, Event::Redriven { .. }) && job.source_version.take().is_some();
    job.attempt = transition.to.attempt;
    let outputs = transition.effects.contains(&Effect::RecordOutputs).then(|| outputs.cloned().unwrap_or_default());
    Ok(Change { job, insert, replace_job, transition, outputs })
}

impl EmbeddedEngine {
    /// An engine keeping its jobs in the SQLite file `db`, creating its tables if needed.
    ///
    /// # Errors
    /// The tables cannot be created.
    pub fn open(db: &Db, queues: Queues, policy: Policy) -> Result<Self, DbError> {
        Ok(Self::new(Arc::new(SqliteJobs::open(db)?), queues, policy))
    }

    /// An engine keeping its jobs in `store`: several engines may share one.
    pub fn new(store: Arc<dyn JobStore>, queues: Queues, policy: Policy) -> Self {
        let (ended, _) = tokio::sync::broadcast::channel(ENDED_BACKLOG);
        Self { store, queues, policy, clock: Arc::new(SystemClock), ended, report_window: Duration::ZERO }
    }

    /// The same engine letting reports gather for `window` after a short batch, so that on a
    /// queue billed per request (SQS) a trickle of reports shares one receive and one delete;
    /// a job's next step waits at most that long. None by default (a local queue costs nothing).
    pub fn with_report_window(mut self, window: Duration) -> Self {
        self.report_window = window;
        self
    }

    /// The same engine reading the time from `clock` (a manual one in tests).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The engine's queues.
    pub fn queues(&self) -> &Queues {
        &self.queues
    }

    /// Steps one job with `event` in its own transaction, then carries out the effects.
    async fn apply(
        &self,
        id: String,
        new_job: Option<Job>,
        event: OwnedEvent,
        outputs: Option<(Vec<Output>, Option<SourceMetadata>)>,
    ) -> Result<Applied, EngineError> {
        let (transition, job) = match self.store_step(id, new_job, event, outputs).await? {
            Ok(done) => done,
            Err(ignored) => return Ok(Applied::Ignored(ignored)),
        };
        self.carry_out(&transition, &job).await;
        Ok(if transition.history.is_empty() { Applied::Extended } else { Applied::Moved(transition.to.state) })
    }

    /// Steps one job with `event` and stores the transition, in one transaction.
    async fn store_step(
        &self,
        id: String,
        new_job: Option<Job>,
        event: OwnedEvent,
        outputs: Option<(Vec<Output>, Option<SourceMetadata>)>,
    ) -> Result<Result<(Transition, Job), Ignored>, EngineError> {
        let (policy, now) = (self.policy, self.clock.now_ms());
        // A job accepted (or redriven) is on disk before anyone is told so, power loss or not.
        let durable = new_job.is_some();
        let decide: Decide =
            Arc::new(move |stored| decide(stored, new_job.as_ref(), event.borrow(), outputs.as_ref(), &policy, now));
        let stepped = self.store.update(&id, now, durable, decide).await?.map(|c| (c.transition, c.job));
        if let Ok((transition, job)) = &stepped {
            for entry in &transition.history {
                metrics::counter!(telemetry::WORKFLOW_STEPS, "state" => entry.state.as_str()).increment(1);
            }
            // A failed job is counted where its letter is sent, with the error it carries.
            if transition.to.state == JobState::Success && !transition.history.is_empty() {
                metrics::counter!(telemetry::JOBS_ENDED, "state" => "Success", "error" => "").increment(1);
            }
            if transition.to.state.is_terminal() {
                // No receiver is not an error: nobody waits.
                let _ = self.ended.send(job.job_id.clone());
            }
        }
        Ok(stepped)
    }

    /// Sends the job's current attempt to the workers and clears its outbox mark. A failed
    /// send (or a crash before it) leaves the mark: the timers send it again.
    async fn send_job(&self, job: &Job) {
        if let Err(e) = self.queues.jobs.send(&job.to_json(), Duration::ZERO).await {
            tracing::warn!(job_id = %job.job_id, error = %e, "could not enqueue the job; the timers send it again");
            return;
        }
        if let Err(e) = self.store.mark_sent(&job.job_id, job.attempt).await {
            // Only a second delivery of the same attempt can follow, which workers take in their stride.
            tracing::warn!(job_id = %job.job_id, error = %e, "could not mark the job sent");
        }
    }

    /// Sends again the attempts stored more than [`RESEND_AFTER`] ago and still not known
    /// to be in the queue: the engine stopped, or the queue failed, between commit and send.
    async fn resend_unsent(&self, now: i64) -> Result<(), EngineError> {
        let before = now - i64::try_from(RESEND_AFTER.as_millis()).unwrap_or(i64::MAX);
        for job in self.store.unsent(before).await? {
            tracing::info!(job_id = %job.job_id, attempt = job.attempt, "sending an attempt that was stored but not sent");
            self.send_job(&job).await;
        }
        Ok(())
    }

    /// The effects of a stored transition. A failed send is not an error: the timers send
    /// an unsent attempt again, and the next tick sends a pending dead letter.
    async fn carry_out(&self, transition: &Transition, job: &Job) {
        for effect in &transition.effects {
            match effect {
                Effect::SendJob => {
                    crash::reach(crash::JOB_RECORDED);
                    self.send_job(job).await;
                }
                Effect::SendDeadLetter => {
                    if let Err(e) = self.flush_dead_letters().await {
                        tracing::warn!(error = %e, "dead letter not sent yet; the next tick retries");
                    }
                }
                Effect::RecordOutputs => {}
            }
        }
    }

    /// Records a new job and sends its first attempt to the workers.
    ///
    /// # Errors
    /// [`EngineError::Exists`] for a job id already known; the store failed. A failed
    /// send is not an error: the attempt's deadline passes and the job is retried.
    pub async fn submit(&self, job: Job) -> Result<(), EngineError> {
        let (id, attempt) = (job.job_id.clone(), job.attempt);
        match self.apply(id.clone(), Some(job), OwnedEvent::Submitted { attempt }, None).await? {
            Applied::Ignored(Ignored::Exists) => Err(EngineError::Exists(id)),
            _ => Ok(()),
        }
    }

    /// Applies one worker report.
    ///
    /// # Errors
    /// The store failed; the report should be kept and applied again.
    pub async fn apply_report(&self, report: Report) -> Result<Applied, EngineError> {
        let attempt = report.attempt;
        let (event, outputs) = match report.kind {
            ReportKind::Heartbeat => (OwnedEvent::Heartbeat { attempt }, None),
            ReportKind::Succeeded { outputs, metadata } => {
                (OwnedEvent::Succeeded { attempt }, Some((outputs, metadata)))
            }
            ReportKind::Failed { error } => (OwnedEvent::Failed { attempt, error }, None),
        };
        self.apply(report.job_id, None, event, outputs).await
    }

    /// One pass of the timers: starts retries whose backoff has passed, declares
    /// workers lost past their deadline, sends attempts stored but not sent, and sends
    /// pending dead letters.
    ///
    /// # Errors
    /// The store or a queue failed; the next tick tries again.
    pub async fn tick(&self) -> Result<(), EngineError> {
        let now = self.clock.now_ms();
        let mut due = self.store.due(JobState::Retry, now).await?;
        due.extend(self.store.due(JobState::ProcessImage, now).await?);
        for id in due {
            // One transaction and one jitter draw per job, so jobs lost together do not retry together.
            self.apply(id, None, OwnedEvent::Due, None).await?;
        }
        self.resend_unsent(now).await?;
        self.flush_dead_letters().await
    }

    /// Sends every job waiting in `DeadLetter` to the dead-letter queue, then moves it to
    /// `Fail`. One letter that cannot be sent does not hold back the others.
    async fn flush_dead_letters(&self) -> Result<(), EngineError> {
        let mut pending = Vec::new();
        for id in self.store.due(JobState::DeadLetter, i64::MAX).await? {
            pending.extend(self.store.get(&id).await?);
        }
        let mut failed = None;
        for record in pending {
            let letter = DeadLetter::from_record(&record);
            if let Err(e) = self.queues.dead_letters.send(&letter.to_json(), Duration::ZERO).await {
                tracing::warn!(job_id = %record.job_id, error = %e, "could not send a dead letter");
                metrics::counter!(telemetry::DEAD_LETTERS, "result" => "failed").increment(1);
                failed = Some(e);
                continue;
            }
            metrics::counter!(telemetry::DEAD_LETTERS, "result" => "sent").increment(1);
            crash::reach(crash::LETTER_SENT);
            // Moving to Fail has no effects of its own; another engine may have moved it first.
            match self.store_step(record.job_id, None, OwnedEvent::DeadLettered, None).await? {
                Ok(_) => {
                    let error = letter.error.code;
                    metrics::counter!(telemetry::JOBS_ENDED, "state" => "Fail", "error" => error).increment(1);
                }
                Err(ignored) => tracing::debug!(%ignored, "dead letter sent for a job that moved on"),
            }
        }
        failed.map_or(Ok(()), |e| Err(e.into()))
    }

    /// Starts a failed job again from its first attempt (its history is kept); returns
    /// whether it did. A job the engine never knew (a message moved by the queue's redrive
    /// policy) is recorded as new, and one whose message that policy moved restarts from
    /// where it waits; a job that is not in `Fail` (a second copy of its letter, or a letter
    /// redriven before) is left as it is.
    ///
    /// # Errors
    /// The store failed.
    pub async fn redrive(&self, letter: &DeadLetter) -> Result<bool, EngineError> {
        let mut fresh = letter.job.clone();
        fresh.attempt = 1;
        fresh.task_token = None;
        let event = OwnedEvent::Redriven { moved_attempt: letter.moved_by_queue().then_some(letter.job.attempt) };
        let applied = self.apply(fresh.job_id.clone(), Some(fresh), event, None).await?;
        Ok(!matches!(applied, Applied::Ignored(_)))
    }

    /// Consumes reports and runs the timers until `shutdown` is cancelled.
    pub async fn run(&self, shutdown: CancellationToken) {
        tracing::info!("orchestrator started");
        let mut last_tick: Option<tokio::time::Instant> = None;
        while !shutdown.is_cancelled() {
            self.drain_reports(&shutdown).await;
            // The timers' queries cost the same busy or idle (on DynamoDB, read units): at
            // most once a TICK_EVERY, which is also the timers' resolution.
            if last_tick.is_some_and(|t| t.elapsed() < TICK_EVERY) {
                continue;
            }
            last_tick = Some(tokio::time::Instant::now());
            if let Err(e) = self.tick().await {
                tracing::warn!(error = %e, "orchestrator tick failed");
            }
        }
        tracing::info!("orchestrator stopped");
    }

    /// Applies the reports waiting, before the timers judge any attempt lost: after a pause
    /// (a restart, a stall, a stopped process) the heartbeats and results of running jobs sit
    /// in the queue, not yet in the store. Reads until a batch comes back short, or for at
    /// most [`DRAIN_BUDGET`] so the timers still run under a flood.
    async fn drain_reports(&self, shutdown: &CancellationToken) {
        let until = tokio::time::Instant::now() + DRAIN_BUDGET;
        let mut wait = Duration::from_millis(500);
        loop {
            // Not raced against shutdown: what arrives is applied, nothing is left hidden.
            match self.queues.reports.receive(REPORT_BATCH, wait, Duration::from_secs(30)).await {
                Ok(messages) => {
                    let short = messages.len() < REPORT_BATCH;
                    let mut applied = Vec::with_capacity(messages.len());
                    for m in messages {
                        if self.handle_report_message(&m.body).await {
                            applied.push(m.receipt);
                        }
                    }
                    self.delete_reports(&applied).await;
                    if short {
                        // A trickle of reports: let a few gather before the next read, so
                        // they take one receive and one delete, not one each.
                        if !applied.is_empty() && !self.report_window.is_zero() {
                            tokio::select! {
                                () = tokio::time::sleep(self.report_window) => {}
                                () = shutdown.cancelled() => {}
                            }
                        }
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "receiving reports failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    return;
                }
            }
            if shutdown.is_cancelled() || tokio::time::Instant::now() >= until {
                return;
            }
            wait = Duration::ZERO;
        }
    }

    /// Applies one report; whether it is done with (applied, or unreadable and dropped).
    async fn handle_report_message(&self, body: &str) -> bool {
        match Report::from_json(body) {
            Err(e) => {
                tracing::error!(error = %e, body, "dropping an unreadable report");
                true
            }
            Ok(report) => {
                let job_id = report.job_id.clone();
                match self.apply_report(report).await {
                    Ok(applied) => {
                        tracing::debug!(%job_id, ?applied, "report applied");
                        true
                    }
                    Err(e) => {
                        tracing::warn!(%job_id, error = %e, "report not applied; it will be redelivered");
                        false
                    }
                }
            }
        }
    }

    /// Deletes the reports done with, in one request per batch. One that stays is applied
    /// again when it comes back, which changes nothing.
    async fn delete_reports(&self, receipts: &[String]) {
        if receipts.is_empty() {
            return;
        }
        let failed = match self.queues.reports.delete_many(receipts).await {
            Ok(results) => results.into_iter().filter_map(Result::err).map(|e| e.to_string()).collect(),
            Err(e) => vec![e.to_string()],
        };
        for error in failed {
            tracing::warn!(%error, "could not delete an applied report");
        }
    }
}

/// How long a stored attempt may wait for its send before the timers send it again: far
/// longer than a send takes, so the two rarely race (a race only delivers an attempt twice).
const RESEND_AFTER: Duration = Duration::from_secs(30);

/// How often the timers run.
const TICK_EVERY: Duration = Duration::from_secs(1);
/// How long the engine lets reports gather after a short batch on SQS: a job's next step
/// waits at most this long, and at a few reports a second each read takes several.
pub const SQS_REPORT_WINDOW: Duration = Duration::from_millis(250);
/// Reports read at a time (SQS's largest batch).
const REPORT_BATCH: usize = 10;
/// The longest the engine applies reports before it runs its timers.
const DRAIN_BUDGET: Duration = Duration::from_secs(5);

/// An [`Event`] that owns its error, to cross into the store's thread.
#[derive(Clone, Debug)]
enum OwnedEvent {
    Submitted { attempt: u32 },
    Heartbeat { attempt: u32 },
    Succeeded { attempt: u32 },
    Failed { attempt: u32, error: protocol::JobError },
    Due,
    DeadLettered,
    Redriven { moved_attempt: Option<u32> },
    Refused { error: protocol::JobError },
}

impl OwnedEvent {
    fn borrow(&self) -> Event<'_> {
        match self {
            OwnedEvent::Submitted { attempt } => Event::Submitted { attempt: *attempt },
            OwnedEvent::Heartbeat { attempt } => Event::Heartbeat { attempt: *attempt },
            OwnedEvent::Succeeded { attempt } => Event::Succeeded { attempt: *attempt },
            OwnedEvent::Failed { attempt, error } => Event::Failed { attempt: *attempt, error },
            OwnedEvent::Due => Event::Due,
            OwnedEvent::DeadLettered => Event::DeadLettered,
            OwnedEvent::Redriven { moved_attempt } => Event::Redriven { moved_attempt: *moved_attempt },
            OwnedEvent::Refused { error } => Event::Refused { error },
        }
    }
}

#[async_trait]
impl Orchestrator for EmbeddedEngine {
    async fn start(&self, job: Job) -> Result<(), OrchestratorError> {
        Ok(self.submit(job).await?)
    }

    async fn refuse(&self, job: Job, error: protocol::JobError) -> Result<(), OrchestratorError> {
        let id = job.job_id.clone();
        match self.apply(id.clone(), Some(job), OwnedEvent::Refused { error }, None).await? {
            Applied::Ignored(Ignored::Exists) => Err(EngineError::Exists(id).into()),
            _ => Ok(()),
        }
    }

    async fn get(&self, job_id: &str) -> Result<Option<JobRecord>, OrchestratorError> {
        Ok(self.store.get(job_id).await.map_err(EngineError::from)?)
    }

    async fn list(&self, limit: usize) -> Result<Vec<JobRecord>, OrchestratorError> {
        Ok(self.store.recent(limit, self.clock.now_ms()).await.map_err(EngineError::from)?)
    }

    fn ended(&self) -> Option<tokio::sync::broadcast::Receiver<String>> {
        Some(self.ended.subscribe())
    }
}
