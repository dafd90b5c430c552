//! Fault injection for drills and tests: slow every attempt down, or fail the first
//! attempts of every job with a retryable error. Off unless `IMGPIPE_FAULTS` is set,
//! e.g. `IMGPIPE_FAULTS="delay-ms=3000,fail-attempts=2"`.

use std::time::Duration;

use pipeline_core::JobError;
use pipeline_core::message::Job;

/// Faults to inject into every attempt.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// Sleep this long before processing (heartbeats keep running).
    pub delay: Duration,
    /// Fail attempts `1..=fail_attempts` of every job with a retryable error.
    pub fail_attempts: u32,
}

impl Faults {
    /// Reads a spec like `delay-ms=3000,fail-attempts=2`; an empty spec injects nothing.
    ///
    /// # Errors
    /// A sentence naming the part that is not understood.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let mut faults = Faults::default();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, value) = part.split_once('=').ok_or_else(|| format!("fault {part:?} is not name=value"))?;
            let n: u64 = value.parse().map_err(|_| format!("fault {name}: {value:?} is not a number"))?;
            match name {
                "delay-ms" => faults.delay = Duration::from_millis(n),
                "fail-attempts" => faults.fail_attempts = u32::try_from(n).unwrap_or(u32::MAX),
                _ => return Err(format!("unknown fault {name:?} (known: delay-ms, fail-attempts)")),
            }
        }
        Ok(faults)
    }

    /// Applies the faults to one attempt.
    ///
    /// # Errors
    /// A retryable `InjectedFault` for the attempts configured to fail.
    pub async fn before_attempt(&self, job: &Job) -> Result<(), JobError> {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        if job.attempt <= self.fail_attempts {
            return Err(JobError::retryable(
                "InjectedFault",
                format!("fault injected into attempt {} of {}", job.attempt, self.fail_attempts),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_specs() {
        assert_eq!(Faults::parse("").expect("empty"), Faults::default());
        let f = Faults::parse("delay-ms=1500, fail-attempts=2").expect("both");
        assert_eq!((f.delay, f.fail_attempts), (Duration::from_millis(1500), 2));
        assert!(Faults::parse("explode=1").is_err());
        assert!(Faults::parse("delay-ms").is_err());
        assert!(Faults::parse("delay-ms=soon").is_err());
    }
}
