//! Buckets as folders: `<root>/buckets/<bucket>/<key>`. Writes go to `<root>/tmp` and are
//! renamed into place, so a reader (or the folder watcher) never sees half an object.
//! Content type and cache control live in `<root>/blob-meta/<bucket>/<key>.meta.json`.

use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{Blob, BlobError, BlobMeta, BlobStore, PutOptions, guess_content_type, validate_bucket, validate_key};

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
        std::fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))
    }

    fn paths(&self, bucket: &str, key: &str) -> Result<(PathBuf, PathBuf), BlobError> {
        validate_bucket(bucket)?;
        validate_key(key)?;
        // Folders cannot hold "a//b", "./a" or "a/": those keys would alias others.
        if key.split('/').any(|s| s.is_empty() || s == ".") {
            return Err(BlobError::InvalidName { name: key.into(), reason: "key has an empty or '.' segment" });
        }
        let data = self.bucket_dir(bucket).join(key);
        let meta = self.root.join("blob-meta").join(bucket).join(format!("{key}.meta.json"));
        Ok((data, meta))
    }

    fn read_meta(key: &str, meta_path: &Path, size: u64) -> BlobMeta {
        let stored: StoredMeta =
            std::fs::read(meta_path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
        BlobMeta {
            key: key.into(),
            size,
            content_type: stored.content_type.unwrap_or_else(|| guess_content_type(key).into()),
            cache_control: stored.cache_control,
        }
    }

    fn get_sync(&self, bucket: &str, key: &str, max_bytes: u64) -> Result<Blob, BlobError> {
        let (data, meta_path) = self.paths(bucket, key)?;
        let file = std::fs::File::open(&data).map_err(|e| not_found_or_io(bucket, key, &data, e))?;
        let size = file.metadata().map_err(|e| io_err(&data, e))?.len();
        if !file.metadata().map_err(|e| io_err(&data, e))?.is_file() {
            return Err(BlobError::NotFound { bucket: bucket.into(), key: key.into() });
        }
        let too_large = |size| BlobError::TooLarge { bucket: bucket.into(), key: key.into(), size, limit: max_bytes };
        if size > max_bytes {
            return Err(too_large(size));
        }
        // Read at most one byte past the limit, in case the file grew since the stat.
        let mut body = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        file.take(max_bytes.saturating_add(1)).read_to_end(&mut body).map_err(|e| io_err(&data, e))?;
        let len = body.len() as u64;
        if len > max_bytes {
            return Err(too_large(len));
        }
        Ok(Blob { meta: Self::read_meta(key, &meta_path, len), body: Bytes::from(body) })
    }

    fn head_sync(&self, bucket: &str, key: &str) -> Result<BlobMeta, BlobError> {
        let (data, meta_path) = self.paths(bucket, key)?;
        let md = std::fs::metadata(&data).map_err(|e| not_found_or_io(bucket, key, &data, e))?;
        if !md.is_file() {
            return Err(BlobError::NotFound { bucket: bucket.into(), key: key.into() });
        }
        Ok(Self::read_meta(key, &meta_path, md.len()))
    }

    fn put_sync(&self, bucket: &str, key: &str, body: &[u8], options: &PutOptions) -> Result<(), BlobError> {
        let (data, meta_path) = self.paths(bucket, key)?;
        let meta =
            StoredMeta { content_type: options.content_type.clone(), cache_control: options.cache_control.clone() };
        let meta_json = serde_json::to_vec(&meta).unwrap_or_default();
        // Metadata first: the object only appears once its metadata is in place.
        self.write_atomic(&meta_path, &meta_json, key)?;
        self.write_atomic(&data, body, key)
    }

    fn write_atomic(&self, dest: &Path, body: &[u8], key: &str) -> Result<(), BlobError> {
        let tmp_dir = self.root.join("tmp");
        std::fs::create_dir_all(&tmp_dir).map_err(|e| io_err(&tmp_dir, e))?;
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(|e| collision_or_io(key, parent, e))?;
        }
        let mut tmp = tempfile::NamedTempFile::new_in(&tmp_dir).map_err(|e| io_err(&tmp_dir, e))?;
        std::io::Write::write_all(&mut tmp, body).map_err(|e| io_err(tmp.path(), e))?;
        tmp.as_file().sync_data().map_err(|e| io_err(tmp.path(), e))?;
        tmp.persist(dest).map_err(|e| collision_or_io(key, dest, e.error))?;
        Ok(())
    }

    fn delete_sync(&self, bucket: &str, key: &str) -> Result<(), BlobError> {
        let (data, meta_path) = self.paths(bucket, key)?;
        for path in [&data, &meta_path] {
            match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(path, e)),
            }
        }
        Ok(())
    }

    fn list_sync(&self, bucket: &str, prefix: &str) -> Result<Vec<BlobMeta>, BlobError> {
        validate_bucket(bucket)?;
        let dir = self.bucket_dir(bucket);
        let mut keys = Vec::new();
        collect_keys(&dir, "", &mut keys)?;
        keys.retain(|(k, _)| k.starts_with(prefix));
        keys.sort();
        let meta_root = self.root.join("blob-meta").join(bucket);
        Ok(keys
            .into_iter()
            .map(|(key, size)| {
                let meta_path = meta_root.join(format!("{key}.meta.json"));
                Self::read_meta(&key, &meta_path, size)
            })
            .collect())
    }
}

fn collect_keys(dir: &Path, prefix: &str, out: &mut Vec<(String, u64)>) -> Result<(), BlobError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err(dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| io_err(dir, e))?;
        let Ok(name) = entry.file_name().into_string() else { continue };
        let md = entry.metadata().map_err(|e| io_err(&entry.path(), e))?;
        if md.is_dir() {
            collect_keys(&entry.path(), &format!("{prefix}{name}/"), out)?;
        } else if md.is_file() {
            out.push((format!("{prefix}{name}"), md.len()));
        }
    }
    Ok(())
}

fn io_err(path: &Path, source: std::io::Error) -> BlobError {
    BlobError::Io { path: path.display().to_string(), source }
}

fn not_found_or_io(bucket: &str, key: &str, path: &Path, e: std::io::Error) -> BlobError {
    match e.kind() {
        ErrorKind::NotFound | ErrorKind::NotADirectory | ErrorKind::IsADirectory => {
            BlobError::NotFound { bucket: bucket.into(), key: key.into() }
        }
        _ => io_err(path, e),
    }
}

fn collision_or_io(key: &str, path: &Path, e: std::io::Error) -> BlobError {
    match e.kind() {
        ErrorKind::NotADirectory | ErrorKind::IsADirectory | ErrorKind::AlreadyExists => {
            BlobError::InvalidName { name: key.into(), reason: "key collides with a folder or file of another key" }
        }
        _ => io_err(path, e),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, BlobError> + Send + 'static,
) -> Result<T, BlobError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|join| {
        Err(BlobError::Io { path: String::new(), source: std::io::Error::other(join.to_string()) })
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
