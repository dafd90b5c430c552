//! The Step Functions contract, in one place: the error names workers fail with, the
//! task output and failure cause they send, the dead letter the `DeadLetter` state
//! writes, and how an execution's history reads back as a job's (a pure fold over a small
//! [`Event`] type, so the mapping is tested by tables without a service). The ASL
//! generator ([`crate::asl`]), the AWS reporter and the AWS orchestrator all use these.

use serde_json::json;

use crate::error::JobError;
use crate::job::{HistoryEntry, JobState};
use crate::message::{Job, Processed};
use crate::time::rfc3339;

/// Error name of failures that retrying cannot fix.
pub const PERMANENT_ERROR: &str = "imgpipe.Permanent";
/// Error name of failures that may pass on another attempt.
pub const RETRYABLE_ERROR: &str = "imgpipe.Retryable";
/// The `status` a worker's SendTaskSuccess output carries.
pub const SUCCEEDED: &str = "succeeded";

/// The `source` of the dead letters the state machine's `DeadLetter` state sends.
pub const DEAD_LETTER_SOURCE: &str = "stepFunctions";

/// The StartExecution input: the job as its message reads, with every field the
/// `ProcessImage` state passes on by path written out, even where the message leaves it out
/// (`sidecar` when `false`, `metadata` when `strip`): a path to a field the input lacks fails the execution.
pub fn execution_input(job: &Job) -> String {
    let mut input = serde_json::to_value(job).unwrap_or_default();
    input["sidecar"] = json!(job.sidecar);
    input["metadata"] = json!(job.metadata);
    input.to_string()
}

/// SendTaskSuccess takes at most this many bytes of output.
pub const MAX_OUTPUT_BYTES: usize = 256 * 1024;
/// SendTaskFailure takes a cause of at most this many characters.
pub const MAX_CAUSE_CHARS: usize = 32_768;
/// The SendTaskSuccess output: `{"status":"succeeded","outputs":[...],"metadata":...}`,
/// dropping the metadata, then the outputs, when it would pass [`MAX_OUTPUT_BYTES`].
pub fn success_output(done: &Processed) -> String {
    let full = json!({ "status": SUCCEEDED, "outputs": done.outputs, "metadata": done.metadata }).to_string();
    if full.len() <= MAX_OUTPUT_BYTES {
        return full;
    }
    let lean =
        json!({ "status": SUCCEEDED, "outputs": done.outputs, "omitted": "metadata (over 256 KiB)" }).to_string();
    if lean.len() <= MAX_OUTPUT_BYTES {
        return lean;
    }
    json!({ "status": SUCCEEDED, "outputs": [], "omitted": format!("{} outputs (over 256 KiB)", done.outputs.len()) })
        .to_string()
}

/// The SendTaskFailure cause: the [`JobError`] as JSON with the attempt, its message
/// shortened until the whole fits in [`MAX_CAUSE_CHARS`].
pub fn failure_cause(job: &Job, error: &JobError) -> String {
    let mut message = error.message.clone();
    loop {
        let cause =
            json!({ "class": error.class, "code": error.code, "message": message, "attempt": job.attempt }).to_string();
        if cause.chars().count() <= MAX_CAUSE_CHARS || message.is_empty() {
            return cause;
        }
        let keep = message.chars().count() * 3 / 4;
        message = message.chars().take(keep).collect::<String>();
        message.push('…');
        if keep == 0 {
            message.clear();
        }
    }
}

/// What a history event means for the job.
#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    /// A workflow state was entered.
    Entered(JobState),
    /// The task was scheduled: an attempt begins when the state is `ProcessImage`.
    TaskScheduled,
    /// The task failed, timed out, or could not be started or submitted.
    TaskFailed {
        /// The error name.
        error: String,
        /// The cause, when given.
        cause: Option<String>,
    },
    /// The execution ended without reaching a `Fail` state (timed out, aborted).
    ExecutionEnded {
        /// The error name.
        error: String,
        /// The cause, when given.
        cause: Option<String>,
    },
    /// Anything else.
    Other,
}

/// One history event, reduced to what the mapping needs.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// When, in milliseconds since the epoch.
    pub at_ms: i64,
    /// What happened.
    pub kind: Kind,
}

/// How the execution stands, from DescribeExecution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Still running.
    Running,
    /// Reached `Success`.
    Succeeded,
    /// Failed, timed out or aborted.
    Failed,
}

/// The job's view of a history.
#[derive(Clone, Debug, PartialEq)]
pub struct Folded {
    /// Where the job is.
    pub state: JobState,
    /// Attempts started.
    pub attempts: u32,
    /// Every step, oldest first.
    pub history: Vec<HistoryEntry>,
    /// The last failure of an attempt, or of the execution.
    pub error: Option<JobError>,
    /// The time of the last event.
    pub last_ms: Option<i64>,
}

/// Reads the failure a task or execution reported. A worker's cause is the
/// [`JobError`] as JSON; anything else is named after the error (a lost worker's
/// heartbeat timeout is retryable `WorkerLost`).
pub fn job_error(error: &str, cause: Option<&str>) -> JobError {
    if let Some(parsed) = cause.and_then(|c| serde_json::from_str::<JobError>(c).ok()) {
        return parsed;
    }
    let said = cause.filter(|c| !c.is_empty());
    match error {
        "States.Timeout" | "States.HeartbeatTimeout" => JobError::retryable(
            "WorkerLost",
            said.map_or_else(|| format!("no report or heartbeat in time ({error})"), str::to_owned),
        ),
        RETRYABLE_ERROR => JobError::retryable(error, said.unwrap_or("no cause given")),
        // PERMANENT_ERROR, and the service's own errors (SQS.*, States.Runtime, ...).
        _ => JobError::permanent(error, said.unwrap_or("no cause given")),
    }
}

fn entry(at_ms: i64, state: JobState, attempt: u32, error: Option<JobError>, note: Option<&str>) -> HistoryEntry {
    HistoryEntry {
        at: rfc3339(at_ms),
        state,
        attempt,
        error,
        delay_ms: None,
        ceiling_ms: None,
        note: note.map(str::to_owned),
    }
}

/// Folds the events, oldest first, into the job's state, attempts and history.
pub fn fold(events: &[Event], status: Status) -> Folded {
    use JobState::{CheckResult, DeadLetter, Fail, ProcessImage, Retry};
    let (mut current, mut attempts) = (None::<JobState>, 0u32);
    let (mut history, mut last_error) = (Vec::new(), None::<JobError>);
    // A failed attempt the retrier has not re-scheduled yet: the job waits in Retry.
    let mut pending: Option<(i64, JobError)> = None;
    for e in events {
        match &e.kind {
            Kind::Entered(state) => {
                pending = None;
                current = Some(*state);
                let attempt = if *state == ProcessImage { attempts + 1 } else { attempts.max(1) };
                let error = if *state == DeadLetter { last_error.clone() } else { None };
                history.push(entry(e.at_ms, *state, attempt, error, None));
            }
            Kind::TaskScheduled if current == Some(ProcessImage) => {
                attempts += 1;
                if let Some((at, error)) = pending.take() {
                    history.push(entry(at, Retry, attempts - 1, Some(error), Some("retried by the task's retrier")));
                    history.push(entry(e.at_ms, ProcessImage, attempts, None, None));
                }
            }
            Kind::TaskFailed { error, cause } if current == Some(ProcessImage) => {
                // As the embedded engine writes it: the failed attempt's CheckResult carries the error.
                let error = job_error(error, cause.as_deref());
                history.push(entry(e.at_ms, CheckResult, attempts.max(1), Some(error.clone()), None));
                last_error = Some(error.clone());
                pending = Some((e.at_ms, error));
            }
            Kind::ExecutionEnded { error, cause } => {
                let error = job_error(error, cause.as_deref());
                history.push(entry(e.at_ms, Fail, attempts.max(1), Some(error.clone()), Some("execution ended")));
                last_error.get_or_insert(error);
            }
            _ => {}
        }
    }
    let state = match status {
        Status::Succeeded => JobState::Success,
        Status::Failed => JobState::Fail,
        // Between a failed attempt and the retrier's next one (or the catcher's DeadLetter).
        Status::Running if pending.as_ref().is_some_and(|(_, e)| e.is_retryable()) => JobState::Retry,
        Status::Running if pending.is_some() || matches!(current, Some(DeadLetter | Fail)) => JobState::DeadLetter,
        Status::Running => JobState::ProcessImage,
    };
    Folded { state, attempts, history, error: last_error, last_ms: events.last().map(|e| e.at_ms) }
}

#[cfg(test)]
#[path = "sfn_tests.rs"]
mod tests;
