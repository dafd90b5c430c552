//! Contract suites written once and run against every backend: the local ones always,
//! the AWS ones on the emulator. Each function panics with a message on a broken rule.
//! Times are in whole seconds because SQS counts visibility and delay in seconds.
#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use protocol::job::{JobRecord, JobState};
use protocol::message::Processed;

use crate::blob::{BlobError, BlobStore, PutOptions};
use crate::orchestration::Orchestrator;
use crate::queue::{Queue, QueueError};
use crate::report::{ReportError, Reporter};

const SEC: Duration = Duration::from_secs(1);
const NO_WAIT: Duration = Duration::ZERO;

async fn drain_ids(q: &dyn Queue) -> Vec<String> {
    let mut bodies = Vec::new();
    loop {
        let got = q.receive(10, NO_WAIT, 30 * SEC).await.unwrap();
        if got.is_empty() {
            return bodies;
        }
        for m in got {
            q.delete(&m.receipt).await.unwrap();
            bodies.push(m.body);
        }
    }
}

/// Send, receive, delete; a deleted message is gone; receipts go stale on delete.
pub async fn queue_send_receive_delete(q: &dyn Queue) {
    assert!(q.receive(10, NO_WAIT, 30 * SEC).await.unwrap().is_empty(), "queue must start empty");
    for i in 0..3 {
        q.send(&format!("m{i}"), Duration::ZERO).await.unwrap();
    }
    // SQS may return fewer than are there; keep receiving until all three are in hand.
    let mut got = Vec::new();
    for _ in 0..10 {
        if got.len() >= 3 {
            break;
        }
        got.extend(q.receive(10, SEC, 30 * SEC).await.unwrap());
    }
    let mut bodies: Vec<_> = got.iter().map(|m| m.body.clone()).collect();
    bodies.sort();
    assert_eq!(bodies, ["m0", "m1", "m2"]);
    assert!(got.iter().all(|m| m.receive_count == 1));
    for m in &got {
        q.delete(&m.receipt).await.unwrap();
    }
    // Deleting again is harmless: SQS accepts the stale receipt, a stricter backend refuses it.
    assert!(matches!(q.delete(&got[0].receipt).await, Ok(()) | Err(QueueError::ReceiptInvalid)));
    assert!(q.receive(10, NO_WAIT, 30 * SEC).await.unwrap().is_empty());
    assert!(q.receive(11, NO_WAIT, SEC).await.is_err(), "batches over 10 are refused");
}

/// A received message stays hidden for its visibility timeout, then comes back with a
/// higher receive count and a new receipt; extending or releasing visibility works.
pub async fn queue_visibility(q: &dyn Queue) {
    q.send("v", Duration::ZERO).await.unwrap();
    let first = q.receive(1, SEC, 2 * SEC).await.unwrap().pop().unwrap();
    // When it was sent, for the queue-wait metric: within the last minute.
    let now = u64::try_from(protocol::time::now_ms()).unwrap();
    assert!(first.sent_at_ms.is_some_and(|t| t <= now && now - t < 60_000), "{:?}", first.sent_at_ms);
    assert!(q.receive(1, NO_WAIT, SEC).await.unwrap().is_empty(), "hidden while in flight");
    let stats = q.stats().await.unwrap();
    assert_eq!((stats.visible, stats.in_flight), (0, 1));
    let again = q.receive(1, 4 * SEC, SEC).await.unwrap().pop().expect("redelivered after the timeout");
    assert_eq!(again.message_id, first.message_id);
    assert_eq!(again.receive_count, 2);
    assert_ne!(again.receipt, first.receipt);

    // Extend: still hidden past the original timeout.
    q.change_visibility(&again.receipt, 3 * SEC).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(q.receive(1, NO_WAIT, SEC).await.unwrap().is_empty(), "extension holds");
    // Release: visible at once.
    q.change_visibility(&again.receipt, Duration::ZERO).await.unwrap();
    let third = q.receive(1, SEC, 30 * SEC).await.unwrap().pop().expect("released");
    assert_eq!(third.receive_count, 3);
    q.delete(&third.receipt).await.unwrap();
}

/// For backends that track deliveries (not SQS): the receipt of an earlier delivery and
/// the receipt of a deleted message are refused with [`QueueError::ReceiptInvalid`], and
/// the earlier receipt leaves the current delivery alone. SQS accepts both without an
/// error (and the emulator deletes the message by an earlier receipt).
pub async fn queue_stale_receipts(q: &dyn Queue) {
    q.send("s", Duration::ZERO).await.unwrap();
    let first = q.receive(1, SEC, SEC).await.unwrap().pop().unwrap();
    let again = q.receive(1, 4 * SEC, 30 * SEC).await.unwrap().pop().expect("redelivered after the timeout");
    assert!(matches!(q.delete(&first.receipt).await, Err(QueueError::ReceiptInvalid)), "old receipt is stale");
    assert!(
        matches!(q.change_visibility(&first.receipt, Duration::ZERO).await, Err(QueueError::ReceiptInvalid)),
        "old receipt cannot release the current delivery"
    );
    q.delete(&again.receipt).await.expect("the current delivery is still there");
    assert!(matches!(q.delete(&again.receipt).await, Err(QueueError::ReceiptInvalid)), "deleted receipt is stale");
}

/// Deleting several deliveries at once: more than one batch, each receipt's own result in
/// order (a receipt that names nothing is refused alone), and the deleted messages gone.
pub async fn queue_delete_many(q: &dyn Queue) {
    for i in 0..12 {
        q.send(&format!("m{i}"), Duration::ZERO).await.expect("send");
    }
    let mut receipts = Vec::new();
    while receipts.len() < 12 {
        let got = q.receive(10, SEC, 30 * SEC).await.expect("receive");
        assert!(!got.is_empty(), "all 12 arrive");
        receipts.extend(got.into_iter().map(|m| m.receipt));
    }
    receipts.push("not-a-receipt".into());
    let results = q.delete_many(&receipts).await.expect("delete many");
    assert_eq!(results.len(), 13);
    assert!(results[..12].iter().all(Result::is_ok), "{results:?}");
    assert!(matches!(results[12], Err(QueueError::ReceiptInvalid)), "{:?}", results[12]);
    assert!(q.receive(10, Duration::ZERO, SEC).await.expect("receive").is_empty());
}

/// A delayed message is invisible until its delay passes; a long poll waits for it.
pub async fn queue_delay(q: &dyn Queue) {
    q.send("later", 2 * SEC).await.unwrap();
    assert!(q.receive(1, NO_WAIT, SEC).await.unwrap().is_empty(), "not before the delay");
    assert_eq!(q.stats().await.unwrap().delayed, 1);
    let got = q.receive(1, 5 * SEC, 30 * SEC).await.unwrap();
    assert_eq!(got.len(), 1, "a long poll returns the message once its delay passes");
    q.delete(&got[0].receipt).await.unwrap();
}

/// A long poll returns as soon as a message arrives, not at the end of its wait.
pub async fn queue_long_poll(q: Arc<dyn Queue>) {
    let sender = Arc::clone(&q);
    let send = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        sender.send("wake", Duration::ZERO).await.unwrap();
    });
    let started = std::time::Instant::now();
    let got = q.receive(1, 10 * SEC, 30 * SEC).await.unwrap();
    assert_eq!(got.len(), 1);
    assert!(started.elapsed() < 5 * SEC, "long poll returned after {:?}", started.elapsed());
    q.delete(&got[0].receipt).await.unwrap();
    send.await.unwrap();
}

/// With a redrive policy of `max_receive_count`, a message received that many times
/// without being deleted moves to `dlq` on the next receive.
pub async fn queue_redrive(q: &dyn Queue, dlq: &dyn Queue, max_receive_count: u32) {
    q.send("poison", Duration::ZERO).await.unwrap();
    for n in 1..=max_receive_count {
        let m = q.receive(1, 3 * SEC, SEC).await.unwrap().pop().unwrap_or_else(|| panic!("delivery {n}"));
        assert_eq!(m.receive_count, n);
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    // The next receive moves it rather than delivering it again.
    let mut moved = Vec::new();
    for _ in 0..10 {
        assert!(q.receive(1, SEC, SEC).await.unwrap().is_empty(), "not delivered again");
        moved = dlq.receive(1, SEC, 30 * SEC).await.unwrap();
        if !moved.is_empty() {
            break;
        }
    }
    assert_eq!(moved.len(), 1, "moved to the dead-letter queue");
    assert_eq!(moved[0].body, "poison");
    dlq.delete(&moved[0].receipt).await.unwrap();
}

/// How often a queue may hand out one message while its visibility holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Never twice: the SQLite queue's receive is one transaction.
    ExactlyOnce,
    /// Now and then twice: SQS standard queues are at-least-once (and the emulator shows it
    /// under concurrent receives), which the workflow absorbs (reports are idempotent).
    AtLeastOnce,
}

/// Several consumers (separate connections, as separate processes would have) share a
/// queue: every message is delivered, and none twice while its visibility holds where the
/// queue promises [`Delivery::ExactlyOnce`] (at most a few times in 60 otherwise).
pub async fn queue_concurrent_consumers(producer: Arc<dyn Queue>, consumers: Vec<Arc<dyn Queue>>, delivery: Delivery) {
    const N: usize = 60;
    for i in 0..N {
        producer.send(&format!("job-{i}"), Duration::ZERO).await.unwrap();
    }
    let tasks: Vec<_> = consumers
        .into_iter()
        .map(|c| {
            tokio::spawn(async move {
                let mut seen = Vec::new();
                loop {
                    let got = c.receive(3, SEC, 60 * SEC).await.unwrap();
                    if got.is_empty() {
                        return seen;
                    }
                    for m in got {
                        c.delete(&m.receipt).await.unwrap();
                        seen.push(m.body);
                    }
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let unique: HashSet<_> = all.iter().cloned().collect();
    assert_eq!(unique.len(), N, "every message delivered");
    match delivery {
        Delivery::ExactlyOnce => assert_eq!(all.len(), N, "each message delivered exactly once"),
        Delivery::AtLeastOnce => assert!(all.len() <= N + N / 10, "{} deliveries of {N} messages", all.len()),
    }
    assert!(drain_ids(producer.as_ref()).await.is_empty());
}

/// Purge empties the queue.
pub async fn queue_purge(q: &dyn Queue) {
    for i in 0..4 {
        q.send(&format!("p{i}"), Duration::ZERO).await.unwrap();
    }
    q.purge().await.unwrap();
    // SQS purges within seconds; look until it is empty.
    for _ in 0..20 {
        let s = q.stats().await.unwrap();
        if (s.visible, s.in_flight, s.delayed) == (0, 0, 0) {
            // A queue that can tell the oldest message's age says none waits.
            assert!(s.oldest_age.is_none_or(|age| age.is_zero()), "{s:?}");
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("queue not empty after purge: {:?}", q.stats().await.unwrap());
}

/// Put, get, head, list, delete, overwrite, size limits, missing objects and bad keys.
/// `bucket` must exist and be empty.
pub async fn blob_store(store: &dyn BlobStore, bucket: &str) {
    let body = Bytes::from_static(b"\xff\xd8\xff hello");
    let jpeg = PutOptions { content_type: Some("image/jpeg".into()), cache_control: Some("max-age=60".into()) };
    store.put(bucket, "dir/a.bin", body.clone(), &jpeg).await.unwrap();
    let got = store.get(bucket, "dir/a.bin", 1024).await.unwrap();
    assert_eq!(got.body, body);
    assert_eq!(got.meta.content_type, "image/jpeg", "content type kept");
    assert_eq!(got.meta.cache_control.as_deref(), Some("max-age=60"));
    let head = store.head(bucket, "dir/a.bin").await.unwrap();
    assert_eq!((head.size, head.key.as_str()), (body.len() as u64, "dir/a.bin"));

    // Without a stored type, one is guessed from the key.
    store.put(bucket, "b.png", Bytes::from_static(b"png"), &PutOptions::default()).await.unwrap();
    assert_eq!(store.head(bucket, "b.png").await.unwrap().content_type, "image/png");

    // Overwrite replaces the whole object.
    store.put(bucket, "b.png", Bytes::from_static(b"png2!"), &PutOptions::default()).await.unwrap();
    assert_eq!(store.get(bucket, "b.png", 1024).await.unwrap().body.as_ref(), b"png2!");

    let keys: Vec<_> = store.list(bucket, "").await.unwrap().into_iter().map(|m| m.key).collect();
    assert_eq!(keys, ["b.png", "dir/a.bin"]);
    let under: Vec<_> = store.list(bucket, "dir/").await.unwrap().into_iter().map(|m| m.key).collect();
    assert_eq!(under, ["dir/a.bin"]);

    assert!(matches!(
        store.get(bucket, "dir/a.bin", 3).await,
        Err(BlobError::TooLarge { size, limit: 3, .. }) if size == body.len() as u64
    ));
    assert!(matches!(store.get(bucket, "missing.jpg", 1024).await, Err(BlobError::NotFound { .. })));
    assert!(matches!(store.head(bucket, "missing.jpg").await, Err(BlobError::NotFound { .. })));
    for bad in ["../escape", "/abs", "a/../b", "nul\0"] {
        assert!(
            matches!(
                store.put(bucket, bad, Bytes::new(), &PutOptions::default()).await,
                Err(BlobError::InvalidName { .. })
            ),
            "{bad:?} refused"
        );
    }

    store.delete(bucket, "dir/a.bin").await.unwrap();
    store.delete(bucket, "dir/a.bin").await.unwrap();
    assert!(matches!(store.get(bucket, "dir/a.bin", 1024).await, Err(BlobError::NotFound { .. })));
    store.delete(bucket, "b.png").await.unwrap();
    assert!(store.list(bucket, "").await.unwrap().is_empty());
}

/// The output a worker might report for `job`, for tests that play the worker.
pub fn sample_output(job: &protocol::Job) -> protocol::Output {
    protocol::Output {
        rendition: "thumbnail".into(),
        bucket: "resized".into(),
        key: format!("resized/{}_thumbnail.jpg", job.job_id),
        size: 10,
        content_type: "image/jpeg".into(),
        width: 512,
        height: 384,
    }
}

/// The record of a job that failed for good with `error` at its first attempt, as a dead
/// letter is made from, for tests that play the engine.
pub fn failed_record(job_id: &str, source_key: &str, error: protocol::JobError) -> JobRecord {
    JobRecord {
        job_id: job_id.into(),
        state: JobState::Fail,
        attempts: 1,
        source_bucket: "original".into(),
        source_key: source_key.into(),
        destination_bucket: "resized".into(),
        renditions: vec![protocol::Rendition::thumbnail()],
        created_at: String::new(),
        updated_at: String::new(),
        outputs: Vec::new(),
        metadata: None,
        error: Some(error),
        history: Vec::new(),
    }
}

/// Takes the next attempt of `job_id` off the jobs queue, as a worker would.
async fn take_attempt(jobs: &dyn Queue, job_id: &str) -> protocol::Job {
    let deadline = std::time::Instant::now() + 60 * SEC;
    while std::time::Instant::now() < deadline {
        for m in jobs.receive(10, SEC, 60 * SEC).await.unwrap() {
            jobs.delete(&m.receipt).await.unwrap();
            let job = protocol::Job::from_json(&m.body).unwrap();
            if job.job_id == job_id {
                return job;
            }
        }
    }
    panic!("no attempt of job {job_id} reached the jobs queue within a minute");
}

/// Polls the orchestrator until the job reaches `state`.
async fn wait_for_state(orchestrator: &dyn Orchestrator, job_id: &str, state: JobState) -> JobRecord {
    let deadline = std::time::Instant::now() + 60 * SEC;
    loop {
        let record = orchestrator.get(job_id).await.unwrap().expect("a started job has a record");
        if record.state == state {
            return record;
        }
        assert!(std::time::Instant::now() < deadline, "job {job_id} never reached {state}: {record:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn history(record: &JobRecord) -> Vec<JobState> {
    record.history.iter().map(|h| h.state).collect()
}

/// The orchestrator and reporter contract, whoever runs the workflow: a started job's
/// attempt reaches the jobs queue; a worker's heartbeat and success end it in `Success`
/// with its outputs and the states it walked; a permanent failure ends in `Fail` with its
/// reason, through `DeadLetter`; a retryable failure brings attempt 2, which can succeed;
/// a report of an attempt already resolved changes nothing. `jobs` is the queue the
/// orchestrator sends attempts to; its retry policy must allow two attempts.
pub async fn orchestrator_and_reporter(orchestrator: &dyn Orchestrator, jobs: &dyn Queue, reporter: &dyn Reporter) {
    use protocol::{JobError, Rendition};
    let new_job = || protocol::Job::new("original", "photos/a.jpg", "resized", vec![Rendition::thumbnail()]);
    let output = sample_output;
    let done = |job: &protocol::Job| Processed {
        outputs: vec![output(job)],
        metadata: protocol::message::SourceMetadata { format: "jpeg".into(), ..Default::default() },
    };
    assert!(orchestrator.get("no-such-job").await.unwrap().is_none(), "an unknown id has no record");

    // Success, with a heartbeat on the way.
    let job = new_job();
    orchestrator.start(job.clone()).await.unwrap();
    let attempt = take_attempt(jobs, &job.job_id).await;
    assert_eq!((attempt.attempt, &attempt.source_key, &attempt.renditions), (1, &job.source_key, &job.renditions));
    reporter.heartbeat(&attempt).await.unwrap();
    reporter.finish(&attempt, &Ok(done(&attempt))).await.unwrap();
    let record = wait_for_state(orchestrator, &job.job_id, JobState::Success).await;
    assert_eq!(record.outputs, vec![output(&job)]);
    assert_eq!(history(&record), [JobState::ProcessImage, JobState::CheckResult, JobState::Success]);
    assert!(orchestrator.list(10).await.unwrap().iter().any(|r| r.job_id == job.job_id), "listed");
    // A second report of the resolved attempt is stale or ignored: nothing moves.
    let again = reporter.finish(&attempt, &Err(JobError::permanent("NotAnImage", "late"))).await;
    assert!(again.is_ok() || matches!(again, Err(ReportError::Stale(_))), "{again:?}");
    tokio::time::sleep(2 * SEC).await;
    assert_eq!(orchestrator.get(&job.job_id).await.unwrap().unwrap().state, JobState::Success);

    // A permanent failure is dead-lettered at once, with its reason.
    let job = new_job();
    orchestrator.start(job.clone()).await.unwrap();
    let attempt = take_attempt(jobs, &job.job_id).await;
    reporter.finish(&attempt, &Err(JobError::permanent("NotAnImage", "a text file"))).await.unwrap();
    let record = wait_for_state(orchestrator, &job.job_id, JobState::Fail).await;
    let error = record.error.clone().expect("the reason is recorded");
    assert_eq!(error.class, protocol::ErrorClass::Permanent);
    // Step Functions hands the worker's error over as the cause; the emulator drops causes
    // and keeps only the error name, which must then be the permanent one.
    let cause_dropped = error.code == protocol::sfn::PERMANENT_ERROR && error.message == "no cause given";
    assert!(error.code == "NotAnImage" || cause_dropped, "{error:?}");
    let walked = history(&record);
    assert!(walked.contains(&JobState::DeadLetter) && !walked.contains(&JobState::Retry), "{walked:?}");
    assert_eq!(record.attempts, 1);

    // A retryable failure is retried as attempt 2, which succeeds.
    let job = new_job();
    orchestrator.start(job.clone()).await.unwrap();
    let first = take_attempt(jobs, &job.job_id).await;
    reporter.finish(&first, &Err(JobError::retryable("Throttled", "slow down"))).await.unwrap();
    let second = take_attempt(jobs, &job.job_id).await;
    assert_eq!(second.attempt, 2, "the retry is the next attempt");
    reporter.finish(&second, &Ok(done(&second))).await.unwrap();
    let record = wait_for_state(orchestrator, &job.job_id, JobState::Success).await;
    assert_eq!(record.attempts, 2);
    let walked = history(&record);
    let retried = walked.iter().position(|s| *s == JobState::Retry).expect("a Retry step");
    assert_eq!(walked[retried + 1], JobState::ProcessImage, "{walked:?}");
}

/// Steps `job` (new when not stored) with `event` under the default policy, as the engine does.
fn stepper(job: protocol::Job, event: OwnedStep, now: i64) -> crate::job_store::Decide {
    use protocol::workflow::{Effect, Event, Policy, step};
    Arc::new(move |stored: Option<crate::job_store::StoredJob>| {
        let event = match &event {
            OwnedStep::Submitted => Event::Submitted { attempt: 1 },
            OwnedStep::Heartbeat => Event::Heartbeat { attempt: 1 },
            OwnedStep::Succeeded => Event::Succeeded { attempt: 1 },
        };
        let transition = step(stored.as_ref().map(|s| s.position), event, &Policy::default(), 0.5, now)?;
        let insert = stored.is_none();
        let mut job = stored.map_or_else(|| job.clone(), |s| s.job);
        job.attempt = transition.to.attempt;
        let outputs = transition.effects.contains(&Effect::RecordOutputs).then(|| (vec![sample_output(&job)], None));
        Ok(crate::job_store::Change { job, insert, replace_job: false, transition, outputs })
    })
}

#[derive(Clone, Copy)]
enum OwnedStep {
    Submitted,
    Heartbeat,
    Succeeded,
}

/// The [`JobStore`](crate::job_store::JobStore) contract: a step is stored whole or not at
/// all, a new job is recorded once, concurrent steps on one job are applied one after the
/// other (none lost), and the timers' and the listing's queries see what was stored.
/// `prefix` keeps the ids of one run apart from another's on a shared store.
pub async fn job_store(store: Arc<dyn crate::job_store::JobStore>, prefix: &str) {
    use crate::job_store::Change;
    use protocol::job::HistoryEntry;
    use protocol::workflow::{Ignored, Transition};

    let now = protocol::time::now_ms();
    let mut job =
        protocol::Job::new("original", format!("{prefix}/a.jpg"), "resized", vec![protocol::Rendition::thumbnail()]);
    job.source_version = Some("etag-1".into());
    let id = job.job_id.clone();

    // A new job: stored with its first history entry, marked unsent, due at its deadline.
    let first = store.update(&id, now, true, stepper(job.clone(), OwnedStep::Submitted, now)).await.expect("insert");
    let first = first.expect("a new job is stored");
    assert!(first.insert);
    let record = store.get(&id).await.expect("get").expect("the job is stored");
    assert_eq!((record.state, record.attempts), (JobState::ProcessImage, 1));
    assert_eq!(record.source_key, job.source_key);
    assert_eq!(record.history, first.transition.history, "the history is the step's");
    assert_eq!(record.created_at, protocol::time::rfc3339(now));
    assert!(store.get(&format!("{id}-none")).await.expect("get").is_none(), "an unknown job is None");

    // The same id again is refused by the step, and nothing changes.
    let again =
        store.update(&id, now + 1, true, stepper(job.clone(), OwnedStep::Submitted, now + 1)).await.expect("update");
    assert_eq!(again.err(), Some(Ignored::Exists));
    assert_eq!(store.get(&id).await.expect("get").expect("job").history.len(), record.history.len());

    // The outbox: unsent until marked sent; a mark for another attempt does not clear it.
    let unsent = |before| {
        let store = Arc::clone(&store);
        let id = id.clone();
        async move { store.unsent(before).await.expect("unsent").into_iter().filter(|j| j.job_id == id).collect::<Vec<_>>() }
    };
    assert!(unsent(now).await.is_empty(), "only jobs changed before `before` count");
    let pending = unsent(now + 1).await;
    assert_eq!(pending.len(), 1, "the new attempt waits for its send");
    assert_eq!((pending[0].attempt, pending[0].source_version.as_deref()), (1, Some("etag-1")));
    store.mark_sent(&id, 2).await.expect("mark another attempt");
    assert_eq!(unsent(now + 1).await.len(), 1, "a mark for another attempt leaves it");
    store.mark_sent(&id, 1).await.expect("mark sent");
    assert!(unsent(now + 1).await.is_empty(), "sent");

    // The timers' query: due at the deadline, in its state only.
    let due = |state, at| {
        let store = Arc::clone(&store);
        let id = id.clone();
        async move { store.due(state, at).await.expect("due").contains(&id) }
    };
    let deadline = first.transition.due_at;
    assert!(due(JobState::ProcessImage, deadline).await);
    assert!(!due(JobState::ProcessImage, deadline - 1).await, "not before its due time");
    assert!(!due(JobState::Retry, i64::MAX).await, "not in another state");

    // Concurrent steps on one job: each is applied on the other's result, none lost.
    let note = move |i: usize, stored: &crate::job_store::StoredJob| Transition {
        to: stored.position,
        due_at: deadline,
        error: None,
        history: vec![HistoryEntry {
            at: protocol::time::rfc3339(now),
            state: stored.position.state,
            attempt: stored.position.attempt,
            error: None,
            delay_ms: None,
            ceiling_ms: None,
            note: Some(format!("note {i}")),
        }],
        effects: Vec::new(),
    };
    let racers: Vec<_> = (0..8)
        .map(|i| {
            let store = Arc::clone(&store);
            let id = id.clone();
            tokio::spawn(async move {
                let decide: crate::job_store::Decide = Arc::new(move |stored| {
                    let stored = stored.ok_or(Ignored::Unknown)?;
                    let transition = note(i, &stored);
                    Ok(Change { job: stored.job, insert: false, replace_job: false, transition, outputs: None })
                });
                store.update(&id, now + 2, false, decide).await.expect("concurrent update").expect("applied")
            })
        })
        .collect();
    for racer in racers {
        racer.await.expect("racer");
    }
    let history = store.get(&id).await.expect("get").expect("job").history;
    let notes: HashSet<_> = history.iter().filter_map(|h| h.note.clone()).filter(|n| n.starts_with("note ")).collect();
    assert_eq!(notes.len(), 8, "every concurrent step is kept: {history:?}");

    // A worker's start then its success: outputs recorded, the job ends and leaves the timers.
    let started = store.update(&id, now + 3, false, stepper(job.clone(), OwnedStep::Heartbeat, now + 3)).await;
    let started = started.expect("heartbeat").expect("applied").transition.due_at;
    assert_ne!(started, deadline);
    assert!(due(JobState::ProcessImage, started).await, "a heartbeat moves the deadline");
    assert!(!due(JobState::ProcessImage, started - 1).await, "to the new one");
    let done =
        store.update(&id, now + 4, false, stepper(job.clone(), OwnedStep::Succeeded, now + 4)).await.expect("ok");
    assert_eq!(done.expect("moved").transition.to.state, JobState::Success);
    let record = store.get(&id).await.expect("get").expect("job");
    assert_eq!(record.state, JobState::Success);
    assert_eq!(record.outputs, vec![sample_output(&job)]);
    assert_eq!(record.updated_at, protocol::time::rfc3339(now + 4));
    assert!(!due(JobState::ProcessImage, i64::MAX).await, "an ended job has no timer");

    // A redrive's new message replaces the stored one (its pin dropped) and is what is sent.
    let redrive: crate::job_store::Decide = Arc::new(move |stored| {
        let stored = stored.ok_or(Ignored::Unknown)?;
        let mut job = stored.job;
        job.source_version = None;
        job.attempt = 1;
        let mut to = stored.position;
        (to.state, to.attempt, to.started_at) = (JobState::ProcessImage, 1, None);
        let transition = Transition {
            to,
            due_at: now + 60_000,
            error: None,
            history: Vec::new(),
            effects: vec![protocol::workflow::Effect::SendJob],
        };
        Ok(Change { job, insert: false, replace_job: true, transition, outputs: None })
    });
    store.update(&id, now + 5, true, redrive).await.expect("redrive").expect("moved");
    let pending = unsent(now + 6).await;
    assert_eq!(pending.len(), 1, "the redriven attempt waits for its send");
    assert_eq!(pending[0].source_version, None, "the stored message is the new one");

    // The listing: newest first, without history.
    let mut later =
        protocol::Job::new("original", format!("{prefix}/b.jpg"), "resized", vec![protocol::Rendition::thumbnail()]);
    later.attempt = 1;
    store
        .update(&later.job_id, now + 10, true, stepper(later.clone(), OwnedStep::Submitted, now + 10))
        .await
        .expect("b")
        .expect("new");
    let recent = store.recent(1000, now + 10).await.expect("recent");
    let ours: Vec<_> = recent.iter().filter(|r| r.source_key.starts_with(&format!("{prefix}/"))).collect();
    assert_eq!(ours.iter().map(|r| r.job_id.as_str()).collect::<Vec<_>>(), [later.job_id.as_str(), id.as_str()]);
    assert!(ours.iter().all(|r| r.history.is_empty()), "the listing leaves the history out");
    assert_eq!(store.recent(1, now + 10).await.expect("recent").len(), 1, "the limit holds");
}
