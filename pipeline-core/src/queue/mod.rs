//! The queue contract, with SQS semantics: at-least-once delivery, a visibility timeout
//! per receive, a receipt per delivery, receive counts, delays, and redrive of messages
//! received too often to a dead-letter queue. [`sqlite::SqliteQueue`] is the local backend.

pub mod sqlite;

use std::fmt::Debug;
use std::time::Duration;

use async_trait::async_trait;

use crate::sqlite::DbError;
use protocol::error::{ErrorClass, JobError};

/// The most messages one receive returns (SQS's limit).
pub const MAX_BATCH: usize = 10;
/// The largest message body accepted, in bytes (SQS's limit).
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// The longest visibility timeout (SQS's limit).
pub const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 60 * 60);

/// One delivery of a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    /// The message's id, stable across deliveries.
    pub message_id: String,
    /// The handle for deleting or extending this delivery; a later delivery gets a new one.
    pub receipt: String,
    /// The body as sent.
    pub body: String,
    /// How many times the message has been delivered, this time included.
    pub receive_count: u32,
    /// When it was first sent, in ms since the epoch, when the queue tells (for queue-wait metrics).
    pub sent_at_ms: Option<u64>,
}

/// Approximate counts, for metrics and autoscaling.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Ready to be received.
    pub visible: u64,
    /// Received and not yet deleted or released.
    pub in_flight: u64,
    /// Sent with a delay that has not yet passed.
    pub delayed: u64,
    /// How long the oldest message ready to be received has waited since it was sent (zero
    /// when none waits), when the queue can tell cheaply (SQS publishes it to CloudWatch only).
    pub oldest_age: Option<std::time::Duration>,
}

/// Why a queue operation failed.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The receipt does not name a current delivery: the message was deleted, or
    /// its visibility ran out and it was delivered again.
    #[error("receipt is no longer valid (message deleted or redelivered)")]
    ReceiptInvalid,
    /// The request itself is wrong (body too large, batch too big).
    #[error("invalid queue request: {0}")]
    Invalid(String),
    /// The local database failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// A remote service failure; `retryable` says whether trying again may help.
    #[error("queue service error: {message}")]
    Service {
        /// What the service said.
        message: String,
        /// Throttling, 5xx, timeouts: yes.
        retryable: bool,
    },
}

impl QueueError {
    /// Retry or not.
    pub fn class(&self) -> ErrorClass {
        match self {
            QueueError::ReceiptInvalid | QueueError::Invalid(_) => ErrorClass::Permanent,
            QueueError::Db(_) => ErrorClass::Retryable,
            QueueError::Service { retryable, .. } => {
                if *retryable {
                    ErrorClass::Retryable
                } else {
                    ErrorClass::Permanent
                }
            }
        }
    }
}

impl From<QueueError> for JobError {
    fn from(e: QueueError) -> Self {
        JobError { class: e.class(), code: "QueueError".into(), message: e.to_string() }
    }
}

/// A message queue with SQS semantics.
#[async_trait]
pub trait Queue: Send + Sync + Debug {
    /// The queue's name, for logs and metrics.
    fn name(&self) -> &str;

    /// Sends a message that becomes visible after `delay`; returns its id.
    ///
    /// # Errors
    /// [`QueueError::Invalid`] for a body over [`MAX_BODY_BYTES`], or a backend failure.
    async fn send(&self, body: &str, delay: Duration) -> Result<String, QueueError>;

    /// Whether this machine answers the queue (the SQLite queue): every read is then exact and
    /// a poll costs no request, so a caller may poll in short waits.
    fn answers_locally(&self) -> bool {
        false
    }

    /// The shortest `wait` for which an empty [`Queue::receive`] shows that no message is
    /// ready: none for a queue this machine answers. SQS answers a poll that does not wait
    /// from a sample of its servers, so it may return nothing while messages wait; a long poll
    /// (one second at least) asks them all.
    fn settled_wait(&self) -> Duration {
        if self.answers_locally() { Duration::ZERO } else { Duration::from_secs(1) }
    }

    /// Receives up to `max` (at most [`MAX_BATCH`]) visible messages, waiting up to
    /// `wait` for the first; each is hidden from other receivers for `visibility`.
    ///
    /// # Errors
    /// A backend failure.
    async fn receive(&self, max: usize, wait: Duration, visibility: Duration) -> Result<Vec<Received>, QueueError>;

    /// Deletes the delivery named by `receipt`.
    ///
    /// Do not rely on a stale receipt being refused: SQS accepts the receipt of a deleted
    /// message, and of an earlier delivery (which real SQS ignores and the emulator obeys).
    ///
    /// # Errors
    /// [`QueueError::ReceiptInvalid`] when the backend knows the delivery is no longer current.
    async fn delete(&self, receipt: &str) -> Result<(), QueueError>;

    /// Deletes several deliveries, in as few requests as the backend allows (SQS: one per
    /// [`MAX_BATCH`]); the result of each, in order.
    ///
    /// # Errors
    /// A backend failure that stopped the whole call.
    async fn delete_many(&self, receipts: &[String]) -> Result<Vec<Result<(), QueueError>>, QueueError> {
        let mut results = Vec::with_capacity(receipts.len());
        for receipt in receipts {
            results.push(self.delete(receipt).await);
        }
        Ok(results)
    }

    /// Hides the delivery for `timeout` from now (0 releases it at once).
    ///
    /// # Errors
    /// [`QueueError::ReceiptInvalid`] when the delivery is no longer current.
    async fn change_visibility(&self, receipt: &str, timeout: Duration) -> Result<(), QueueError>;

    /// Deletes every message; returns how many were deleted, when the backend knows.
    ///
    /// # Errors
    /// A backend failure.
    async fn purge(&self) -> Result<u64, QueueError>;

    /// Approximate message counts.
    ///
    /// # Errors
    /// A backend failure.
    async fn stats(&self) -> Result<QueueStats, QueueError>;
}
