//! Moving messages from one queue to another (a dead-letter queue back to its source),
//! by receive → send → delete on any [`Queue`]. SQS's own StartMessageMoveTask is the
//! faster path where the service has it; emulators lack it, and this works everywhere.
//! A message is deleted from the source only after the destination accepted it, so a
//! failure part-way leaves at worst a copy in both queues, never none.

use std::time::Duration;

use pipeline_core::queue::{MAX_BATCH, Queue, QueueError};

/// How long a move hides each message it holds; it releases what it does not move.
const HOLD: Duration = Duration::from_secs(60);

/// What a move did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Moved {
    /// Messages now on the destination and gone from the source.
    pub moved: u64,
    /// Messages sent to the destination whose delete from the source failed (so both hold them).
    pub copied: u64,
}

/// Moves up to `limit` messages (all, when `None`) from `from` to `to`, oldest deliveries
/// first as the source hands them out. Stops when the source has none visible.
///
/// # Errors
/// A receive or send failure; what was moved before it stays moved, and the messages
/// held at that moment are released.
pub async fn move_messages(from: &dyn Queue, to: &dyn Queue, limit: Option<u64>) -> Result<Moved, QueueError> {
    let mut done = Moved::default();
    loop {
        let left = limit.map_or(MAX_BATCH as u64, |l| l.saturating_sub(done.moved + done.copied));
        if left == 0 {
            return Ok(done);
        }
        let max = usize::try_from(left).unwrap_or(MAX_BATCH).min(MAX_BATCH);
        // An SQS poll that does not wait may come back empty while messages remain.
        let batch = from.receive(max, from.settled_wait(), HOLD).await?;
        if batch.is_empty() {
            return Ok(done);
        }
        let mut pending = batch.into_iter();
        while let Some(m) = pending.next() {
            if let Err(e) = to.send(&m.body, Duration::ZERO).await {
                // Give back this one and the rest of the batch before reporting.
                for held in std::iter::once(m).chain(pending) {
                    if let Err(release) = from.change_visibility(&held.receipt, Duration::ZERO).await {
                        tracing::warn!(message_id = %held.message_id, error = %release, "could not release a message");
                    }
                }
                return Err(e);
            }
            match from.delete(&m.receipt).await {
                Ok(()) => done.moved += 1,
                Err(e) => {
                    tracing::warn!(message_id = %m.message_id, error = %e, "moved a message but could not delete the original");
                    done.copied += 1;
                }
            }
        }
    }
}
