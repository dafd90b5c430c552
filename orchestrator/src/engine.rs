//! The embedded workflow engine: runs `ImageProcessingWorkflow` for every job, with
//! state and history in SQLite. Every event — a submission, a worker's report, a timer —
//! goes through the protocol's pure [`step`]; this module only loads the job's position,
//! stores the transition in one transaction on the job's row, and carries out its effects
//! (send the job, send the dead letter) after the commit. So reports delivered twice, or
//! two engines on one file, cannot move a job twice, and a crash between the commit and a
//! send is finished by the timers: an attempt is marked unsent in the same transaction
//! (an outbox) until the queue has it.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pipeline_core::orchestration::{Orchestrator, OrchestratorError};
use pipeline_core::queue::Queue;
use pipeline_core::sqlite::{Db, DbError};
use pipeline_core::{crash, telemetry};
use protocol::dead_letter::DeadLetter;
use protocol::job::{JobRecord, JobState};
use protocol::message::{Job, Output, Report, ReportKind, SourceMetadata};
use protocol::time::{Clock, SystemClock};
use protocol::workflow::{Effect, Event, Ignored, Policy, Transition, step};
use rusqlite::{Connection, TransactionBehavior};
use tokio_util::sync::CancellationToken;

pub use crate::error::EngineError;
use crate::store;

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

/// The embedded orchestrator. Cheap to clone; every clone works on the same file.
#[derive(Clone, Debug)]
pub struct EmbeddedEngine {
    db: Db,
    queues: Queues,
    policy: Policy,
    clock: Arc<dyn Clock>,
    /// The id of every job that ends here, for `?wait` requests (see [`Orchestrator::ended`]).
    ended: tokio::sync::broadcast::Sender<String>,
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

/// Steps the job `id` with `event` inside `tx` and stores the transition; `job` is
/// inserted when the job is new. Returns the transition, or why nothing moved.
fn advance(
    tx: &Connection,
    id: &str,
    new_job: Option<&Job>,
    event: Event<'_>,
    outputs: Option<(&[Output], Option<&SourceMetadata>)>,
    policy: &Policy,
    now: i64,
) -> Result<Result<(Transition, Job), Ignored>, DbError> {
    let row = store::load_row(tx, id)?;
    let transition = match step(row.as_ref().map(|r| r.position), event, policy, fastrand::f64(), now) {
        Ok(t) => t,
        Err(ignored) => return Ok(Err(ignored)),
    };
    let mut job = match (row, new_job) {
        (Some(row), _) => row.job,
        (None, Some(job)) => {
            store::insert(tx, job, now)?;
            job.clone()
        }
        (None, None) => return Ok(Err(Ignored::Unknown)),
    };
    // A redrive processes the source as it is now: fixing it is what redrives are for.
    if matches!(event, Event::Redriven { .. }) && job.source_version.take().is_some() {
        store::set_job(tx, &job)?;
    }
    job.attempt = transition.to.attempt;
    store::save(tx, id, &transition, now)?;
    if transition.effects.contains(&Effect::RecordOutputs) {
        let (outputs, metadata) = outputs.unwrap_or((&[], None));
        store::set_outputs(tx, id, outputs, metadata)?;
    }
    Ok(Ok((transition, job)))
}

fn immediate(conn: &mut Connection) -> Result<rusqlite::Transaction<'_>, DbError> {
    Ok(conn.transaction_with_behavior(TransactionBehavior::Immediate)?)
}

impl EmbeddedEngine {
    /// An engine on `db`, creating its tables if needed.
    ///
    /// # Errors
    /// The tables cannot be created.
    pub fn open(db: &Db, queues: Queues, policy: Policy) -> Result<Self, DbError> {
        db.call_sync(|c| -> Result<(), DbError> {
            c.execute_batch(store::SCHEMA)?;
            store::migrate(c)
        })?;
        let (ended, _) = tokio::sync::broadcast::channel(ENDED_BACKLOG);
        Ok(Self { db: db.clone(), queues, policy, clock: Arc::new(SystemClock), ended })
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
        let step = move |conn: &mut rusqlite::Connection| -> Result<_, EngineError> {
            let tx = immediate(conn)?;
            let outputs = outputs.as_ref().map(|(o, m)| (o.as_slice(), m.as_ref()));
            let stepped = advance(&tx, &id, new_job.as_ref(), event.borrow(), outputs, &policy, now)?;
            tx.commit().map_err(DbError::from)?;
            Ok(stepped)
        };
        let stepped = if durable { self.db.call_durable(step).await? } else { self.db.call(step).await? };
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
        let (id, attempt) = (job.job_id.clone(), job.attempt);
        if let Err(e) = self.db.call(move |conn| store::sent(conn, &id, attempt)).await {
            // Only a second delivery of the same attempt can follow, which workers take in their stride.
            tracing::warn!(job_id = %job.job_id, error = %e, "could not mark the job sent");
        }
    }

    /// Sends again the attempts stored more than [`RESEND_AFTER`] ago and still not known
    /// to be in the queue: the engine stopped, or the queue failed, between commit and send.
    async fn resend_unsent(&self, now: i64) -> Result<(), EngineError> {
        let before = now - i64::try_from(RESEND_AFTER.as_millis()).unwrap_or(i64::MAX);
        let jobs = self
            .db
            .call(move |conn| -> Result<Vec<Job>, EngineError> {
                let mut jobs = Vec::new();
                for id in store::unsent(conn, before)? {
                    jobs.extend(store::load_row(conn, &id)?.map(|row| row.job));
                }
                Ok(jobs)
            })
            .await?;
        for job in jobs {
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
        let due = self
            .db
            .call(move |conn| -> Result<Vec<String>, EngineError> {
                let mut due = store::due(conn, JobState::Retry, now)?;
                due.extend(store::due(conn, JobState::ProcessImage, now)?);
                Ok(due)
            })
            .await?;
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
        let pending = self
            .db
            .call(|conn| -> Result<Vec<JobRecord>, EngineError> {
                let mut out = Vec::new();
                for id in store::due(conn, JobState::DeadLetter, i64::MAX)? {
                    out.extend(store::record(conn, &id)?);
                }
                Ok(out)
            })
            .await?;
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
        while !shutdown.is_cancelled() {
            self.drain_reports(&shutdown).await;
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
                    for m in messages {
                        self.handle_report_message(&m.body, &m.receipt).await;
                    }
                    if short {
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

    async fn handle_report_message(&self, body: &str, receipt: &str) {
        let keep = match Report::from_json(body) {
            Err(e) => {
                tracing::error!(error = %e, body, "dropping an unreadable report");
                false
            }
            Ok(report) => {
                let job_id = report.job_id.clone();
                match self.apply_report(report).await {
                    Ok(applied) => {
                        tracing::debug!(%job_id, ?applied, "report applied");
                        false
                    }
                    Err(e) => {
                        tracing::warn!(%job_id, error = %e, "report not applied; it will be redelivered");
                        true
                    }
                }
            }
        };
        if !keep {
            if let Err(e) = self.queues.reports.delete(receipt).await {
                tracing::warn!(error = %e, "could not delete an applied report");
            }
        }
    }
}

/// How long a stored attempt may wait for its send before the timers send it again: far
/// longer than a send takes, so the two rarely race (a race only delivers an attempt twice).
const RESEND_AFTER: Duration = Duration::from_secs(30);

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
        let id = job_id.to_owned();
        Ok(self.db.call(move |conn| -> Result<_, EngineError> { Ok(store::record(conn, &id)?) }).await?)
    }

    async fn list(&self, limit: usize) -> Result<Vec<JobRecord>, OrchestratorError> {
        Ok(self.db.call(move |conn| -> Result<_, EngineError> { Ok(store::recent(conn, limit)?) }).await?)
    }

    fn ended(&self) -> Option<tokio::sync::broadcast::Receiver<String>> {
        Some(self.ended.subscribe())
    }
}
