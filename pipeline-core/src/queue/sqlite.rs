//! The local [`Queue`]: rows of one SQLite table, shared safely by every process that
//! opens the same file. A receive picks and locks its messages in one `BEGIN IMMEDIATE`
//! transaction, so two consumers never get the same delivery. Long polls wake at once on
//! a send from this process and poll for sends from others.

use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::{MAX_BATCH, MAX_BODY_BYTES, MAX_VISIBILITY, Queue, QueueError, QueueStats, Received};
use crate::sqlite::{Db, DbError};
use protocol::time::{ms, now_ms};

/// One delivery's deletion, by its receipt (`delete` and `delete_many`).
const DELETE_BY_RECEIPT: &str = "DELETE FROM queue_messages WHERE queue = ?1 AND receipt = ?2";

/// How often a long poll looks for messages sent by other processes.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS queue_messages (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    queue         TEXT    NOT NULL,
    message_id    TEXT    NOT NULL UNIQUE,
    body          TEXT    NOT NULL,
    sent_at       INTEGER NOT NULL,
    visible_at    INTEGER NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    receipt       TEXT
);
CREATE INDEX IF NOT EXISTS queue_messages_ready ON queue_messages (queue, visible_at);
CREATE UNIQUE INDEX IF NOT EXISTS queue_messages_receipt ON queue_messages (receipt);
";

/// Where messages received too often go, as an SQS redrive policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedrivePolicy {
    /// The dead-letter queue's name (in the same database).
    pub dead_letter_queue: String,
    /// Deliveries allowed before the next receive moves the message instead.
    pub max_receive_count: u32,
}

/// A named queue in a SQLite file.
#[derive(Clone, Debug)]
pub struct SqliteQueue {
    db: Db,
    name: String,
    redrive: Option<RedrivePolicy>,
}

impl SqliteQueue {
    /// Opens the queue `name` in `db`, creating the table on first use.
    ///
    /// # Errors
    /// The schema cannot be created.
    pub fn open(db: &Db, name: impl Into<String>) -> Result<Self, DbError> {
        db.call_sync(|c| c.execute_batch(SCHEMA))?;
        Ok(Self { db: db.clone(), name: name.into(), redrive: None })
    }

    /// Moves a message to `policy.dead_letter_queue` once it was delivered
    /// `policy.max_receive_count` times without being deleted.
    #[must_use]
    pub fn with_redrive(mut self, policy: RedrivePolicy) -> Self {
        self.redrive = Some(policy);
        self
    }

    async fn try_receive(&self, max: usize, visibility: Duration) -> Result<Vec<Received>, QueueError> {
        let (name, redrive) = (self.name.clone(), self.redrive.clone());
        let hide_ms = ms(visibility.min(MAX_VISIBILITY));
        self.db
            .call(move |conn| -> Result<Vec<Received>, QueueError> {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(DbError::from)?;
                let now = now_ms();
                let mut out = Vec::new();
                loop {
                    let want = max - out.len();
                    let rows: Vec<(i64, String, String, u32, i64)> = {
                        let mut stmt = tx
                            .prepare_cached(
                                "SELECT seq, message_id, body, receive_count, sent_at FROM queue_messages
                                 WHERE queue = ?1 AND visible_at <= ?2 ORDER BY visible_at, seq LIMIT ?3",
                            )
                            .map_err(DbError::from)?;
                        stmt.query_map(params![name, now, want as i64], |r| {
                            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                        })
                        .and_then(Iterator::collect)
                        .map_err(DbError::from)?
                    };
                    if rows.is_empty() {
                        break;
                    }
                    let mut moved = false;
                    for (seq, message_id, body, count, sent_at) in rows {
                        if let Some(policy) = redrive.as_ref().filter(|p| count >= p.max_receive_count) {
                            moved = true;
                            tx.execute(
                                "UPDATE queue_messages SET queue = ?1, visible_at = ?2, receipt = NULL WHERE seq = ?3",
                                params![policy.dead_letter_queue, now, seq],
                            )
                            .map_err(DbError::from)?;
                            continue;
                        }
                        let receipt = uuid::Uuid::new_v4().to_string();
                        tx.execute(
                            "UPDATE queue_messages SET receive_count = receive_count + 1, receipt = ?1,
                             visible_at = ?2 WHERE seq = ?3",
                            params![receipt, now + hide_ms, seq],
                        )
                        .map_err(DbError::from)?;
                        let sent_at_ms = u64::try_from(sent_at).ok();
                        out.push(Received { message_id, receipt, body, receive_count: count + 1, sent_at_ms });
                    }
                    // Look again only to fill places of messages moved to the DLQ: rows just
                    // delivered must not be picked twice (with a zero visibility they would be).
                    if out.len() >= max || !moved {
                        break;
                    }
                }
                tx.commit().map_err(DbError::from)?;
                Ok(out)
            })
            .await
    }

    /// Milliseconds until the next message of this queue becomes visible, if any is hidden.
    async fn next_visible_in(&self) -> Result<Option<i64>, QueueError> {
        let name = self.name.clone();
        self.db
            .call(move |conn| -> Result<Option<i64>, QueueError> {
                let at: Option<i64> = conn
                    .query_row("SELECT MIN(visible_at) FROM queue_messages WHERE queue = ?1", params![name], |r| {
                        r.get(0)
                    })
                    .optional()
                    .map_err(DbError::from)?
                    .flatten();
                Ok(at.map(|at| (at - now_ms()).max(0)))
            })
            .await
    }

    async fn update_by_receipt(&self, sql: &'static str, receipt: &str, arg: Option<i64>) -> Result<(), QueueError> {
        let (name, receipt) = (self.name.clone(), receipt.to_owned());
        let changed = self
            .db
            .call(move |conn| -> Result<usize, QueueError> {
                let n = match arg {
                    Some(a) => conn.execute(sql, params![name, receipt, a]),
                    None => conn.execute(sql, params![name, receipt]),
                };
                Ok(n.map_err(DbError::from)?)
            })
            .await?;
        self.db.notify_changed();
        if changed == 0 { Err(QueueError::ReceiptInvalid) } else { Ok(()) }
    }
}

#[async_trait]
impl Queue for SqliteQueue {
    fn name(&self) -> &str {
        &self.name
    }

    /// Every receive reads the one database file on this machine.
    fn answers_locally(&self) -> bool {
        true
    }

    async fn send(&self, body: &str, delay: Duration) -> Result<String, QueueError> {
        if body.len() > MAX_BODY_BYTES {
            return Err(QueueError::Invalid(format!(
                "message of {} bytes exceeds the {MAX_BODY_BYTES}-byte limit",
                body.len()
            )));
        }
        let (name, body) = (self.name.clone(), body.to_owned());
        let id = uuid::Uuid::new_v4().to_string();
        let message_id = id.clone();
        self.db
            .call(move |conn| -> Result<(), QueueError> {
                let now = now_ms();
                conn.execute(
                    "INSERT INTO queue_messages (queue, message_id, body, sent_at, visible_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![name, message_id, body, now, now + ms(delay)],
                )
                .map_err(DbError::from)?;
                Ok(())
            })
            .await?;
        self.db.notify_changed();
        Ok(id)
    }

    async fn receive(&self, max: usize, wait: Duration, visibility: Duration) -> Result<Vec<Received>, QueueError> {
        if max == 0 || max > MAX_BATCH {
            return Err(QueueError::Invalid(format!("receive asks for {max} messages; allowed 1 to {MAX_BATCH}")));
        }
        let deadline = tokio::time::Instant::now() + wait;
        let changed = self.db.changed();
        loop {
            // Register for wake-ups before looking, so a send in between is not missed.
            let notified = changed.notified();
            // A plain read first: an idle poll must not take the write lock.
            let next = self.next_visible_in().await?;
            if next == Some(0) {
                let got = self.try_receive(max, visibility).await?;
                if !got.is_empty() {
                    return Ok(got);
                }
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            let mut nap = POLL_INTERVAL.min(deadline - now);
            if let Some(next) = next.filter(|n| *n > 0) {
                nap = nap.min(Duration::from_millis(u64::try_from(next).unwrap_or(0)));
            }
            tokio::select! {
                () = notified => {}
                () = tokio::time::sleep(nap) => {}
            }
        }
    }

    async fn delete(&self, receipt: &str) -> Result<(), QueueError> {
        self.update_by_receipt(DELETE_BY_RECEIPT, receipt, None).await
    }

    /// All of them in one transaction: one commit, not one a receipt.
    async fn delete_many(&self, receipts: &[String]) -> Result<Vec<Result<(), QueueError>>, QueueError> {
        if receipts.is_empty() {
            return Ok(Vec::new());
        }
        let (name, receipts) = (self.name.clone(), receipts.to_vec());
        let results = self
            .db
            .call(move |conn| -> Result<Vec<Result<(), QueueError>>, QueueError> {
                let tx = conn.transaction().map_err(DbError::from)?;
                let mut results = Vec::with_capacity(receipts.len());
                {
                    let mut stmt = tx.prepare_cached(DELETE_BY_RECEIPT).map_err(DbError::from)?;
                    for receipt in &receipts {
                        let n = stmt.execute(params![name, receipt]).map_err(DbError::from)?;
                        results.push(if n == 0 { Err(QueueError::ReceiptInvalid) } else { Ok(()) });
                    }
                }
                tx.commit().map_err(DbError::from)?;
                Ok(results)
            })
            .await?;
        self.db.notify_changed();
        Ok(results)
    }

    async fn change_visibility(&self, receipt: &str, timeout: Duration) -> Result<(), QueueError> {
        let until = now_ms() + ms(timeout.min(MAX_VISIBILITY));
        self.update_by_receipt(
            "UPDATE queue_messages SET visible_at = ?3 WHERE queue = ?1 AND receipt = ?2",
            receipt,
            Some(until),
        )
        .await
    }

    async fn purge(&self) -> Result<u64, QueueError> {
        let name = self.name.clone();
        self.db
            .call(move |conn| -> Result<u64, QueueError> {
                let n = conn
                    .execute("DELETE FROM queue_messages WHERE queue = ?1", params![name])
                    .map_err(DbError::from)?;
                Ok(n as u64)
            })
            .await
    }

    async fn stats(&self) -> Result<QueueStats, QueueError> {
        let name = self.name.clone();
        self.db
            .call(move |conn| -> Result<QueueStats, QueueError> {
                let now = now_ms();
                conn.query_row(
                    "SELECT
                        COALESCE(SUM(visible_at <= ?2), 0),
                        COALESCE(SUM(visible_at > ?2 AND receipt IS NOT NULL), 0),
                        COALESCE(SUM(visible_at > ?2 AND receipt IS NULL), 0),
                        MIN(CASE WHEN visible_at <= ?2 THEN sent_at END)
                     FROM queue_messages WHERE queue = ?1",
                    params![name, now],
                    |r| {
                        // The oldest message waiting to be received; none waiting is an age of 0.
                        let oldest: Option<i64> = r.get(3)?;
                        let waited = oldest.map_or(0, |sent| u64::try_from(now - sent).unwrap_or(0));
                        let oldest_age = Some(Duration::from_millis(waited));
                        Ok(QueueStats { visible: r.get(0)?, in_flight: r.get(1)?, delayed: r.get(2)?, oldest_age })
                    },
                )
                .map_err(|e| QueueError::Db(e.into()))
            })
            .await
    }
}
