//! What the AWS backends do beyond the shared suites, on the emulator: conditional
//! writes, object headers, message attributes, batch delete, queue resolution, error
//! mapping, and moving messages between queues.

use test_support::emulator as common;

use std::time::Duration;

use bytes::Bytes;
use common::{aws, bucket, queue, unique};
use pipeline_aws::SqsQueue;
use pipeline_aws::redrive::{Moved, move_messages};
use pipeline_aws::setup::{self, QueueSettings};
use pipeline_core::blob::{BlobError, BlobStore, PutOptions};
use pipeline_core::queue::{Queue, QueueError};
use protocol::ErrorClass;

const SEC: Duration = Duration::from_secs(1);

#[tokio::test]
async fn put_if_absent_writes_once() {
    let aws = aws().await;
    let (store, bucket) = bucket(&aws, "cond").await;
    let opts = PutOptions::default();
    assert!(store.put_if_absent(&bucket, "out.jpg", Bytes::from_static(b"first"), &opts).await.expect("put"));
    assert!(!store.put_if_absent(&bucket, "out.jpg", Bytes::from_static(b"second"), &opts).await.expect("put"));
    assert_eq!(store.get(&bucket, "out.jpg", 100).await.expect("get").body.as_ref(), b"first");
}

#[tokio::test]
async fn headers_are_object_headers_and_missing_buckets_are_not_found() {
    let aws = aws().await;
    let (store, bucket) = bucket(&aws, "hdr").await;
    let opts =
        PutOptions { content_type: Some("image/webp".into()), cache_control: Some("public, max-age=31536000".into()) };
    store.put(&bucket, "a/b.webp", Bytes::from_static(b"RIFF"), &opts).await.expect("put");
    let head = store.head(&bucket, "a/b.webp").await.expect("head");
    assert_eq!(head.content_type, "image/webp");
    assert_eq!(head.cache_control.as_deref(), Some("public, max-age=31536000"));
    // The raw object carries them as HTTP headers, not as user metadata.
    let raw = store.client().head_object().bucket(&bucket).key("a/b.webp").send().await.expect("raw head");
    assert!(raw.metadata().is_none_or(|m| m.is_empty()), "{:?}", raw.metadata());

    let missing = unique("nobucket");
    assert!(matches!(store.get(&missing, "x.jpg", 10).await, Err(BlobError::NotFound { .. })));
    assert!(matches!(store.head(&missing, "x.jpg").await, Err(BlobError::NotFound { .. })));
    store.create_bucket(&bucket).await.expect("creating an owned bucket again is fine");
}

#[tokio::test]
async fn attributes_travel_and_receive_counts_rise() {
    let aws = aws().await;
    let q = queue(&aws, "attrs").await;
    q.send_with_attributes("{}", Duration::ZERO, &[("traceparent", "00-abc-01"), ("kind", "job")]).await.expect("send");
    let m = q.receive_messages(10, SEC, SEC).await.expect("receive").pop().expect("one");
    assert_eq!(m.attributes.get("traceparent").map(String::as_str), Some("00-abc-01"));
    assert_eq!(m.attributes.len(), 2);
    assert!(m.received.sent_at_ms.is_some_and(|t| t > 1_600_000_000_000));
    assert_eq!(m.received.receive_count, 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let again = q.receive_messages(10, 3 * SEC, 30 * SEC).await.expect("receive").pop().expect("back");
    assert_eq!(again.received.receive_count, 2);
}

#[tokio::test]
async fn queues_resolve_by_name_or_url_and_stale_receipts_are_reported_on_extend() {
    let aws = aws().await;
    let q = queue(&aws, "named").await;
    let by_name = aws.sqs(q.name()).await.expect("by name");
    assert_eq!((by_name.url(), by_name.name()), (q.url(), q.name()));
    let by_url = aws.sqs(q.url()).await.expect("by url");
    assert_eq!(by_url.name(), q.name());

    let err = aws.sqs(&unique("absent")).await.expect_err("no such queue");
    assert_eq!(err.class(), ErrorClass::Permanent, "{err}");
    assert!(err.to_string().contains("no SQS queue named"), "{err}");

    q.send("x", Duration::ZERO).await.expect("send");
    let m = q.receive(1, SEC, 30 * SEC).await.expect("receive").pop().expect("one");
    q.delete(&m.receipt).await.expect("delete");
    assert!(matches!(q.change_visibility(&m.receipt, SEC).await, Err(QueueError::ReceiptInvalid)));
    assert!(matches!(q.receive(11, Duration::ZERO, SEC).await, Err(QueueError::Invalid(_))));
    assert!(matches!(q.send(&"x".repeat(256 * 1024 + 1), Duration::ZERO).await, Err(QueueError::Invalid(_))));
    assert!(matches!(q.send("bad \u{1} char", Duration::ZERO).await, Err(QueueError::Invalid(_))));
}

#[tokio::test]
async fn dead_letters_move_back_to_their_queue() {
    let aws = aws().await;
    let name = unique("jobs");
    let sqs = &aws.clients().sqs;
    let (q, dlq) = setup::create_queue_with_dlq(sqs, &name, &format!("{name}-dlq"), 1, &QueueSettings::default())
        .await
        .expect("queues");
    // Running set-up again is fine.
    setup::create_queue_with_dlq(sqs, &name, &format!("{name}-dlq"), 1, &QueueSettings::default())
        .await
        .expect("again");
    for i in 0..13 {
        dlq.send(&format!("dead-{i}"), Duration::ZERO).await.expect("send");
    }
    assert_eq!(move_messages(&dlq, &q, Some(3)).await.expect("move"), Moved { moved: 3, copied: 0 });
    assert_eq!(move_messages(&dlq, &q, None).await.expect("move"), Moved { moved: 10, copied: 0 });
    let mut bodies = Vec::new();
    loop {
        let got = q.receive(10, SEC, 30 * SEC).await.expect("receive");
        if got.is_empty() {
            break;
        }
        for m in got {
            q.delete(&m.receipt).await.expect("delete");
            bodies.push(m.body);
        }
    }
    assert_eq!(bodies.len(), 13);
    assert_eq!(dlq.stats().await.expect("stats"), Default::default());
}

#[tokio::test]
async fn a_queue_connected_by_url_on_a_dead_endpoint_fails_retryably() {
    // Nothing listens on port 9 of the loopback address: the failure is a transport one.
    let config = pipeline_aws::AwsConfig::for_endpoint("http://127.0.0.1:9").await;
    let q = SqsQueue::from_url(config.sqs_client(), "http://127.0.0.1:9/000000000000/none");
    let err = q.send("x", Duration::ZERO).await.expect_err("nothing listens");
    assert_eq!(err.class(), ErrorClass::Retryable, "{err}");
}
