//! Where the workflow engine keeps its jobs: each job's message, where it rests, its
//! history and outputs. The engine decides every step with the protocol's pure `step`;
//! a store only has to apply one decision to one job atomically — a SQLite transaction
//! (`orchestrator::store`), or a conditional write on DynamoDB (`pipeline_aws::dynamodb`),
//! so several engines can share one store. The suite every store passes is
//! [`conformance::job_store`](crate::conformance::job_store).

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use protocol::job::{JobRecord, JobState};
use protocol::message::{Job, Output, SourceMetadata};
use protocol::workflow::{Ignored, Position, Transition};

/// A failure of the job store; the caller may try again later.
#[derive(Debug, thiserror::Error)]
#[error("job store: {0}")]
pub struct StoreError(pub String);

impl From<crate::sqlite::DbError> for StoreError {
    fn from(e: crate::sqlite::DbError) -> Self {
        Self(e.to_string())
    }
}

/// A job as stored: its message (the attempt set to the current one) and where it rests.
#[derive(Clone, Debug)]
pub struct StoredJob {
    /// The job message its attempts are sent from.
    pub job: Job,
    /// Its state, attempt and start.
    pub position: Position,
}

/// One decided step, for the store to apply.
#[derive(Clone, Debug)]
pub struct Change {
    /// The job's message after the step, its attempt the transition's.
    pub job: Job,
    /// The job is new: record it (it must not exist).
    pub insert: bool,
    /// The stored message changes (a redrive drops the source's version).
    pub replace_job: bool,
    /// The new position, due time, error and history entries. A transition with
    /// [`Effect::SendJob`](protocol::workflow::Effect::SendJob) marks the attempt unsent
    /// until [`JobStore::mark_sent`]; any other clears that mark.
    pub transition: Transition,
    /// Outputs to record, when the transition records them.
    pub outputs: Option<(Vec<Output>, Option<SourceMetadata>)>,
}

/// Decides a step from the job as stored now (`None`: no such job). A store may call it
/// more than once, when another writer changed the job in between.
pub type Decide = Arc<dyn Fn(Option<StoredJob>) -> Result<Change, Ignored> + Send + Sync>;

/// The engine's store of jobs.
#[async_trait]
pub trait JobStore: Send + Sync + Debug {
    /// Reads job `job_id`, asks `decide`, and stores its change at `now` (ms) — atomically:
    /// no other change lands between the read and the write. With `durable` the change
    /// survives a power loss once this returns.
    ///
    /// # Errors
    /// The store failed; nothing or all of the change was stored.
    async fn update(
        &self,
        job_id: &str,
        now: i64,
        durable: bool,
        decide: Decide,
    ) -> Result<Result<Change, Ignored>, StoreError>;

    /// Clears the unsent mark of attempt `attempt` (a later attempt keeps its own).
    ///
    /// # Errors
    /// The store failed.
    async fn mark_sent(&self, job_id: &str, attempt: u32) -> Result<(), StoreError>;

    /// Jobs (at their current attempt) marked unsent and last changed before `before`, up to 100.
    ///
    /// # Errors
    /// The store failed.
    async fn unsent(&self, before: i64) -> Result<Vec<Job>, StoreError>;

    /// Ids of jobs resting in `state` whose due time is at or before `now`, earliest first, up to 100.
    ///
    /// # Errors
    /// The store failed.
    async fn due(&self, state: JobState, now: i64) -> Result<Vec<String>, StoreError>;

    /// The job's record with its history.
    ///
    /// # Errors
    /// The store failed.
    async fn get(&self, job_id: &str) -> Result<Option<JobRecord>, StoreError>;

    /// The most recently created jobs, newest first, without their history; `now` (ms, the
    /// engine's clock) is where a store that files jobs by time starts looking back.
    ///
    /// # Errors
    /// The store failed.
    async fn recent(&self, limit: usize, now: i64) -> Result<Vec<JobRecord>, StoreError>;
}
