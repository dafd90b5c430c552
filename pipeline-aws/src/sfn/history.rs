//! An execution's event history read as a job's: which workflow state it is in, how many
//! attempts it made, each step with its time, and the last failure. Pure functions over
//! a small [`Event`] type, so the mapping is tested by tables without a service.

use aws_sdk_sfn::types::{HistoryEvent, HistoryEventType};
use orchestrator::asl::RETRYABLE_ERROR;
use pipeline_core::JobError;
use pipeline_core::orchestration::{HistoryEntry, JobState};
use pipeline_core::time::rfc3339;

/// The task state whose attempts are the job's attempts.
const PROCESS_IMAGE: &str = "ProcessImage";
/// The state that dead-letters a job.
const DEAD_LETTER: &str = "DeadLetter";

/// What a history event means for the job.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Kind {
    /// A state was entered.
    Entered(String),
    /// The task was scheduled: an attempt begins when the state is `ProcessImage`.
    TaskScheduled,
    /// The task failed, timed out, or could not be started or submitted.
    TaskFailed { error: String, cause: Option<String> },
    /// The execution ended without reaching a `Fail` state (timed out, aborted).
    ExecutionEnded { error: String, cause: Option<String> },
    /// Anything else.
    Other,
}

/// One history event, reduced to what the mapping needs.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Event {
    /// When, in milliseconds since the epoch.
    pub at_ms: i64,
    /// What happened.
    pub kind: Kind,
}

impl From<&HistoryEvent> for Event {
    fn from(e: &HistoryEvent) -> Self {
        let failed = |error: Option<&str>, cause: Option<&str>| Kind::TaskFailed {
            error: error.unwrap_or("States.TaskFailed").to_owned(),
            cause: cause.map(str::to_owned),
        };
        let ended = |error: Option<&str>, cause: Option<&str>, default: &str| Kind::ExecutionEnded {
            error: error.unwrap_or(default).to_owned(),
            cause: cause.map(str::to_owned),
        };
        let kind = if let Some(d) = e.state_entered_event_details() {
            Kind::Entered(d.name().to_owned())
        } else {
            match e.r#type() {
                HistoryEventType::TaskScheduled => Kind::TaskScheduled,
                HistoryEventType::TaskFailed => {
                    e.task_failed_event_details().map_or_else(|| failed(None, None), |d| failed(d.error(), d.cause()))
                }
                HistoryEventType::TaskTimedOut => e
                    .task_timed_out_event_details()
                    .map_or_else(|| failed(Some("States.Timeout"), None), |d| failed(d.error(), d.cause())),
                HistoryEventType::TaskStartFailed => e.task_start_failed_event_details().map_or_else(
                    || failed(None, None),
                    |d| failed(Some(d.error().unwrap_or("TaskStartFailed")), d.cause()),
                ),
                HistoryEventType::TaskSubmitFailed => e.task_submit_failed_event_details().map_or_else(
                    || failed(None, None),
                    |d| failed(Some(d.error().unwrap_or("TaskSubmitFailed")), d.cause()),
                ),
                HistoryEventType::ExecutionTimedOut => e.execution_timed_out_event_details().map_or_else(
                    || ended(None, None, "States.Timeout"),
                    |d| ended(d.error(), d.cause(), "States.Timeout"),
                ),
                HistoryEventType::ExecutionAborted => e
                    .execution_aborted_event_details()
                    .map_or_else(|| ended(None, None, "Aborted"), |d| ended(d.error(), d.cause(), "Aborted")),
                _ => Kind::Other,
            }
        };
        Self { at_ms: e.timestamp().to_millis().unwrap_or_default(), kind }
    }
}

/// How the execution stands, from DescribeExecution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Status {
    /// Still running.
    Running,
    /// Reached `Success`.
    Succeeded,
    /// Failed, timed out or aborted.
    Failed,
}

/// The job's view of a history.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Folded {
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

fn entry(at_ms: i64, state: &str, attempt: u32, error: Option<JobError>, note: Option<&str>) -> HistoryEntry {
    HistoryEntry {
        at: rfc3339(at_ms),
        state: state.to_owned(),
        attempt,
        error,
        delay_ms: None,
        ceiling_ms: None,
        note: note.map(str::to_owned),
    }
}

/// Folds the events, oldest first, into the job's state, attempts and history.
pub(crate) fn fold(events: &[Event], status: Status) -> Folded {
    let (mut current, mut attempts) = (String::new(), 0u32);
    let (mut history, mut last_error) = (Vec::new(), None::<JobError>);
    // A failed attempt the retrier has not re-scheduled yet: the job waits in Retry.
    let mut pending: Option<(i64, JobError)> = None;
    for e in events {
        match &e.kind {
            Kind::Entered(name) => {
                pending = None;
                current.clone_from(name);
                let attempt = if name == PROCESS_IMAGE { attempts + 1 } else { attempts.max(1) };
                let error = if name == DEAD_LETTER { last_error.clone() } else { None };
                history.push(entry(e.at_ms, name, attempt, error, None));
            }
            Kind::TaskScheduled if current == PROCESS_IMAGE => {
                attempts += 1;
                if let Some((at, error)) = pending.take() {
                    history.push(entry(at, "Retry", attempts - 1, Some(error), Some("retried by the task's retrier")));
                    history.push(entry(e.at_ms, PROCESS_IMAGE, attempts, None, None));
                }
            }
            Kind::TaskFailed { error, cause } if current == PROCESS_IMAGE => {
                // As the embedded engine writes it: the failed attempt's CheckResult carries the error.
                let error = job_error(error, cause.as_deref());
                history.push(entry(e.at_ms, "CheckResult", attempts.max(1), Some(error.clone()), None));
                last_error = Some(error.clone());
                pending = Some((e.at_ms, error));
            }
            Kind::ExecutionEnded { error, cause } => {
                let error = job_error(error, cause.as_deref());
                history.push(entry(e.at_ms, "Fail", attempts.max(1), Some(error.clone()), Some("execution ended")));
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
        Status::Running if pending.is_some() || current == DEAD_LETTER || current == "Fail" => JobState::DeadLetter,
        Status::Running => JobState::ProcessImage,
    };
    Folded { state, attempts, history, error: last_error, last_ms: events.last().map(|e| e.at_ms) }
}

#[cfg(test)]
#[path = "history_tests.rs"]
mod tests;
