//! Creating what the pipeline needs on AWS, for tests and a `setup` command: queues with
//! a redrive policy to their dead-letter queue, buckets, and S3 ObjectCreated
//! notifications to a queue (with the queue policy that lets S3 send).
//! Every step can be run again: what exists is brought to the settings asked for.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_s3::types::{
    Event, FilterRule, FilterRuleName, NotificationConfiguration, NotificationConfigurationFilter, QueueConfiguration,
    S3KeyFilter,
};
use aws_sdk_sqs::types::QueueAttributeName;
use pipeline_core::blob::BlobError;
use pipeline_core::queue::QueueError;
use protocol::ErrorClass;
use serde_json::json;

use crate::error::AwsError;
use crate::s3::S3BlobStore;
use crate::sqs::SqsQueue;

/// How a queue is created.
#[derive(Clone, Debug)]
pub struct QueueSettings {
    /// The default visibility timeout of a receive.
    pub visibility_timeout: Duration,
    /// How long an unreceived message is kept (SQS: 1 minute to 14 days).
    pub retention: Duration,
    /// Where messages go after this many receives without a delete: (DLQ ARN, max receives).
    pub dead_letter: Option<(String, u32)>,
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self {
            visibility_timeout: Duration::from_secs(30),
            retention: Duration::from_secs(4 * 24 * 3600),
            dead_letter: None,
        }
    }
}

/// Creates the queue `name`, or brings an existing one to `settings`.
///
/// # Errors
/// A service failure (an invalid name, access denied).
pub async fn create_queue(
    client: &aws_sdk_sqs::Client,
    name: &str,
    settings: &QueueSettings,
) -> Result<SqsQueue, QueueError> {
    let mut attrs = HashMap::from([
        (QueueAttributeName::VisibilityTimeout, settings.visibility_timeout.as_secs().to_string()),
        (QueueAttributeName::MessageRetentionPeriod, settings.retention.as_secs().to_string()),
    ]);
    if let Some((dlq_arn, max_receive_count)) = &settings.dead_letter {
        let policy = json!({ "deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive_count });
        attrs.insert(QueueAttributeName::RedrivePolicy, policy.to_string());
    }
    let created = client.create_queue().queue_name(name).set_attributes(Some(attrs.clone())).send().await;
    match created {
        Ok(out) => Ok(SqsQueue::from_url(client.clone(), out.queue_url().unwrap_or_default())),
        Err(e) => {
            let e = AwsError::from_sdk("CreateQueue", &e);
            // It exists with other attributes: set ours on it.
            if !e.code.as_deref().is_some_and(|c| c.ends_with("QueueAlreadyExists") || c == "QueueNameExists") {
                return Err(e.into());
            }
            let queue = SqsQueue::connect(client.clone(), name).await?;
            client
                .set_queue_attributes()
                .queue_url(queue.url())
                .set_attributes(Some(attrs))
                .send()
                .await
                .map_err(|e| QueueError::from(AwsError::from_sdk("SetQueueAttributes", &e)))?;
            Ok(queue)
        }
    }
}

/// Creates `dlq_name`, then `name` with a redrive policy moving a message to it after
/// `max_receive_count` receives. Returns (queue, dead-letter queue).
///
/// # Errors
/// A service failure.
pub async fn create_queue_with_dlq(
    client: &aws_sdk_sqs::Client,
    name: &str,
    dlq_name: &str,
    max_receive_count: u32,
    settings: &QueueSettings,
) -> Result<(SqsQueue, SqsQueue), QueueError> {
    // The DLQ keeps messages as long as SQS allows, for operators to look at.
    let dlq_settings =
        QueueSettings { retention: Duration::from_secs(14 * 24 * 3600), dead_letter: None, ..settings.clone() };
    let dlq = create_queue(client, dlq_name, &dlq_settings).await?;
    let with_redrive = QueueSettings { dead_letter: Some((dlq.arn().await?, max_receive_count)), ..settings.clone() };
    let queue = create_queue(client, name, &with_redrive).await?;
    Ok((queue, dlq))
}

/// Lets S3 send notifications from `bucket` to `queue` (the queue policy real S3 needs
/// before it accepts a notification configuration).
///
/// # Errors
/// A service failure.
pub async fn allow_bucket_to_send(queue: &SqsQueue, bucket: &str) -> Result<(), QueueError> {
    let queue_arn = queue.arn().await?;
    let policy = json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "imgpipe-s3-notifications",
            "Effect": "Allow",
            "Principal": { "Service": "s3.amazonaws.com" },
            "Action": "sqs:SendMessage",
            "Resource": queue_arn,
            "Condition": { "ArnLike": { "aws:SourceArn": format!("arn:aws:s3:::{bucket}") } }
        }]
    });
    queue
        .client()
        .set_queue_attributes()
        .queue_url(queue.url())
        .attributes(QueueAttributeName::Policy, policy.to_string())
        .send()
        .await
        .map_err(|e| QueueError::from(AwsError::from_sdk("SetQueueAttributes", &e)))?;
    Ok(())
}

/// Sends every ObjectCreated event of `bucket` (for keys under `prefix`, when given) to
/// `queue`, replacing the bucket's notification configuration. S3 then sends a
/// `s3:TestEvent` message, which [`crate::s3_event::parse`] skips.
///
/// # Errors
/// A failure to read the queue's ARN, to set its policy, or to configure the bucket.
pub async fn notify_object_created(
    store: &S3BlobStore,
    bucket: &str,
    queue: &SqsQueue,
    prefix: Option<&str>,
) -> Result<(), BlobError> {
    let to_blob =
        |e: QueueError| BlobError::Service { message: e.to_string(), retryable: e.class() == ErrorClass::Retryable };
    allow_bucket_to_send(queue, bucket).await.map_err(to_blob)?;
    let queue_arn = queue.arn().await.map_err(to_blob)?;
    let mut target =
        QueueConfiguration::builder().id("imgpipe-object-created").queue_arn(queue_arn).events(Event::S3ObjectCreated);
    if let Some(prefix) = prefix {
        let rule = FilterRule::builder().name(FilterRuleName::Prefix).value(prefix).build();
        let filter =
            NotificationConfigurationFilter::builder().key(S3KeyFilter::builder().filter_rules(rule).build()).build();
        target = target.filter(filter);
    }
    let target = target.build().map_err(|e| BlobError::Service { message: e.to_string(), retryable: false })?;
    let conf = NotificationConfiguration::builder().queue_configurations(target).build();
    store
        .client()
        .put_bucket_notification_configuration()
        .bucket(bucket)
        .notification_configuration(conf)
        .send()
        .await
        .map_err(|e| BlobError::from(AwsError::from_sdk("PutBucketNotificationConfiguration", &e)))?;
    Ok(())
}
