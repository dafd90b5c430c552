//! Crash points: the places between two durable steps where a process that dies leaves
//! work half done. A drill or test arms one (`IMGPIPE_FAULTS=crash-at=<point>`) and the
//! process aborts when it gets there, as a power cut or a `kill -9` would; what runs next
//! must finish the work exactly once. Unarmed, a point costs one atomic load.

use std::sync::OnceLock;

/// The embedded engine has committed a job's attempt and not yet sent it to the workers.
pub const JOB_RECORDED: &str = "job-recorded";
/// A worker has written the outputs and not yet reported them.
pub const OUTPUTS_WRITTEN: &str = "outputs-written";
/// A worker has delivered its report and not yet deleted the job message.
pub const REPORTED: &str = "reported";
/// The embedded engine has sent a dead letter and not yet moved the job to `Fail`.
pub const LETTER_SENT: &str = "letter-sent";
/// A redrive has started a job again and not yet taken its letter off the queue.
pub const REDRIVEN: &str = "redriven";

/// Every crash point, in the order a job meets them.
pub const POINTS: &[&str] = &[JOB_RECORDED, OUTPUTS_WRITTEN, REPORTED, LETTER_SENT, REDRIVEN];

static ARMED: OnceLock<&'static str> = OnceLock::new();

/// Checks that `point` names a crash point.
///
/// # Errors
/// A sentence listing the known points.
pub fn known(point: &str) -> Result<&'static str, String> {
    POINTS
        .iter()
        .copied()
        .find(|p| *p == point)
        .ok_or_else(|| format!("unknown crash point {point:?} (known: {})", POINTS.join(", ")))
}

/// Makes this process abort at `point`. The first point armed stays armed.
///
/// # Errors
/// `point` is not a crash point.
pub fn arm(point: &str) -> Result<(), String> {
    let point = known(point)?;
    if ARMED.get_or_init(|| point) != &point {
        tracing::warn!(point, "another crash point is already armed");
    }
    Ok(())
}

/// Aborts the process if `point` is armed.
pub fn reach(point: &str) {
    if ARMED.get().is_some_and(|armed| *armed == point) {
        tracing::error!(point, "crash point reached: aborting");
        std::process::abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_known_points_arm() {
        assert_eq!(known("reported"), Ok(REPORTED));
        let err = known("elsewhere").expect_err("unknown");
        assert!(err.contains("job-recorded") && err.contains("redriven"), "{err}");
        // Unarmed, every point passes.
        for point in POINTS {
            reach(point);
        }
    }
}
