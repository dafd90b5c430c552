//! `ImageProcessingWorkflow` on Step Functions, on the emulator with execution switched
//! on: the state machine generated from the workflow, a real `worker::Runner` reporting
//! with task tokens, S3 and SQS. Success, a permanent failure dead-lettered, a retryable
//! failure retried, a silent worker replaced after its heartbeat timeout, and stale
//! tokens whose messages are deleted; and the orchestrator suite the embedded engine
//! passes too.

use test_support::sfn_harness;

use std::time::Duration;

use pipeline_core::blob::BlobStore;
use pipeline_core::orchestration::Orchestrator;
use pipeline_core::queue::Queue;
use protocol::ErrorClass;
use protocol::dead_letter::DeadLetter;
use protocol::job::JobState;
use protocol::sfn::PERMANENT_ERROR;
use sfn_harness::{Rig, states};
use worker::faults::Faults;

const PHOTO: &[u8] = include_bytes!("../../tests/fixtures/myphoto.jpg");

#[tokio::test]
async fn step_functions_passes_the_orchestrator_suite() {
    let rig = Rig::new("sfn-suite").await;
    let reporter = pipeline_aws::sfn::SfnReporter::new(rig.sfn.clone());
    pipeline_core::conformance::orchestrator_and_reporter(&rig.orchestrator, &rig.jobs, &reporter).await;
}

#[tokio::test]
async fn a_job_runs_to_success_with_its_outputs() {
    let rig = Rig::new("sfn-ok").await;
    rig.put("photos/myphoto.jpg", PHOTO).await;
    let job = rig.job("photos/myphoto.jpg");
    rig.orchestrator.start(job.clone()).await.expect("started");
    rig.orchestrator.start(job.clone()).await.expect("starting the same job again is a no-op");
    let other = protocol::message::Job { source_key: "other.jpg".into(), ..job.clone() };
    assert!(rig.orchestrator.start(other).await.is_err(), "another job under a used id is refused");

    let running = rig.wait_for(&job.job_id, "queued", |r| r.attempts == 1).await;
    assert_eq!((running.state, running.source_key.as_str()), (JobState::ProcessImage, "photos/myphoto.jpg"));

    let (stop, worker) = rig.worker(Faults::default());
    let done = rig.wait_for(&job.job_id, "Success", |r| r.state.is_terminal()).await;
    stop.cancel();
    worker.await.expect("worker stopped");

    assert_eq!((done.state, done.attempts), (JobState::Success, 1), "{done:#?}");
    assert_eq!(states(&done), ["ProcessImage", "CheckResult", "Success"]);
    assert_eq!(done.outputs.len(), 1, "{done:#?}");
    let out = &done.outputs[0];
    assert_eq!((out.bucket.as_str(), out.key.as_str()), (rig.resized.as_str(), "resized/photos/myphoto_thumbnail.jpg"));
    assert!(out.width.max(out.height) <= 512 && out.size > 0);
    let head = rig.store.head(&rig.resized, &out.key).await.expect("the thumbnail is in the resized bucket");
    assert_eq!((head.content_type.as_str(), head.size), ("image/jpeg", out.size));
    assert!(done.metadata.is_some(), "the engine's metadata travels in the output");

    let listed = rig.orchestrator.list(10).await.expect("list");
    assert_eq!(listed.iter().map(|r| r.job_id.as_str()).collect::<Vec<_>>(), [job.job_id.as_str()]);
    assert!(listed[0].history.is_empty() && listed[0].state == JobState::Success);
    assert!(rig.orchestrator.get("no-such-job").await.expect("get").is_none());
}

#[tokio::test]
async fn a_permanent_failure_is_dead_lettered() {
    let rig = Rig::new("sfn-perm").await;
    rig.put("notes.jpg", &b"just some text, not an image"[..]).await;
    let job = rig.job("notes.jpg");
    rig.orchestrator.start(job.clone()).await.expect("started");
    let (stop, worker) = rig.worker(Faults::default());
    let done = rig.wait_for(&job.job_id, "Fail", |r| r.state.is_terminal()).await;
    stop.cancel();
    worker.await.expect("worker stopped");

    assert_eq!((done.state, done.attempts), (JobState::Fail, 1), "never retried: {done:#?}");
    assert_eq!(states(&done), ["ProcessImage", "CheckResult", "DeadLetter", "Fail"]);
    let error = done.error.expect("the failure is recorded");
    assert_eq!(error.class, ErrorClass::Permanent);

    let message = rig.dlq.receive(10, Duration::from_secs(2), Duration::from_secs(30)).await.expect("receive");
    assert_eq!(message.len(), 1, "one dead letter: {message:?}");
    let letter = DeadLetter::parse(&message[0].body, message[0].receive_count).expect("a readable dead letter");
    assert_eq!((letter.job.job_id.as_str(), letter.job.source_key.as_str()), (job.job_id.as_str(), "notes.jpg"));
    assert_eq!(letter.error.class, ErrorClass::Permanent);
    // Step Functions hands the worker's JobError over as the cause; moto drops SendTaskFailure's
    // cause and keeps only the error name.
    if letter.error.code != PERMANENT_ERROR {
        assert_eq!(letter.error, error, "the DLQ and the execution tell the same cause");
        assert!(!letter.error.message.is_empty());
    }
    assert!(!letter.dead_lettered_at.is_empty());
}

#[tokio::test]
async fn a_retryable_failure_is_retried_then_succeeds() {
    let rig = Rig::new("sfn-retry").await;
    rig.put("myphoto.jpg", PHOTO).await;
    let job = rig.job("myphoto.jpg");
    rig.orchestrator.start(job.clone()).await.expect("started");
    let (stop, worker) = rig.worker(Faults::parse("fail-attempts=1").expect("faults"));
    let done = rig.wait_for(&job.job_id, "Success", |r| r.state.is_terminal()).await;
    stop.cancel();
    worker.await.expect("worker stopped");

    assert_eq!((done.state, done.attempts), (JobState::Success, 2), "{done:#?}");
    assert_eq!(states(&done), ["ProcessImage", "CheckResult", "Retry", "ProcessImage", "CheckResult", "Success"]);
    let retry = &done.history[2];
    assert_eq!(retry.error.as_ref().map(|e| e.class), Some(ErrorClass::Retryable));
    assert_eq!(done.outputs.len(), 1);
    assert!(rig.dlq.stats().await.expect("stats").visible == 0, "nothing dead-lettered");
}

#[tokio::test]
async fn a_silent_worker_is_replaced_after_its_heartbeat_timeout() {
    let rig = Rig::new("sfn-silent").await;
    rig.put("myphoto.jpg", PHOTO).await;
    let job = rig.job("myphoto.jpg");
    rig.orchestrator.start(job.clone()).await.expect("started");
    // A worker takes the job and goes silent: no heartbeat, no report, message kept hidden.
    let (_, taken) = rig.take_message(Duration::from_secs(60)).await;
    assert_eq!((taken.attempt, taken.task_token.is_some()), (1, true));

    let (stop, worker) = rig.worker(Faults::default());
    let done = rig.wait_for(&job.job_id, "Success", |r| r.state.is_terminal()).await;
    stop.cancel();
    worker.await.expect("worker stopped");

    assert_eq!((done.state, done.attempts), (JobState::Success, 2), "{done:#?}");
    assert_eq!(states(&done), ["ProcessImage", "CheckResult", "Retry", "ProcessImage", "CheckResult", "Success"]);
    let lost = done.history[2].error.as_ref().expect("why it was retried");
    assert_eq!((lost.class, lost.code.as_str()), (ErrorClass::Retryable, "WorkerLost"));
    assert!(rig.store.head(&rig.resized, "resized/myphoto_thumbnail.jpg").await.is_ok());
}

#[tokio::test]
async fn a_message_whose_attempt_was_answered_is_deleted() {
    let rig = Rig::new("sfn-answered").await;
    rig.put("myphoto.jpg", PHOTO).await;
    let job = rig.job("myphoto.jpg");
    rig.orchestrator.start(job.clone()).await.expect("started");
    // Someone answers the attempt while its message goes back to the queue.
    let (_, taken) = rig.take_message(Duration::from_secs(1)).await;
    let token = taken.task_token.expect("a task token");
    let output = r#"{"status":"succeeded","outputs":[]}"#;
    rig.sfn.send_task_success().task_token(&token).output(output).send().await.expect("answered");
    rig.wait_for(&job.job_id, "Success", |r| r.state == JobState::Success).await;

    let (stop, worker) = rig.worker(Faults::default());
    rig.wait_until_jobs_queue_empty().await;
    stop.cancel();
    worker.await.expect("worker stopped");

    let done = rig.orchestrator.get(&job.job_id).await.expect("get").expect("the job");
    assert_eq!((done.state, done.attempts), (JobState::Success, 1), "not retried: {done:#?}");
    assert_eq!(rig.dlq.stats().await.expect("stats").visible, 0, "not dead-lettered");
}

#[tokio::test]
async fn a_message_whose_execution_was_stopped_is_deleted() {
    let rig = Rig::new("sfn-stopped").await;
    rig.put("myphoto.jpg", PHOTO).await;
    let job = rig.job("myphoto.jpg");
    rig.orchestrator.start(job.clone()).await.expect("started");
    let _ = rig.take_message(Duration::from_secs(1)).await;
    let arn = rig.orchestrator.execution_arn(&job.job_id);
    rig.sfn.stop_execution().execution_arn(&arn).cause("an operator stopped it").send().await.expect("stopped");

    let (stop, worker) = rig.worker(Faults::default());
    rig.wait_until_jobs_queue_empty().await;
    stop.cancel();
    worker.await.expect("worker stopped");

    let done = rig.orchestrator.get(&job.job_id).await.expect("get").expect("the job");
    assert_eq!((done.state, done.attempts), (JobState::Fail, 1), "{done:#?}");
    assert_eq!(rig.dlq.stats().await.expect("stats").visible, 0, "not dead-lettered");
}
