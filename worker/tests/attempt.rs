//! The one attempt every adapter makes, driven directly: an unreadable body, a poison
//! message, a retryable failure, a report that cannot be delivered, a hard stop, and the
//! lease renewed at each heartbeat. Local folders and SQLite queues; a recording reporter.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use pipeline_core::blob::local::LocalBlobStore;
use pipeline_core::blob::{BlobStore, PutOptions};
use pipeline_core::queue::Queue;
use pipeline_core::queue::sqlite::SqliteQueue;
use pipeline_core::report::{ReportError, Reporter};
use pipeline_core::sqlite::Db;
use protocol::message::{Job, Processed};
use protocol::{ErrorClass, JobError, Rendition};
use tokio_util::sync::CancellationToken;
use worker::attempt::{Attempts, Delivery, Disposition, Hold, Lease};
use worker::faults::Faults;
use worker::image::{Limits, MemoryBudget};
use worker::{RenderSlots, WorkerDeps};

const PHOTO: &[u8] = include_bytes!("../../tests/fixtures/myphoto.jpg");

/// Records what it is told; fails every delivery when `down`.
#[derive(Debug, Default)]
struct Recorder {
    finished: Mutex<Vec<Result<usize, JobError>>>,
    heartbeats: Mutex<u32>,
    down: bool,
}

#[async_trait]
impl Reporter for Recorder {
    async fn heartbeat(&self, _job: &Job) -> Result<(), ReportError> {
        *self.heartbeats.lock().expect("lock") += 1;
        Ok(())
    }

    async fn finish(&self, _job: &Job, outcome: &Result<Processed, JobError>) -> Result<(), ReportError> {
        if self.down {
            return Err(ReportError::Failed("orchestrator unreachable".into()));
        }
        self.finished.lock().expect("lock").push(outcome.as_ref().map(|p| p.outputs.len()).map_err(Clone::clone));
        Ok(())
    }
}

#[derive(Default)]
struct Renewals(Mutex<u32>);

#[async_trait]
impl Lease for Renewals {
    async fn renew(&self) {
        *self.0.lock().expect("lock") += 1;
    }
}

struct Rig {
    _dir: tempfile::TempDir,
    attempts: Attempts,
    recorder: Arc<Recorder>,
    dlq: Arc<SqliteQueue>,
}

async fn rig(faults: &str, down: bool) -> Rig {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(&dir.path().join("imgpipe.db")).expect("db");
    let blobs = Arc::new(LocalBlobStore::new(dir.path()));
    blobs.put("original", "a.jpg", PHOTO.to_vec().into(), &PutOptions::default()).await.expect("put");
    let recorder = Arc::new(Recorder { down, ..Recorder::default() });
    let dlq = Arc::new(SqliteQueue::open(&db, "dlq").expect("dlq"));
    let deps = WorkerDeps {
        blobs,
        limits: Limits::default(),
        budget: MemoryBudget::unlimited(),
        cache_control: None,
        faults: Faults::parse(faults).expect("faults"),
        renders: RenderSlots::new(1),
    };
    let attempts = Attempts {
        deps: Arc::new(deps),
        reporter: recorder.clone(),
        dead_letters: dlq.clone(),
        heartbeat_every: Duration::from_millis(100),
        max_receive_count: 5,
    };
    Rig { _dir: dir, attempts, recorder, dlq }
}

fn job() -> String {
    Job::new("original", "a.jpg", "resized", vec![Rendition::thumbnail()]).to_json()
}

fn delivery(body: &str, receive_count: u32) -> Delivery<'_> {
    Delivery { message_id: "m-1", body, receive_count: Some(receive_count), sent_at_ms: None }
}

#[tokio::test]
async fn a_job_is_processed_reported_and_deleted_with_its_lease_renewed() {
    let rig = rig("delay-ms=350", false).await;
    let lease = Renewals::default();
    let body = job();
    let hold = Hold { lease: Some(&lease), ..Hold::default() };
    assert_eq!(rig.attempts.run(delivery(&body, 1), hold).await, Disposition::Delete);
    assert_eq!(*rig.recorder.finished.lock().expect("lock"), vec![Ok(1)]);
    let renewed = *lease.0.lock().expect("lock");
    assert!(renewed >= 2, "a 350 ms job with 100 ms heartbeats renews its lease, got {renewed}");
    assert_eq!(*rig.recorder.heartbeats.lock().expect("lock"), renewed, "one heartbeat per renewal");
}

#[tokio::test]
async fn a_poison_message_is_reported_permanently_without_processing() {
    let rig = rig("crash-key=a.jpg", false).await;
    let body = job();
    assert_eq!(rig.attempts.run(delivery(&body, 6), Hold::default()).await, Disposition::Delete);
    let finished = rig.recorder.finished.lock().expect("lock").clone();
    let [Err(e)] = finished.as_slice() else { panic!("one failure, got {finished:?}") };
    assert_eq!((e.class, e.code.as_str()), (ErrorClass::Permanent, "PoisonMessage"));
}

#[tokio::test]
async fn a_retryable_failure_is_reported_and_the_message_deleted() {
    let rig = rig("fail-attempts=1", false).await;
    let body = job();
    assert_eq!(rig.attempts.run(delivery(&body, 1), Hold::default()).await, Disposition::Delete);
    let finished = rig.recorder.finished.lock().expect("lock").clone();
    let [Err(e)] = finished.as_slice() else { panic!("one failure, got {finished:?}") };
    assert_eq!((e.class, e.code.as_str()), (ErrorClass::Retryable, "InjectedFault"));
}

#[tokio::test]
async fn an_undelivered_report_goes_back_to_the_queue_with_or_without_backoff() {
    let rig = rig("", true).await;
    let body = job();
    let backoff = Hold { backoff_by_receive_count: true, ..Hold::default() };
    match rig.attempts.run(delivery(&body, 3), backoff).await {
        Disposition::Release { after, reason } => {
            assert_eq!(after, Some(Duration::from_secs(8)), "2^3 s by receive count");
            assert!(reason.contains("report not delivered"), "{reason}");
        }
        Disposition::Delete => panic!("an unreported job must come back"),
    }
    let plain = rig.attempts.run(delivery(&body, 3), Hold::default()).await;
    assert!(matches!(plain, Disposition::Release { after: None, .. }), "{plain:?}");
}

#[tokio::test]
async fn a_hard_stop_releases_the_message_at_once_unreported() {
    let rig = rig("delay-ms=10000", false).await;
    let stop = CancellationToken::new();
    let body = job();
    let hold = Hold { hard_stop: Some(&stop), ..Hold::default() };
    let stopper = stop.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        stopper.cancel();
    });
    let started = std::time::Instant::now();
    let got = rig.attempts.run(delivery(&body, 1), hold).await;
    assert!(matches!(got, Disposition::Release { after: Some(Duration::ZERO), .. }), "{got:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "it did not wait for the job");
    assert!(rig.recorder.finished.lock().expect("lock").is_empty(), "nothing is reported for a released job");
}

#[tokio::test]
async fn an_unreadable_body_goes_to_the_dead_letter_queue() {
    let rig = rig("", false).await;
    let got = rig.attempts.run(delivery("{not json", 1), Hold::default()).await;
    assert_eq!(got, Disposition::Delete);
    let moved = rig.dlq.receive(10, Duration::ZERO, Duration::from_secs(30)).await.expect("receive");
    assert_eq!(moved.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(), ["{not json"]);
    assert!(rig.recorder.finished.lock().expect("lock").is_empty());
}
