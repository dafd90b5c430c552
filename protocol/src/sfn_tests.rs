//! Tables of event histories, shaped as the emulator and Step Functions write them.

use super::*;
use crate::error::ErrorClass;
use crate::message::SourceMetadata;
use crate::rendition::Rendition;

fn entered(at_ms: i64, name: &str) -> Event {
    Event { at_ms, kind: Kind::Entered(JobState::parse(name).expect("a workflow state")) }
}

fn scheduled(at_ms: i64) -> Event {
    Event { at_ms, kind: Kind::TaskScheduled }
}

fn failed(at_ms: i64, error: &str, cause: Option<&str>) -> Event {
    Event { at_ms, kind: Kind::TaskFailed { error: error.into(), cause: cause.map(str::to_owned) } }
}

fn other(at_ms: i64) -> Event {
    Event { at_ms, kind: Kind::Other }
}

fn states(folded: &Folded) -> Vec<(&str, u32)> {
    folded.history.iter().map(|h| (h.state.as_str(), h.attempt)).collect()
}

#[test]
fn a_first_attempt_that_succeeds() {
    let events = [
        other(0),
        entered(1, "ProcessImage"),
        scheduled(2),
        other(3),
        entered(4, "CheckResult"),
        entered(5, "Success"),
        other(6),
    ];
    let folded = fold(&events, Status::Succeeded);
    assert_eq!(folded.state, JobState::Success);
    assert_eq!(folded.attempts, 1);
    assert_eq!(states(&folded), [("ProcessImage", 1), ("CheckResult", 1), ("Success", 1)]);
    assert_eq!((folded.error, folded.last_ms), (None, Some(6)));

    let running = fold(&events[..3], Status::Running);
    assert_eq!((running.state, running.attempts), (JobState::ProcessImage, 1));
}

#[test]
fn a_retryable_failure_waits_in_retry_then_runs_again() {
    let cause = r#"{"class":"retryable","code":"InjectedFault","message":"attempt 1"}"#;
    let events = vec![entered(1, "ProcessImage"), scheduled(2), failed(3, RETRYABLE_ERROR, Some(cause))];
    let waiting = fold(&events, Status::Running);
    assert_eq!(waiting.state, JobState::Retry);
    assert_eq!(waiting.error.as_ref().map(|e| e.code.as_str()), Some("InjectedFault"));

    let mut events = events;
    events.extend([scheduled(10), entered(11, "CheckResult"), entered(12, "Success")]);
    let done = fold(&events, Status::Succeeded);
    assert_eq!(done.attempts, 2);
    assert_eq!(
        states(&done),
        [
            ("ProcessImage", 1),
            ("CheckResult", 1),
            ("Retry", 1),
            ("ProcessImage", 2),
            ("CheckResult", 2),
            ("Success", 2)
        ]
    );
    assert_eq!(done.history[2].at, rfc3339(3), "Retry is dated by the failure");
    assert_eq!(done.history[1].error.as_ref().map(|e| e.class), Some(ErrorClass::Retryable));
}

#[test]
fn a_permanent_failure_is_dead_lettered_with_its_error() {
    let cause = r#"{"class":"permanent","code":"NotAnImage","message":"text"}"#;
    let events = [
        entered(1, "ProcessImage"),
        scheduled(2),
        failed(3, PERMANENT_ERROR, Some(cause)),
        entered(4, "DeadLetter"),
        scheduled(5),
        entered(6, "Fail"),
    ];
    let folded = fold(&events, Status::Failed);
    assert_eq!((folded.state, folded.attempts), (JobState::Fail, 1), "DeadLetter's own task is no attempt");
    assert_eq!(states(&folded), [("ProcessImage", 1), ("CheckResult", 1), ("DeadLetter", 1), ("Fail", 1)]);
    assert_eq!(folded.history[2].error.as_ref().map(|e| e.code.as_str()), Some("NotAnImage"));
    assert_eq!(fold(&events[..3], Status::Running).state, JobState::DeadLetter, "no retrier takes it");
    assert_eq!(fold(&events[..4], Status::Running).state, JobState::DeadLetter);
}

#[test]
fn lost_workers_and_missing_causes_are_named_after_the_error() {
    let lost = job_error("States.HeartbeatTimeout", None);
    assert_eq!((lost.class, lost.code.as_str()), (ErrorClass::Retryable, "WorkerLost"));
    assert!(job_error("States.Timeout", Some("")).is_retryable());
    // The emulator drops SendTaskFailure's cause.
    let bare = job_error(PERMANENT_ERROR, None);
    assert_eq!((bare.class, bare.code.as_str()), (ErrorClass::Permanent, PERMANENT_ERROR));
    let sqs = job_error("SQS.SdkClientException", Some("The specified queue does not exist."));
    assert_eq!((sqs.class, sqs.message.as_str()), (ErrorClass::Permanent, "The specified queue does not exist."));
}

#[test]
fn an_aborted_execution_ends_in_fail() {
    let events = [
        entered(1, "ProcessImage"),
        scheduled(2),
        Event { at_ms: 9, kind: Kind::ExecutionEnded { error: "Aborted".into(), cause: None } },
    ];
    let folded = fold(&events, Status::Failed);
    assert_eq!(folded.state, JobState::Fail);
    assert_eq!(states(&folded), [("ProcessImage", 1), ("Fail", 1)]);
    assert_eq!(folded.error.map(|e| e.code), Some("Aborted".into()));
}

#[test]
fn causes_are_job_errors_that_fit() {
    let job = Job { attempt: 2, ..Job::new("o", "k.jpg", "r", vec![Rendition::thumbnail()]) };
    let short = failure_cause(&job, &JobError::permanent("NotAnImage", "text"));
    let read: JobError = serde_json::from_str(&short).expect("a JobError");
    assert_eq!(read, JobError::permanent("NotAnImage", "text"));
    assert!(short.contains(r#""attempt":2"#), "{short}");

    let long = failure_cause(&job, &JobError::retryable("S3", "\"x\"".repeat(40_000)));
    assert!(long.chars().count() <= MAX_CAUSE_CHARS);
    assert!(serde_json::from_str::<JobError>(&long).expect("still JSON").is_retryable());
}

#[test]
fn outputs_fit_the_limit() {
    let small = Processed {
        outputs: Vec::new(),
        metadata: SourceMetadata { format: "jpeg".into(), ..SourceMetadata::default() },
    };
    let out: serde_json::Value = serde_json::from_str(&success_output(&small)).expect("json");
    assert_eq!((out["status"].as_str(), out["metadata"]["format"].as_str()), (Some(SUCCEEDED), Some("jpeg")));
    let camera_model = Some("x".repeat(MAX_OUTPUT_BYTES));
    let huge =
        Processed { outputs: Vec::new(), metadata: SourceMetadata { camera_model, ..SourceMetadata::default() } };
    let out = success_output(&huge);
    assert!(out.len() <= MAX_OUTPUT_BYTES && out.contains("omitted"), "{}", &out[..80]);
}
