//! The worker handler fed one mixed SQS batch in-process, against the emulator with Step
//! Functions execution on: exactly the records that should come back are reported as
//! batch item failures, and every other record ends where it belongs.

use test_support::sfn_harness;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::SqsEvent;
use imgpipe_lambda::worker::{RecordOutcome, SqsWorker};
use pipeline_aws::sfn::{RoutingReporter, SfnReporter};
use pipeline_core::blob::BlobStore;
use pipeline_core::orchestration::Orchestrator;
use pipeline_core::queue::Queue;
use pipeline_core::report::Reporter;
use protocol::ErrorClass;
use protocol::dead_letter::DeadLetter;
use protocol::job::JobState;
use protocol::message::Job;
use serde_json::json;
use sfn_harness::{Rig, states};
use tokio_util::sync::CancellationToken;
use worker::attempt::Attempts;
use worker::faults::Faults;
use worker::image::{Limits, MemoryBudget};
use worker::{RenderSlots, WorkerDeps};

const PHOTO: &[u8] = include_bytes!("../../tests/fixtures/myphoto.jpg");

/// The handler as `imgpipe_lambda::worker::build` makes it, on the rig's clients. No
/// reports queue: a job without a task token cannot be reported.
fn handler(rig: &Rig) -> SqsWorker {
    let sfn: Arc<dyn Reporter> = Arc::new(SfnReporter::new(rig.sfn.clone()));
    let deps = WorkerDeps {
        blobs: rig.aws.blob_store(),
        limits: Limits::default(),
        budget: MemoryBudget::unlimited(),
        cache_control: None,
        faults: Faults::default(),
        renders: RenderSlots::new(2),
    };
    let attempts = Attempts {
        deps: Arc::new(deps),
        reporter: Arc::new(RoutingReporter::new(sfn.clone(), sfn)),
        dead_letters: Arc::new(rig.dlq.clone()),
        heartbeat_every: Duration::from_millis(700),
        max_receive_count: 5,
    };
    SqsWorker { attempts, concurrency: 2, shutdown: CancellationToken::new() }
}

/// An SQS record as the event source mapping delivers it.
fn record(id: &str, body: &str, receive_count: u32) -> serde_json::Value {
    json!({
        "messageId": id,
        "receiptHandle": format!("receipt-{id}"),
        "body": body,
        "attributes": { "ApproximateReceiveCount": receive_count.to_string(), "SentTimestamp": "1700000000000" },
        "messageAttributes": {},
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:jobs",
        "awsRegion": "us-east-1"
    })
}

/// One test at a time: the state machine's heartbeat timeout is 2 s, and a sibling decoding
/// images on the same cores could make a report miss it (a timeout is a retryable failure).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test]
async fn a_mixed_batch_fails_exactly_the_records_that_must_come_back() {
    let _serial = SERIAL.lock().await;
    let rig = Rig::new("lambda-batch").await;
    rig.put("photos/good.jpg", PHOTO).await;
    rig.put("notes.jpg", &b"just some text, not an image"[..]).await;
    let (good, poison, answered) = (rig.job("photos/good.jpg"), rig.job("notes.jpg"), rig.job("photos/good.jpg"));
    for job in [&good, &poison, &answered] {
        rig.orchestrator.start(job.clone()).await.expect("started");
    }
    // The bodies exactly as the state machine sent them, by job id.
    let mut messages: HashMap<String, (String, Job)> = HashMap::new();
    for _ in 0..3 {
        let (received, taken) = rig.take_message(Duration::from_secs(120)).await;
        messages.insert(taken.job_id.clone(), (received.body, taken));
    }
    // The third attempt is answered elsewhere first: its token is stale when the handler reports.
    let token = messages[&answered.job_id].1.task_token.clone().expect("a task token");
    let output = r#"{"status":"succeeded","outputs":[]}"#;
    rig.sfn.send_task_success().task_token(&token).output(output).send().await.expect("answered");
    rig.wait_for(&answered.job_id, "Success", |r| r.state == JobState::Success).await;
    // A job no state machine started carries no token, so nothing can take its report.
    let orphan = rig.job("photos/good.jpg");

    let event: SqsEvent = serde_json::from_value(json!({ "Records": [
        record("m-good", &messages[&good.job_id].0, 1),
        record("m-poison", &messages[&poison.job_id].0, 1),
        record("m-malformed", "{\"v\":1,\"jobId\":", 1),
        record("m-stale", &messages[&answered.job_id].0, 1),
        record("m-orphan", &orphan.to_json(), 1),
    ]}))
    .expect("an SQS event");
    let response = handler(&rig).handle(event).await;
    let failed: Vec<&str> = response.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect();
    // Only the orphan comes back: its report could not be delivered. The poison image is a
    // *permanent job failure*, reported to Step Functions (which dead-letters the job), so its
    // message is done with; retrying it would only fail the same way. The malformed body went
    // to the DLQ at once; the stale attempt was already resolved.
    assert_eq!(failed, ["m-orphan"], "{response:?}");
    let wire = serde_json::to_value(&response).expect("serializes");
    assert_eq!(wire, json!({ "batchItemFailures": [{ "itemIdentifier": "m-orphan" }] }));

    let done = rig.wait_for(&good.job_id, "Success", |r| r.state.is_terminal()).await;
    assert_eq!((done.state, states(&done)), (JobState::Success, vec!["ProcessImage", "CheckResult", "Success"]));
    assert!(rig.store.head(&rig.resized, "resized/photos/good_thumbnail.jpg").await.is_ok());

    let failed = rig.wait_for(&poison.job_id, "Fail", |r| r.state.is_terminal()).await;
    assert_eq!(states(&failed), ["ProcessImage", "CheckResult", "DeadLetter", "Fail"]);
    assert_eq!(failed.error.map(|e| e.class), Some(ErrorClass::Permanent));

    let answered = rig.orchestrator.get(&answered.job_id).await.expect("get").expect("the job");
    assert_eq!((answered.state, answered.attempts), (JobState::Success, 1), "not retried: {answered:#?}");

    // The DLQ holds the poison job's dead letter (from the workflow) and the raw malformed body.
    let mut letters = Vec::new();
    for _ in 0..10 {
        letters.extend(rig.dlq.receive(10, Duration::from_secs(1), Duration::from_secs(60)).await.expect("receive"));
        if letters.len() >= 2 {
            break;
        }
    }
    let mut bodies: Vec<&str> = letters.iter().map(|m| m.body.as_str()).collect();
    bodies.sort_unstable();
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    assert!(bodies.contains(&"{\"v\":1,\"jobId\":"), "the malformed body as it came: {bodies:?}");
    let letter = letters.iter().find_map(|m| DeadLetter::parse(&m.body, m.receive_count).ok()).expect("a dead letter");
    assert_eq!(letter.job.job_id, poison.job_id);
}

#[tokio::test]
async fn a_redelivered_job_past_the_limit_is_reported_as_poison_and_shutdown_hands_records_back() {
    let _serial = SERIAL.lock().await;
    // The poison report must reach the task before its heartbeat runs out (a timeout is a
    // retryable failure), and nothing here heartbeats between the task's start and that
    // report: the default 2 s was missed under load, so this rig allows 8 s.
    let rig = Rig::with_heartbeat("lambda-poison", Duration::from_secs(8)).await;
    rig.put("photos/good.jpg", PHOTO).await;
    let job = rig.job("photos/good.jpg");
    let worker = handler(&rig);
    rig.orchestrator.start(job.clone()).await.expect("started");
    let (received, _) = rig.take_message(Duration::from_secs(120)).await;

    let sixth: aws_lambda_events::event::sqs::SqsMessage =
        serde_json::from_value(record("m-6", &received.body, 6)).expect("a record");
    assert_eq!(worker.handle_record(&sixth).await, RecordOutcome::Done);
    let done = rig.wait_for(&job.job_id, "Fail", |r| r.state.is_terminal()).await;
    assert_eq!(
        done.error.map(|e| (e.class, e.code.contains("PoisonMessage") || e.code.contains("Permanent"))),
        Some((ErrorClass::Permanent, true))
    );

    worker.shutdown.cancel();
    let outcome = worker.handle_record(&sixth).await;
    assert!(matches!(outcome, RecordOutcome::Retry(ref why) if why.contains("shutting down")), "{outcome:?}");
}
