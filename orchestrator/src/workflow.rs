//! `ImageProcessingWorkflow` as plain data and pure functions. The embedded engine runs
//! these; the Step Functions definition is generated from the same [`RetryPolicy`] and
//! [`STATES`], so the two cannot drift apart.
//!
//! ```text
//! ProcessImage ─report─▶ CheckResult ─succeeded─▶ Success
//!      ▲                     ├─retryable, attempts left─▶ Retry ─(backoff)─┐
//!      └─────────────────────┼──────────────────────────────────────────────┘
//!                            └─permanent / attempts spent / worker lost─▶ DeadLetter ─▶ Fail
//! ```

use std::time::Duration;

use pipeline_core::JobError;

/// The workflow's name, in logs, metrics and the state machine.
pub const WORKFLOW_NAME: &str = "ImageProcessingWorkflow";

/// Each state of the workflow and the states it may move to.
pub const STATES: &[(&str, &[&str])] = &[
    ("ProcessImage", &["CheckResult"]),
    ("CheckResult", &["Success", "Retry", "DeadLetter"]),
    ("Retry", &["ProcessImage"]),
    ("DeadLetter", &["Fail"]),
    ("Success", &[]),
    ("Fail", &[]),
];

/// Whether the workflow allows moving from `from` to `to`.
pub fn allows(from: &str, to: &str) -> bool {
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

/// What `CheckResult` decides after an attempt.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// The job succeeded.
    Succeed,
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

/// `CheckResult`: the transition after attempt `attempt` ended with `outcome`.
/// `unit` is a uniform draw in `[0, 1)` for the jitter, passed in so this stays pure.
pub fn check_result(outcome: Result<(), &JobError>, attempt: u32, policy: &RetryPolicy, unit: f64) -> Decision {
    match outcome {
        Ok(()) => Decision::Succeed,
        Err(e) if e.is_retryable() && attempt < policy.max_attempts => {
            let ceiling = policy.ceiling(attempt);
            Decision::Retry { next_attempt: attempt + 1, delay: policy.delay(ceiling, unit), ceiling }
        }
        Err(e) if e.is_retryable() => Decision::DeadLetter(JobError::permanent(
            e.code.clone(),
            format!("{} (gave up after {attempt} attempts)", e.message),
        )),
        Err(e) => Decision::DeadLetter(e.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(jitter: Jitter) -> RetryPolicy {
        RetryPolicy { jitter, ..RetryPolicy::default() }
    }

    #[test]
    fn transitions_by_table() {
        let retryable = JobError::retryable("Throttled", "slow down");
        let permanent = JobError::permanent("NotAnImage", "text");
        let p = policy(Jitter::None);
        let secs = Duration::from_secs;
        let cases: Vec<(Result<(), &JobError>, u32, Decision)> = vec![
            (Ok(()), 1, Decision::Succeed),
            (Ok(()), 4, Decision::Succeed),
            (Err(&retryable), 1, Decision::Retry { next_attempt: 2, delay: secs(2), ceiling: secs(2) }),
            (Err(&retryable), 2, Decision::Retry { next_attempt: 3, delay: secs(4), ceiling: secs(4) }),
            (Err(&retryable), 3, Decision::Retry { next_attempt: 4, delay: secs(8), ceiling: secs(8) }),
            (Err(&permanent), 1, Decision::DeadLetter(permanent.clone())),
        ];
        for (outcome, attempt, want) in cases {
            assert_eq!(check_result(outcome, attempt, &p, 0.5), want, "attempt {attempt}");
        }
        match check_result(Err(&retryable), 4, &p, 0.5) {
            Decision::DeadLetter(e) => {
                assert!(!e.is_retryable() && e.code == "Throttled" && e.message.contains("after 4 attempts"));
            }
            other => panic!("attempts spent must dead-letter, got {other:?}"),
        }
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
                assert!(allows(from, to));
            }
        }
        assert!(!allows("Success", "Retry"));
        assert!(!allows("ProcessImage", "Success"), "every result goes through CheckResult");
    }
}
