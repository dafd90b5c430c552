//! The long-poll loop holds more jobs than it renders: while one job waits on its report (or
//! its download or writes), the next is received and rendered, so a core never idles on
//! storage or the orchestrator. Local folders and SQLite queues; a reporter that holds the
//! first report until the test lets it go.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use pipeline_core::blob::local::LocalBlobStore;
use pipeline_core::blob::{BlobStore, PutOptions};
use pipeline_core::queue::Queue;
use pipeline_core::queue::sqlite::SqliteQueue;
use pipeline_core::report::{ReportError, Reporter};
use pipeline_core::sqlite::Db;
use protocol::message::{Job, Processed};
use protocol::{JobError, Rendition};
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;
use worker::faults::Faults;
use worker::image::{Limits, MemoryBudget};
use worker::{RenderSlots, Runner, RunnerConfig, WorkerDeps};

const PHOTO: &[u8] = include_bytes!("../../tests/fixtures/myphoto.jpg");

/// Counts the reports begun; the first one waits for a permit of `release`.
#[derive(Debug)]
struct HeldFirstReport {
    begun: watch::Sender<usize>,
    calls: AtomicUsize,
    release: Semaphore,
}

#[async_trait]
impl Reporter for HeldFirstReport {
    async fn heartbeat(&self, _job: &Job) -> Result<(), ReportError> {
        Ok(())
    }

    async fn finish(&self, _job: &Job, outcome: &Result<Processed, JobError>) -> Result<(), ReportError> {
        assert!(outcome.is_ok(), "the job succeeds: {outcome:?}");
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        self.begun.send_replace(n);
        if n == 1 {
            let _ = self.release.acquire().await.map(|p| p.forget());
        }
        Ok(())
    }
}

/// What one render slot on `blobs` needs.
fn one_render(blobs: Arc<LocalBlobStore>) -> WorkerDeps {
    WorkerDeps {
        blobs,
        limits: Limits::default(),
        budget: MemoryBudget::unlimited(),
        cache_control: None,
        faults: Faults::default(),
        renders: RenderSlots::new(1),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_is_rendered_while_another_waits_on_its_report() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(&dir.path().join("imgpipe.db")).expect("db");
    let blobs = Arc::new(LocalBlobStore::new(dir.path()));
    let jobs = Arc::new(SqliteQueue::open(&db, "jobs").expect("jobs"));
    for key in ["a.jpg", "b.jpg"] {
        blobs.put("original", key, PHOTO.to_vec().into(), &PutOptions::default()).await.expect("put");
        let job = Job::new("original", key, "resized", vec![Rendition::thumbnail()]);
        jobs.send(&job.to_json(), Duration::ZERO).await.expect("send");
    }
    let (begun, mut watch_begun) = watch::channel(0);
    let reporter = Arc::new(HeldFirstReport { begun, calls: AtomicUsize::new(0), release: Semaphore::new(0) });
    let runner = Runner {
        jobs: jobs.clone(),
        dead_letters: Arc::new(SqliteQueue::open(&db, "dlq").expect("dlq")),
        reporter: reporter.clone(),
        deps: Arc::new(one_render(blobs.clone())),
        config: RunnerConfig { concurrency: 1, poll_wait: Duration::from_millis(200), ..RunnerConfig::default() },
    };
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(runner.run(shutdown.clone()));

    // One render slot: the second job is received, rendered, written and reported while the
    // first job's report is still held.
    let second = tokio::time::timeout(Duration::from_secs(30), watch_begun.wait_for(|&n| n >= 2)).await;
    assert!(second.is_ok(), "the second job waited for the first one's report");
    for key in ["a_thumbnail.jpg", "b_thumbnail.jpg"] {
        let out = blobs.get("resized", &format!("resized/{key}"), 1 << 20).await.expect("output written");
        assert!(out.body.starts_with(&[0xFF, 0xD8]), "{key} is a JPEG");
    }
    reporter.release.add_permits(1);
    let drained = tokio::time::timeout(Duration::from_secs(30), async {
        while jobs.stats().await.map_or(true, |s| s.visible + s.in_flight > 0) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(drained.is_ok(), "both messages deleted once reported");
    shutdown.cancel();
    running.await.expect("the loop stops");
}

/// On the SQLite queue a worker polls in short waits, so one asked to stop goes at once
/// rather than after the long poll it would keep on SQS (the clock is paused: only waits
/// move it).
#[tokio::test(start_paused = true)]
async fn an_idle_worker_on_a_local_queue_stops_without_waiting_out_its_long_poll() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(&dir.path().join("imgpipe.db")).expect("db");
    let reporter = Arc::new(HeldFirstReport {
        begun: watch::channel(0).0,
        calls: AtomicUsize::new(0),
        release: Semaphore::new(0),
    });
    let runner = Runner {
        jobs: Arc::new(SqliteQueue::open(&db, "jobs").expect("jobs")),
        dead_letters: Arc::new(SqliteQueue::open(&db, "dlq").expect("dlq")),
        reporter,
        deps: Arc::new(one_render(Arc::new(LocalBlobStore::new(dir.path())))),
        config: RunnerConfig { concurrency: 1, poll_wait: Duration::from_secs(20), ..RunnerConfig::default() },
    };
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(runner.run(shutdown.clone()));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let asked = tokio::time::Instant::now();
    shutdown.cancel();
    running.await.expect("the loop stops");
    assert!(asked.elapsed() <= Duration::from_millis(250), "stopped {:?} after it was asked", asked.elapsed());
}
