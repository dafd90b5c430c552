//! Buckets as folders: `<root>/buckets/<bucket>/<key>`. Writes go to `<root>/tmp` and are
//! renamed into place, so a reader (or the folder watcher) never sees half an object.
//! Content type and cache control live in `<root>/blob-meta/<bucket>/<key>.meta.json`.
//!
//! Symbolic links are never followed below a bucket's folder, nor anywhere in `blob-meta/` or
//! `tmp/`: a link is not an object, so reads treat it as missing, listings skip it, and writes
//! and deletes through it are refused. The data dir and the bucket folders themselves are the
//! operator's to place, links included (`buckets/original` may well be a link to a photo
//! folder). The checks walk the key's components before each operation and open the final one
//! with `O_NOFOLLOW`; they do not guard against a process racing them from inside the data dir,
//! which can write there anyway.

use std::fs::OpenOptions;
use std::io::{ErrorKind, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use protocol::keys::{guess_content_type, validate_bucket, validate_key};

use super::{Blob, BlobError, BlobMeta, BlobStore, PutOptions};

/// The largest metadata file read; ours are a few dozen bytes.
const MAX_META_BYTES: u64 = 64 * 1024;

/// The folder-backed [`BlobStore`].
#[derive(Clone, Debug)]
pub struct LocalBlobStore {
    root: PathBuf,
}

#[derive(Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct StoredMeta {
    content_type: Option<String>,
    cache_control: Option<String>,
}

impl LocalBlobStore {
    /// A store rooted at `root` (the data dir); folders are made on first write.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The folder holding `bucket`'s objects.
    pub fn bucket_dir(&self, bucket: &str) -> PathBuf {
        self.root.join("buckets").join(bucket)
    }

    /// Makes the bucket's folder if it is missing.
    ///
    /// # Errors
    /// An invalid bucket name, or the folder cannot be made.
    pub fn create_bucket(&self, bucket: &str) -> Result<(), BlobError> {
        validate_bucket(bucket)?;
        let dir = self.bucket_dir(bucket);
        std::fs::create_dir_all(&dir).map_err(|e| io_err(bucket, &dir, e))
    }

    /// The object's file and its metadata file, once the key is known to pass through no link
    /// (nor, for a write, its metadata file). A link fails as [`BlobError::NotFound`] for a
    /// read, and is refused for a write.
    fn paths(&self, bucket: &str, key: &str, access: Access) -> Result<(PathBuf, PathBuf), BlobError> {
        validate_bucket(bucket)?;
        validate_key(key)?;
        // Folders cannot hold "a//b", "./a" or "a/": those keys would alias others.
        if key.split('/').any(|s| s.is_empty() || s == ".") {
            return Err(BlobError::InvalidName { name: key.into(), reason: "key has an empty or '.' segment" });
        }
        let meta_rel = meta_rel(bucket, key);
        let mut checks = vec![(self.bucket_dir(bucket), key)];
        if matches!(access, Access::Write) {
            checks.push((self.root.clone(), meta_rel.as_str()));
        }
        for (base, rel) in checks {
            if passes_through_link(&base, rel).map_err(|e| io_err(object(bucket, key), &base, e))? {
                return Err(match access {
                    Access::Read => BlobError::NotFound { bucket: bucket.into(), key: key.into() },
                    Access::Write => link_refused(key),
                });
            }
        }
        Ok((self.bucket_dir(bucket).join(key), self.root.join(meta_rel)))
    }

    /// The stored metadata, or what the key suggests when there is none, or when the metadata
    /// file passes through a link (which is never read).
    fn read_meta(&self, bucket: &str, key: &str, size: u64, version: Option<String>) -> BlobMeta {
        let rel = meta_rel(bucket, key);
        let base = &self.root;
        let stored: StoredMeta = match passes_through_link(base, &rel) {
            Ok(false) => OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
                .open(base.join(&rel))
                .ok()
                .and_then(|f| {
                    let mut bytes = Vec::new();
                    f.take(MAX_META_BYTES).read_to_end(&mut bytes).ok()?;
                    serde_json::from_slice(&bytes).ok()
                })
                .unwrap_or_default(),
            _ => StoredMeta::default(),
        };
        BlobMeta {
            key: key.into(),
            size,
            content_type: stored.content_type.unwrap_or_else(|| guess_content_type(key).into()),
            cache_control: stored.cache_control,
            version,
        }
    }

    fn get_sync(&self, bucket: &str, key: &str, max_bytes: u64) -> Result<Blob, BlobError> {
        let (data, _) = self.paths(bucket, key, Access::Read)?;
        // No-follow: a link swapped in since the walk fails to open (ELOOP) rather than be read.
        // Non-blocking: a FIFO planted in the bucket must not hang the read (no effect on files).
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&data)
            .map_err(|e| not_found_or_io(bucket, key, &data, e))?;
        let md = file.metadata().map_err(|e| io_err(object(bucket, key), &data, e))?;
        if !md.is_file() {
            return Err(BlobError::NotFound { bucket: bucket.into(), key: key.into() });
        }
        let size = md.len();
        let too_large = |size| BlobError::TooLarge { bucket: bucket.into(), key: key.into(), size, limit: max_bytes };
        if size > max_bytes {
            return Err(too_large(size));
        }
        // Read at most one byte past the limit, in case the file grew since the stat.
        let mut body = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        file.take(max_bytes.saturating_add(1))
            .read_to_end(&mut body)
            .map_err(|e| io_err(object(bucket, key), &data, e))?;
        let len = body.len() as u64;
        if len > max_bytes {
            return Err(too_large(len));
        }
        Ok(Blob { meta: self.read_meta(bucket, key, len, file_version(&md)), body: Bytes::from(body) })
    }

    fn head_sync(&self, bucket: &str, key: &str) -> Result<BlobMeta, BlobError> {
        let (data, _) = self.paths(bucket, key, Access::Read)?;
        let md = std::fs::symlink_metadata(&data).map_err(|e| not_found_or_io(bucket, key, &data, e))?;
        if !md.is_file() {
            return Err(BlobError::NotFound { bucket: bucket.into(), key: key.into() });
        }
        Ok(self.read_meta(bucket, key, md.len(), file_version(&md)))
    }

    fn put_sync(&self, bucket: &str, key: &str, body: &[u8], options: &PutOptions) -> Result<(), BlobError> {
        let (data, meta_path) = self.paths(bucket, key, Access::Write)?;
        let meta =
            StoredMeta { content_type: options.content_type.clone(), cache_control: options.cache_control.clone() };
        let meta_json = serde_json::to_vec(&meta).unwrap_or_default();
        // Metadata first: the object only appears once its metadata is in place.
        self.write_atomic(&self.root, &meta_path, &meta_json, bucket, key)?;
        self.write_atomic(&self.bucket_dir(bucket), &data, body, bucket, key)
    }

    /// Writes `dest` (below `base`) through a temp file renamed into place. The folders made on
    /// the way are checked again once made: a link placed meanwhile is refused, not written through.
    fn write_atomic(&self, base: &Path, dest: &Path, body: &[u8], bucket: &str, key: &str) -> Result<(), BlobError> {
        let obj = || object(bucket, key);
        let tmp_dir = self.root.join("tmp");
        std::fs::create_dir_all(&tmp_dir).map_err(|e| io_err(TMP, &tmp_dir, e))?;
        if passes_through_link(&self.root, "tmp").map_err(|e| io_err(TMP, &tmp_dir, e))? {
            return Err(link_refused(key));
        }
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(|e| collision_or_io(bucket, key, parent, e))?;
        }
        let rel = dest.strip_prefix(base).unwrap_or(dest);
        if passes_through_link(base, &rel.to_string_lossy()).map_err(|e| io_err(obj(), dest, e))? {
            return Err(link_refused(key));
        }
        let mut tmp = tempfile::NamedTempFile::new_in(&tmp_dir).map_err(|e| io_err(TMP, &tmp_dir, e))?;
        std::io::Write::write_all(&mut tmp, body).map_err(|e| io_err(TMP, tmp.path(), e))?;
        tmp.as_file().sync_data().map_err(|e| io_err(TMP, tmp.path(), e))?;
        tmp.persist(dest).map_err(|e| collision_or_io(bucket, key, dest, e.error))?;
        // The rename is durable once its folder is.
        if let Some(parent) = dest.parent() {
            std::fs::File::open(parent).and_then(|dir| dir.sync_all()).map_err(|e| io_err(obj(), parent, e))?;
        }
        Ok(())
    }

    /// Removes temp files older than `age` from `tmp/`: writes a crash cut short, which no
    /// reader ever saw. Younger ones may belong to another process writing now. Returns how
    /// many were removed.
    pub fn sweep_temp(&self, age: std::time::Duration) -> usize {
        let Ok(entries) = std::fs::read_dir(self.root.join("tmp")) else { return 0 };
        let cutoff = std::time::SystemTime::now().checked_sub(age).unwrap_or(std::time::UNIX_EPOCH);
        entries
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter(|e| e.metadata().and_then(|m| m.modified()).is_ok_and(|m| m < cutoff))
            .filter(|e| std::fs::remove_file(e.path()).is_ok())
            .count()
    }

    fn delete_sync(&self, bucket: &str, key: &str) -> Result<(), BlobError> {
        let (data, meta_path) = self.paths(bucket, key, Access::Write)?;
        for path in [&data, &meta_path] {
            match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(object(bucket, key), path, e)),
            }
        }
        Ok(())
    }

    fn list_sync(&self, bucket: &str, prefix: &str) -> Result<Vec<BlobMeta>, BlobError> {
        validate_bucket(bucket)?;
        let dir = self.bucket_dir(bucket);
        let mut keys = Vec::new();
        collect_keys(bucket, &dir, "", &mut keys)?;
        keys.retain(|(k, _)| k.starts_with(prefix));
        keys.sort();
        Ok(keys.into_iter().map(|(key, size)| self.read_meta(bucket, &key, size, None)).collect())
    }
}

fn collect_keys(bucket: &str, dir: &Path, prefix: &str, out: &mut Vec<(String, u64)>) -> Result<(), BlobError> {
    let folder = || object(bucket, prefix);
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err(folder(), dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| io_err(folder(), dir, e))?;
        let Ok(name) = entry.file_name().into_string() else { continue };
        // The entry's own type, links not followed: a link is neither a folder nor an object.
        let kind = entry.file_type().map_err(|e| io_err(folder(), &entry.path(), e))?;
        if kind.is_dir() {
            collect_keys(bucket, &entry.path(), &format!("{prefix}{name}/"), out)?;
        } else if kind.is_file() {
            let md = entry.metadata().map_err(|e| io_err(folder(), &entry.path(), e))?;
            out.push((format!("{prefix}{name}"), md.len()));
        }
    }
    Ok(())
}

/// The metadata file of `key`, relative to the data dir. Links are refused all the way down
/// from the data dir: unlike a bucket's folder, the metadata folders have no reason to be links.
fn meta_rel(bucket: &str, key: &str) -> String {
    format!("blob-meta/{bucket}/{key}.meta.json")
}

/// Whether an operation reads or changes the store.
#[derive(Clone, Copy)]
enum Access {
    Read,
    Write,
}

/// Whether any component of `rel` (a `/`-separated path below `base`) is a symbolic link.
/// Components that do not exist yet end the walk: nothing below them exists either.
fn passes_through_link(base: &Path, rel: &str) -> std::io::Result<bool> {
    let mut path = base.to_path_buf();
    for segment in rel.split('/') {
        path.push(segment);
        match std::fs::symlink_metadata(&path) {
            Ok(md) if md.file_type().is_symlink() => return Ok(true),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => return Ok(false),
            Err(e) => return Err(e),
        }
    }
    Ok(false)
}

fn link_refused(key: &str) -> BlobError {
    BlobError::InvalidName {
        name: key.into(),
        reason: "key passes through a symbolic link, which this store never follows",
    }
}

/// Names the temp folder in errors.
const TMP: &str = "the store's temp folder";

/// `bucket/key`, as errors name an object.
fn object(bucket: &str, key: &str) -> String {
    format!("{bucket}/{key}")
}

/// An i/o failure on `object`. Its message names the object only, never the file: it reaches
/// API answers and job records, which must not show where the data dir is. The path goes to
/// the log, for the operator.
fn io_err(object: impl Into<String>, path: &Path, source: std::io::Error) -> BlobError {
    let object = object.into();
    tracing::warn!(object = ?object, path = ?path, error = %source, "local store i/o error");
    BlobError::Io { object, source }
}

fn not_found_or_io(bucket: &str, key: &str, path: &Path, e: std::io::Error) -> BlobError {
    // ELOOP: the final component is a link, which `O_NOFOLLOW` refused to open.
    if e.raw_os_error() == Some(libc::ELOOP) {
        return BlobError::NotFound { bucket: bucket.into(), key: key.into() };
    }
    match e.kind() {
        ErrorKind::NotFound | ErrorKind::NotADirectory | ErrorKind::IsADirectory => {
            BlobError::NotFound { bucket: bucket.into(), key: key.into() }
        }
        _ => io_err(object(bucket, key), path, e),
    }
}

fn collision_or_io(bucket: &str, key: &str, path: &Path, e: std::io::Error) -> BlobError {
    match e.kind() {
        ErrorKind::NotADirectory | ErrorKind::IsADirectory | ErrorKind::AlreadyExists => {
            BlobError::InvalidName { name: key.into(), reason: "key collides with a folder or file of another key" }
        }
        _ => io_err(object(bucket, key), path, e),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, BlobError> + Send + 'static,
) -> Result<T, BlobError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|join| {
        Err(BlobError::Io { object: "a blocking task".into(), source: std::io::Error::other(join.to_string()) })
    })
}

#[async_trait]
impl BlobStore for LocalBlobStore {
    async fn get(&self, bucket: &str, key: &str, max_bytes: u64) -> Result<Blob, BlobError> {
        let (me, bucket, key) = (self.clone(), bucket.to_owned(), key.to_owned());
        blocking(move || me.get_sync(&bucket, &key, max_bytes)).await
    }

    async fn head(&self, bucket: &str, key: &str) -> Result<BlobMeta, BlobError> {
        let (me, bucket, key) = (self.clone(), bucket.to_owned(), key.to_owned());
        blocking(move || me.head_sync(&bucket, &key)).await
    }

    async fn put(&self, bucket: &str, key: &str, body: Bytes, options: &PutOptions) -> Result<(), BlobError> {
        let (me, bucket, key, options) = (self.clone(), bucket.to_owned(), key.to_owned(), options.clone());
        blocking(move || me.put_sync(&bucket, &key, &body, &options)).await
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<(), BlobError> {
        let (me, bucket, key) = (self.clone(), bucket.to_owned(), key.to_owned());
        blocking(move || me.delete_sync(&bucket, &key)).await
    }

    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<BlobMeta>, BlobError> {
        let (me, bucket, prefix) = (self.clone(), bucket.to_owned(), prefix.to_owned());
        blocking(move || me.list_sync(&bucket, &prefix)).await
    }
}

/// A local file's version: its size and modification time to the nanosecond, which a
/// rewrite changes (renamed-into-place writes always do).
fn file_version(md: &std::fs::Metadata) -> Option<String> {
    let modified = md.modified().ok()?.duration_since(std::time::UNIX_EPOCH).ok()?;
    Some(format!("{}-{}", md.len(), modified.as_nanos()))
}
