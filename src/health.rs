//! Liveness for containers: a running `serve` or `worker` rewrites a heartbeat file every few
//! seconds from its async runtime, and `imgpipe health` (the image's `HEALTHCHECK`) exits 0
//! only while that file is fresh. A wedged runtime stops the beats; a dead process stops them
//! too. Nothing is written unless a file is named (`IMGPIPE_HEALTH_FILE`).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

/// How often the heartbeat file is rewritten.
pub const BEAT_EVERY: Duration = Duration::from_secs(5);

/// Rewrites `path` every [`BEAT_EVERY`] until `shutdown`, then removes it (a stopping
/// process is no longer healthy).
pub fn beat(path: PathBuf, shutdown: CancellationToken) {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(BEAT_EVERY);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = ticks.tick() => {
                    let now = unix_now();
                    if let Err(e) = tokio::fs::write(&path, now).await {
                        tracing::warn!(path = %path.display(), error = %e, "cannot write the health file");
                    }
                }
            }
        }
        let _ = tokio::fs::remove_file(&path).await;
    });
}

fn unix_now() -> String {
    let secs = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    format!("{secs}\n")
}

/// Whether the heartbeat file at `path` was written within `max_age`.
///
/// # Errors
/// A sentence saying why the process counts as unhealthy.
pub fn check(path: &Path, max_age: Duration) -> anyhow::Result<()> {
    let modified = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .map_err(|e| anyhow::anyhow!("no heartbeat at {}: {e}", path.display()))?;
    let age = SystemTime::now().duration_since(modified).unwrap_or(Duration::ZERO);
    anyhow::ensure!(age <= max_age, "last heartbeat {}s ago (more than {}s)", age.as_secs(), max_age.as_secs());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn wait_for(what: impl Fn() -> bool) {
        for _ in 0..200 {
            if what() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn beats_while_running_and_stops_with_the_process() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("health");
        let stop = CancellationToken::new();
        assert!(check(&path, Duration::from_secs(30)).is_err(), "no file yet");
        beat(path.clone(), stop.clone());
        wait_for(|| path.exists()).await;
        check(&path, Duration::from_secs(30)).expect("fresh after the first beat");
        stop.cancel();
        wait_for(|| !path.exists()).await;
        let err = check(&path, Duration::from_secs(30)).expect_err("removed at shutdown");
        assert!(err.to_string().contains("no heartbeat"), "{err}");
    }

    #[test]
    fn a_stale_file_is_unhealthy() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("health");
        std::fs::write(&path, "1\n").expect("write");
        let old = SystemTime::now() - Duration::from_secs(120);
        std::fs::File::options().write(true).open(&path).and_then(|f| f.set_modified(old)).expect("set mtime");
        let err = check(&path, Duration::from_secs(30)).expect_err("stale");
        assert!(err.to_string().contains("more than 30s"), "{err}");
        check(&path, Duration::from_secs(300)).expect("fresh enough for a longer limit");
    }
}
