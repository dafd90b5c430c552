//! [`Queue`] on SQS: long-poll batch receive with receive counts and message
//! attributes, delete (one or a batch), visibility changes, purge and approximate counts.
//! SQS counts time in whole seconds: delays and timeouts are rounded up.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, Message, MessageAttributeValue, MessageSystemAttributeName, QueueAttributeName,
};
use pipeline_core::queue::{MAX_BATCH, MAX_BODY_BYTES, MAX_VISIBILITY, Queue, QueueError, QueueStats, Received};
use tokio::time::Instant;

use crate::error::AwsError;

/// The longest long poll one SQS call makes; longer waits are made of several calls.
pub const MAX_WAIT_PER_CALL: Duration = Duration::from_secs(20);
/// The longest delay SQS accepts on a message.
pub const MAX_DELAY: Duration = Duration::from_secs(15 * 60);

/// One delivery, with what SQS tells beyond the [`Received`] the trait returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SqsMessage {
    /// The delivery.
    pub received: Received,
    /// The message's string (and number) attributes.
    pub attributes: BTreeMap<String, String>,
}

/// An SQS queue, its URL resolved once. Cheap to clone: clones share the client.
#[derive(Clone, Debug)]
pub struct SqsQueue {
    client: Client,
    name: String,
    url: String,
}

impl SqsQueue {
    /// The queue named by `name_or_url`: a URL (`https://…/123456789012/jobs`) is used
    /// as it is; a name is resolved to its URL with one call.
    ///
    /// # Errors
    /// [`QueueError::Service`] (not retryable) when no queue has that name.
    pub async fn connect(client: Client, name_or_url: &str) -> Result<Self, QueueError> {
        if name_or_url.starts_with("https://") || name_or_url.starts_with("http://") {
            return Ok(Self::from_url(client, name_or_url));
        }
        let out = client.get_queue_url().queue_name(name_or_url).send().await.map_err(|e| {
            let e = AwsError::from_sdk("GetQueueUrl", &e);
            if is_missing_queue(&e) {
                QueueError::Service { message: format!("no SQS queue named {name_or_url:?}"), retryable: false }
            } else {
                e.into()
            }
        })?;
        let url = out.queue_url().unwrap_or_default();
        Ok(Self { client, name: name_or_url.to_owned(), url: url.to_owned() })
    }

    /// The queue at `url`, without a call.
    pub fn from_url(client: Client, url: &str) -> Self {
        let name = url.trim_end_matches('/').rsplit('/').next().unwrap_or(url).to_owned();
        Self { client, name, url: url.to_owned() }
    }

    /// The queue's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The client, for calls this queue does not wrap.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The queue's ARN, as redrive policies and bucket notifications name it.
    ///
    /// # Errors
    /// A service failure.
    pub async fn arn(&self) -> Result<String, QueueError> {
        let attrs = self.attributes(&[QueueAttributeName::QueueArn]).await?;
        attrs
            .get(&QueueAttributeName::QueueArn)
            .cloned()
            .ok_or_else(|| QueueError::Service { message: format!("{} has no QueueArn", self.url), retryable: false })
    }

    /// Sends a message with string attributes; returns its id.
    ///
    /// # Errors
    /// [`QueueError::Invalid`] for a body SQS refuses or a delay over [`MAX_DELAY`]; a service failure.
    pub async fn send_with_attributes(
        &self,
        body: &str,
        delay: Duration,
        attributes: &[(&str, &str)],
    ) -> Result<String, QueueError> {
        check_body(body)?;
        if delay > MAX_DELAY {
            return Err(QueueError::Invalid(format!("delay {delay:?} is over SQS's 15 minutes")));
        }
        let mut req =
            self.client.send_message().queue_url(&self.url).message_body(body).delay_seconds(secs_ceil(delay));
        for (name, value) in attributes {
            let value = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(*value)
                .build()
                .map_err(|e| QueueError::Invalid(e.to_string()))?;
            req = req.message_attributes(*name, value);
        }
        let out = req.send().await.map_err(|e| QueueError::from(AwsError::from_sdk("SendMessage", &e)))?;
        Ok(out.message_id().unwrap_or_default().to_owned())
    }

    /// Receives up to `max` messages with their attributes, long-polling up to `wait`
    /// (in calls of at most [`MAX_WAIT_PER_CALL`]) until at least one is there.
    ///
    /// # Errors
    /// [`QueueError::Invalid`] for `max` over 10 or `visibility` over 12 hours; a service failure.
    pub async fn receive_messages(
        &self,
        max: usize,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<SqsMessage>, QueueError> {
        if max > MAX_BATCH {
            return Err(QueueError::Invalid(format!("at most {MAX_BATCH} messages per receive, not {max}")));
        }
        if visibility > MAX_VISIBILITY {
            return Err(QueueError::Invalid(format!("visibility {visibility:?} is over 12 hours")));
        }
        if max == 0 {
            return Ok(Vec::new());
        }
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now()).min(MAX_WAIT_PER_CALL);
            let out = self
                .client
                .receive_message()
                .queue_url(&self.url)
                .max_number_of_messages(i32::try_from(max).unwrap_or(10))
                .wait_time_seconds(secs_ceil(left))
                .visibility_timeout(secs_ceil(visibility))
                .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
                .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
                .message_attribute_names("All")
                .send()
                .await
                .map_err(|e| QueueError::from(AwsError::from_sdk("ReceiveMessage", &e)))?;
            let messages: Vec<_> = out.messages().iter().filter_map(to_sqs_message).collect();
            if !messages.is_empty() || Instant::now() >= deadline {
                return Ok(messages);
            }
        }
    }

    async fn attributes(
        &self,
        names: &[QueueAttributeName],
    ) -> Result<std::collections::HashMap<QueueAttributeName, String>, QueueError> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .set_attribute_names(Some(names.to_vec()))
            .send()
            .await
            .map_err(|e| QueueError::from(AwsError::from_sdk("GetQueueAttributes", &e)))?;
        Ok(out.attributes().cloned().unwrap_or_default())
    }
}

/// Whole seconds, rounded up, as SQS takes them.
fn secs_ceil(d: Duration) -> i32 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    i32::try_from(secs).unwrap_or(i32::MAX)
}

/// SQS refuses bodies over 256 KiB and characters outside XML's character set.
fn check_body(body: &str) -> Result<(), QueueError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(QueueError::Invalid(format!("body of {} bytes is over {MAX_BODY_BYTES}", body.len())));
    }
    let allowed =
        |c: char| matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}') || c >= '\u{10000}';
    match body.chars().find(|&c| !allowed(c)) {
        Some(c) => Err(QueueError::Invalid(format!("SQS refuses the character U+{:04X} in a body", u32::from(c)))),
        None => Ok(()),
    }
}

fn is_missing_queue(e: &AwsError) -> bool {
    e.code.as_deref().is_some_and(|c| c.ends_with("NonExistentQueue") || c == "QueueDoesNotExist")
}

/// Whether an error says the receipt is not a current delivery.
fn is_stale_receipt(code: &str, message: Option<&str>) -> bool {
    let code = code.rsplit('.').next().unwrap_or(code);
    matches!(code, "ReceiptHandleIsInvalid" | "MessageNotInflight")
        || (code == "InvalidParameterValue" && message.is_some_and(|m| m.to_ascii_lowercase().contains("receipt")))
}

fn receipt_error(e: AwsError) -> QueueError {
    if e.code.as_deref().is_some_and(|c| is_stale_receipt(c, Some(&e.message))) {
        QueueError::ReceiptInvalid
    } else {
        e.into()
    }
}

fn batch_entry_error(code: &str, message: Option<&str>, sender_fault: bool) -> QueueError {
    if is_stale_receipt(code, message) {
        QueueError::ReceiptInvalid
    } else {
        QueueError::Service { message: format!("{code}: {}", message.unwrap_or_default()), retryable: !sender_fault }
    }
}

fn to_sqs_message(m: &Message) -> Option<SqsMessage> {
    let system = m.attributes();
    let system_u64 =
        |name: &MessageSystemAttributeName| system.and_then(|a| a.get(name)).and_then(|v| v.parse::<u64>().ok());
    let receive_count = system_u64(&MessageSystemAttributeName::ApproximateReceiveCount)
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(1);
    let attributes = m
        .message_attributes()
        .map(|attrs| attrs.iter().filter_map(|(k, v)| v.string_value().map(|s| (k.clone(), s.to_owned()))).collect())
        .unwrap_or_default();
    Some(SqsMessage {
        received: Received {
            message_id: m.message_id()?.to_owned(),
            receipt: m.receipt_handle()?.to_owned(),
            body: m.body().unwrap_or_default().to_owned(),
            receive_count,
            sent_at_ms: system_u64(&MessageSystemAttributeName::SentTimestamp),
        },
        attributes,
    })
}

#[async_trait]
impl Queue for SqsQueue {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(&self, body: &str, delay: Duration) -> Result<String, QueueError> {
        self.send_with_attributes(body, delay, &[]).await
    }

    async fn receive(&self, max: usize, wait: Duration, visibility: Duration) -> Result<Vec<Received>, QueueError> {
        Ok(self.receive_messages(max, wait, visibility).await?.into_iter().map(|m| m.received).collect())
    }

    async fn delete(&self, receipt: &str) -> Result<(), QueueError> {
        match self.client.delete_message().queue_url(&self.url).receipt_handle(receipt).send().await {
            Ok(_) => Ok(()),
            Err(e) => Err(receipt_error(AwsError::from_sdk("DeleteMessage", &e))),
        }
    }

    async fn delete_many(&self, receipts: &[String]) -> Result<Vec<Result<(), QueueError>>, QueueError> {
        let mut results = Vec::with_capacity(receipts.len());
        // DeleteMessageBatch: up to ten in one request.
        for chunk in receipts.chunks(MAX_BATCH) {
            let mut req = self.client.delete_message_batch().queue_url(&self.url);
            for (i, receipt) in chunk.iter().enumerate() {
                let entry = DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(receipt)
                    .build()
                    .map_err(|e| QueueError::Invalid(e.to_string()))?;
                req = req.entries(entry);
            }
            let out = req.send().await.map_err(|e| QueueError::from(AwsError::from_sdk("DeleteMessageBatch", &e)))?;
            let mut chunk_results: Vec<Result<(), QueueError>> = chunk.iter().map(|_| Ok(())).collect();
            for failed in out.failed() {
                if let Some(slot) = failed.id().parse::<usize>().ok().and_then(|i| chunk_results.get_mut(i)) {
                    *slot = Err(batch_entry_error(failed.code(), failed.message(), failed.sender_fault()));
                }
            }
            results.extend(chunk_results);
        }
        Ok(results)
    }

    async fn change_visibility(&self, receipt: &str, timeout: Duration) -> Result<(), QueueError> {
        if timeout > MAX_VISIBILITY {
            return Err(QueueError::Invalid(format!("visibility {timeout:?} is over 12 hours")));
        }
        let req = self.client.change_message_visibility().queue_url(&self.url).receipt_handle(receipt);
        match req.visibility_timeout(secs_ceil(timeout)).send().await {
            Ok(_) => Ok(()),
            Err(e) => Err(receipt_error(AwsError::from_sdk("ChangeMessageVisibility", &e))),
        }
    }

    /// Returns the approximate count before the purge (SQS does not say how many it removed).
    async fn purge(&self) -> Result<u64, QueueError> {
        let before = self.stats().await?;
        self.client
            .purge_queue()
            .queue_url(&self.url)
            .send()
            .await
            .map_err(|e| QueueError::from(AwsError::from_sdk("PurgeQueue", &e)))?;
        Ok(before.visible + before.in_flight + before.delayed)
    }

    async fn stats(&self) -> Result<QueueStats, QueueError> {
        use QueueAttributeName as A;
        let names = [
            A::ApproximateNumberOfMessages,
            A::ApproximateNumberOfMessagesNotVisible,
            A::ApproximateNumberOfMessagesDelayed,
        ];
        let attrs = self.attributes(&names).await?;
        let count = |name: &A| attrs.get(name).and_then(|v| v.parse().ok()).unwrap_or(0);
        Ok(QueueStats {
            visible: count(&A::ApproximateNumberOfMessages),
            in_flight: count(&A::ApproximateNumberOfMessagesNotVisible),
            delayed: count(&A::ApproximateNumberOfMessagesDelayed),
            oldest_age: None,
        })
    }
}
