//! The workflow engine against real SQLite queues: every path of the workflow, with its
//! jobs in SQLite and in DynamoDB (on the emulator), and each store's own contract.

use std::sync::Arc;
use std::time::Duration;

use orchestrator::dead_letter;
use orchestrator::engine::Applied;
use orchestrator::{EmbeddedEngine, Queues, SqliteJobs};
use pipeline_aws::{AwsConfig, DynamoJobs};
use pipeline_core::job_store::JobStore;
use pipeline_core::orchestration::Orchestrator;
use pipeline_core::queue::sqlite::SqliteQueue;
use pipeline_core::queue::{Queue, QueueError, QueueStats, Received};
use pipeline_core::sqlite::Db;
use protocol::dead_letter::DeadLetter;
use protocol::job::JobState;
use protocol::message::{Job, Output, Report, ReportKind};
use protocol::time::ManualClock;
use protocol::workflow::Policy;
use protocol::workflow::{Jitter, RetryPolicy};
use protocol::{JobError, Rendition};
use tempfile::TempDir;

struct Rig {
    _dir: TempDir,
    /// The engine's time: these tests move it instead of sleeping.
    clock: Arc<ManualClock>,
    engine: EmbeddedEngine,
    jobs: Arc<dyn Queue>,
    dlq: Arc<dyn Queue>,
}

/// Where a rig's engine keeps its jobs.
#[derive(Clone, Copy, Debug)]
enum Store {
    Sqlite,
    DynamoDb,
}

/// A new, empty table on the emulator.
async fn dynamodb_jobs() -> DynamoJobs {
    let endpoint = std::env::var("IMGPIPE_TEST_AWS_ENDPOINT")
        .expect("IMGPIPE_TEST_AWS_ENDPOINT: start the emulator with eval \"$(scripts/moto.sh start)\"");
    let aws = AwsConfig::for_endpoint(&endpoint).await;
    let table = format!("jobs-{}", uuid::Uuid::new_v4().simple());
    let store = DynamoJobs::new(aws.dynamodb_client(), table);
    store.create_table().await.expect("table");
    store
}

/// The store `store` names: SQLite in `db`, or a new DynamoDB table.
async fn job_store(store: Store, db: &Db) -> Arc<dyn JobStore> {
    match store {
        Store::Sqlite => Arc::new(SqliteJobs::open(db).expect("tables")),
        Store::DynamoDb => Arc::new(dynamodb_jobs().await),
    }
}

/// Runs each scenario with its jobs in SQLite and in DynamoDB.
macro_rules! on_each_store {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(super::Store::Sqlite).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn dynamodb() {
                super::$name(super::Store::DynamoDb).await;
            }
        }
    )*};
}

on_each_store!(
    success_path_records_outputs_and_history,
    retryable_failures_back_off_with_growing_delays_then_succeed,
    permanent_failure_dead_letters_with_history_and_redrive_restarts,
    retryable_failures_dead_letter_once_attempts_are_spent,
    a_silent_worker_is_lost_and_the_job_retried,
    heartbeats_cannot_keep_an_attempt_alive_past_the_task_timeout,
    the_engine_passes_the_orchestrator_suite,
    a_second_start_under_a_used_id_is_a_conflict_not_an_outage,
    after_a_pause_waiting_reports_are_applied_before_any_attempt_is_judged_lost,
    a_dead_letter_that_cannot_be_sent_does_not_hold_back_the_next_one,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_job_store() {
    let dir = TempDir::new().expect("tempdir");
    let db = Db::open(&dir.path().join("imgpipe.db")).expect("db");
    pipeline_core::conformance::job_store(Arc::new(SqliteJobs::open(&db).expect("tables")), "sqlite").await;
}

async fn rig(store: Store, config: Policy) -> Rig {
    rig_with_dlq(store, config, |dlq| dlq).await
}

/// A rig whose engine sends dead letters through `wrap(dlq)`.
async fn rig_with_dlq(store: Store, config: Policy, wrap: impl FnOnce(Arc<dyn Queue>) -> Arc<dyn Queue>) -> Rig {
    let dir = TempDir::new().expect("tempdir");
    let db = Db::open(&dir.path().join("imgpipe.db")).expect("db");
    let q = |name: &str| Arc::new(SqliteQueue::open(&db, name).expect("queue")) as Arc<dyn Queue>;
    let (jobs, dlq) = (q("jobs"), q("dlq"));
    let queues = Queues { jobs: Arc::clone(&jobs), reports: q("reports"), dead_letters: wrap(Arc::clone(&dlq)) };
    let clock = Arc::new(ManualClock::new(1_800_000_000_000));
    let engine = EmbeddedEngine::new(job_store(store, &db).await, queues, config).with_clock(clock.clone());
    Rig { _dir: dir, clock, engine, jobs, dlq }
}

fn fast_retries(max_attempts: u32) -> Policy {
    Policy {
        retry: RetryPolicy {
            max_attempts,
            interval: Duration::from_millis(100),
            backoff_rate: 2.0,
            max_delay: Duration::from_secs(5),
            jitter: Jitter::None,
        },
        ..Policy::default()
    }
}

async fn take_job(q: &dyn Queue) -> Job {
    let m = q.receive(1, Duration::from_secs(3), Duration::from_secs(30)).await.expect("receive").pop().expect("a job");
    q.delete(&m.receipt).await.expect("delete");
    Job::from_json(&m.body).expect("job body")
}

fn new_job() -> Job {
    Job::new("original", "a/photo.jpg", "resized", vec![Rendition::thumbnail()])
}

fn output(job: &Job) -> Output {
    pipeline_core::conformance::sample_output(job)
}

fn states(record: &protocol::job::JobRecord) -> Vec<String> {
    record.history.iter().map(|h| h.state.to_string()).collect()
}

async fn success_path_records_outputs_and_history(store: Store) {
    let r = rig(store, Policy::default()).await;
    r.engine.submit(new_job()).await.expect("submit");
    let job = take_job(r.jobs.as_ref()).await;
    assert_eq!(job.attempt, 1);
    let done = Report::new(&job, ReportKind::Succeeded { outputs: vec![output(&job)], metadata: None });
    assert_eq!(r.engine.apply_report(done.clone()).await.expect("apply"), Applied::Moved(JobState::Success));
    // A report delivered twice changes nothing.
    assert!(matches!(r.engine.apply_report(done).await.expect("apply"), Applied::Ignored(_)));
    let rec = r.engine.get(&job.job_id).await.expect("get").expect("record");
    assert_eq!(rec.state, JobState::Success);
    assert_eq!(rec.outputs, vec![output(&job)]);
    assert_eq!(states(&rec), ["ProcessImage", "CheckResult", "Success"]);
}

async fn retryable_failures_back_off_with_growing_delays_then_succeed(store: Store) {
    let r = rig(store, fast_retries(4)).await;
    r.engine.submit(new_job()).await.expect("submit");
    let mut delays = Vec::new();
    for attempt in 1..=2 {
        let job = take_job(r.jobs.as_ref()).await;
        assert_eq!(job.attempt, attempt);
        let fail = Report::new(&job, ReportKind::Failed { error: JobError::retryable("Throttled", "slow down") });
        assert_eq!(r.engine.apply_report(fail).await.expect("apply"), Applied::Moved(JobState::Retry));
        // Not sent again before the backoff passes.
        r.engine.tick().await.expect("tick");
        assert_eq!(r.jobs.stats().await.expect("stats").visible, 0, "retry waits for its backoff");
        let rec = r.engine.get(&job.job_id).await.expect("get").expect("record");
        delays.push(rec.history.last().and_then(|h| h.delay_ms).expect("retry delay recorded"));
        // Exactly at the end of its backoff, and not a millisecond before, the retry starts.
        r.clock.advance(Duration::from_millis(delays[delays.len() - 1] - 1));
        r.engine.tick().await.expect("tick");
        assert_eq!(r.jobs.stats().await.expect("stats").visible, 0, "a millisecond early");
        r.clock.advance(Duration::from_millis(1));
        r.engine.tick().await.expect("tick");
    }
    assert_eq!(delays, [100, 200], "exponential backoff");
    let job = take_job(r.jobs.as_ref()).await;
    assert_eq!(job.attempt, 3);
    let ok = Report::new(&job, ReportKind::Succeeded { outputs: vec![output(&job)], metadata: None });
    r.engine.apply_report(ok).await.expect("apply");
    let rec = r.engine.get(&job.job_id).await.expect("get").expect("record");
    assert_eq!((rec.state, rec.attempts), (JobState::Success, 3));
    assert_eq!(
        states(&rec),
        [
            "ProcessImage",
            "CheckResult",
            "Retry",
            "ProcessImage",
            "CheckResult",
            "Retry",
            "ProcessImage",
            "CheckResult",
            "Success"
        ]
    );
}

async fn permanent_failure_dead_letters_with_history_and_redrive_restarts(store: Store) {
    let r = rig(store, fast_retries(4)).await;
    r.engine.submit(new_job()).await.expect("submit");
    let job = take_job(r.jobs.as_ref()).await;
    let fail = Report::new(&job, ReportKind::Failed { error: JobError::permanent("NotAnImage", "text file") });
    assert_eq!(r.engine.apply_report(fail).await.expect("apply"), Applied::Moved(JobState::DeadLetter));
    let rec = r.engine.get(&job.job_id).await.expect("get").expect("record");
    assert_eq!((rec.state, rec.attempts), (JobState::Fail, 1), "one attempt, no retry");
    assert_eq!(states(&rec), ["ProcessImage", "CheckResult", "DeadLetter", "Fail"]);

    let items = dead_letter::list(r.dlq.as_ref()).await.expect("list");
    assert_eq!(items.len(), 1);
    let letter = items[0].letter.as_ref().expect("readable");
    assert_eq!((letter.job.job_id.as_str(), letter.error.code.as_str()), (job.job_id.as_str(), "NotAnImage"));
    assert_eq!(letter.history.len(), 3, "the history up to DeadLetter travels with it");
    // Listing neither loses nor hides the message.
    assert_eq!(dead_letter::list(r.dlq.as_ref()).await.expect("list again").len(), 1);

    let redriven = dead_letter::redrive(r.dlq.as_ref(), std::slice::from_ref(&job.job_id), |letter| {
        let engine = &r.engine;
        async move { engine.redrive(&letter).await }
    })
    .await
    .expect("redrive");
    assert_eq!(redriven.len(), 1);
    assert!(dead_letter::list(r.dlq.as_ref()).await.expect("list").is_empty());
    let again = take_job(r.jobs.as_ref()).await;
    assert_eq!((again.job_id.as_str(), again.attempt), (job.job_id.as_str(), 1));
    let ok = Report::new(&again, ReportKind::Succeeded { outputs: vec![output(&again)], metadata: None });
    r.engine.apply_report(ok).await.expect("apply");
    let rec = r.engine.get(&job.job_id).await.expect("get").expect("record");
    assert_eq!(rec.state, JobState::Success);
    assert!(rec.history.iter().any(|h| h.note.as_deref() == Some("redriven from the dead-letter queue")));
}

async fn retryable_failures_dead_letter_once_attempts_are_spent(store: Store) {
    let r = rig(store, fast_retries(2)).await;
    r.engine.submit(new_job()).await.expect("submit");
    for _ in 0..2 {
        let job = take_job(r.jobs.as_ref()).await;
        let fail = Report::new(&job, ReportKind::Failed { error: JobError::retryable("Timeout", "slow") });
        r.engine.apply_report(fail).await.expect("apply");
        r.clock.advance(Duration::from_millis(150));
        r.engine.tick().await.expect("tick");
    }
    let items = dead_letter::list(r.dlq.as_ref()).await.expect("list");
    let letter = items[0].letter.as_ref().expect("readable");
    assert_eq!(letter.attempts, 2);
    assert!(letter.error.message.contains("after 2 attempts"), "{}", letter.error.message);
}

async fn a_silent_worker_is_lost_and_the_job_retried(store: Store) {
    let config = Policy {
        queue_timeout: Duration::from_millis(300),
        task_timeout: Duration::from_secs(5),
        heartbeat_timeout: Duration::from_millis(400),
        ..fast_retries(3)
    };
    let r = rig(store, config).await;
    r.engine.submit(new_job()).await.expect("submit");
    let job = take_job(r.jobs.as_ref()).await;
    // A heartbeat replaces the queue deadline by the heartbeat deadline.
    r.clock.advance(Duration::from_millis(200));
    assert_eq!(r.engine.apply_report(Report::new(&job, ReportKind::Heartbeat)).await.expect("hb"), Applied::Extended);
    // Past the queue deadline (300 ms) but within the heartbeat's (200 + 400 ms).
    r.clock.advance(Duration::from_millis(399));
    r.engine.tick().await.expect("tick");
    assert_eq!(r.engine.get(&job.job_id).await.expect("get").expect("rec").state, JobState::ProcessImage);
    // Then silence to the heartbeat deadline.
    r.clock.advance(Duration::from_millis(1));
    r.engine.tick().await.expect("tick");
    let rec = r.engine.get(&job.job_id).await.expect("get").expect("rec");
    assert_eq!(rec.state, JobState::Retry);
    assert_eq!(rec.error.as_ref().map(|e| e.code.as_str()), Some("WorkerLost"));
    // A late failure report of the lost attempt is ignored.
    let late = Report::new(&job, ReportKind::Failed { error: JobError::permanent("NotAnImage", "late") });
    assert!(matches!(r.engine.apply_report(late).await.expect("apply"), Applied::Ignored(_)));
    r.clock.advance(Duration::from_millis(100));
    r.engine.tick().await.expect("tick");
    assert_eq!(take_job(r.jobs.as_ref()).await.attempt, 2);
}

async fn heartbeats_cannot_keep_an_attempt_alive_past_the_task_timeout(store: Store) {
    let config = Policy {
        queue_timeout: Duration::from_secs(60),
        task_timeout: Duration::from_millis(500),
        heartbeat_timeout: Duration::from_millis(300),
        ..fast_retries(3)
    };
    let r = rig(store, config).await;
    r.engine.submit(new_job()).await.expect("submit");
    let job = take_job(r.jobs.as_ref()).await;
    // A hung job whose worker keeps heartbeating.
    for _ in 0..8 {
        r.engine.apply_report(Report::new(&job, ReportKind::Heartbeat)).await.expect("hb");
        r.clock.advance(Duration::from_millis(100));
        r.engine.tick().await.expect("tick");
    }
    let rec = r.engine.get(&job.job_id).await.expect("get").expect("rec");
    let lost = rec.history.iter().find(|h| h.error.as_ref().is_some_and(|e| e.code == "WorkerLost"));
    assert_eq!(lost.map(|h| h.attempt), Some(1), "lost once the task timeout passed, heartbeats or not");
    // The first heartbeat came at 0 ms: the attempt is lost at the 500 ms tick, exactly.
    assert_eq!(lost.map(|h| h.at.clone()), Some(protocol::time::rfc3339(1_800_000_000_500)));
}

#[tokio::test]
async fn dlq_reads_messages_moved_by_the_queue_and_keeps_unreadable_ones() {
    let r = rig(Store::Sqlite, Policy::default()).await;
    let job = new_job();
    r.dlq.send(&job.to_json(), Duration::ZERO).await.expect("send");
    r.dlq.send("garbage", Duration::ZERO).await.expect("send");
    let items = dead_letter::list(r.dlq.as_ref()).await.expect("list");
    assert_eq!(items.len(), 2);
    let moved = items.iter().find_map(|i| i.letter.as_ref().ok()).expect("the job");
    assert_eq!(moved.error.code, "MaxReceiveCountExceeded");
    assert!(items.iter().any(|i| i.letter.is_err() && i.body == "garbage"));
    // Redrive all: the job restarts, the unreadable message stays for an operator.
    let redriven = dead_letter::redrive(r.dlq.as_ref(), &[], |letter| {
        let engine = &r.engine;
        async move { engine.redrive(&letter).await }
    })
    .await
    .expect("redrive");
    assert_eq!(redriven.len(), 1);
    let left = dead_letter::list(r.dlq.as_ref()).await.expect("list");
    assert_eq!(left.len(), 1);
    assert!(DeadLetter::parse(&left[0].body, 1).is_err());
    assert_eq!(r.engine.get(&job.job_id).await.expect("get").expect("recorded").state, JobState::ProcessImage);
    assert_eq!(dead_letter::purge(r.dlq.as_ref()).await.expect("purge"), 1);
    assert!(dead_letter::list(r.dlq.as_ref()).await.expect("list").is_empty());
}

async fn the_engine_passes_the_orchestrator_suite(store: Store) {
    let dir = TempDir::new().expect("tempdir");
    let db = Db::open(&dir.path().join("imgpipe.db")).expect("db");
    let q = |name: &str| Arc::new(SqliteQueue::open(&db, name).expect("queue")) as Arc<dyn Queue>;
    let (jobs, reports) = (q("jobs"), q("reports"));
    let queues = Queues { jobs: Arc::clone(&jobs), reports: Arc::clone(&reports), dead_letters: q("dlq") };
    let engine = EmbeddedEngine::new(job_store(store, &db).await, queues, fast_retries(3));
    let shutdown = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn({
        let (engine, shutdown) = (engine.clone(), shutdown.clone());
        async move { engine.run(shutdown).await }
    });
    let reporter = pipeline_core::report::QueueReporter::new(reports);
    pipeline_core::conformance::orchestrator_and_reporter(&engine, jobs.as_ref(), &reporter).await;
    shutdown.cancel();
    running.await.expect("the engine stopped");
}

async fn a_second_start_under_a_used_id_is_a_conflict_not_an_outage(store: Store) {
    let r = rig(store, Policy::default()).await;
    let job = new_job();
    r.engine.start(job.clone()).await.expect("started");
    let err = r.engine.start(job).await.expect_err("the id is taken");
    assert!(err.conflict, "intake answers 409, not 503: {err}");
}

/// A queue that answers its first receives with nothing, as SQS may while messages wait,
/// and refuses to send bodies that contain `refuse` (a letter it cannot take).
#[derive(Debug)]
struct Sampling {
    inner: Arc<dyn Queue>,
    empty_answers: std::sync::atomic::AtomicU32,
    refuse: Option<&'static str>,
}

#[async_trait::async_trait]
impl Queue for Sampling {
    fn name(&self) -> &str {
        self.inner.name()
    }
    async fn send(&self, body: &str, delay: Duration) -> Result<String, QueueError> {
        if self.refuse.is_some_and(|marker| body.contains(marker)) {
            return Err(QueueError::Invalid("this letter is refused".into()));
        }
        self.inner.send(body, delay).await
    }
    async fn receive(&self, max: usize, wait: Duration, visibility: Duration) -> Result<Vec<Received>, QueueError> {
        let left = self.empty_answers.load(std::sync::atomic::Ordering::SeqCst);
        if left > 0 {
            self.empty_answers.store(left - 1, std::sync::atomic::Ordering::SeqCst);
            return Ok(Vec::new());
        }
        self.inner.receive(max, wait, visibility).await
    }
    async fn delete(&self, receipt: &str) -> Result<(), QueueError> {
        self.inner.delete(receipt).await
    }
    async fn change_visibility(&self, receipt: &str, timeout: Duration) -> Result<(), QueueError> {
        self.inner.change_visibility(receipt, timeout).await
    }
    async fn purge(&self) -> Result<u64, QueueError> {
        self.inner.purge().await
    }
    async fn stats(&self) -> Result<QueueStats, QueueError> {
        self.inner.stats().await
    }
}

#[tokio::test]
async fn a_dlq_listing_keeps_reading_while_the_queue_counts_messages_and_tells_of_those_in_flight() {
    let r = rig(Store::Sqlite, Policy::default()).await;
    r.dlq.send(&new_job().to_json(), Duration::ZERO).await.expect("send");
    r.dlq.send(&new_job().to_json(), Duration::ZERO).await.expect("send");
    let sampling = Sampling { inner: Arc::clone(&r.dlq), empty_answers: 3.into(), refuse: None };
    let survey = dead_letter::survey(&sampling).await.expect("survey");
    assert_eq!((survey.items.len(), survey.in_flight_elsewhere), (2, 0), "empty answers are not an empty queue");

    // One letter held by someone else (a redrive in progress) is counted, not listed, not lost.
    let held = r.dlq.receive(1, Duration::ZERO, Duration::from_secs(60)).await.expect("receive");
    assert_eq!(held.len(), 1);
    let survey = dead_letter::survey(r.dlq.as_ref()).await.expect("survey");
    assert_eq!((survey.items.len(), survey.in_flight_elsewhere), (1, 1));
}

/// The embedded queue answers a poll from its one database, so a listing need not wait out a
/// long poll to know it has read everything (the clock is paused: only a wait moves it).
#[tokio::test(start_paused = true)]
async fn an_embedded_dlq_listing_ends_without_waiting_for_more_letters() {
    let r = rig(Store::Sqlite, Policy::default()).await;
    r.dlq.send(&new_job().to_json(), Duration::ZERO).await.expect("send");
    let started = tokio::time::Instant::now();
    let survey = dead_letter::survey(r.dlq.as_ref()).await.expect("survey");
    assert_eq!(survey.items.len(), 1);
    assert_eq!(started.elapsed(), Duration::ZERO, "the scan waited for letters that could not come");
    // The queue wrapped so it no longer says so waits as SQS needs, and still reads it all.
    let sampling = Sampling { inner: Arc::clone(&r.dlq), empty_answers: 0.into(), refuse: None };
    let started = tokio::time::Instant::now();
    assert_eq!(dead_letter::survey(&sampling).await.expect("survey").items.len(), 1);
    assert!(started.elapsed() >= Duration::from_secs(1), "a sampled queue is polled for at least a second");
}

async fn after_a_pause_waiting_reports_are_applied_before_any_attempt_is_judged_lost(store: Store) {
    let r = rig(store, Policy::default()).await;
    let mut running = Vec::new();
    for i in 0..13 {
        let job = Job::new("original", format!("p{i}.jpg"), "resized", vec![Rendition::thumbnail()]);
        r.engine.submit(job).await.expect("submit");
        let job = take_job(r.jobs.as_ref()).await;
        r.engine.apply_report(Report::new(&job, ReportKind::Heartbeat)).await.expect("first heartbeat");
        running.push(job);
    }
    // The engine stalls past the heartbeat timeout while its workers carry on: twelve results
    // and the last job's heartbeat wait in the queue, more than one read takes.
    r.clock.advance(Policy::default().heartbeat_timeout + Duration::from_secs(1));
    let reports = &r.engine.queues().reports;
    let (last, done) = running.split_last().expect("jobs");
    for job in done {
        let report = Report::new(job, ReportKind::Succeeded { outputs: vec![output(job)], metadata: None });
        reports.send(&report.to_json(), Duration::ZERO).await.expect("send");
    }
    reports.send(&Report::new(last, ReportKind::Heartbeat).to_json(), Duration::ZERO).await.expect("send");

    let shutdown = tokio_util::sync::CancellationToken::new();
    let engine = r.engine.clone();
    let run = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { engine.run(shutdown).await }
    });
    for _ in 0..100 {
        if reports.stats().await.expect("stats").visible == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    shutdown.cancel();
    run.await.expect("engine loop");
    for job in done {
        let rec = r.engine.get(&job.job_id).await.expect("get").expect("record");
        assert_eq!((rec.state, rec.attempts), (JobState::Success, 1), "{}: {:?}", job.job_id, states(&rec));
    }
    let rec = r.engine.get(&last.job_id).await.expect("get").expect("record");
    assert_eq!((rec.state, rec.attempts), (JobState::ProcessImage, 1), "its heartbeat arrived: {:?}", states(&rec));
    assert!(rec.history.iter().all(|h| h.error.is_none()), "never judged lost: {:?}", rec.history);
}

async fn a_dead_letter_that_cannot_be_sent_does_not_hold_back_the_next_one(store: Store) {
    let refusing =
        |dlq| Arc::new(Sampling { inner: dlq, empty_answers: 0.into(), refuse: Some("stuck.jpg") }) as Arc<dyn Queue>;
    let r = rig_with_dlq(store, Policy::default(), refusing).await;
    let bad = JobError::permanent("NotAnImage", "text");
    let mut ids = Vec::new();
    for key in ["stuck.jpg", "next.jpg"] {
        let job = Job::new("original", key, "resized", vec![Rendition::thumbnail()]);
        r.engine.start(job).await.expect("start");
        let taken = take_job(r.jobs.as_ref()).await;
        r.engine.apply_report(Report::new(&taken, ReportKind::Failed { error: bad.clone() })).await.expect("apply");
        ids.push(taken.job_id);
    }
    // The older letter cannot be sent; the newer one went out all the same.
    assert_eq!(r.engine.get(&ids[0]).await.expect("get").expect("job").state, JobState::DeadLetter);
    assert_eq!(r.engine.get(&ids[1]).await.expect("get").expect("job").state, JobState::Fail);
    let listed = dead_letter::list(r.dlq.as_ref()).await.expect("list");
    assert_eq!(listed.len(), 1);
    assert!(listed[0].matches(&ids[1]));
    // And a timer pass keeps trying the stuck one without failing the others.
    assert!(r.engine.tick().await.is_err(), "the refused send is reported");
}
