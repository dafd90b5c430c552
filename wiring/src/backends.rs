//! Which buckets and queues a command works on: local folders and the SQLite file in the
//! data dir (the default), or S3 and SQS through the AWS SDK. Clients are built once here
//! and lent to everything else as `Arc<dyn BlobStore>` / `Arc<dyn Queue>`.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use orchestrator::Queues;
use pipeline_aws::AwsBackends;
use pipeline_aws::sfn::SfnReporter;
use pipeline_core::blob::BlobStore;
use pipeline_core::blob::local::LocalBlobStore;
use pipeline_core::queue::Queue;
use pipeline_core::queue::sqlite::{RedrivePolicy, SqliteQueue};
use pipeline_core::report::{QueueReporter, Reporter};
use pipeline_core::sqlite::Db;
use worker::faults::Faults;
use worker::image::{Limits, MemoryBudget};
use worker::{RenderSlots, Runner, RunnerConfig, WorkerDeps};

use crate::settings::{BackendArgs, BlobStoreKind, QueueKind, WorkerArgs};

/// The opened backends.
#[derive(Clone, Debug)]
pub struct Backends {
    /// The object store.
    pub blobs: Arc<dyn BlobStore>,
    /// The folder store, when buckets are local (the watcher and bucket creation need it).
    pub local_blobs: Option<Arc<LocalBlobStore>>,
    /// Jobs for the workers.
    pub jobs: Arc<dyn Queue>,
    /// Workers' reports to the embedded orchestrator (none with Step Functions).
    pub reports: Option<Arc<dyn Queue>>,
    /// Failed jobs.
    pub dead_letters: Arc<dyn Queue>,
    /// The AWS clients, when any backend is on AWS.
    pub aws: Option<AwsBackends>,
}

impl Backends {
    /// The queues of the embedded orchestrator.
    ///
    /// # Errors
    /// There is no reports queue (Step Functions mode).
    pub fn queues(&self) -> anyhow::Result<Queues> {
        let reports = self.reports.clone().context("the embedded orchestrator needs a reports queue")?;
        Ok(Queues { jobs: Arc::clone(&self.jobs), reports, dead_letters: Arc::clone(&self.dead_letters) })
    }

    /// The queues whose depth `/metrics` reports.
    pub fn all_queues(&self) -> Vec<Arc<dyn Queue>> {
        let mut all = vec![Arc::clone(&self.jobs)];
        all.extend(self.reports.clone());
        all.push(Arc::clone(&self.dead_letters));
        all
    }
}

impl Backends {
    /// Opens the chosen backends. SQLite queues live in `db`, or in the data dir's file
    /// when `db` is `None`; the jobs queue moves a message to the DLQ after
    /// `max_receive_count + 1` deliveries (on SQS the queue's own redrive policy decides).
    /// With Step Functions there is no reports queue.
    ///
    /// # Errors
    /// A queue that does not exist, or AWS settings that cannot be loaded.
    pub async fn open(
        args: &BackendArgs,
        data_dir: &Path,
        db: Option<&Db>,
        max_receive_count: u32,
    ) -> anyhow::Result<Backends> {
        let aws = if args.uses_aws() { Some(AwsBackends::from_env().await) } else { None };
        let local = Arc::new(LocalBlobStore::new(data_dir));
        let swept = local.sweep_temp(std::time::Duration::from_secs(3600));
        if swept > 0 {
            tracing::info!(files = swept, "removed temp files an earlier crash left behind");
        }
        let (blobs, local_blobs): (Arc<dyn BlobStore>, _) = match &aws {
            Some(aws) if args.blob_store == BlobStoreKind::S3 => (aws.blob_store(), None),
            _ => (local.clone(), Some(local)),
        };
        let with_reports = !args.step_functions();
        let (jobs, reports, dead_letters) = match &aws {
            Some(aws) if args.queue_backend == QueueKind::Sqs => {
                let open = |name: &str| {
                    let name = name.to_owned();
                    async move { aws.queue(&name).await.with_context(|| format!("cannot open SQS queue {name}")) }
                };
                let reports = if with_reports { Some(open(&args.reports_queue).await?) } else { None };
                (open(&args.jobs_queue).await?, reports, open(&args.dead_letter_queue).await?)
            }
            _ => {
                let db = match db {
                    Some(db) => db.clone(),
                    None => open_db(data_dir)?,
                };
                let open =
                    |name: &str| SqliteQueue::open(&db, name).with_context(|| format!("cannot open queue {name}"));
                let jobs = open(&args.jobs_queue)?.with_redrive(RedrivePolicy {
                    dead_letter_queue: args.dead_letter_queue.clone(),
                    max_receive_count: max_receive_count.saturating_add(1),
                });
                let reports: Option<Arc<dyn Queue>> =
                    if with_reports { Some(Arc::new(open(&args.reports_queue)?)) } else { None };
                (Arc::new(jobs) as Arc<dyn Queue>, reports, Arc::new(open(&args.dead_letter_queue)?) as Arc<dyn Queue>)
            }
        };
        Ok(Backends { blobs, local_blobs, jobs, reports, dead_letters, aws })
    }
}

/// Opens (creating if needed) the data dir's SQLite file.
///
/// # Errors
/// The folder or the file cannot be opened.
pub fn open_db(data_dir: &Path) -> anyhow::Result<Db> {
    std::fs::create_dir_all(data_dir).with_context(|| format!("cannot create data dir {}", data_dir.display()))?;
    let path = data_dir.join("imgpipe.db");
    Db::open(&path).with_context(|| format!("cannot open {}", path.display()))
}

/// How workers report, given the backends: task-token calls with Step Functions, the
/// reports queue otherwise.
///
/// # Errors
/// No AWS settings (Step Functions) or no reports queue (embedded).
pub fn reporter(args: &BackendArgs, backends: &Backends) -> anyhow::Result<Arc<dyn Reporter>> {
    if args.step_functions() {
        let aws = backends.aws.as_ref().context("Step Functions needs the AWS settings")?;
        return Ok(Arc::new(SfnReporter::new(aws.sfn().clone())));
    }
    let reports = backends.reports.clone().context("the embedded orchestrator needs a reports queue")?;
    Ok(Arc::new(QueueReporter::new(reports)))
}

/// What a worker needs besides the backends, read once from [`WorkerArgs`].
#[derive(Clone, Debug)]
pub struct WorkerSettings {
    /// Pacing of the long-poll loop; `concurrency` 0 runs no workers.
    pub runner: RunnerConfig,
    /// Input and output limits.
    pub limits: Limits,
    /// The memory the jobs of this process share.
    pub budget: MemoryBudget,
    /// `Cache-Control` on outputs.
    pub cache_control: Option<String>,
    /// Injected faults.
    pub faults: Faults,
}

impl WorkerSettings {
    /// The settings `args` give; arms the crash point the faults name, if any.
    ///
    /// # Errors
    /// Pacing that would let jobs run twice (see [`WorkerArgs::runner`]).
    pub fn read(args: &WorkerArgs) -> anyhow::Result<Self> {
        args.faults.arm();
        Ok(Self {
            runner: args.runner()?,
            limits: args.limits(),
            budget: args.memory_budget.budget(),
            cache_control: args.cache_control(),
            faults: args.faults.clone(),
        })
    }

    /// What `process_job` needs, on `blobs`.
    pub fn deps(&self, blobs: Arc<dyn BlobStore>) -> WorkerDeps {
        WorkerDeps {
            blobs,
            limits: self.limits,
            budget: self.budget.clone(),
            cache_control: self.cache_control.clone(),
            faults: self.faults.clone(),
            renders: RenderSlots::new(self.runner.concurrency),
        }
    }
}

/// The worker loop on these backends, reporting through `reporter`.
pub fn runner(backends: &Backends, reporter: Arc<dyn Reporter>, settings: &WorkerSettings) -> Runner {
    Runner {
        jobs: Arc::clone(&backends.jobs),
        dead_letters: Arc::clone(&backends.dead_letters),
        reporter,
        deps: Arc::new(settings.deps(Arc::clone(&backends.blobs))),
        config: settings.runner,
    }
}
