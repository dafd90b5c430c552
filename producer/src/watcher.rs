//! Watches the local original bucket and makes one job per completed file. A file
//! renamed into the folder (how an upload is published whole: written under a temporary
//! name, then renamed) counts as complete at once, told by the kernel's file events; any
//! other file once its size and modification time have held still for a settle period,
//! found by a scan of the folder. Names of in-progress copies (`.name`, `*.tmp`, `*.part`,
//! `*~`) are skipped. What was submitted is recorded in SQLite, so a restart does not submit a
//! file twice, while a file replaced by new content is processed again.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use notify::event::{EventKind, ModifyKind, RenameMode};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
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

    /// Scans every `interval` until `shutdown` is cancelled; between scans, takes every file
    /// renamed into the folder at once. A scan of a large folder waits longer: the pause
    /// after a scan is at least [`SCAN_PAUSE_FACTOR`] times what the scan took, so walking
    /// the folder costs at most a few per cent of a core whatever its size (renamed files
    /// are still taken at once).
    pub async fn run(self, shutdown: CancellationToken) {
        tracing::info!(dir = %self.dir.display(), bucket = %self.source_bucket, "watching for new images");
        let (renamed_tx, mut renamed) = tokio::sync::mpsc::channel(RENAMED_BACKLOG);
        let _events = watch_renames(&self.dir, renamed_tx);
        let mut seen = Seen::default();
        let mut next_scan = tokio::time::Instant::now();
        loop {
            let done = tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep_until(next_scan) => {
                    let started = tokio::time::Instant::now();
                    let done = self.scan_once(&mut seen).await;
                    next_scan = tokio::time::Instant::now() + self.interval.max(started.elapsed() * SCAN_PAUSE_FACTOR);
                    done
                }
                Some(first) = renamed.recv() => {
                    let mut paths = BTreeSet::from([first]);
                    while let Ok(path) = renamed.try_recv() {
                        paths.insert(path);
                    }
                    self.take_renamed(paths, &mut seen).await
                }
            };
            if let Err(e) = done {
                tracing::warn!(error = %e, "watch scan failed");
            }
        }
    }

    /// One scan: submits every file that has held still for the settle period and was
    /// not submitted before with the same size and time. `seen` carries what was seen and
    /// recorded between scans, so only new or changed files cost a database read.
    ///
    /// # Errors
    /// The folder or the database could not be read.
    async fn scan_once(&self, seen: &mut Seen) -> Result<usize, DbError> {
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
        if !seen.loaded {
            seen.recorded = self.recorded().await?;
            seen.loaded = true;
        }
        let mut submitted = 0;
        let mut present = HashSet::new();
        for (key, stamp, unreadable_name) in files {
            present.insert(key.clone());
            if self.is_recorded(&key, stamp, seen).await? || !self.settled(&key, stamp, now, &mut seen.pending) {
                continue;
            }
            seen.pending.remove(&key);
            submitted += usize::from(self.submit(key, stamp, unreadable_name, seen).await?);
        }
        seen.pending.retain(|k, _| present.contains(k));
        seen.recorded.retain(|k, _| present.contains(k));
        Ok(submitted)
    }

    /// Whether `key` was submitted with `stamp`: known from this watcher's own records, else
    /// read from the database (where `imgpipe submit`, another process, records its files).
    async fn is_recorded(&self, key: &str, stamp: Stamp, seen: &mut Seen) -> Result<bool, DbError> {
        if seen.recorded.get(key) == Some(&stamp) {
            return Ok(true);
        }
        let recorded = self.recorded_stamp(key).await? == Some(stamp);
        if recorded {
            seen.recorded.insert(key.to_owned(), stamp);
        }
        Ok(recorded)
    }

    /// Whether `key` has held still for the settle period, remembering in `pending` when a
    /// stamp was first seen.
    fn settled(
        &self,
        key: &str,
        stamp: Stamp,
        now: SystemTime,
        pending: &mut HashMap<String, (Stamp, SystemTime)>,
    ) -> bool {
        let settled_since = match pending.get(key) {
            Some((seen, since)) if *seen == stamp => *since,
            _ => {
                pending.insert(key.to_owned(), (stamp, now));
                return false;
            }
        };
        let mtime = UNIX_EPOCH + Duration::from_nanos(u64::try_from(stamp.mtime_ns).unwrap_or(0));
        // A time in the future (a skewed clock, an unpacked archive) says nothing of when the
        // file was written: it settles by what the scans saw, instead of waiting for its date.
        let written = if mtime > now { settled_since } else { settled_since.max(mtime) };
        now.duration_since(written).unwrap_or_default() >= self.settle
    }

    /// Submits the files renamed into the folder, without waiting for them to settle: a
    /// rename is how an upload is published whole (written under a temporary name, then
    /// renamed), and it happens at once.
    ///
    /// # Errors
    /// The database could not be read.
    async fn take_renamed(&self, paths: BTreeSet<PathBuf>, seen: &mut Seen) -> Result<usize, DbError> {
        let dir = self.dir.clone();
        let (buckets, bucket) = (self.intake.buckets.clone(), self.source_bucket.clone());
        let files = tokio::task::spawn_blocking(move || {
            let mut files = Vec::new();
            for path in paths {
                renamed_files(&dir, &path, &mut files);
            }
            files.retain(|(key, _, _)| !buckets.is_output(&bucket, key));
            files
        })
        .await
        .map_err(|e| DbError::new(e.to_string()))?;
        let mut submitted = 0;
        for (key, stamp, unreadable_name) in files {
            if self.is_recorded(&key, stamp, seen).await? {
                continue;
            }
            seen.pending.remove(&key);
            submitted += usize::from(self.submit(key, stamp, unreadable_name, seen).await?);
        }
        Ok(submitted)
    }

    /// Starts the thumbnail job of `key` and records it; `Ok(true)` when a job started.
    ///
    /// # Errors
    /// The record could not be written.
    async fn submit(&self, key: String, stamp: Stamp, unreadable_name: bool, seen: &mut Seen) -> Result<bool, DbError> {
        let request = ProcessRequest {
            source_bucket: self.source_bucket.clone(),
            source_key: key.clone(),
            destination_bucket: self.destination_bucket.clone(),
            renditions: Some(vec![Rendition::thumbnail()]),
            sidecar: None,
            metadata: None,
        };
        let taken = match unreadable_name {
            // Not a key any store can carry: refused for what it is, not looked up.
            true => self.intake.refuse(request, IntakeError::InvalidKey("the file name is not UTF-8".into())).await,
            false => self.intake.take(request).await,
        };
        let (job_id, started) = match taken {
            Ok(Taken::Started(job)) => (job.job_id, true),
            Ok(Taken::Refused(job, _)) => (job.job_id, false),
            Ok(Taken::Skipped(e)) => {
                tracing::info!(?key, error = %e, "not submitting this file");
                (String::new(), false)
            }
            Err(e) => {
                tracing::warn!(?key, error = %e, "could not submit; will try again");
                return Ok(false);
            }
        };
        self.record(&key, stamp, &job_id).await?;
        seen.recorded.insert(key, stamp);
        Ok(started)
    }

    /// The stamp recorded for `key`, if it was submitted.
    async fn recorded_stamp(&self, key: &str) -> Result<Option<Stamp>, DbError> {
        let (bucket, key) = (self.source_bucket.clone(), key.to_owned());
        self.db
            .call(move |c| -> Result<Option<Stamp>, DbError> {
                let mut stmt =
                    c.prepare_cached("SELECT size, mtime_ns FROM watched_files WHERE bucket = ?1 AND key = ?2")?;
                let mut rows =
                    stmt.query_map(params![bucket, key], |r| Ok(Stamp { size: r.get(0)?, mtime_ns: r.get(1)? }))?;
                Ok(rows.next().transpose()?)
            })
            .await
    }

    /// What was submitted from this bucket, read by the first scan.
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

/// What the watcher carries between scans.
#[derive(Default)]
struct Seen {
    /// Whether `recorded` was read from the database (by the first scan).
    loaded: bool,
    /// The stamps submitted, of files still present: this watcher's records and what it read.
    recorded: HashMap<String, Stamp>,
    /// Files not yet settled: the stamp and when it was first seen.
    pending: HashMap<String, (Stamp, SystemTime)>,
}

/// A scan that took `d` is followed by a pause of at least `d` times this.
const SCAN_PAUSE_FACTOR: u32 = 20;

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

/// Renamed paths the event thread may queue before the watcher takes them; past it, events
/// are dropped and those files are found by the scans once they settle.
const RENAMED_BACKLOG: usize = 4096;

/// Sends the path of everything renamed into `dir` (or a folder under it) to `renamed`.
/// `None`, with a warning, where the kernel's file events are unavailable: the scans still
/// find every file.
fn watch_renames(dir: &Path, renamed: tokio::sync::mpsc::Sender<PathBuf>) -> Option<RecommendedWatcher> {
    let on_event = move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        // `To` when the file came from outside the folder, `Both` (from, to) from inside it.
        if let EventKind::Modify(ModifyKind::Name(RenameMode::To | RenameMode::Both)) = event.kind {
            if let Some(to) = event.paths.last() {
                let _ = renamed.try_send(to.clone());
            }
        }
    };
    let watcher = notify::recommended_watcher(on_event).and_then(|mut w| {
        w.watch(dir, RecursiveMode::Recursive)?;
        Ok(w)
    });
    watcher.inspect_err(|e| tracing::warn!(error = %e, "no file events; new files are taken once they settle")).ok()
}

/// The files `path` (renamed into `dir`) brings: itself, or everything under it if it is a
/// folder. Skipped like the scan skips them: in-progress names, and any name that is not UTF-8
/// (the scan refuses those by name once they settle).
fn renamed_files(dir: &Path, path: &Path, out: &mut Vec<(String, Stamp, bool)>) {
    let Ok(relative) = path.strip_prefix(dir) else { return };
    let mut names = Vec::new();
    for part in relative.components() {
        match part.as_os_str().to_str() {
            Some(name) if !in_progress(name) => names.push(name),
            _ => return,
        }
    }
    let Ok(md) = std::fs::metadata(path) else { return };
    if names.is_empty() {
        return;
    }
    let key = names.join("/");
    if md.is_file() {
        out.push((key, Stamp { size: md.len(), mtime_ns: mtime_ns(&md) }, false));
    } else if md.is_dir() {
        let mut found = Vec::new();
        walk(path, &format!("{key}/"), &mut found);
        out.extend(found.into_iter().filter(|(_, _, unreadable)| !unreadable));
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
