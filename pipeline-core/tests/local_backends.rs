//! The shared conformance suites, run against the local backends.

use std::sync::Arc;

use pipeline_core::blob::BlobStore;
use pipeline_core::blob::local::LocalBlobStore;
use pipeline_core::conformance;
use pipeline_core::queue::Queue;
use pipeline_core::queue::sqlite::{RedrivePolicy, SqliteQueue};
use pipeline_core::sqlite::Db;
use tempfile::TempDir;

fn db(dir: &TempDir) -> Db {
    Db::open(&dir.path().join("imgpipe.db")).expect("open db")
}

fn queue(dir: &TempDir, name: &str) -> SqliteQueue {
    SqliteQueue::open(&db(dir), name).expect("open queue")
}

#[tokio::test]
async fn sqlite_send_receive_delete() {
    let dir = TempDir::new().expect("tempdir");
    conformance::queue_send_receive_delete(&queue(&dir, "q")).await;
}

#[tokio::test]
async fn sqlite_visibility() {
    let dir = TempDir::new().expect("tempdir");
    conformance::queue_visibility(&queue(&dir, "q")).await;
}

#[tokio::test]
async fn sqlite_delete_many() {
    let dir = TempDir::new().expect("tempdir");
    conformance::queue_delete_many(&queue(&dir, "q")).await;
}

#[tokio::test]
async fn sqlite_stale_receipts() {
    let dir = TempDir::new().expect("tempdir");
    conformance::queue_stale_receipts(&queue(&dir, "q")).await;
}

#[tokio::test]
async fn sqlite_delay() {
    let dir = TempDir::new().expect("tempdir");
    conformance::queue_delay(&queue(&dir, "q")).await;
}

#[tokio::test]
async fn sqlite_long_poll_wakes_on_send() {
    let dir = TempDir::new().expect("tempdir");
    conformance::queue_long_poll(Arc::new(queue(&dir, "q"))).await;
}

#[tokio::test]
async fn sqlite_long_poll_sees_other_connections() {
    // A second connection stands for another process: no in-process wake-up reaches it.
    let dir = TempDir::new().expect("tempdir");
    let consumer = queue(&dir, "q");
    let producer = queue(&dir, "q");
    let send = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        producer.send("x", std::time::Duration::ZERO).await.expect("send");
    });
    let got = consumer
        .receive(1, std::time::Duration::from_secs(5), std::time::Duration::from_secs(30))
        .await
        .expect("receive");
    assert_eq!(got.len(), 1);
    send.await.expect("sender");
}

#[tokio::test]
async fn sqlite_redrive_to_dead_letter_queue() {
    let dir = TempDir::new().expect("tempdir");
    let dlq = queue(&dir, "dlq");
    let q = queue(&dir, "jobs").with_redrive(RedrivePolicy { dead_letter_queue: "dlq".into(), max_receive_count: 2 });
    conformance::queue_redrive(&q, &dlq, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_concurrent_consumers_on_separate_connections() {
    let dir = TempDir::new().expect("tempdir");
    let consumers: Vec<Arc<dyn Queue>> = (0..4).map(|_| Arc::new(queue(&dir, "q")) as Arc<dyn Queue>).collect();
    conformance::queue_concurrent_consumers(Arc::new(queue(&dir, "q")), consumers, conformance::Delivery::ExactlyOnce)
        .await;
}

#[tokio::test]
async fn sqlite_purge() {
    let dir = TempDir::new().expect("tempdir");
    conformance::queue_purge(&queue(&dir, "q")).await;
}

#[tokio::test]
async fn queues_in_one_file_are_separate() {
    let dir = TempDir::new().expect("tempdir");
    let (a, b) = (queue(&dir, "a"), queue(&dir, "b"));
    a.send("for-a", std::time::Duration::ZERO).await.expect("send");
    assert!(b.receive(1, std::time::Duration::ZERO, std::time::Duration::from_secs(1)).await.expect("recv").is_empty());
    assert_eq!(a.stats().await.expect("stats").visible, 1);
}

#[tokio::test]
async fn local_blob_store() {
    let dir = TempDir::new().expect("tempdir");
    let store = LocalBlobStore::new(dir.path());
    store.create_bucket("conformance").expect("bucket");
    conformance::blob_store(&store, "conformance").await;
    // Objects live where the layout says, and no temp file is left behind in the bucket.
    use pipeline_core::blob::{BlobStore, PutOptions};
    store.put("conformance", "x/y.jpg", bytes::Bytes::from_static(b"1"), &PutOptions::default()).await.expect("put");
    assert!(dir.path().join("buckets/conformance/x/y.jpg").is_file());
    assert_eq!(std::fs::read_dir(dir.path().join("tmp")).expect("tmp").count(), 0);
}

#[tokio::test]
async fn one_receive_never_delivers_a_message_twice() {
    // With a zero visibility the message is visible again at once; one batch must still hold it once.
    let dir = TempDir::new().expect("tempdir");
    let q = queue(&dir, "q");
    q.send("only", std::time::Duration::ZERO).await.expect("send");
    let got = q.receive(10, std::time::Duration::ZERO, std::time::Duration::ZERO).await.expect("receive");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].receive_count, 1);
}

#[tokio::test]
async fn temp_files_a_crash_left_are_swept_but_young_ones_are_left_to_their_writer() {
    let dir = TempDir::new().expect("tempdir");
    let store = LocalBlobStore::new(dir.path());
    store.put("bucket", "k.jpg", bytes::Bytes::from_static(b"x"), &Default::default()).await.expect("put");
    let tmp = dir.path().join("tmp");
    std::fs::write(tmp.join("old"), b"half an object").expect("old");
    std::fs::write(tmp.join("young"), b"being written").expect("young");
    let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
    std::fs::File::options()
        .write(true)
        .open(tmp.join("old"))
        .expect("open")
        .set_modified(two_hours_ago)
        .expect("mtime");
    assert_eq!(store.sweep_temp(std::time::Duration::from_secs(3600)), 1);
    assert!(!tmp.join("old").exists() && tmp.join("young").exists());
    assert_eq!(store.get("bucket", "k.jpg", 10).await.expect("objects untouched").body.as_ref(), b"x");
}

#[tokio::test]
async fn durable_calls_flush_each_commit_and_leave_the_others_as_they_were() {
    let dir = TempDir::new().expect("tempdir");
    let db = db(&dir);
    let level = |conn: &mut rusqlite::Connection| -> Result<i64, pipeline_core::sqlite::DbError> {
        Ok(conn.pragma_query_value(None, "synchronous", |r| r.get(0))?)
    };
    // 2 is FULL (fsync at every commit), 1 NORMAL.
    assert_eq!(db.call_durable(level).await.expect("durable"), 2);
    assert_eq!(db.call(level).await.expect("plain"), 1);
}
