//! The embedded engine: runs [`ImageProcessingWorkflow`](crate::workflow) for every job,
//! with state and history in SQLite. It sends jobs to the jobs queue, consumes worker
//! reports, schedules retries, declares silent workers lost, and dead-letters what
//! cannot succeed. Every step is a transaction on the job's row, so reports delivered
//! twice, or two engines on one file, cannot move a job twice.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pipeline_core::JobError;
use pipeline_core::message::{Job, Output, Report, ReportKind};
use pipeline_core::orchestration::{JobRecord, JobState, Orchestrator, OrchestratorError};
use pipeline_core::queue::{Queue, QueueError};
use pipeline_core::sqlite::{Db, DbError};
use pipeline_core::time::{ms, now_ms};
use rusqlite::{Connection, TransactionBehavior};
use tokio_util::sync::CancellationToken;

use crate::dead_letter::DeadLetter;
use crate::store::{self, Row};
use crate::workflow::{Decision, RetryPolicy, check_result};

/// How the engine paces the workflow.
#[derive(Clone, Copy, Debug)]
pub struct EngineConfig {
    /// Retries of retryable failures.
    pub retry: RetryPolicy,
    /// How long a queued attempt may wait for a worker to take it before it counts as lost.
    pub queue_timeout: Duration,
    /// How long an attempt may run, from the worker's first heartbeat, before it counts as lost.
    pub task_timeout: Duration,
    /// How long after its last heartbeat a busy worker counts as lost.
    pub heartbeat_timeout: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            retry: RetryPolicy::default(),
            queue_timeout: Duration::from_secs(3600),
            task_timeout: Duration::from_secs(600),
            heartbeat_timeout: Duration::from_secs(120),
        }
    }
}

/// Why an engine step failed. All of these are worth retrying later.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The SQLite file failed.
    #[error(transparent)]
    Db(#[from] DbError),
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
            other => OrchestratorError::new(other.to_string()),
        }
    }
}

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
    config: EngineConfig,
}

/// What applying a report did, for logs and tests.
#[derive(Clone, Debug, PartialEq)]
pub enum Applied {
    /// The job moved on to this state.
    Moved(JobState),
    /// A heartbeat pushed the worker-lost deadline back.
    Extended,
    /// Nothing to do: unknown job, an earlier attempt, or a job already ended.
    Ignored(&'static str),
}

fn immediate(conn: &mut Connection) -> Result<rusqlite::Transaction<'_>, DbError> {
    Ok(conn.transaction_with_behavior(TransactionBehavior::Immediate)?)
}

impl EmbeddedEngine {
    /// An engine on `db`, creating its tables if needed.
    ///
    /// # Errors
    /// The tables cannot be created.
    pub fn open(db: &Db, queues: Queues, config: EngineConfig) -> Result<Self, DbError> {
        db.call_sync(|c| c.execute_batch(store::SCHEMA))?;
        Ok(Self { db: db.clone(), queues, config })
    }

    /// The engine's queues.
    pub fn queues(&self) -> &Queues {
        &self.queues
    }

    /// Records a new job and sends its first attempt to the workers.
    ///
    /// # Errors
    /// The job could not be recorded. A failed send is not an error: the attempt's
    /// deadline passes and the job is retried.
    pub async fn submit(&self, job: Job) -> Result<(), EngineError> {
        let timeout = ms(self.config.queue_timeout);
        let recorded = job.clone();
        self.db
            .call(move |conn| -> Result<(), EngineError> {
                let tx = immediate(conn)?;
                let now = now_ms();
                store::insert(&tx, &recorded, now, now + timeout)?;
                store::push_history(&tx, &recorded.job_id, &store::entry(now, "ProcessImage", recorded.attempt))?;
                tx.commit().map_err(DbError::from)?;
                Ok(())
            })
            .await?;
        self.send_job(&job).await;
        Ok(())
    }

    async fn send_job(&self, job: &Job) {
        if let Err(e) = self.queues.jobs.send(&job.to_json(), Duration::ZERO).await {
            tracing::warn!(job_id = %job.job_id, error = %e, "could not enqueue the job; its deadline will retry it");
        }
    }

    /// Applies one worker report.
    ///
    /// # Errors
    /// The store failed; the report should be kept and applied again.
    pub async fn apply_report(&self, report: Report) -> Result<Applied, EngineError> {
        let (config, unit) = (self.config, fastrand::f64());
        let applied = self
            .db
            .call(move |conn| -> Result<Applied, EngineError> {
                let tx = immediate(conn)?;
                let now = now_ms();
                let Some(row) = store::load_row(&tx, &report.job_id)? else {
                    return Ok(Applied::Ignored("unknown job"));
                };
                let current = row.state == JobState::ProcessImage && row.job.attempt == report.attempt;
                let applied = match report.kind {
                    ReportKind::Heartbeat if current => {
                        // Silence past the heartbeat timeout, or a run past the task timeout, is a lost worker.
                        let started = row.started_at.unwrap_or(now);
                        let due = (now + ms(config.heartbeat_timeout)).min(started + ms(config.task_timeout));
                        store::extend(&tx, &row.job.job_id, started, due, now)?;
                        Applied::Extended
                    }
                    // Outputs are deterministic, so a late success of any attempt still counts.
                    ReportKind::Succeeded { outputs, metadata }
                        if matches!(row.state, JobState::ProcessImage | JobState::Retry) =>
                    {
                        succeed(&tx, &row, report.attempt, &outputs, metadata.as_ref(), now)?
                    }
                    ReportKind::Failed { error } if current => conclude_failure(&tx, &row, &error, &config, unit, now)?,
                    _ => Applied::Ignored("stale or late report"),
                };
                tx.commit().map_err(DbError::from)?;
                Ok(applied)
            })
            .await?;
        if applied == Applied::Moved(JobState::DeadLetter) {
            // The report is applied either way; a failed send is retried by the next tick.
            if let Err(e) = self.flush_dead_letters().await {
                tracing::warn!(error = %e, "dead letter not sent yet; the next tick retries");
            }
        }
        Ok(applied)
    }

    /// One pass of the timers: starts retries whose backoff has passed, declares
    /// workers lost past their deadline, and sends pending dead letters.
    ///
    /// # Errors
    /// The store or a queue failed; the next tick tries again.
    pub async fn tick(&self) -> Result<(), EngineError> {
        self.start_due_retries().await?;
        self.fail_lost_workers().await?;
        self.flush_dead_letters().await
    }

    async fn start_due_retries(&self) -> Result<(), EngineError> {
        let timeout = ms(self.config.queue_timeout);
        let started = self
            .db
            .call(move |conn| -> Result<Vec<Job>, EngineError> {
                let tx = immediate(conn)?;
                let now = now_ms();
                let mut started = Vec::new();
                for id in store::due(&tx, JobState::Retry, now)? {
                    let Some(row) = store::load_row(&tx, &id)? else { continue };
                    store::set_state(&tx, &id, JobState::ProcessImage, row.job.attempt, now + timeout, now, None)?;
                    store::push_history(&tx, &id, &store::entry(now, "ProcessImage", row.job.attempt))?;
                    started.push(row.job);
                }
                tx.commit().map_err(DbError::from)?;
                Ok(started)
            })
            .await?;
        for job in started {
            self.send_job(&job).await;
        }
        Ok(())
    }

    async fn fail_lost_workers(&self) -> Result<(), EngineError> {
        let config = self.config;
        self.db
            .call(move |conn| -> Result<(), EngineError> {
                let tx = immediate(conn)?;
                let now = now_ms();
                for id in store::due(&tx, JobState::ProcessImage, now)? {
                    let Some(row) = store::load_row(&tx, &id)? else { continue };
                    let lost = JobError::retryable(
                        "WorkerLost",
                        format!("no report for attempt {} before its deadline", row.job.attempt),
                    );
                    // A draw per job, so jobs lost together do not retry together.
                    conclude_failure(&tx, &row, &lost, &config, fastrand::f64(), now)?;
                }
                tx.commit().map_err(DbError::from)?;
                Ok(())
            })
            .await
    }

    /// Sends every job waiting in `DeadLetter` to the dead-letter queue, then moves it to `Fail`.
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
        for record in pending {
            let letter = DeadLetter::from_record(&record);
            self.queues.dead_letters.send(&letter.to_json(), Duration::ZERO).await?;
            let id = record.job_id.clone();
            self.db
                .call(move |conn| -> Result<(), EngineError> {
                    let tx = immediate(conn)?;
                    let now = now_ms();
                    if let Some(row) = store::load_row(&tx, &id)?.filter(|r| r.state == JobState::DeadLetter) {
                        store::set_state(&tx, &id, JobState::Fail, row.job.attempt, now, now, None)?;
                        store::push_history(&tx, &id, &store::entry(now, "Fail", row.job.attempt))?;
                    }
                    tx.commit().map_err(DbError::from)?;
                    Ok(())
                })
                .await?;
        }
        Ok(())
    }

    /// Starts a dead-lettered job again from its first attempt (its history is kept).
    /// A job the engine never knew (a message moved by the queue's redrive policy) is
    /// recorded as new.
    ///
    /// # Errors
    /// The store failed.
    pub async fn redrive(&self, job: Job) -> Result<(), EngineError> {
        let timeout = ms(self.config.queue_timeout);
        let mut fresh = job;
        fresh.attempt = 1;
        fresh.task_token = None;
        let recorded = fresh.clone();
        self.db
            .call(move |conn| -> Result<(), EngineError> {
                let tx = immediate(conn)?;
                let now = now_ms();
                let id = &recorded.job_id;
                if store::load_row(&tx, id)?.is_some() {
                    store::set_state(&tx, id, JobState::ProcessImage, 1, now + timeout, now, None)?;
                } else {
                    store::insert(&tx, &recorded, now, now + timeout)?;
                }
                let mut redriven = store::entry(now, "ProcessImage", 1);
                redriven.note = Some("redriven from the dead-letter queue".into());
                store::push_history(&tx, id, &redriven)?;
                tx.commit().map_err(DbError::from)?;
                Ok(())
            })
            .await?;
        self.send_job(&fresh).await;
        Ok(())
    }

    /// Consumes reports and runs the timers until `shutdown` is cancelled.
    pub async fn run(&self, shutdown: CancellationToken) {
        tracing::info!("orchestrator started");
        while !shutdown.is_cancelled() {
            let wait = Duration::from_millis(500);
            // Not raced against shutdown: what arrives is applied, nothing is left hidden.
            let received = self.queues.reports.receive(10, wait, Duration::from_secs(30)).await;
            match received {
                Ok(messages) => {
                    for m in messages {
                        self.handle_report_message(&m.body, &m.receipt).await;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "receiving reports failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
            if let Err(e) = self.tick().await {
                tracing::warn!(error = %e, "orchestrator tick failed");
            }
        }
        tracing::info!("orchestrator stopped");
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

fn succeed(
    tx: &Connection,
    row: &Row,
    attempt: u32,
    outputs: &[Output],
    metadata: Option<&serde_json::Value>,
    now: i64,
) -> Result<Applied, EngineError> {
    let id = &row.job.job_id;
    let mut check = store::entry(now, "CheckResult", attempt);
    check.note = Some("succeeded".into());
    store::push_history(tx, id, &check)?;
    store::set_outputs(tx, id, outputs, metadata)?;
    store::set_state(tx, id, JobState::Success, row.job.attempt, now, now, None)?;
    store::push_history(tx, id, &store::entry(now, "Success", attempt))?;
    Ok(Applied::Moved(JobState::Success))
}

fn conclude_failure(
    tx: &Connection,
    row: &Row,
    error: &JobError,
    config: &EngineConfig,
    unit: f64,
    now: i64,
) -> Result<Applied, EngineError> {
    let (id, attempt) = (&row.job.job_id, row.job.attempt);
    let mut check = store::entry(now, "CheckResult", attempt);
    check.error = Some(error.clone());
    store::push_history(tx, id, &check)?;
    match check_result(Err(error), attempt, &config.retry, unit) {
        Decision::Retry { next_attempt, delay, ceiling } => {
            store::set_state(tx, id, JobState::Retry, next_attempt, now + ms(delay), now, Some(error))?;
            let mut retry = store::entry(now, "Retry", attempt);
            retry.delay_ms = u64::try_from(delay.as_millis()).ok();
            retry.ceiling_ms = u64::try_from(ceiling.as_millis()).ok();
            store::push_history(tx, id, &retry)?;
            Ok(Applied::Moved(JobState::Retry))
        }
        Decision::DeadLetter(reason) => {
            store::set_state(tx, id, JobState::DeadLetter, attempt, now, now, Some(&reason))?;
            let mut dead = store::entry(now, "DeadLetter", attempt);
            dead.error = Some(reason);
            store::push_history(tx, id, &dead)?;
            Ok(Applied::Moved(JobState::DeadLetter))
        }
        Decision::Succeed => Ok(Applied::Ignored("a failure cannot succeed")),
    }
}

#[async_trait]
impl Orchestrator for EmbeddedEngine {
    async fn start(&self, job: Job) -> Result<(), OrchestratorError> {
        Ok(self.submit(job).await?)
    }

    async fn get(&self, job_id: &str) -> Result<Option<JobRecord>, OrchestratorError> {
        let id = job_id.to_owned();
        Ok(self.db.call(move |conn| -> Result<_, EngineError> { Ok(store::record(conn, &id)?) }).await?)
    }

    async fn list(&self, limit: usize) -> Result<Vec<JobRecord>, OrchestratorError> {
        Ok(self.db.call(move |conn| -> Result<_, EngineError> { Ok(store::recent(conn, limit)?) }).await?)
    }
}
