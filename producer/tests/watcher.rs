//! The folder watcher takes a file renamed into the bucket at once — how an upload is
//! published whole — and one written in place only once it has held still for the settle
//! period (here a minute, so only a rename can start a job while the test runs).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

const PHOTO: &[u8] = include_bytes!("../../tests/fixtures/myphoto.jpg");

/// Records the source key of every job started.
#[derive(Debug, Default)]
struct Started(Mutex<Vec<String>>);

impl Started {
    fn keys(&self) -> Vec<String> {
        let mut keys = self.0.lock().expect("lock").clone();
        keys.sort();
        keys
    }
}

#[async_trait::async_trait]
impl Orchestrator for Started {
    async fn start(&self, job: Job) -> Result<(), OrchestratorError> {
        self.0.lock().expect("lock").push(job.source_key);
        Ok(())
    }
    async fn refuse(&self, _job: Job, error: protocol::JobError) -> Result<(), OrchestratorError> {
        Err(OrchestratorError::new(format!("nothing is refused in this test: {error}")))
    }
    async fn get(&self, _job_id: &str) -> Result<Option<JobRecord>, OrchestratorError> {
        Ok(None)
    }
    async fn list(&self, _limit: usize) -> Result<Vec<JobRecord>, OrchestratorError> {
        Ok(Vec::new())
    }
}

async fn until_started(started: &Started, want: &[&str]) -> Duration {
    let begun = Instant::now();
    while started.keys() != want {
        assert!(begun.elapsed() < Duration::from_secs(10), "started {:?}, want {want:?}", started.keys());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    begun.elapsed()
}

/// A data folder with an `original` bucket, an intake that records the jobs it starts, and the
/// database a watcher records in.
struct Setup {
    data: TempDir,
    dir: std::path::PathBuf,
    started: Arc<Started>,
    intake: Intake,
    db: Db,
}

fn setup() -> Setup {
    let data = TempDir::new().expect("data dir");
    let store = LocalBlobStore::new(data.path());
    store.create_bucket("original").expect("bucket");
    let dir = store.bucket_dir("original");
    let started = Arc::new(Started::default());
    let intake = Intake {
        orchestrator: started.clone(),
        blobs: Arc::new(store),
        buckets: Buckets::new(&["original"], &["resized"]),
        sidecar: false,
        metadata: MetadataPolicy::Strip,
    };
    let db = Db::open(&data.path().join("imgpipe.db")).expect("db");
    Setup { data, dir, started, intake, db }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renamed_file_is_taken_at_once_and_a_written_one_waits_to_settle() {
    let Setup { data, dir, started, intake, db } = setup();
    let staging = data.path().join("staging");
    std::fs::create_dir_all(staging.join("album")).expect("staging");
    let mut watcher = FolderWatcher::new(&db, dir.clone(), "original", "resized", intake).expect("watcher");
    watcher.settle = Duration::from_secs(60);
    watcher.interval = Duration::from_millis(50);
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(watcher.run(shutdown.clone()));
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Written in place (and closed): it may be written again, so it waits for the settle period.
    std::fs::write(dir.join("written.jpg"), PHOTO).expect("write");
    // Renamed in from outside the bucket: taken at once.
    std::fs::write(staging.join("upload.jpg"), PHOTO).expect("stage");
    std::fs::rename(staging.join("upload.jpg"), dir.join("upload.jpg")).expect("rename in");
    let took = until_started(&started, &["upload.jpg"]).await;
    assert!(took < Duration::from_secs(5), "a renamed file waited {took:?}");

    // Renamed within the bucket from an in-progress name, and a folder renamed in.
    std::fs::write(dir.join("inside.jpg.part"), PHOTO).expect("part");
    std::fs::rename(dir.join("inside.jpg.part"), dir.join("inside.jpg")).expect("rename within");
    for name in ["a.jpg", "b.jpg"] {
        std::fs::write(staging.join("album").join(name), PHOTO).expect("album");
    }
    std::fs::rename(staging.join("album"), dir.join("album")).expect("folder in");
    until_started(&started, &["album/a.jpg", "album/b.jpg", "inside.jpg", "upload.jpg"]).await;

    // The same file renamed out and back in is the same upload: no second job.
    std::fs::rename(dir.join("upload.jpg"), staging.join("upload.jpg")).expect("out");
    std::fs::rename(staging.join("upload.jpg"), dir.join("upload.jpg")).expect("back");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(started.keys(), ["album/a.jpg", "album/b.jpg", "inside.jpg", "upload.jpg"], "no job twice");
    assert!(!started.keys().contains(&"written.jpg".to_owned()), "a file written in place waits to settle");
    shutdown.cancel();
    run.await.expect("watcher");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_written_file_starts_once_again_only_when_replaced_and_never_when_another_writer_recorded_it() {
    let Setup { data: _data, dir, started, intake, db } = setup();
    let watcher = |intake: Intake| {
        let mut watcher = FolderWatcher::new(&db, dir.clone(), "original", "resized", intake).expect("watcher");
        watcher.settle = Duration::from_millis(100);
        watcher.interval = Duration::from_millis(20);
        let shutdown = CancellationToken::new();
        (tokio::spawn(watcher.run(shutdown.clone())), shutdown)
    };
    let (run, shutdown) = watcher(intake.clone());

    std::fs::write(dir.join("a.jpg"), PHOTO).expect("write");
    until_started(&started, &["a.jpg"]).await;
    // Written and recorded by another process (`imgpipe submit` does this): not started here.
    std::fs::write(dir.join("b.jpg"), PHOTO).expect("write");
    producer::watcher::mark_submitted(&db, "original", "b.jpg", &dir.join("b.jpg"), "job-b").await.expect("mark");
    // Scans that find nothing new start nothing.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(started.keys(), ["a.jpg"]);

    // New content under the same name is a new upload.
    let mut replaced = PHOTO.to_vec();
    replaced.push(0);
    std::fs::write(dir.join("a.jpg"), &replaced).expect("replace");
    until_started(&started, &["a.jpg", "a.jpg"]).await;
    shutdown.cancel();
    run.await.expect("watcher");

    // A restarted watcher knows what was submitted before it.
    let (run, shutdown) = watcher(intake);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(started.keys(), ["a.jpg", "a.jpg"]);
    shutdown.cancel();
    run.await.expect("watcher");
}
