//! A deployment opened from one data dir and the backend flags: the SQLite file (the
//! embedded orchestrator's job store, and the queues unless they are on SQS), the buckets,
//! the queues and the engine. Every command that works on jobs starts here.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use orchestrator::{EmbeddedEngine, EngineConfig};
use pipeline_core::blob::BlobStore;
use pipeline_core::blob::local::LocalBlobStore;
use pipeline_core::queue::Queue;
use pipeline_core::sqlite::Db;

use crate::backends::{BackendArgs, Backends};

/// Everything on one data dir.
#[derive(Clone, Debug)]
pub struct Embedded {
    /// The data dir.
    pub data_dir: PathBuf,
    /// The SQLite file's handle.
    pub db: Db,
    /// The buckets and queues.
    pub backends: Backends,
    /// The orchestrator.
    pub engine: EmbeddedEngine,
}

impl Embedded {
    /// Opens the all-local deployment in `data_dir` (folders, SQLite queues).
    ///
    /// # Errors
    /// The folder or the SQLite file cannot be opened.
    pub async fn open(data_dir: &Path, config: EngineConfig, max_receive_count: u32) -> anyhow::Result<Self> {
        Self::open_with(data_dir, &BackendArgs::default(), config, max_receive_count).await
    }

    /// Opens the deployment in `data_dir` on the backends `args` choose.
    ///
    /// # Errors
    /// The folder, the SQLite file or a backend cannot be opened.
    pub async fn open_with(
        data_dir: &Path,
        args: &BackendArgs,
        config: EngineConfig,
        max_receive_count: u32,
    ) -> anyhow::Result<Self> {
        let db = crate::backends::open_db(data_dir)?;
        let backends = args.open(data_dir, Some(&db), max_receive_count).await?;
        let engine = EmbeddedEngine::open(&db, backends.queues.clone(), config).context("cannot open the job store")?;
        Ok(Self { data_dir: data_dir.to_owned(), db, backends, engine })
    }

    /// The object store.
    pub fn blobs(&self) -> Arc<dyn BlobStore> {
        Arc::clone(&self.backends.blobs)
    }

    /// The folder store, when buckets are local.
    pub fn local_blobs(&self) -> Option<&Arc<LocalBlobStore>> {
        self.backends.local_blobs.as_ref()
    }

    /// The three queues, for metrics.
    pub fn all_queues(&self) -> Vec<Arc<dyn Queue>> {
        let q = &self.backends.queues;
        vec![Arc::clone(&q.jobs), Arc::clone(&q.reports), Arc::clone(&q.dead_letters)]
    }
}
