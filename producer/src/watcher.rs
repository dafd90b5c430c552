//! Watches the local original bucket and makes one job per completed file. A file
//! counts as complete once its size and modification time have held still for a
//! settle period; names of in-progress copies (`.name`, `*.tmp`, `*.part`, `*~`) are
//! skipped. What was submitted is recorded in SQLite, so a restart does not submit a
//! file twice, while a file replaced by new content is processed again.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pipeline_core::sqlite::{Db, DbError};
use protocol::rendition::Rendition;
use rusqlite::params;
use tokio_util::sync::CancellationToken;

use protocol::intake::IntakeError;

use crate::intake::{Intake, ProcessRequest, Taken};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS watched_files (
    bucket   TEXT    NOT NULL,
    key      TEXT    NOT NULL,
    size     INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    job_id   TEXT    NOT NULL,
    PRIMARY KEY (bucket, key)
);
";

/// A file's identity for change detection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    size: u64,
    mtime_ns: i64,
}

/// The folder watcher on one bucket.
#[derive(Clone, Debug)]
pub struct FolderWatcher {
    /// The folder of the watched bucket.
    pub dir: PathBuf,
    /// The watched bucket's name.
    pub source_bucket: String,
    /// Where renditions go.
    pub destination_bucket: String,
    /// How long a file must hold still before it counts as complete.
    pub settle: Duration,
    /// How often the folder is scanned.
    pub interval: Duration,
    /// Starts the jobs.
    pub intake: Intake,
    db: Db,
}

impl FolderWatcher {
    /// A watcher recording what it submitted in `db`.
    ///
    /// # Errors
    /// The table cannot be created.
    pub fn new(
        db: &Db,
        dir: PathBuf,
        source_bucket: &str,
        destination_bucket: &str,
        intake: Intake,
    ) -> Result<Self, DbError> {
        db.call_sync(|c| c.execute_batch(SCHEMA))?;
        Ok(Self {
            dir,
            source_bucket: source_bucket.into(),
            destination_bucket: destination_bucket.into(),
            settle: Duration::from_millis(1000),
            interval: Duration::from_millis(250),
            intake,
            db: db.clone(),
        })
    }

    /// Scans until `shutdown` is cancelled.
    pub async fn run(self, shutdown: CancellationToken) {
        tracing::info!(dir = %self.dir.display(), bucket = %self.source_bucket, "watching for new images");
        let mut pending: HashMap<String, (Stamp, SystemTime)> = HashMap::new();
        loop {
            if let Err(e) = self.scan_once(&mut pending).await {
                tracing::warn!(error = %e, "watch scan failed");
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(self.interval) => {}
            }
        }
    }

    /// One scan: submits every file that has held still for the settle period and was
    /// not submitted before with the same size and time. `pending` carries what was
    /// seen between scans.
    ///
    /// # Errors
    /// The folder or the database could not be read.
    async fn scan_once(&self, pending: &mut HashMap<String, (Stamp, SystemTime)>) -> Result<usize, DbError> {
        let dir = self.dir.clone();
        let (buckets, bucket) = (self.intake.buckets.clone(), self.source_bucket.clone());
        let files = tokio::task::spawn_blocking(move || {
            let mut files = Vec::new();
            walk(&dir, "", &mut files);
            files.retain(|(key, _, _)| !buckets.is_output(&bucket, key));
            files
        })
        .await
        .map_err(|e| DbError::new(e.to_string()))?;

        let now = SystemTime::now();
        let recorded = self.recorded().await?;
        let mut submitted = 0;
        let mut present = HashMap::new();
        for (key, stamp, unreadable_name) in files {
            present.insert(key.clone(), ());
            if recorded.get(&key) == Some(&stamp) {
                continue;
            }
            let mtime = UNIX_EPOCH + Duration::from_nanos(u64::try_from(stamp.mtime_ns).unwrap_or(0));
            let settled_since = match pending.get(&key) {
                Some((seen, since)) if *seen == stamp => *since,
                _ => {
                    pending.insert(key.clone(), (stamp, now));
                    continue;
                }
            };
            // A time in the future (a skewed clock, an unpacked archive) says nothing of when the
            // file was written: it settles by what the scans saw, instead of waiting for its date.
            let written = if mtime > now { settled_since } else { settled_since.max(mtime) };
            let quiet = now.duration_since(written).unwrap_or_default();
            if quiet < self.settle {
                continue;
            }
            pending.remove(&key);
            let request = ProcessRequest {
                source_bucket: self.source_bucket.clone(),
                source_key: key.clone(),
                destination_bucket: self.destination_bucket.clone(),
                renditions: Some(vec![Rendition::thumbnail()]),
                sidecar: None,
            };
            let taken = match unreadable_name {
                // Not a key any store can carry: refused for what it is, not looked up.
                true => self.intake.refuse(request, IntakeError::InvalidKey("the file name is not UTF-8".into())).await,
                false => self.intake.take(request).await,
            };
            match taken {
                Ok(Taken::Started(job)) => {
                    self.record(&key, stamp, &job.job_id).await?;
                    submitted += 1;
                }
                Ok(Taken::Refused(job, _)) => self.record(&key, stamp, &job.job_id).await?,
                Ok(Taken::Skipped(e)) => {
                    tracing::info!(?key, error = %e, "not submitting this file");
                    self.record(&key, stamp, "").await?;
                }
                Err(e) => tracing::warn!(?key, error = %e, "could not submit; will try again"),
            }
        }
        pending.retain(|k, _| present.contains_key(k));
        Ok(submitted)
    }

    /// What was submitted from this bucket, read once per scan.
    async fn recorded(&self) -> Result<HashMap<String, Stamp>, DbError> {
        let bucket = self.source_bucket.clone();
        self.db
            .call(move |c| -> Result<HashMap<String, Stamp>, DbError> {
                let mut stmt = c.prepare_cached("SELECT key, size, mtime_ns FROM watched_files WHERE bucket = ?1")?;
                let rows = stmt.query_map(params![bucket], |r| {
                    Ok((r.get::<_, String>(0)?, Stamp { size: r.get(1)?, mtime_ns: r.get(2)? }))
                })?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .await
    }

    async fn record(&self, key: &str, stamp: Stamp, job_id: &str) -> Result<(), DbError> {
        record_stamp(&self.db, &self.source_bucket, key, stamp, job_id).await
    }
}

/// Records that `key`, whose file is `path`, already has a job, so the watcher does not
/// start a second one for it (used by `imgpipe submit`, which writes into the bucket).
///
/// # Errors
/// The file or the database could not be read.
pub async fn mark_submitted(db: &Db, bucket: &str, key: &str, path: &Path, job_id: &str) -> Result<(), DbError> {
    db.call_sync(|c| c.execute_batch(SCHEMA))?;
    let md = std::fs::metadata(path).map_err(|e| DbError::new(format!("{}: {e}", path.display())))?;
    record_stamp(db, bucket, key, Stamp { size: md.len(), mtime_ns: mtime_ns(&md) }, job_id).await
}

async fn record_stamp(db: &Db, bucket: &str, key: &str, stamp: Stamp, job_id: &str) -> Result<(), DbError> {
    let (bucket, key, job_id) = (bucket.to_owned(), key.to_owned(), job_id.to_owned());
    db.call(move |c| -> Result<(), DbError> {
        c.execute(
            "INSERT OR REPLACE INTO watched_files (bucket, key, size, mtime_ns, job_id) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![bucket, key, stamp.size, stamp.mtime_ns, job_id],
        )?;
        Ok(())
    })
    .await
}

fn mtime_ns(md: &std::fs::Metadata) -> i64 {
    md.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// Whether a file name looks like a copy still in progress.
fn in_progress(name: &str) -> bool {
    name.starts_with('.')
        || name.ends_with('~')
        || [".tmp", ".part", ".partial", ".crdownload", ".swp"].iter().any(|s| name.ends_with(s))
}

/// Every file under `dir`: its key, its stamp, and whether its name (or a folder's on its
/// path) is not UTF-8 — such a key is shown with U+FFFD and refused, never looked up.
fn walk(dir: &Path, prefix: &str, out: &mut Vec<(String, Stamp, bool)>) {
    walk_names(dir, prefix, false, out);
}

fn walk_names(dir: &Path, prefix: &str, unreadable: bool, out: &mut Vec<(String, Stamp, bool)>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let (name, lossy) = match file_name.to_str() {
            Some(name) => (name.to_owned(), false),
            None => (file_name.to_string_lossy().into_owned(), true),
        };
        if in_progress(&name) {
            continue;
        }
        let Ok(md) = entry.metadata() else { continue };
        if md.is_dir() {
            walk_names(&entry.path(), &format!("{prefix}{name}/"), unreadable || lossy, out);
        } else if md.is_file() {
            let stamp = Stamp { size: md.len(), mtime_ns: mtime_ns(&md) };
            out.push((format!("{prefix}{name}"), stamp, unreadable || lossy));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::in_progress;

    #[test]
    fn in_progress_names_are_skipped() {
        for name in [".photo.jpg.abc123", "photo.jpg.part", "photo.jpg~", "x.tmp", "a.crdownload"] {
            assert!(in_progress(name), "{name}");
        }
        for name in ["photo.jpg", "IMG_0001.HEIC", "a.b.png"] {
            assert!(!in_progress(name), "{name}");
        }
    }
}
