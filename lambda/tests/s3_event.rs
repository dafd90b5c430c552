//! The S3 event function fed an ObjectCreated event (S3 invoking Lambda directly) in-process,
//! against the emulator: form-encoded keys are decoded, our own outputs and sources already
//! gone are skipped, and a 5xx from the orchestrator, or a record refused for good (which this
//! function has no dead-letter queue to record on), fails the invocation so Lambda retries it
//! and its on-failure destination keeps it.

use test_support::sfn_harness;

use aws_lambda_events::event::s3::S3Event;
use imgpipe_lambda::api;
use imgpipe_lambda::s3_event::S3EventHandler;
use pipeline_core::orchestration::Orchestrator;
use protocol::job::JobState;
use sfn_harness::Rig;

const PHOTO: &[u8] = include_bytes!("../../tests/fixtures/myphoto.jpg");
const FIXTURE: &str = include_str!("fixtures/s3_object_created.json");

async fn handler(rig: &Rig, state_machine_arn: &str) -> S3EventHandler {
    let settings = rig.producer_settings(state_machine_arn);
    assert_eq!(settings.intake.destination_bucket, rig.resized);
    let (orchestrator, _) = api::workflow(&settings, &rig.aws).await.expect("valid settings");
    S3EventHandler {
        intake: api::intake(&settings, &rig.aws, orchestrator).expect("valid settings"),
        destination_bucket: rig.resized.clone(),
    }
}

fn event(rig: &Rig) -> S3Event {
    let text = FIXTURE.replace("ORIGINALS", &rig.originals).replace("RESIZED", &rig.resized);
    serde_json::from_str(&text).expect("an S3 event")
}

#[tokio::test]
async fn created_objects_start_jobs_under_their_decoded_keys() {
    let rig = Rig::new("lambda-s3").await;
    // The event says `holiday+photos%2Fbeach+day.jpg`.
    rig.put("holiday photos/beach day.jpg", PHOTO).await;
    let handled = handler(&rig, rig.orchestrator.state_machine_arn()).await.handle(event(&rig)).await.expect("handled");
    // One job; skipped: our own rendition in the resized bucket, and a source already deleted (404).
    assert_eq!((handled.started.len(), handled.skipped), (1, 2), "{handled:?}");

    let record = rig.orchestrator.get(&handled.started[0]).await.expect("get").expect("its execution");
    assert_eq!(record.source_key, "holiday photos/beach day.jpg");
    assert_eq!((record.source_bucket.as_str(), record.destination_bucket.as_str()), (&*rig.originals, &*rig.resized));
    assert_eq!(record.state, JobState::ProcessImage);
}

#[tokio::test]
async fn an_orchestrator_failure_fails_the_invocation() {
    let rig = Rig::new("lambda-s3-5xx").await;
    rig.put("holiday photos/beach day.jpg", PHOTO).await;
    let gone = rig.orchestrator.state_machine_arn().replace(":stateMachine:", ":stateMachine:deleted-");
    let err = handler(&rig, &gone).await.handle(event(&rig)).await.expect_err("StartExecution fails");
    assert_eq!(err.failed, 1, "{err}");
    assert!(err.first.contains("holiday photos/beach day.jpg"), "{err}");
}

#[tokio::test]
async fn an_unreadable_record_fails_the_invocation_after_the_others_are_started() {
    let rig = Rig::new("lambda-s3-bad").await;
    rig.put("holiday photos/beach day.jpg", PHOTO).await;
    let mut event = event(&rig);
    let mut bad = event.records[0].clone();
    bad.s3.object.key = Some("%FF%FE.jpg".into());
    event.records.insert(0, bad);
    let handler = handler(&rig, rig.orchestrator.state_machine_arn()).await;
    let err = handler.handle(event.clone()).await.expect_err("kept for Lambda's retries and failure destination");
    assert_eq!(err.failed, 1, "{err}");
    assert!(err.first.contains("UTF-8"), "{err}");
    // The good record was started all the same: once the bad one is gone, it is recognised.
    event.records.remove(0);
    let handled = handler.handle(event).await.expect("handled");
    assert_eq!(handled.started.len(), 1, "{handled:?}");
    let record = rig.orchestrator.get(&handled.started[0]).await.expect("get").expect("its execution");
    assert_eq!(record.state, JobState::ProcessImage, "started by the first invocation, not a second job");
}

#[tokio::test]
async fn a_record_refused_for_good_fails_the_invocation_with_its_reason() {
    let rig = Rig::new("lambda-s3-refused").await;
    let mut event = event(&rig);
    event.records.truncate(1);
    event.records[0].s3.bucket.name = Some("someone-elses-bucket".into());
    let err = handler(&rig, rig.orchestrator.state_machine_arn()).await.handle(event).await.expect_err("not dropped");
    assert_eq!(err.failed, 1, "{err}");
    assert!(err.first.contains("not allowed") || err.first.contains("someone-elses-bucket"), "{err}");
    assert!(err.first.contains("could not be recorded"), "{err}");
}
