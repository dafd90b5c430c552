//! The embedded deployment in one value: the SQLite file, the folder buckets, the three
//! queues and the engine, all opened from one data dir. Every command that works on a
//! data dir (`serve`, `worker`, `submit`, `jobs`, `dlq`) starts here.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use orchestrator::{EmbeddedEngine, EngineConfig, Queues};
use pipeline_core::blob::local::LocalBlobStore;
use pipeline_core::queue::Queue;
use pipeline_core::queue::sqlite::{RedrivePolicy, SqliteQueue};
use pipeline_core::sqlite::Db;

/// Queue of jobs for the workers.
pub const JOBS_QUEUE: &str = "jobs";
/// Queue of the workers' reports to the orchestrator.
pub const REPORTS_QUEUE: &str = "reports";
/// The dead-letter queue.
pub const DEAD_LETTER_QUEUE: &str = "dlq";

/// Everything on one data dir.
#[derive(Clone, Debug)]
pub struct Embedded {
    /// The data dir.
    pub data_dir: PathBuf,
    /// The SQLite file's handle.
    pub db: Db,
    /// The folder buckets.
    pub blobs: Arc<LocalBlobStore>,
    /// The orchestrator.
    pub engine: EmbeddedEngine,
}

impl Embedded {
    /// Opens (creating if needed) the deployment in `data_dir`. A job message delivered
    /// more than `max_receive_count` times is failed by the worker; one more delivery and
    /// the jobs queue itself moves it to the dead-letter queue.
    ///
    /// # Errors
    /// The folder or the SQLite file cannot be opened.
    pub fn open(data_dir: &Path, config: EngineConfig, max_receive_count: u32) -> anyhow::Result<Self> {
        std::fs::create_dir_all(data_dir).with_context(|| format!("cannot create data dir {}", data_dir.display()))?;
        let db_path = data_dir.join("imgpipe.db");
        let db = Db::open(&db_path).with_context(|| format!("cannot open {}", db_path.display()))?;
        let open = |name: &str| SqliteQueue::open(&db, name).with_context(|| format!("cannot open queue {name}"));
        let jobs = open(JOBS_QUEUE)?.with_redrive(RedrivePolicy {
            dead_letter_queue: DEAD_LETTER_QUEUE.into(),
            max_receive_count: max_receive_count.saturating_add(1),
        });
        let queues = Queues {
            jobs: Arc::new(jobs),
            reports: Arc::new(open(REPORTS_QUEUE)?),
            dead_letters: Arc::new(open(DEAD_LETTER_QUEUE)?),
        };
        let engine = EmbeddedEngine::open(&db, queues, config).context("cannot open the job store")?;
        Ok(Self { data_dir: data_dir.to_owned(), db, blobs: Arc::new(LocalBlobStore::new(data_dir)), engine })
    }

    /// The three queues, for metrics.
    pub fn all_queues(&self) -> Vec<Arc<dyn Queue>> {
        let q = self.engine.queues();
        vec![Arc::clone(&q.jobs), Arc::clone(&q.reports), Arc::clone(&q.dead_letters)]
    }
}
