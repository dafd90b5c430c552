//! The folder-backed store never follows a symbolic link: a link planted in a bucket (or in
//! the metadata folders) is not an object, is never read through, and is never written through.

use std::os::unix::fs::symlink;
use std::path::Path;

use bytes::Bytes;
use pipeline_core::blob::local::LocalBlobStore;
use pipeline_core::blob::{BlobError, BlobStore, PutOptions};
use tempfile::TempDir;

const SECRET: &[u8] = b"root:x:0:0:secret\n";

/// A data dir with an `original` bucket, and a folder outside it holding `secret.jpg`.
fn setup() -> (TempDir, TempDir, LocalBlobStore) {
    let data = TempDir::new().expect("data dir");
    let outside = TempDir::new().expect("outside dir");
    std::fs::write(outside.path().join("secret.jpg"), SECRET).expect("write secret");
    let store = LocalBlobStore::new(data.path());
    store.create_bucket("original").expect("bucket");
    store.create_bucket("resized").expect("bucket");
    (data, outside, store)
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn a_linked_source_file_is_not_an_object() {
    let (data, outside, store) = setup();
    symlink(outside.path().join("secret.jpg"), data.path().join("buckets/original/link.jpg")).expect("symlink");
    symlink("/etc/passwd", data.path().join("buckets/original/passwd.jpg")).expect("symlink");
    for key in ["link.jpg", "passwd.jpg"] {
        let got = store.get("original", key, 1 << 20).await;
        assert!(matches!(got, Err(BlobError::NotFound { .. })), "{key}: {got:?}");
        let head = store.head("original", key).await;
        assert!(matches!(head, Err(BlobError::NotFound { .. })), "{key}: {head:?}");
    }
    assert!(store.list("original", "").await.expect("list").is_empty(), "links are not listed");
}

#[tokio::test]
async fn a_linked_source_folder_is_not_walked() {
    let (data, outside, store) = setup();
    symlink(outside.path(), data.path().join("buckets/original/dir")).expect("symlink");
    let got = store.get("original", "dir/secret.jpg", 1 << 20).await;
    assert!(got.is_err(), "read through a linked folder: {got:?}");
    assert!(store.head("original", "dir/secret.jpg").await.is_err());
    assert!(store.list("original", "").await.expect("list").is_empty(), "linked folders are not listed");
}

#[tokio::test]
async fn nothing_is_written_through_a_linked_folder() {
    let (data, outside, store) = setup();
    symlink(outside.path(), data.path().join("buckets/resized/resized")).expect("symlink");
    let put = store.put("resized", "resized/x.jpg", Bytes::from_static(b"out"), &PutOptions::default()).await;
    let Err(BlobError::InvalidName { reason, .. }) = put else { panic!("put through a linked folder: {put:?}") };
    assert!(reason.contains("symbolic link"), "{reason}");
    assert_eq!(files_in(outside.path()), ["secret.jpg"], "nothing written outside the data dir");
    assert!(store.delete("resized", "resized/secret.jpg").await.is_err(), "no delete through a link");
    assert_eq!(std::fs::read(outside.path().join("secret.jpg")).expect("secret"), SECRET);
}

#[tokio::test]
async fn nothing_is_written_over_a_linked_file() {
    let (data, outside, store) = setup();
    symlink(outside.path().join("secret.jpg"), data.path().join("buckets/resized/a.jpg")).expect("symlink");
    let put = store.put("resized", "a.jpg", Bytes::from_static(b"out"), &PutOptions::default()).await;
    assert!(matches!(put, Err(BlobError::InvalidName { .. })), "put over a link: {put:?}");
    assert_eq!(std::fs::read(outside.path().join("secret.jpg")).expect("secret"), SECRET);
}

#[tokio::test]
async fn nothing_is_written_through_a_linked_metadata_folder() {
    let (data, outside, store) = setup();
    std::fs::create_dir_all(data.path().join("blob-meta")).expect("meta dir");
    symlink(outside.path(), data.path().join("blob-meta/resized")).expect("symlink");
    let put = store.put("resized", "x.jpg", Bytes::from_static(b"out"), &PutOptions::default()).await;
    assert!(put.is_err(), "metadata written through a linked folder: {put:?}");
    assert_eq!(files_in(outside.path()), ["secret.jpg"], "nothing written outside the data dir");
}
