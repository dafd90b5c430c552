//! What sits on the dead-letter queue, and the operators' tools for it: list, show,
//! redrive, purge. They work on any [`Queue`], and never lose a message: a scan hides
//! each message while it looks, then releases what it does not remove.

use std::time::Duration;

use pipeline_core::queue::{Queue, QueueError};
use protocol::dead_letter::DeadLetter;
use protocol::message::Job;

use crate::error::EngineError;

/// One message on the dead-letter queue.
#[derive(Clone, Debug)]
pub struct DlqItem {
    /// The queue's id for the message.
    pub message_id: String,
    /// The body as stored.
    pub body: String,
    /// The dead letter, or why the body could not be read.
    pub letter: Result<DeadLetter, String>,
    /// Deliveries so far.
    pub receive_count: u32,
}

impl DlqItem {
    /// Whether `id` names this item (its job id or its message id).
    pub fn matches(&self, id: &str) -> bool {
        self.message_id == id || self.letter.as_ref().is_ok_and(|l| l.job.job_id == id)
    }
}

/// How long a scan hides each message; it releases them as soon as it is done.
const SCAN_VISIBILITY: Duration = Duration::from_secs(120);
/// How long a scan waits for more messages before it concludes the queue is read.
const SCAN_WAIT: Duration = Duration::from_secs(1);
/// How long a scan keeps asking while the queue counts ready messages it was not given.
const SCAN_PATIENCE: Duration = Duration::from_secs(20);

/// Reads every message, lets `remove` pick the ones to delete (after it has dealt with
/// them: they are deleted at once), and releases the rest at the end. Returns every item
/// seen and whether it was removed. A message seen twice (its hiding ran out during a long
/// scan) ends the scan rather than being handled twice.
async fn scan<F, Fut>(dlq: &dyn Queue, mut remove: F) -> Result<Vec<(DlqItem, bool)>, EngineError>
where
    F: FnMut(DlqItem) -> Fut,
    Fut: Future<Output = Result<(DlqItem, bool), EngineError>>,
{
    let mut seen: Vec<(DlqItem, bool)> = Vec::new();
    let mut held = Vec::new();
    let mut result = Ok(());
    let patience = std::time::Instant::now() + SCAN_PATIENCE;
    'scan: loop {
        // A short wait, not zero: SQS may answer an instant poll with nothing while messages exist.
        let batch = match dlq.receive(10, SCAN_WAIT, SCAN_VISIBILITY).await {
            Ok(b) => b,
            Err(e) => {
                result = Err(e.into());
                break;
            }
        };
        if batch.is_empty() {
            // An empty answer is not proof of an empty queue (SQS samples its servers):
            // keep reading while the queue's own count says messages are ready.
            let ready = dlq.stats().await.map(|s| s.visible).unwrap_or(0);
            if ready == 0 || std::time::Instant::now() >= patience {
                break;
            }
            continue;
        }
        let mut wrapped = false;
        for m in batch {
            if wrapped || seen.iter().any(|(item, _)| item.message_id == m.message_id) {
                wrapped = true;
                held.push(m.receipt);
                continue;
            }
            let letter = DeadLetter::parse(&m.body, m.receive_count);
            let item = DlqItem { message_id: m.message_id, body: m.body, letter, receive_count: m.receive_count };
            let (item, removed) = match remove(item.clone()).await {
                Ok(r) => r,
                Err(e) => {
                    result = Err(e);
                    (item, false)
                }
            };
            if removed {
                if let Err(e) = dlq.delete(&m.receipt).await {
                    tracing::warn!(message_id = %item.message_id, error = %e, "could not delete a handled dead letter");
                }
            } else {
                held.push(m.receipt);
            }
            seen.push((item, removed));
        }
        if wrapped || result.is_err() {
            break 'scan;
        }
    }
    // Release before reporting any error, so nothing stays hidden.
    for receipt in held {
        if let Err(e) = dlq.change_visibility(&receipt, Duration::ZERO).await {
            tracing::warn!(error = %e, "could not release a dead letter");
        }
    }
    result.map(|()| seen)
}

/// Every message on the dead-letter queue, untouched.
///
/// # Errors
/// The queue failed.
pub async fn list(dlq: &dyn Queue) -> Result<Vec<DlqItem>, EngineError> {
    Ok(survey(dlq).await?.items)
}

/// What a look at the dead-letter queue found.
#[derive(Clone, Debug)]
pub struct Survey {
    /// Every message read, untouched.
    pub items: Vec<DlqItem>,
    /// Messages the queue counts as received by someone else (another scan, a redrive in
    /// progress) when the look ended: not listed, but not lost either.
    pub in_flight_elsewhere: u64,
}

/// Every message on the dead-letter queue, untouched, and how many others are in flight.
///
/// # Errors
/// The queue failed.
pub async fn survey(dlq: &dyn Queue) -> Result<Survey, EngineError> {
    let seen = scan(dlq, |item| async move { Ok((item, false)) }).await?;
    // Asked after the scan released what it held, so whatever is in flight is someone else's.
    let in_flight_elsewhere = dlq.stats().await?.in_flight;
    Ok(Survey { items: seen.into_iter().map(|(item, _)| item).collect(), in_flight_elsewhere })
}

/// Starts again, with `restart`, the dead-lettered jobs that `ids` name (all of them
/// when `ids` is empty), and removes them from the queue. Returns the jobs redriven.
///
/// # Errors
/// The queue or `restart` failed; what was redriven before stays redriven.
pub async fn redrive<F, Fut>(dlq: &dyn Queue, ids: &[String], restart: F) -> Result<Vec<Job>, EngineError>
where
    F: Fn(Job) -> Fut,
    Fut: Future<Output = Result<(), EngineError>>,
{
    let seen = scan(dlq, |item| {
        let wanted = ids.is_empty() || ids.iter().any(|id| item.matches(id));
        let restart = &restart;
        async move {
            match &item.letter {
                Ok(letter) if wanted => {
                    restart(letter.job.clone()).await?;
                    Ok((item, true))
                }
                _ => Ok((item, false)),
            }
        }
    })
    .await?;
    Ok(seen
        .into_iter()
        .filter(|(_, removed)| *removed)
        .filter_map(|(item, _)| item.letter.ok())
        .map(|l| l.job)
        .collect())
}

/// Deletes every message on the dead-letter queue.
///
/// # Errors
/// The queue failed.
pub async fn purge(dlq: &dyn Queue) -> Result<u64, QueueError> {
    dlq.purge().await
}
