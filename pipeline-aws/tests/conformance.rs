//! The shared conformance suites, run against S3 and SQS on the emulator.

use test_support::emulator as common;

use std::sync::Arc;

use common::{aws, bucket, queue, unique};
use pipeline_aws::SqsQueue;
use pipeline_aws::setup::{self, QueueSettings};
use pipeline_core::conformance;
use pipeline_core::queue::Queue;

#[tokio::test]
async fn sqs_send_receive_delete() {
    conformance::queue_send_receive_delete(&queue(&aws().await, "srd").await).await;
}

#[tokio::test]
async fn sqs_visibility() {
    conformance::queue_visibility(&queue(&aws().await, "vis").await).await;
}

#[tokio::test]
async fn sqs_delete_many() {
    conformance::queue_delete_many(&queue(&aws().await, "many").await).await;
}

#[tokio::test]
async fn sqs_delay() {
    conformance::queue_delay(&queue(&aws().await, "delay").await).await;
}

#[tokio::test]
async fn sqs_long_poll_wakes_on_send() {
    conformance::queue_long_poll(Arc::new(queue(&aws().await, "poll").await)).await;
}

#[tokio::test]
async fn sqs_redrive_to_dead_letter_queue() {
    let aws = aws().await;
    let name = unique("jobs");
    let (q, dlq) =
        setup::create_queue_with_dlq(&aws.clients().sqs, &name, &format!("{name}-dlq"), 2, &QueueSettings::default())
            .await
            .expect("queues");
    conformance::queue_redrive(&q, &dlq, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqs_concurrent_consumers_on_separate_clients() {
    let producer = queue(&aws().await, "many").await;
    let mut consumers: Vec<Arc<dyn Queue>> = Vec::new();
    for _ in 0..4 {
        let aws = aws().await;
        consumers.push(Arc::new(SqsQueue::connect(aws.clients().sqs.clone(), producer.url()).await.expect("connect")));
    }
    conformance::queue_concurrent_consumers(Arc::new(producer), consumers, conformance::Delivery::AtLeastOnce).await;
}

#[tokio::test]
async fn sqs_purge() {
    conformance::queue_purge(&queue(&aws().await, "purge").await).await;
}

#[tokio::test]
async fn s3_blob_store() {
    let (store, name) = bucket(&aws().await, "conformance").await;
    conformance::blob_store(&store, &name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dynamodb_job_store() {
    let store = common::jobs_table(&aws().await).await;
    conformance::job_store(Arc::new(store), &unique("store")).await;
}
