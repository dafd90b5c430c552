//! Fault injection for drills and tests: slow every attempt down, fail the first
//! attempts of every job with a retryable error, or crash the whole process on a job (as
//! a decoder bug would), or at one of the named crash points between two durable steps
//! ([`pipeline_core::crash`]). Off unless `IMGPIPE_FAULTS` is set, e.g.
//! `IMGPIPE_FAULTS="delay-ms=3000,fail-attempts=2,crash-key=poison"` or `crash-at=reported`.

use std::time::Duration;

use protocol::JobError;
use protocol::message::Job;

/// Faults to inject into every attempt.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// Sleep this long before processing (heartbeats keep running).
    pub delay: Duration,
    /// Fail attempts `1..=fail_attempts` of every job with a retryable error.
    pub fail_attempts: u32,
    /// Abort the process on any job whose source key contains this text.
    pub crash_key: Option<String>,
    /// Abort the process at this crash point (armed by [`Faults::arm`]).
    pub crash_at: Option<&'static str>,
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
            if name == "crash-key" {
                faults.crash_key = Some(value.to_owned()).filter(|v| !v.is_empty());
                continue;
            }
            if name == "crash-at" {
                faults.crash_at = Some(pipeline_core::crash::known(value)?);
                continue;
            }
            let n: u64 = value.parse().map_err(|_| format!("fault {name}: {value:?} is not a number"))?;
            match name {
                "delay-ms" => faults.delay = Duration::from_millis(n),
                "fail-attempts" => faults.fail_attempts = u32::try_from(n).unwrap_or(u32::MAX),
                _ => {
                    return Err(format!(
                        "unknown fault {name:?} (known: delay-ms, fail-attempts, crash-key, crash-at)"
                    ));
                }
            }
        }
        Ok(faults)
    }

    /// Arms the crash point, if one is named, for the whole process.
    pub fn arm(&self) {
        if let Some(point) = self.crash_at {
            // Known: `parse` checked the name.
            let _ = pipeline_core::crash::arm(point);
        }
    }

    /// Applies the faults to one attempt.
    ///
    /// # Errors
    /// A retryable `InjectedFault` for the attempts configured to fail.
    pub async fn before_attempt(&self, job: &Job) -> Result<(), JobError> {
        if self.crash_key.as_deref().is_some_and(|k| job.source_key.contains(k)) {
            tracing::error!(key = ?job.source_key, "injected crash");
            std::process::abort();
        }
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
        assert_eq!(Faults::parse("crash-key=poison").expect("crash").crash_key.as_deref(), Some("poison"));
        assert_eq!(Faults::parse("crash-at=reported").expect("point").crash_at, Some("reported"));
        assert!(Faults::parse("crash-at=nowhere").is_err());
        assert!(Faults::parse("explode=1").is_err());
        assert!(Faults::parse("delay-ms").is_err());
        assert!(Faults::parse("delay-ms=soon").is_err());
    }
}
