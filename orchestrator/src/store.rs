//! The engine's jobs in SQLite ([`SqliteJobs`]): one row per job with its current state,
//! and an append-only history. Each step is one `BEGIN IMMEDIATE` transaction on the row.

use async_trait::async_trait;
use pipeline_core::job_store::{Change, Decide, JobStore, StoreError, StoredJob};
use pipeline_core::sqlite::{Db, DbError};
use protocol::job::{HistoryEntry, JobRecord, JobState};
use protocol::message::{Job, Output, SourceMetadata};
use protocol::time::rfc3339;
use protocol::workflow::{Effect, Ignored, Position, Transition};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS jobs (
    job_id        TEXT PRIMARY KEY,
    state         TEXT    NOT NULL,
    attempt       INTEGER NOT NULL,
    job_json      TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    due_at        INTEGER NOT NULL,
    started_at    INTEGER,
    outputs_json  TEXT,
    metadata_json TEXT,
    error_json    TEXT,
    send_pending  INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_due ON jobs (state, due_at);
CREATE INDEX IF NOT EXISTS jobs_created ON jobs (created_at);
CREATE TABLE IF NOT EXISTS job_history (
    job_id TEXT    NOT NULL,
    seq    INTEGER NOT NULL,
    entry  TEXT    NOT NULL,
    PRIMARY KEY (job_id, seq)
);
";

/// Brings a store made by an earlier version up to [`SCHEMA`]: the `send_pending` column.
pub(crate) fn migrate(conn: &Connection) -> Result<(), DbError> {
    let has: bool =
        conn.query_row("SELECT COUNT(*) > 0 FROM pragma_table_info('jobs') WHERE name = 'send_pending'", [], |r| {
            r.get(0)
        })?;
    if !has {
        conn.execute_batch("ALTER TABLE jobs ADD COLUMN send_pending INTEGER NOT NULL DEFAULT 0")?;
    }
    conn.execute_batch(
        "CREATE INDEX IF NOT EXISTS jobs_unsent ON jobs (send_pending, updated_at) WHERE send_pending = 1",
    )?;
    Ok(())
}

fn json_err(e: serde_json::Error) -> DbError {
    DbError::new(format!("stored JSON is unreadable: {e}"))
}

fn load_row(conn: &Connection, job_id: &str) -> Result<Option<StoredJob>, DbError> {
    let row: Option<(String, u32, String, Option<i64>)> = conn
        .query_row("SELECT state, attempt, job_json, started_at FROM jobs WHERE job_id = ?1", params![job_id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()?;
    let Some((state, attempt, job_json, started_at)) = row else { return Ok(None) };
    let mut job: Job = serde_json::from_str(&job_json).map_err(json_err)?;
    job.attempt = attempt;
    let state = JobState::parse(&state).ok_or_else(|| DbError::new(format!("unknown job state {state:?}")))?;
    Ok(Some(StoredJob { job, position: Position { state, attempt, started_at } }))
}

/// Records a new job; [`save`] then stores its first transition.
fn insert(conn: &Connection, job: &Job, now: i64) -> Result<(), DbError> {
    let json = serde_json::to_string(job).map_err(json_err)?;
    conn.execute(
        "INSERT INTO jobs (job_id, state, attempt, job_json, created_at, updated_at, due_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?5)",
        params![job.job_id, JobState::ProcessImage.as_str(), job.attempt, json, now],
    )?;
    Ok(())
}

/// Stores a transition: the job's new position and due time, its last error when the
/// transition sets one, the history entries it appends, and whether an attempt now waits to
/// be sent (an outbox: [`sent`] clears it once the queue has the message; any later
/// transition clears it too, as a report proves the worker got it).
fn save(conn: &Connection, job_id: &str, t: &Transition, now: i64) -> Result<(), DbError> {
    let error = t.error.as_ref().map(serde_json::to_string).transpose().map_err(json_err)?;
    let send = t.effects.contains(&Effect::SendJob);
    conn.execute(
        "UPDATE jobs SET state = ?2, attempt = ?3, due_at = ?4, updated_at = ?5, started_at = ?6,
         error_json = COALESCE(?7, error_json), send_pending = ?8
         WHERE job_id = ?1",
        params![job_id, t.to.state.as_str(), t.to.attempt, t.due_at, now, t.to.started_at, error, send],
    )?;
    for entry in &t.history {
        push_history(conn, job_id, entry)?;
    }
    Ok(())
}

fn set_outputs(
    conn: &Connection,
    job_id: &str,
    outputs: &[Output],
    metadata: Option<&SourceMetadata>,
) -> Result<(), DbError> {
    let outputs = serde_json::to_string(outputs).map_err(json_err)?;
    let metadata = metadata.map(serde_json::to_string).transpose().map_err(json_err)?;
    conn.execute(
        "UPDATE jobs SET outputs_json = ?2, metadata_json = ?3, error_json = NULL WHERE job_id = ?1",
        params![job_id, outputs, metadata],
    )?;
    Ok(())
}

/// Replaces the stored job message (its attempts are sent from it).
fn set_job(conn: &Connection, job: &Job) -> Result<(), DbError> {
    let json = serde_json::to_string(job).map_err(json_err)?;
    conn.execute("UPDATE jobs SET job_json = ?2 WHERE job_id = ?1", params![job.job_id, json])?;
    Ok(())
}

fn push_history(conn: &Connection, job_id: &str, entry: &HistoryEntry) -> Result<(), DbError> {
    let json = serde_json::to_string(entry).map_err(json_err)?;
    conn.execute(
        "INSERT INTO job_history (job_id, seq, entry)
         VALUES (?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM job_history WHERE job_id = ?1), ?2)",
        params![job_id, json],
    )?;
    Ok(())
}

fn history(conn: &Connection, job_id: &str) -> Result<Vec<HistoryEntry>, DbError> {
    let mut stmt = conn.prepare_cached("SELECT entry FROM job_history WHERE job_id = ?1 ORDER BY seq")?;
    let rows: Vec<String> = stmt.query_map(params![job_id], |r| r.get(0))?.collect::<Result<_, _>>()?;
    rows.iter().map(|s| serde_json::from_str(s).map_err(json_err)).collect()
}

const RECORD_COLUMNS: &str =
    "job_id, state, attempt, job_json, created_at, updated_at, outputs_json, metadata_json, error_json";

fn record_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<JobRecord> {
    let state: String = r.get(1)?;
    let job_json: String = r.get(3)?;
    let outputs: Option<String> = r.get(6)?;
    let metadata: Option<String> = r.get(7)?;
    let error: Option<String> = r.get(8)?;
    let job: Option<Job> = serde_json::from_str(&job_json).ok();
    let record = JobRecord {
        job_id: r.get(0)?,
        state: JobState::parse(&state).unwrap_or(JobState::Fail),
        attempts: r.get(2)?,
        source_bucket: job.as_ref().map(|j| j.source_bucket.clone()).unwrap_or_default(),
        source_key: job.as_ref().map(|j| j.source_key.clone()).unwrap_or_default(),
        destination_bucket: job.as_ref().map(|j| j.destination_bucket.clone()).unwrap_or_default(),
        renditions: job.map(|j| j.renditions).unwrap_or_default(),
        created_at: rfc3339(r.get(4)?),
        updated_at: rfc3339(r.get(5)?),
        outputs: outputs.and_then(|s| serde_json::from_str(&s).ok()).unwrap_or_default(),
        metadata: metadata.and_then(|s| serde_json::from_str(&s).ok()),
        error: error.and_then(|s| serde_json::from_str(&s).ok()),
        history: Vec::new(),
    };
    Ok(record)
}

fn record(conn: &Connection, job_id: &str) -> Result<Option<JobRecord>, DbError> {
    let sql = format!("SELECT {RECORD_COLUMNS} FROM jobs WHERE job_id = ?1");
    let found = conn.query_row(&sql, params![job_id], record_from_row).optional()?;
    let Some(mut record) = found else { return Ok(None) };
    record.history = history(conn, job_id)?;
    Ok(Some(record))
}

fn recent(conn: &Connection, limit: usize) -> Result<Vec<JobRecord>, DbError> {
    let sql = format!("SELECT {RECORD_COLUMNS} FROM jobs ORDER BY created_at DESC, job_id DESC LIMIT ?1");
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(params![i64::try_from(limit).unwrap_or(i64::MAX)], record_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Ids of jobs in `state` whose `due_at` has passed.
fn due(conn: &Connection, state: JobState, now: i64) -> Result<Vec<String>, DbError> {
    let mut stmt =
        conn.prepare_cached("SELECT job_id FROM jobs WHERE state = ?1 AND due_at <= ?2 ORDER BY due_at LIMIT 100")?;
    let ids = stmt.query_map(params![state.as_str(), now], |r| r.get(0))?.collect::<Result<_, _>>()?;
    Ok(ids)
}

/// Marks attempt `attempt` of the job as in the queue.
fn sent(conn: &Connection, job_id: &str, attempt: u32) -> Result<(), DbError> {
    conn.execute("UPDATE jobs SET send_pending = 0 WHERE job_id = ?1 AND attempt = ?2", params![job_id, attempt])?;
    Ok(())
}

/// Ids of jobs whose attempt was stored but not known to be sent, last changed before `before`.
fn unsent(conn: &Connection, before: i64) -> Result<Vec<String>, DbError> {
    let mut stmt = conn.prepare_cached(
        "SELECT job_id FROM jobs WHERE send_pending = 1 AND updated_at < ?1 ORDER BY updated_at LIMIT 100",
    )?;
    let ids = stmt.query_map(params![before], |r| r.get(0))?.collect::<Result<_, _>>()?;
    Ok(ids)
}

/// The engine's jobs in the SQLite file the queues share.
#[derive(Clone, Debug)]
pub struct SqliteJobs {
    db: Db,
}

impl SqliteJobs {
    /// The jobs in `db`, creating or migrating the tables if needed.
    ///
    /// # Errors
    /// The tables cannot be created.
    pub fn open(db: &Db) -> Result<Self, DbError> {
        db.call_sync(|c| -> Result<(), DbError> {
            c.execute_batch(SCHEMA)?;
            migrate(c)
        })?;
        Ok(Self { db: db.clone() })
    }
}

#[async_trait]
impl JobStore for SqliteJobs {
    async fn update(
        &self,
        job_id: &str,
        now: i64,
        durable: bool,
        decide: Decide,
    ) -> Result<Result<Change, Ignored>, StoreError> {
        let id = job_id.to_owned();
        let step = move |conn: &mut Connection| -> Result<_, StoreError> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(DbError::from)?;
            let change = match decide(load_row(&tx, &id)?) {
                Ok(change) => change,
                Err(ignored) => return Ok(Err(ignored)),
            };
            if change.insert {
                insert(&tx, &change.job, now)?;
            } else if change.replace_job {
                set_job(&tx, &change.job)?;
            }
            save(&tx, &id, &change.transition, now)?;
            if let Some((outputs, metadata)) = &change.outputs {
                set_outputs(&tx, &id, outputs, metadata.as_ref())?;
            }
            tx.commit().map_err(DbError::from)?;
            Ok(Ok(change))
        };
        if durable { self.db.call_durable(step).await } else { self.db.call(step).await }
    }

    async fn mark_sent(&self, job_id: &str, attempt: u32) -> Result<(), StoreError> {
        let id = job_id.to_owned();
        Ok(self.db.call(move |conn| sent(conn, &id, attempt)).await?)
    }

    async fn unsent(&self, before: i64) -> Result<Vec<Job>, StoreError> {
        let found = self
            .db
            .call(move |conn| -> Result<Vec<Job>, DbError> {
                let mut jobs = Vec::new();
                for id in unsent(conn, before)? {
                    jobs.extend(load_row(conn, &id)?.map(|row| row.job));
                }
                Ok(jobs)
            })
            .await?;
        Ok(found)
    }

    async fn due(&self, state: JobState, now: i64) -> Result<Vec<String>, StoreError> {
        Ok(self.db.call(move |conn| due(conn, state, now)).await?)
    }

    async fn get(&self, job_id: &str) -> Result<Option<JobRecord>, StoreError> {
        let id = job_id.to_owned();
        Ok(self.db.call(move |conn| record(conn, &id)).await?)
    }

    async fn recent(&self, limit: usize, _now: i64) -> Result<Vec<JobRecord>, StoreError> {
        Ok(self.db.call(move |conn| recent(conn, limit)).await?)
    }
}
