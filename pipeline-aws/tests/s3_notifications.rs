//! S3 → SQS ObjectCreated notifications on the emulator, read back with the parser.

use test_support::emulator as common;

use std::time::Duration;

use bytes::Bytes;
use common::{aws, bucket, queue};
use pipeline_aws::{S3BlobStore, SqsQueue, setup};
use pipeline_core::blob::{BlobStore, PutOptions};
use pipeline_core::queue::Queue;
use protocol::s3_event::{self, ObjectCreated};

/// Every object-created record that arrives within `wait`, deleting each message (test events included).
async fn created_events(q: &SqsQueue, want: usize, wait: Duration) -> Vec<ObjectCreated> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut got = Vec::new();
    while got.len() < want && tokio::time::Instant::now() < deadline {
        for m in q.receive(10, Duration::from_secs(1), Duration::from_secs(30)).await.expect("receive") {
            got.extend(s3_event::parse(&m.body).unwrap_or_else(|e| panic!("{e}: {}", m.body)));
            q.delete(&m.receipt).await.expect("delete");
        }
    }
    got
}

async fn put(store: &S3BlobStore, bucket: &str, key: &str, body: &'static [u8]) {
    store.put(bucket, key, Bytes::from_static(body), &PutOptions::default()).await.expect("put");
}

#[tokio::test]
async fn object_created_reaches_the_queue_with_a_decodable_key() {
    let aws = aws().await;
    let (store, bucket) = bucket(&aws, "originals").await;
    let q = queue(&aws, "intake").await;
    setup::notify_object_created(&store, &bucket, &q, None).await.expect("notification");

    let key = "uploads/2024/my holiday+photo é (1).jpg";
    put(&store, &bucket, key, b"not really a jpeg").await;
    let events = created_events(&q, 1, Duration::from_secs(10)).await;
    assert_eq!(events.len(), 1, "{events:?}");
    let e = &events[0];
    assert_eq!((e.bucket.as_str(), e.key.as_str(), e.size), (bucket.as_str(), key, Some(17)));
    assert!(e.event_name.starts_with("ObjectCreated:"), "{}", e.event_name);
    assert!(e.etag.as_deref().is_some_and(|t| t.len() == 32), "{:?}", e.etag);
    // The key names the object as stored.
    assert_eq!(store.head(&bucket, &e.key).await.expect("head").size, 17);
}

#[tokio::test]
async fn a_prefix_filter_keeps_outputs_out() {
    let aws = aws().await;
    let (store, bucket) = bucket(&aws, "mixed").await;
    let q = queue(&aws, "intake").await;
    setup::notify_object_created(&store, &bucket, &q, Some("uploads/")).await.expect("notification");

    put(&store, &bucket, "resized/a_thumbnail.jpg", b"out").await;
    put(&store, &bucket, "uploads/a.jpg", b"in").await;
    let events = created_events(&q, 2, Duration::from_secs(4)).await;
    let keys: Vec<_> = events.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["uploads/a.jpg"]);
}

#[tokio::test]
async fn configuring_again_replaces_the_target() {
    let aws = aws().await;
    let (store, bucket) = bucket(&aws, "twice").await;
    let (first, second) = (queue(&aws, "first").await, queue(&aws, "second").await);
    setup::notify_object_created(&store, &bucket, &first, None).await.expect("first");
    setup::notify_object_created(&store, &bucket, &second, None).await.expect("second");
    put(&store, &bucket, "x.png", b"png").await;
    assert_eq!(created_events(&second, 1, Duration::from_secs(10)).await.len(), 1);
    assert!(created_events(&first, 1, Duration::from_secs(2)).await.is_empty());
}
