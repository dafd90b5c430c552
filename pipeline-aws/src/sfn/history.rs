//! Step Functions history events read as the protocol's [`Event`]s; the fold itself
//! lives in [`protocol::sfn`].

use aws_sdk_sfn::types::{HistoryEvent, HistoryEventType};
use protocol::job::JobState;
use protocol::sfn::{Event, Kind};

/// One service history event as the protocol's [`Event`].
pub(crate) fn event(e: &HistoryEvent) -> Event {
    {
        let failed = |error: Option<&str>, cause: Option<&str>| Kind::TaskFailed {
            error: error.unwrap_or("States.TaskFailed").to_owned(),
            cause: cause.map(str::to_owned),
        };
        let ended = |error: Option<&str>, cause: Option<&str>, default: &str| Kind::ExecutionEnded {
            error: error.unwrap_or(default).to_owned(),
            cause: cause.map(str::to_owned),
        };
        let kind = if let Some(d) = e.state_entered_event_details() {
            JobState::parse(d.name()).map_or(Kind::Other, Kind::Entered)
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
        Event { at_ms: e.timestamp().to_millis().unwrap_or_default(), kind }
    }
}
