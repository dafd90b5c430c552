//! `ImageProcessingWorkflow` as plain data and one pure function. The embedded engine
//! persists what [`step`] returns; the Step Functions definition is generated from the
//! same [`STATES`] and [`RetryPolicy`] ([`crate::asl`]), so the two cannot drift apart.
//!
//! ```text
//! ProcessImage ─report─▶ CheckResult ─succeeded─▶ Success
//!      ▲                     ├─retryable, attempts left─▶ Retry ─(backoff)─┐
//!      └─────────────────────┼──────────────────────────────────────────────┘
//!                            └─permanent / attempts spent / worker lost─▶ DeadLetter ─▶ Fail
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::JobError;
use crate::job::HistoryEntry;
use crate::time::{ms, rfc3339};

/// The workflow's name, in logs, metrics and the state machine.
pub const WORKFLOW_NAME: &str = "ImageProcessingWorkflow";

/// A state of `ImageProcessingWorkflow`. Serialised as its name in the definition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum JobState {
    /// Queued for a worker, or being processed.
    ProcessImage,
    /// Deciding what an attempt's result means (transient: never a job's resting state).
    CheckResult,
    /// Waiting out its backoff before the next attempt.
    Retry,
    /// Failed for good; being put on the dead-letter queue.
    DeadLetter,
    /// Every rendition written.
    Success,
    /// Failed for good and dead-lettered.
    Fail,
}

/// Each state of the workflow and the states it may move to; the first is the start.
pub const STATES: &[(JobState, &[JobState])] = {
    use JobState::{CheckResult, DeadLetter, Fail, ProcessImage, Retry, Success};
    &[
        (ProcessImage, &[CheckResult]),
        (CheckResult, &[Success, Retry, DeadLetter]),
        (Retry, &[ProcessImage]),
        (DeadLetter, &[Fail]),
        (Success, &[]),
        (Fail, &[]),
    ]
};

impl JobState {
    /// The state's name, as in the workflow definition.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::ProcessImage => "ProcessImage",
            JobState::CheckResult => "CheckResult",
            JobState::Retry => "Retry",
            JobState::DeadLetter => "DeadLetter",
            JobState::Success => "Success",
            JobState::Fail => "Fail",
        }
    }

    /// Reads a state name.
    pub fn parse(name: &str) -> Option<Self> {
        STATES.iter().map(|(s, _)| *s).find(|s| s.as_str() == name)
    }

    /// Whether the job has ended.
    pub fn is_terminal(self) -> bool {
        matches!(self, JobState::Success | JobState::Fail)
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether the workflow allows moving from `from` to `to`.
pub fn allows(from: JobState, to: JobState) -> bool {
    STATES.iter().any(|(name, next)| *name == from && next.contains(&to))
}

/// How random the backoff is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Jitter {
    /// Uniform in `[0, ceiling]` ("full jitter"): retries of many jobs spread out.
    Full,
    /// Exactly the ceiling: predictable, for tests and debugging.
    None,
}

/// Retries of retryable failures: exponential backoff under a cap, with jitter.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// The ceiling before the second attempt.
    pub interval: Duration,
    /// How much the ceiling grows per attempt.
    pub backoff_rate: f64,
    /// The ceiling never grows past this.
    pub max_delay: Duration,
    /// How the delay is drawn under the ceiling.
    pub jitter: Jitter,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            interval: Duration::from_secs(2),
            backoff_rate: 2.0,
            max_delay: Duration::from_secs(60),
            jitter: Jitter::Full,
        }
    }
}

impl RetryPolicy {
    /// The backoff ceiling after `attempt` failed: `interval × rate^(attempt-1)`, capped.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let exp = i32::try_from(attempt.saturating_sub(1)).unwrap_or(i32::MAX);
        let secs = self.interval.as_secs_f64() * self.backoff_rate.powi(exp);
        if secs.is_finite() && secs < self.max_delay.as_secs_f64() {
            Duration::from_secs_f64(secs)
        } else {
            self.max_delay
        }
    }

    /// The delay to wait under `ceiling`, given a uniform draw `unit` in `[0, 1)`.
    pub fn delay(&self, ceiling: Duration, unit: f64) -> Duration {
        match self.jitter {
            Jitter::Full => ceiling.mul_f64(unit.clamp(0.0, 1.0)),
            Jitter::None => ceiling,
        }
    }
}

/// How the workflow paces jobs: retries, and when an attempt's worker counts as lost.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Policy {
    /// Retries of retryable failures.
    pub retry: RetryPolicy,
    /// How long a queued attempt may wait for a worker to take it before it counts as lost.
    pub queue_timeout: Duration,
    /// How long an attempt may run, from the worker's first heartbeat, before it counts as lost.
    pub task_timeout: Duration,
    /// How long after its last heartbeat a busy worker counts as lost.
    pub heartbeat_timeout: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            retry: RetryPolicy::default(),
            queue_timeout: DEFAULT_QUEUE_TIMEOUT,
            task_timeout: DEFAULT_TASK_TIMEOUT,
            heartbeat_timeout: DEFAULT_HEARTBEAT_TIMEOUT,
        }
    }
}

/// A queued attempt no worker has taken for this long counts as lost.
pub const DEFAULT_QUEUE_TIMEOUT: Duration = Duration::from_secs(3600);
/// An attempt running longer than this, from the worker's first heartbeat, counts as lost.
pub const DEFAULT_TASK_TIMEOUT: Duration = Duration::from_secs(600);
/// A busy attempt with no heartbeat for this long counts as lost.
pub const DEFAULT_HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(120);

/// Where a job rests between events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    /// Its state: never [`JobState::CheckResult`].
    pub state: JobState,
    /// The current (or next) attempt.
    pub attempt: u32,
    /// When a worker first said it holds the current attempt.
    pub started_at: Option<i64>,
}

/// What can happen to a job.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Event<'a> {
    /// A new job is submitted as `attempt`.
    Submitted {
        /// The attempt it starts with (1 for a new job).
        attempt: u32,
    },
    /// A worker says it still holds `attempt`.
    Heartbeat {
        /// The attempt.
        attempt: u32,
    },
    /// A worker finished `attempt` and wrote every rendition.
    Succeeded {
        /// The attempt.
        attempt: u32,
    },
    /// A worker gave up on `attempt`.
    Failed {
        /// The attempt.
        attempt: u32,
        /// Why.
        error: &'a JobError,
    },
    /// The resting state's due time passed: a retry's backoff, or an attempt's deadline.
    Due,
    /// The job's dead letter is on the dead-letter queue.
    DeadLettered,
    /// An operator started a dead-lettered job again from its first attempt.
    Redriven {
        /// `Some(attempt)` when the letter is the message of that attempt, moved by the jobs
        /// queue after too many deliveries: the job never reported it, so it rests in
        /// `ProcessImage` or `Retry` at that attempt, not in `Fail`.
        moved_attempt: Option<u32>,
    },
    /// An input that cannot become a job (a key no backend can carry, a bucket outside the
    /// allow-lists) arrived by a notification or the folder watcher, where nobody can be
    /// answered: it is recorded as a failed job with the reason, and dead-lettered.
    Refused {
        /// Why.
        error: &'a JobError,
    },
}

/// Something to do once a transition is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Send the job's current attempt to the workers.
    SendJob,
    /// Keep the outputs and metadata the worker reported.
    RecordOutputs,
    /// Put the job on the dead-letter queue (then [`Event::DeadLettered`]).
    SendDeadLetter,
}

/// What [`step`] decided: where the job rests next, until when, what to append to its
/// history and what to do.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    /// The next resting position.
    pub to: Position,
    /// When the next [`Event::Due`] fires, in ms since the epoch.
    pub due_at: i64,
    /// The job's last error, when this step sets one.
    pub error: Option<JobError>,
    /// Entries to append to the history, oldest first (none for a heartbeat).
    pub history: Vec<HistoryEntry>,
    /// What to do after storing it.
    pub effects: Vec<Effect>,
}

/// Why an event changes nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Ignored {
    /// A job with this id already exists.
    #[error("the job already exists")]
    Exists,
    /// No such job.
    #[error("unknown job")]
    Unknown,
    /// A report of another attempt, a duplicate, or one that arrived after the job moved on.
    #[error("stale or late report")]
    Stale,
    /// The state has no timer, or the event does not apply to it.
    #[error("nothing to do in this state")]
    NotApplicable,
}

/// Whether a job resting `at` restarts on a redrive: a failed one does; a job whose message
/// the queue moved away restarts from where that same attempt waits (a letter of an older
/// attempt finds a newer one running, and leaves it be).
fn redrivable(at: Position, moved_attempt: Option<u32>) -> bool {
    at.state == JobState::Fail
        || (moved_attempt == Some(at.attempt) && matches!(at.state, JobState::ProcessImage | JobState::Retry))
}

fn entry(now: i64, state: JobState, attempt: u32) -> HistoryEntry {
    HistoryEntry { at: rfc3339(now), state, attempt, error: None, delay_ms: None, ceiling_ms: None, note: None }
}

/// The workflow: given where a job rests (`None`: no such job), an event, the policy, a
/// uniform draw `unit` in `[0, 1)` for the jitter and the time `now` (ms since the
/// epoch), the transition to store — or why the event changes nothing. Pure: callers
/// pass the randomness and the clock.
///
/// # Errors
/// [`Ignored`] when the event does not move the job.
pub fn step(
    at: Option<Position>,
    event: Event<'_>,
    policy: &Policy,
    unit: f64,
    now: i64,
) -> Result<Transition, Ignored> {
    use JobState::{DeadLetter, Fail, ProcessImage, Retry, Success};
    let queued = |attempt: u32, note: Option<&str>| {
        let mut start = entry(now, ProcessImage, attempt);
        start.note = note.map(str::to_owned);
        Transition {
            to: Position { state: ProcessImage, attempt, started_at: None },
            due_at: now + ms(policy.queue_timeout),
            error: None,
            history: vec![start],
            effects: vec![Effect::SendJob],
        }
    };
    match (at, event) {
        (None, Event::Submitted { attempt }) => Ok(queued(attempt, None)),
        (Some(_), Event::Submitted { .. } | Event::Refused { .. }) => Err(Ignored::Exists),
        (None, Event::Refused { error }) => {
            let mut dead = entry(now, JobState::DeadLetter, 0);
            dead.error = Some(error.clone());
            dead.note = Some(crate::dead_letter::REFUSED_NOTE.into());
            Ok(Transition {
                to: Position { state: JobState::DeadLetter, attempt: 0, started_at: None },
                due_at: now,
                error: Some(error.clone()),
                history: vec![dead],
                effects: vec![Effect::SendDeadLetter],
            })
        }
        // Only a failed job restarts: a letter redriven twice (a copy, or a redrive that
        // crashed before it took the letter off the queue) finds its job running or done.
        (at, Event::Redriven { moved_attempt }) if at.is_none_or(|a| redrivable(a, moved_attempt)) => {
            Ok(queued(1, Some("redriven from the dead-letter queue")))
        }
        (Some(_), Event::Redriven { .. }) => Err(Ignored::NotApplicable),
        (None, _) => Err(Ignored::Unknown),
        (Some(at), Event::Heartbeat { attempt }) if at.state == ProcessImage && at.attempt == attempt => {
            // Silence past the heartbeat timeout, or a run past the task timeout, is a lost worker.
            let started = at.started_at.unwrap_or(now);
            let due_at = (now + ms(policy.heartbeat_timeout)).min(started + ms(policy.task_timeout));
            Ok(Transition {
                to: Position { started_at: Some(started), ..at },
                due_at,
                error: None,
                history: Vec::new(),
                effects: Vec::new(),
            })
        }
        // Outputs are deterministic, so a late success of any attempt still counts.
        (Some(at), Event::Succeeded { attempt }) if matches!(at.state, ProcessImage | Retry) => {
            let mut check = entry(now, JobState::CheckResult, attempt);
            check.note = Some("succeeded".into());
            Ok(Transition {
                to: Position { state: Success, attempt: at.attempt, started_at: None },
                due_at: now,
                error: None,
                history: vec![check, entry(now, Success, attempt)],
                effects: vec![Effect::RecordOutputs],
            })
        }
        (Some(at), Event::Failed { attempt, error }) if at.state == ProcessImage && at.attempt == attempt => {
            Ok(check_failure(at.attempt, error, policy, unit, now))
        }
        (Some(at), Event::Due) if at.state == ProcessImage => {
            let lost =
                JobError::retryable("WorkerLost", format!("no report for attempt {} before its deadline", at.attempt));
            Ok(check_failure(at.attempt, &lost, policy, unit, now))
        }
        (Some(at), Event::Due) if at.state == Retry => Ok(queued(at.attempt, None)),
        (Some(at), Event::DeadLettered) if at.state == DeadLetter => Ok(Transition {
            to: Position { state: Fail, attempt: at.attempt, started_at: None },
            due_at: now,
            error: None,
            history: vec![entry(now, Fail, at.attempt)],
            effects: Vec::new(),
        }),
        (Some(_), Event::Heartbeat { .. } | Event::Succeeded { .. } | Event::Failed { .. }) => Err(Ignored::Stale),
        (Some(_), Event::Due | Event::DeadLettered) => Err(Ignored::NotApplicable),
    }
}

/// `CheckResult` after `attempt` failed with `error`: retry with backoff while attempts
/// are left and the error is retryable, else dead-letter.
fn check_failure(attempt: u32, error: &JobError, policy: &Policy, unit: f64, now: i64) -> Transition {
    let mut check = entry(now, JobState::CheckResult, attempt);
    check.error = Some(error.clone());
    match decide(error, attempt, &policy.retry, unit) {
        Decision::Retry { next_attempt, delay, ceiling } => {
            let mut retry = entry(now, JobState::Retry, attempt);
            retry.delay_ms = u64::try_from(delay.as_millis()).ok();
            retry.ceiling_ms = u64::try_from(ceiling.as_millis()).ok();
            Transition {
                to: Position { state: JobState::Retry, attempt: next_attempt, started_at: None },
                due_at: now + ms(delay),
                error: Some(error.clone()),
                history: vec![check, retry],
                effects: Vec::new(),
            }
        }
        Decision::DeadLetter(reason) => {
            let mut dead = entry(now, JobState::DeadLetter, attempt);
            dead.error = Some(reason.clone());
            Transition {
                to: Position { state: JobState::DeadLetter, attempt, started_at: None },
                due_at: now,
                error: Some(reason),
                history: vec![check, dead],
                effects: vec![Effect::SendDeadLetter],
            }
        }
    }
}

/// What `CheckResult` decides after a failed attempt.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Try again after `delay` (drawn under `ceiling`) as attempt `next_attempt`.
    Retry {
        /// The attempt to start next.
        next_attempt: u32,
        /// How long to wait.
        delay: Duration,
        /// The backoff ceiling the delay was drawn under.
        ceiling: Duration,
    },
    /// Give up: dead-letter the job with this reason.
    DeadLetter(JobError),
}

/// The decision after attempt `attempt` failed with `error`. `unit` is a uniform draw in
/// `[0, 1)` for the jitter, passed in so this stays pure.
pub fn decide(error: &JobError, attempt: u32, policy: &RetryPolicy, unit: f64) -> Decision {
    if !error.is_retryable() {
        return Decision::DeadLetter(error.clone());
    }
    if attempt < policy.max_attempts {
        let ceiling = policy.ceiling(attempt);
        return Decision::Retry { next_attempt: attempt + 1, delay: policy.delay(ceiling, unit), ceiling };
    }
    Decision::DeadLetter(JobError::permanent(
        error.code.clone(),
        format!("{} (gave up after {attempt} attempts)", error.message),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use JobState::{DeadLetter, Fail, ProcessImage, Retry, Success};

    fn policy(jitter: Jitter) -> RetryPolicy {
        RetryPolicy { jitter, ..RetryPolicy::default() }
    }

    #[test]
    fn decisions_by_table() {
        let retryable = JobError::retryable("Throttled", "slow down");
        let permanent = JobError::permanent("NotAnImage", "text");
        let p = policy(Jitter::None);
        let secs = Duration::from_secs;
        let cases: Vec<(&JobError, u32, Decision)> = vec![
            (&retryable, 1, Decision::Retry { next_attempt: 2, delay: secs(2), ceiling: secs(2) }),
            (&retryable, 2, Decision::Retry { next_attempt: 3, delay: secs(4), ceiling: secs(4) }),
            (&retryable, 3, Decision::Retry { next_attempt: 4, delay: secs(8), ceiling: secs(8) }),
            (&permanent, 1, Decision::DeadLetter(permanent.clone())),
        ];
        for (error, attempt, want) in cases {
            assert_eq!(decide(error, attempt, &p, 0.5), want, "attempt {attempt}");
        }
        match decide(&retryable, 4, &p, 0.5) {
            Decision::DeadLetter(e) => {
                assert!(!e.is_retryable() && e.code == "Throttled" && e.message.contains("after 4 attempts"));
            }
            other => panic!("attempts spent must dead-letter, got {other:?}"),
        }
    }

    fn at(state: JobState, attempt: u32) -> Option<Position> {
        Some(Position { state, attempt, started_at: None })
    }

    /// Every (position, event) pair the engine meets, and where it leads: the next state,
    /// attempt, history states and effects — or why it is ignored.
    #[test]
    fn steps_by_table() {
        let p = Policy { retry: policy(Jitter::None), ..Policy::default() };
        let retryable = JobError::retryable("S3", "503");
        let permanent = JobError::permanent("NotAnImage", "text");
        let now = 1_000_000;
        let (letter, moved) = (Event::Redriven { moved_attempt: None }, Event::Redriven { moved_attempt: Some(2) });
        type Want = Result<(JobState, u32, Vec<JobState>, Vec<Effect>), Ignored>;
        let cases: Vec<(Option<Position>, Event<'_>, Want)> = vec![
            (None, Event::Submitted { attempt: 1 }, Ok((ProcessImage, 1, vec![ProcessImage], vec![Effect::SendJob]))),
            (at(Success, 1), Event::Submitted { attempt: 1 }, Err(Ignored::Exists)),
            (None, Event::Heartbeat { attempt: 1 }, Err(Ignored::Unknown)),
            (at(ProcessImage, 2), Event::Heartbeat { attempt: 2 }, Ok((ProcessImage, 2, vec![], vec![]))),
            (at(ProcessImage, 2), Event::Heartbeat { attempt: 1 }, Err(Ignored::Stale)),
            (
                at(ProcessImage, 1),
                Event::Succeeded { attempt: 1 },
                Ok((Success, 1, vec![JobState::CheckResult, Success], vec![Effect::RecordOutputs])),
            ),
            (
                at(Retry, 2),
                Event::Succeeded { attempt: 1 },
                Ok((Success, 2, vec![JobState::CheckResult, Success], vec![Effect::RecordOutputs])),
            ),
            (at(Success, 1), Event::Succeeded { attempt: 1 }, Err(Ignored::Stale)),
            (
                at(ProcessImage, 1),
                Event::Failed { attempt: 1, error: &retryable },
                Ok((Retry, 2, vec![JobState::CheckResult, Retry], vec![])),
            ),
            (
                at(ProcessImage, 4),
                Event::Failed { attempt: 4, error: &retryable },
                Ok((DeadLetter, 4, vec![JobState::CheckResult, DeadLetter], vec![Effect::SendDeadLetter])),
            ),
            (
                at(ProcessImage, 1),
                Event::Failed { attempt: 1, error: &permanent },
                Ok((DeadLetter, 1, vec![JobState::CheckResult, DeadLetter], vec![Effect::SendDeadLetter])),
            ),
            (at(ProcessImage, 2), Event::Failed { attempt: 1, error: &permanent }, Err(Ignored::Stale)),
            (at(ProcessImage, 1), Event::Due, Ok((Retry, 2, vec![JobState::CheckResult, Retry], vec![]))),
            (at(Retry, 2), Event::Due, Ok((ProcessImage, 2, vec![ProcessImage], vec![Effect::SendJob]))),
            (at(Success, 1), Event::Due, Err(Ignored::NotApplicable)),
            (at(DeadLetter, 3), Event::DeadLettered, Ok((Fail, 3, vec![Fail], vec![]))),
            (at(Fail, 3), Event::DeadLettered, Err(Ignored::NotApplicable)),
            (at(Fail, 3), letter, Ok((ProcessImage, 1, vec![ProcessImage], vec![Effect::SendJob]))),
            (None, letter, Ok((ProcessImage, 1, vec![ProcessImage], vec![Effect::SendJob]))),
            (at(ProcessImage, 1), letter, Err(Ignored::NotApplicable)),
            (at(Success, 1), letter, Err(Ignored::NotApplicable)),
            (at(DeadLetter, 3), letter, Err(Ignored::NotApplicable)),
            (at(ProcessImage, 2), moved, Ok((ProcessImage, 1, vec![ProcessImage], vec![Effect::SendJob]))),
            (at(Retry, 2), moved, Ok((ProcessImage, 1, vec![ProcessImage], vec![Effect::SendJob]))),
            (at(Success, 2), moved, Err(Ignored::NotApplicable)),
            (at(ProcessImage, 3), moved, Err(Ignored::NotApplicable)),
            (
                None,
                Event::Refused { error: &permanent },
                Ok((DeadLetter, 0, vec![DeadLetter], vec![Effect::SendDeadLetter])),
            ),
            (at(Fail, 0), Event::Refused { error: &permanent }, Err(Ignored::Exists)),
        ];
        for (from, event, want) in cases {
            let got = step(from, event, &p, 0.5, now)
                .map(|t| (t.to.state, t.to.attempt, t.history.iter().map(|h| h.state).collect::<Vec<_>>(), t.effects));
            assert_eq!(got, want, "{from:?} on {event:?}");
            // Every step the table takes is one the workflow allows (a late success while
            // waiting to retry is the one shortcut: its outputs are as good as the next attempt's).
            let late_success = matches!(event, Event::Succeeded { .. }) && from.is_some_and(|f| f.state == Retry);
            if let (Some(from), Ok((to, _, _, _)), false) = (from, &got, late_success) {
                if from.state != *to && *to != ProcessImage {
                    let through_check = allows(JobState::CheckResult, *to) && allows(from.state, JobState::CheckResult);
                    assert!(allows(from.state, *to) || through_check, "{from:?} -> {to:?}");
                }
            }
        }
    }

    #[test]
    fn deadlines_follow_the_policy() {
        let p = Policy::default();
        let now = 10_000_000;
        let queued = step(None, Event::Submitted { attempt: 1 }, &p, 0.0, now).expect("moves");
        assert_eq!(queued.due_at, now + ms(p.queue_timeout), "a queued attempt waits the queue timeout");
        let first = step(at(ProcessImage, 1), Event::Heartbeat { attempt: 1 }, &p, 0.0, now).expect("moves");
        assert_eq!((first.to.started_at, first.due_at), (Some(now), now + ms(p.heartbeat_timeout)));
        // Near the task timeout, the deadline is capped by it rather than pushed back again.
        let late = now + ms(p.task_timeout) - 1_000;
        let capped = step(Some(first.to), Event::Heartbeat { attempt: 1 }, &p, 0.0, late).expect("moves");
        assert_eq!(capped.due_at, now + ms(p.task_timeout));
        let failed = JobError::retryable("S3", "503");
        let retry =
            step(at(ProcessImage, 1), Event::Failed { attempt: 1, error: &failed }, &p, 0.5, now).expect("moves");
        assert_eq!(retry.due_at, now + 1_000, "half of the 2 s ceiling");
        assert_eq!((retry.history[1].delay_ms, retry.history[1].ceiling_ms), (Some(1_000), Some(2_000)));
        assert_eq!(retry.error, Some(failed));
    }

    #[test]
    fn ceiling_grows_then_caps() {
        let p = RetryPolicy { max_delay: Duration::from_secs(10), ..policy(Jitter::None) };
        let got: Vec<u64> = (1..=6).map(|a| p.ceiling(a).as_secs()).collect();
        assert_eq!(got, [2, 4, 8, 10, 10, 10]);
        assert_eq!(p.ceiling(u32::MAX), Duration::from_secs(10));
    }

    #[test]
    fn full_jitter_stays_under_the_ceiling() {
        let p = policy(Jitter::Full);
        let c = Duration::from_secs(8);
        assert_eq!(p.delay(c, 0.0), Duration::ZERO);
        assert_eq!(p.delay(c, 0.25), Duration::from_secs(2));
        assert!(p.delay(c, 0.999_999) <= c);
        assert_eq!(p.delay(c, 7.0), c, "out-of-range draws are clamped");
    }

    #[test]
    fn the_state_table_is_closed() {
        for (from, next) in STATES {
            for to in *next {
                assert!(STATES.iter().any(|(n, _)| n == to), "{from} -> {to} names an unknown state");
                assert!(allows(*from, *to));
            }
            assert_eq!(JobState::parse(from.as_str()), Some(*from));
        }
        assert!(!allows(JobState::Success, JobState::Retry));
        assert!(!allows(JobState::ProcessImage, JobState::Success), "every result goes through CheckResult");
    }
}
