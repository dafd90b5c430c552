//! A deployment opened from the data dir and the backend settings: the SQLite file (the
//! embedded engine's job store, the watcher's records, and the queues unless they are on
//! SQS), the buckets, the queues, and whoever runs the workflow — the workflow engine (its
//! jobs in that SQLite file or in DynamoDB) or Step Functions. Every command that works on jobs starts here.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use orchestrator::EmbeddedEngine;
use orchestrator::dead_letter::{DeadLetters, Restart};
use pipeline_aws::DynamoJobs;
use pipeline_aws::sfn::SfnOrchestrator;
use pipeline_core::blob::BlobStore;
use pipeline_core::blob::local::LocalBlobStore;
use pipeline_core::orchestration::Orchestrator;
use pipeline_core::sqlite::Db;
use protocol::workflow::Policy;

use crate::backends::{Backends, open_db};
use crate::settings::{BackendArgs, QueueKind};

/// Everything a deployment holds, opened once.
#[derive(Clone, Debug)]
pub struct Deployment {
    /// The data dir.
    pub data_dir: PathBuf,
    /// The SQLite file's handle.
    pub db: Db,
    /// The backend flags it was opened with.
    pub args: BackendArgs,
    /// The buckets and queues.
    pub backends: Backends,
    /// The workflow engine, unless Step Functions runs the workflow.
    pub engine: Option<EmbeddedEngine>,
    /// Whoever runs the workflow.
    pub orchestrator: Arc<dyn Orchestrator>,
}

impl Deployment {
    /// Opens the all-local deployment in `data_dir` (folders, SQLite queues).
    ///
    /// # Errors
    /// The folder or the SQLite file cannot be opened.
    pub async fn open(data_dir: &Path, config: Policy, max_receive_count: u32) -> anyhow::Result<Self> {
        Self::open_with(data_dir, &BackendArgs::default(), config, max_receive_count).await
    }

    /// Opens the deployment in `data_dir` on the backends `args` choose.
    ///
    /// # Errors
    /// The folder, the SQLite file or a backend cannot be opened.
    pub async fn open_with(
        data_dir: &Path,
        args: &BackendArgs,
        config: Policy,
        max_receive_count: u32,
    ) -> anyhow::Result<Self> {
        let db = open_db(data_dir)?;
        let backends = Backends::open(args, data_dir, Some(&db), max_receive_count).await?;
        let (engine, orchestrator): (_, Arc<dyn Orchestrator>) = if args.step_functions() {
            let arn =
                args.state_machine_arn.clone().context("--orchestrator stepfunctions needs --state-machine-arn")?;
            let aws = backends.aws.as_ref().context("Step Functions needs the AWS settings")?;
            let sfn =
                SfnOrchestrator::new(aws.sfn().clone(), arn).with_dead_letters(Arc::clone(&backends.dead_letters));
            (None, Arc::new(sfn))
        } else {
            let engine = if args.dynamodb_jobs() {
                let aws = backends.aws.as_ref().context("DynamoDB needs the AWS settings")?;
                let store = DynamoJobs::new(aws.clients().dynamodb.clone(), &args.jobs_table);
                EmbeddedEngine::new(Arc::new(store), backends.queues()?, config)
            } else {
                EmbeddedEngine::open(&db, backends.queues()?, config).context("cannot open the job store")?
            };
            // Reports read from SQS are billed per request: let a trickle share one read.
            let engine = match args.queue_backend {
                QueueKind::Sqs => engine.with_report_window(orchestrator::engine::SQS_REPORT_WINDOW),
                QueueKind::Sqlite => engine,
            };
            (Some(engine.clone()), Arc::new(engine))
        };
        Ok(Self { data_dir: data_dir.to_owned(), db, args: args.clone(), backends, engine, orchestrator })
    }

    /// The object store.
    pub fn blobs(&self) -> Arc<dyn BlobStore> {
        Arc::clone(&self.backends.blobs)
    }

    /// The folder store, when buckets are local.
    pub fn local_blobs(&self) -> Option<&Arc<LocalBlobStore>> {
        self.backends.local_blobs.as_ref()
    }

    /// The dead-letter queue and how its jobs start again: the embedded engine restarts the
    /// same job; with Step Functions a fresh job takes each letter over.
    pub fn dead_letters(&self) -> DeadLetters {
        let restart = match &self.engine {
            Some(engine) => Restart::Same(engine.clone()),
            None => Restart::Fresh(Arc::clone(&self.orchestrator)),
        };
        DeadLetters { queue: Arc::clone(&self.backends.dead_letters), restart }
    }

    /// The embedded engine.
    ///
    /// # Errors
    /// Step Functions runs the workflow here.
    pub fn engine(&self) -> anyhow::Result<&EmbeddedEngine> {
        self.engine.as_ref().context("this needs the embedded orchestrator (not --orchestrator stepfunctions)")
    }
}
