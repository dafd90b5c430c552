//! A key is logged escaped: a file name holding a newline cannot forge a log line.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pipeline_core::blob::local::LocalBlobStore;
use pipeline_core::orchestration::{Orchestrator, OrchestratorError};
use pipeline_core::sqlite::Db;
use producer::intake::Intake;
use producer::watcher::FolderWatcher;
use protocol::intake::Buckets;
use protocol::job::JobRecord;
use protocol::message::Job;
use protocol::metadata::MetadataPolicy;
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

#[derive(Debug)]
struct NoJobs;

#[async_trait::async_trait]
impl Orchestrator for NoJobs {
    async fn start(&self, _job: Job) -> Result<(), OrchestratorError> {
        Err(OrchestratorError::new("no job may start in this test"))
    }
    async fn refuse(&self, _job: Job, _error: protocol::JobError) -> Result<(), OrchestratorError> {
        Ok(())
    }
    async fn get(&self, _job_id: &str) -> Result<Option<JobRecord>, OrchestratorError> {
        Ok(None)
    }
    async fn list(&self, _limit: usize) -> Result<Vec<JobRecord>, OrchestratorError> {
        Ok(Vec::new())
    }
}

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_newline_in_a_file_name_does_not_start_a_log_line() {
    let data = TempDir::new().expect("data dir");
    let store = LocalBlobStore::new(data.path());
    store.create_bucket("original").expect("bucket");
    let dir = store.bucket_dir("original");
    std::fs::write(dir.join("evil\nFORGED ERROR admin logged in.jpg"), b"x").expect("write");
    let intake = Intake {
        orchestrator: Arc::new(NoJobs),
        blobs: Arc::new(store),
        buckets: Buckets::new(&["original"], &["resized"]),
        sidecar: false,
        metadata: MetadataPolicy::Strip,
    };
    let db = Db::open(&data.path().join("imgpipe.db")).expect("db");
    let mut watcher = FolderWatcher::new(&db, dir, "original", "resized", intake).expect("watcher");
    watcher.settle = Duration::ZERO;
    watcher.interval = Duration::from_millis(10);

    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt().with_ansi(false).with_writer(move || writer.clone()).finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(watcher.run(shutdown.clone()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    shutdown.cancel();
    run.await.expect("watcher");

    let logs = String::from_utf8(captured.0.lock().expect("lock").clone()).expect("utf-8");
    assert!(logs.contains("input refused"), "the refusal is logged:\n{logs}");
    assert!(!logs.lines().any(|l| l.starts_with("FORGED")), "a forged line:\n{logs}");
}
