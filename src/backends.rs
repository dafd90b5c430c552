//! Which buckets and queues a command works on: local folders and the SQLite file in the
//! data dir (the default), or S3 and SQS through the AWS SDK. Clients are built once here
//! and lent to everything else as `Arc<dyn BlobStore>` / `Arc<dyn Queue>`.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use orchestrator::Queues;
use pipeline_aws::AwsBackends;
use pipeline_core::blob::BlobStore;
use pipeline_core::blob::local::LocalBlobStore;
use pipeline_core::queue::Queue;
use pipeline_core::queue::sqlite::{RedrivePolicy, SqliteQueue};
use pipeline_core::sqlite::Db;

/// Flags choosing the backends; global, so every command takes them.
#[derive(clap::Args, Debug, Clone)]
pub struct BackendArgs {
    /// Where buckets live: `local` folders in the data dir, or `s3`.
    #[arg(long, env = "IMGPIPE_BLOB_STORE", default_value = "local", value_parser = ["local", "s3"], global = true)]
    pub blob_store: String,
    /// Where queues live: `sqlite` in the data dir, or `sqs`.
    #[arg(long, env = "IMGPIPE_QUEUE_BACKEND", default_value = "sqlite", value_parser = ["sqlite", "sqs"], global = true)]
    pub queue_backend: String,
    /// The jobs queue: a name, or an SQS queue URL.
    #[arg(long, env = "IMGPIPE_JOBS_QUEUE", default_value = "jobs", global = true)]
    pub jobs_queue: String,
    /// The workers' reports queue: a name, or an SQS queue URL.
    #[arg(long, env = "IMGPIPE_REPORTS_QUEUE", default_value = "reports", global = true)]
    pub reports_queue: String,
    /// The dead-letter queue: a name, or an SQS queue URL.
    #[arg(long, env = "IMGPIPE_DEAD_LETTER_QUEUE", default_value = "dlq", global = true)]
    pub dead_letter_queue: String,
}

impl Default for BackendArgs {
    fn default() -> Self {
        Self {
            blob_store: "local".into(),
            queue_backend: "sqlite".into(),
            jobs_queue: "jobs".into(),
            reports_queue: "reports".into(),
            dead_letter_queue: "dlq".into(),
        }
    }
}

/// The opened backends.
#[derive(Clone, Debug)]
pub struct Backends {
    /// The object store.
    pub blobs: Arc<dyn BlobStore>,
    /// The folder store, when buckets are local (the watcher and bucket creation need it).
    pub local_blobs: Option<Arc<LocalBlobStore>>,
    /// Jobs, reports and dead letters.
    pub queues: Queues,
    /// The AWS clients, when any backend is on AWS.
    pub aws: Option<AwsBackends>,
}

impl BackendArgs {
    /// Whether any backend needs the AWS SDK.
    pub fn uses_aws(&self) -> bool {
        self.blob_store == "s3" || self.queue_backend == "sqs"
    }

    /// Opens the chosen backends. SQLite queues live in `db`, or in the data dir's file
    /// when `db` is `None`; the jobs queue moves a message to the DLQ after
    /// `max_receive_count + 1` deliveries (on SQS the queue's own redrive policy decides).
    ///
    /// # Errors
    /// A queue that does not exist, or AWS settings that cannot be loaded.
    pub async fn open(&self, data_dir: &Path, db: Option<&Db>, max_receive_count: u32) -> anyhow::Result<Backends> {
        let aws = if self.uses_aws() { Some(AwsBackends::from_env().await) } else { None };
        let local = Arc::new(LocalBlobStore::new(data_dir));
        let (blobs, local_blobs): (Arc<dyn BlobStore>, _) = match &aws {
            Some(aws) if self.blob_store == "s3" => (aws.blob_store(), None),
            _ => (local.clone(), Some(local)),
        };
        let queues = match &aws {
            Some(aws) if self.queue_backend == "sqs" => {
                let open = |name: &str| {
                    let name = name.to_owned();
                    async move { aws.queue(&name).await.with_context(|| format!("cannot open SQS queue {name}")) }
                };
                Queues {
                    jobs: open(&self.jobs_queue).await?,
                    reports: open(&self.reports_queue).await?,
                    dead_letters: open(&self.dead_letter_queue).await?,
                }
            }
            _ => {
                let db = match db {
                    Some(db) => db.clone(),
                    None => open_db(data_dir)?,
                };
                let open =
                    |name: &str| SqliteQueue::open(&db, name).with_context(|| format!("cannot open queue {name}"));
                let jobs = open(&self.jobs_queue)?.with_redrive(RedrivePolicy {
                    dead_letter_queue: self.dead_letter_queue.clone(),
                    max_receive_count: max_receive_count.saturating_add(1),
                });
                Queues {
                    jobs: Arc::new(jobs) as Arc<dyn Queue>,
                    reports: Arc::new(open(&self.reports_queue)?),
                    dead_letters: Arc::new(open(&self.dead_letter_queue)?),
                }
            }
        };
        Ok(Backends { blobs, local_blobs, queues, aws })
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
