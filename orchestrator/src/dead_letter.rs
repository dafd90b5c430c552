//! What sits on the dead-letter queue, and the operators' tools for it: list, show,
//! redrive, purge. They work on any [`Queue`], and never lose a message: a scan hides
//! each message while it looks, then releases what it does not remove. [`DeadLetters`]
//! bundles the queue with how its jobs start again, for `imgpipe dlq` and the HTTP API alike.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use pipeline_core::crash;
use pipeline_core::orchestration::Orchestrator;
use pipeline_core::queue::{Queue, QueueError};
use protocol::dead_letter::DeadLetter;
use protocol::message::Job;
use serde::Serialize;

use crate::EmbeddedEngine;
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
    /// Identical messages this entry stands for (a letter sent again after a crash), at least 1.
    pub copies: u32,
}

impl DlqItem {
    /// Whether `id` names this item (its job id or its message id).
    pub fn matches(&self, id: &str) -> bool {
        self.message_id == id || self.letter.as_ref().is_ok_and(|l| l.job.job_id == id)
    }

    /// The entry as operators see it (`dlq list --json`, `dlq show`, `GET /dlq`): the dead
    /// letter, or the unreadable body — task tokens redacted wherever they appear.
    pub fn to_json(&self) -> serde_json::Value {
        let mut json = match &self.letter {
            Ok(letter) => serde_json::json!({
                "messageId": self.message_id, "receiveCount": self.receive_count, "copies": self.copies,
                "deadLetter": letter,
            }),
            Err(why) => {
                let body = match serde_json::from_str::<serde_json::Value>(&self.body) {
                    Ok(mut body) => {
                        redact_tokens(&mut body);
                        body.to_string()
                    }
                    Err(_) if self.body.contains("taskToken") => REDACTED.to_owned(),
                    Err(_) => self.body.clone(),
                };
                serde_json::json!({
                    "messageId": self.message_id, "receiveCount": self.receive_count, "unreadable": why, "body": body,
                })
            }
        };
        redact_tokens(&mut json);
        json
    }
}

/// What stands for a task token in what operators see.
pub const REDACTED: &str = "<redacted>";

/// A task token lets whoever holds it answer for a Step Functions task: never shown.
fn redact_tokens(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(fields) => {
            for (name, field) in fields {
                if name == "taskToken" {
                    *field = REDACTED.into();
                } else {
                    redact_tokens(field);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact_tokens),
        _ => {}
    }
}

/// How long a scan hides each message; it renews what it holds every [`SCAN_RENEW`] and
/// releases it as soon as it is done, so a scan that dies hides nothing for long.
const SCAN_VISIBILITY: Duration = Duration::from_secs(30);
/// How often a scan renews the messages it holds.
const SCAN_RENEW: Duration = Duration::from_secs(10);
/// How long a scan keeps asking while the queue counts ready messages it was not given.
const SCAN_PATIENCE: Duration = Duration::from_secs(20);

/// Serialises this process's scans of dead-letter queues.
static SCANS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Keeps the letters a scan holds hidden, every [`SCAN_RENEW`].
async fn renew(dlq: &dyn Queue, held: &[String], batch: &[&str], renewed: &mut std::time::Instant) {
    if renewed.elapsed() < SCAN_RENEW {
        return;
    }
    for receipt in held.iter().map(String::as_str).chain(batch.iter().copied()) {
        if let Err(e) = dlq.change_visibility(receipt, SCAN_VISIBILITY).await {
            tracing::warn!(error = %e, "could not keep a dead letter hidden during a scan");
        }
    }
    *renewed = std::time::Instant::now();
}

/// Reads every message, lets `remove` pick the ones to delete (after it has dealt with
/// them: they are deleted at once), and releases the rest at the end. Returns every item
/// seen and whether it was removed. A message seen twice (its hiding ran out during a long
/// scan) ends the scan rather than being handled twice.
async fn scan<F, Fut>(dlq: &dyn Queue, mut remove: F) -> Result<Vec<(DlqItem, bool)>, EngineError>
where
    F: FnMut(DlqItem) -> Fut,
    Fut: Future<Output = Result<(DlqItem, bool), EngineError>>,
{
    // One scan at a time in this process: a listing (the dashboard's, say) would otherwise hide
    // the letters a redrive beside it is looking for.
    let _one_at_a_time = SCANS.lock().await;
    let mut seen: Vec<(DlqItem, bool)> = Vec::new();
    let mut held: Vec<String> = Vec::new();
    let mut result = Ok(());
    let patience = std::time::Instant::now() + SCAN_PATIENCE;
    let mut renewed = std::time::Instant::now();
    'scan: loop {
        renew(dlq, &held, &[], &mut renewed).await;
        // SQS may answer an instant poll with nothing while messages exist: wait as it needs.
        let batch = match dlq.receive(10, dlq.settled_wait(), SCAN_VISIBILITY).await {
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
        let mut batch = batch.into_iter();
        while let Some(m) = batch.next() {
            // Slow removals (a restart per letter) must not let the held letters reappear.
            let rest: Vec<&str> = batch.as_slice().iter().map(|m| m.receipt.as_str()).collect();
            renew(dlq, &held, &rest, &mut renewed).await;
            if wrapped || seen.iter().any(|(item, _)| item.message_id == m.message_id) {
                wrapped = true;
                held.push(m.receipt);
                continue;
            }
            let letter = DeadLetter::parse(&m.body, m.receive_count);
            let item =
                DlqItem { message_id: m.message_id, body: m.body, letter, receive_count: m.receive_count, copies: 1 };
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
    // A letter sent twice (the sender stopped between the send and recording it) is one entry.
    let mut items: Vec<DlqItem> = Vec::with_capacity(seen.len());
    for (item, _) in seen {
        match items.iter_mut().find(|kept| kept.body == item.body) {
            Some(kept) => kept.copies += 1,
            None => items.push(item),
        }
    }
    Ok(Survey { items, in_flight_elsewhere })
}

/// Starts again, with `restart`, the dead-lettered jobs that `ids` name (all of them
/// when `ids` is empty), and removes them from the queue. `restart` says whether it started
/// the job: a letter whose job was started again before (a copy of the letter, or a redrive
/// that stopped before it removed the letter) is removed without a second start. Returns the
/// letters removed, each with whether its job started now.
///
/// # Errors
/// The queue or `restart` failed; what was redriven before stays redriven.
pub async fn redrive<F, Fut>(dlq: &dyn Queue, ids: &[String], restart: F) -> Result<Vec<(Job, bool)>, EngineError>
where
    F: Fn(DeadLetter) -> Fut,
    Fut: Future<Output = Result<bool, EngineError>>,
{
    let removed: Mutex<Vec<(Job, bool)>> = Mutex::new(Vec::new());
    scan(dlq, |item| {
        let wanted = ids.is_empty() || ids.iter().any(|id| item.matches(id));
        let (restart, removed) = (&restart, &removed);
        async move {
            match &item.letter {
                // An input refused at intake never passed the intake's checks: restarting it
                // would process what the allow-lists keep out. It stays for an operator to purge.
                Ok(letter) if wanted && letter.refused_at_intake() => Ok((item, false)),
                Ok(letter) if wanted => {
                    // One start per job per redrive, however many of its letters are on the queue.
                    let again = removed
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .iter()
                        .any(|(j, started)| *started && j.job_id == letter.job.job_id);
                    let started = !again && restart(letter.clone()).await?;
                    removed.lock().unwrap_or_else(PoisonError::into_inner).push((letter.job.clone(), started));
                    // Restarted now or before: either way the letter has been dealt with.
                    crash::reach(crash::REDRIVEN);
                    Ok((item, true))
                }
                _ => Ok((item, false)),
            }
        }
    })
    .await?;
    Ok(removed.into_inner().unwrap_or_else(PoisonError::into_inner))
}

/// Deletes every message on the dead-letter queue.
///
/// # Errors
/// The queue failed.
pub async fn purge(dlq: &dyn Queue) -> Result<u64, QueueError> {
    dlq.purge().await
}

/// How a redriven job starts again.
#[derive(Clone, Debug)]
pub enum Restart {
    /// The embedded engine restarts the same job from its first attempt, history kept.
    Same(EmbeddedEngine),
    /// A finished Step Functions execution cannot restart: a fresh job takes the letter over.
    Fresh(Arc<dyn Orchestrator>),
}

/// A job taken off the dead-letter queue and started again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Redriven {
    /// The dead-lettered job.
    pub job_id: String,
    /// Its source bucket.
    pub source_bucket: String,
    /// Its source key.
    pub source_key: String,
    /// The fresh job that took it over, when the same job could not restart.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub continues_as: Option<String>,
    /// The job had been started again before (this letter was a copy, or a redrive stopped
    /// before removing it): the letter was removed and nothing started twice.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub already_restarted: bool,
}

/// The dead-letter queue and how its jobs start again: what operators work with.
#[derive(Clone, Debug)]
pub struct DeadLetters {
    /// The queue.
    pub queue: Arc<dyn Queue>,
    /// How a redriven job starts again.
    pub restart: Restart,
}

impl DeadLetters {
    /// Every entry, untouched, and how many others are in flight elsewhere.
    ///
    /// # Errors
    /// The queue failed.
    pub async fn survey(&self) -> Result<Survey, EngineError> {
        survey(self.queue.as_ref()).await
    }

    /// Starts again the jobs `ids` name (every readable entry when `ids` is empty) and takes
    /// them off the queue.
    ///
    /// # Errors
    /// The queue or a restart failed; what was redriven before stays redriven.
    pub async fn redrive(&self, ids: &[String]) -> Result<Vec<Redriven>, EngineError> {
        let jobs = redrive(self.queue.as_ref(), ids, |letter| async move {
            match &self.restart {
                Restart::Same(engine) => engine.redrive(&letter).await,
                Restart::Fresh(orchestrator) => {
                    let fresh = Job::redrive_of(&letter.job);
                    let started = orchestrator.get(&fresh.job_id).await?.is_none();
                    if started {
                        orchestrator.start(fresh).await?;
                    }
                    Ok(started)
                }
            }
        })
        .await?;
        // The job that takes a letter over has an id that follows from the failed one's.
        let fresh = matches!(self.restart, Restart::Fresh(_));
        Ok(jobs
            .into_iter()
            .map(|(job, started)| Redriven {
                continues_as: fresh.then(|| Job::redrive_of(&job).job_id),
                job_id: job.job_id,
                source_bucket: job.source_bucket,
                source_key: job.source_key,
                already_restarted: !started,
            })
            .collect())
    }

    /// Deletes every entry; returns how many.
    ///
    /// # Errors
    /// The queue failed.
    pub async fn purge(&self) -> Result<u64, QueueError> {
        purge(self.queue.as_ref()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pipeline_core::conformance::failed_record;
    use protocol::error::JobError;

    #[test]
    fn task_tokens_are_never_printed() {
        let record = failed_record("j1", "a.jpg", JobError::permanent("CorruptImage", "bad"));
        let mut letter = DeadLetter::from_record(&record);
        letter.job.task_token = Some("SECRET-TOKEN".into());
        let body = serde_json::to_string(&letter.job).expect("json");
        let items = [
            DlqItem { message_id: "m1".into(), body: body.clone(), letter: Ok(letter), receive_count: 1, copies: 1 },
            DlqItem {
                message_id: "m2".into(),
                body,
                letter: Err("unknown version".into()),
                receive_count: 1,
                copies: 1,
            },
            DlqItem {
                message_id: "m3".into(),
                body: r#"{"taskToken":"SECRET-TOKEN","#.into(),
                letter: Err("not JSON".into()),
                receive_count: 1,
                copies: 1,
            },
        ];
        for item in &items {
            let shown = serde_json::to_string_pretty(&item.to_json()).expect("json");
            assert!(!shown.contains("SECRET-TOKEN"), "{shown}");
            assert!(shown.contains(REDACTED), "{shown}");
        }
    }
}
