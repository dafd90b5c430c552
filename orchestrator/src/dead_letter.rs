//! What sits on the dead-letter queue, and the operators' tools for it: list, show,
//! redrive, purge. They work on any [`Queue`], and never lose a message: a scan hides
//! each message while it looks, then releases what it does not remove.

use std::time::Duration;

use pipeline_core::JobError;
use pipeline_core::message::{Job, MESSAGE_VERSION};
use pipeline_core::orchestration::{HistoryEntry, JobRecord};
use pipeline_core::queue::{Queue, QueueError};
use pipeline_core::time::{now_ms, rfc3339};
use serde::{Deserialize, Serialize};

use crate::engine::EngineError;

/// A failed job with the reason and the whole history of its attempts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    /// Message version.
    pub v: u32,
    /// The job as last attempted.
    pub job: Job,
    /// Why it was given up.
    pub error: JobError,
    /// Attempts made.
    pub attempts: u32,
    /// Every step, oldest first (empty for a message the queue moved on its own).
    pub history: Vec<HistoryEntry>,
    /// When it was dead-lettered, RFC 3339 UTC.
    pub dead_lettered_at: String,
}

impl DeadLetter {
    /// The dead letter for a job record in `DeadLetter`.
    pub fn from_record(record: &JobRecord) -> Self {
        let job = Job {
            v: MESSAGE_VERSION,
            job_id: record.job_id.clone(),
            source_bucket: record.source_bucket.clone(),
            source_key: record.source_key.clone(),
            destination_bucket: record.destination_bucket.clone(),
            renditions: record.renditions.clone(),
            attempt: record.attempts,
            task_token: None,
        };
        let error = record.error.clone().unwrap_or_else(|| JobError::permanent("Unknown", "no reason recorded"));
        Self {
            v: MESSAGE_VERSION,
            job,
            error,
            attempts: record.attempts,
            history: record.history.clone(),
            dead_lettered_at: rfc3339(now_ms()),
        }
    }

    /// Reads a dead-letter-queue message: a dead letter, or a bare job message that the
    /// jobs queue's redrive policy moved after `receive_count` deliveries.
    ///
    /// # Errors
    /// A sentence saying why the body is not readable.
    pub fn parse(body: &str, receive_count: u32) -> Result<Self, String> {
        if let Ok(letter) = serde_json::from_str::<DeadLetter>(body) {
            return Ok(letter);
        }
        if let Some(letter) = Self::from_step_functions(body) {
            return letter;
        }
        let job = Job::from_json(body).map_err(|e| format!("not a dead letter or a job: {e}"))?;
        Ok(Self {
            v: MESSAGE_VERSION,
            attempts: job.attempt,
            error: JobError::permanent(
                "MaxReceiveCountExceeded",
                format!("moved by the jobs queue after {receive_count} deliveries that never completed"),
            ),
            job,
            history: Vec::new(),
            dead_lettered_at: String::new(),
        })
    }

    /// Reads what the state machine's `DeadLetter` state sends:
    /// `{"v":1,"source":"stepFunctions","executionArn","job":<state input>,"enteredAt"}`,
    /// where the state input is the job plus the caught `error` (`Error`, `Cause`) or
    /// the worker's `result`. `None` when the body is not of that shape. The history stays
    /// empty: it lives in the execution.
    fn from_step_functions(body: &str) -> Option<Result<Self, String>> {
        let v: serde_json::Value = serde_json::from_str(body).ok()?;
        if v["source"] != "stepFunctions" {
            return None;
        }
        let state = &v["job"];
        let job = match serde_json::from_value::<Job>(state.clone()) {
            Ok(job) => job,
            Err(e) => return Some(Err(format!("a Step Functions dead letter without a readable job: {e}"))),
        };
        let (name, cause) = (state["error"]["Error"].as_str(), state["error"]["Cause"].as_str());
        let from_worker = cause.and_then(|c| serde_json::from_str::<JobError>(c).ok());
        let error = match (from_worker, name) {
            (Some(error), _) => error,
            (None, Some(name)) => JobError::permanent(name, cause.unwrap_or_default()),
            (None, None) if !state["result"].is_null() => {
                JobError::permanent("UnexpectedResult", format!("the worker reported {}", state["result"]))
            }
            (None, None) => JobError::permanent("Unknown", "no reason recorded"),
        };
        // The worker's cause carries the attempt it failed; a lost worker's timeout does not.
        let attempt =
            cause.and_then(|c| serde_json::from_str::<serde_json::Value>(c).ok()).and_then(|c| c["attempt"].as_u64());
        Some(Ok(Self {
            v: MESSAGE_VERSION,
            attempts: attempt.and_then(|a| u32::try_from(a).ok()).unwrap_or(job.attempt),
            error,
            job,
            history: Vec::new(),
            dead_lettered_at: v["enteredAt"].as_str().unwrap_or_default().to_owned(),
        }))
    }

    /// The message body.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

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
            break;
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
    let seen = scan(dlq, |item| async move { Ok((item, false)) }).await?;
    Ok(seen.into_iter().map(|(item, _)| item).collect())
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

#[cfg(test)]
mod tests {
    use super::*;
    use pipeline_core::ErrorClass;

    fn from_state_machine(error: &str) -> String {
        format!(
            r#"{{"enteredAt":"2026-01-02T03:04:05.678Z","executionArn":"arn:aws:states:us-east-1:1:execution:sm:j1",
                "job":{{"v":1,"jobId":"j1","sourceBucket":"o","sourceKey":"a.jpg","destinationBucket":"r",
                        "renditions":[],"attempt":1{error}}},"source":"stepFunctions","v":1}}"#
        )
    }

    #[test]
    fn step_functions_dead_letters_are_read() {
        let cause = r#"{\"class\":\"permanent\",\"code\":\"NotAnImage\",\"message\":\"text\",\"attempt\":3}"#;
        let body = from_state_machine(&format!(r#","error":{{"Error":"imgpipe.Permanent","Cause":"{cause}"}}"#));
        let letter = DeadLetter::parse(&body, 1).expect("readable");
        assert_eq!((letter.job.job_id.as_str(), letter.job.source_key.as_str()), ("j1", "a.jpg"));
        assert_eq!(letter.error, JobError::permanent("NotAnImage", "text"));
        assert_eq!((letter.attempts, letter.dead_lettered_at.as_str()), (3, "2026-01-02T03:04:05.678Z"));

        let lost = DeadLetter::parse(&from_state_machine(r#","error":{"Error":"States.Timeout","Cause":null}"#), 1);
        let lost = lost.expect("readable");
        assert_eq!(
            (lost.error.class, lost.error.code.as_str(), lost.attempts),
            (ErrorClass::Permanent, "States.Timeout", 1)
        );

        let odd = DeadLetter::parse(&from_state_machine(r#","result":{"status":"weird"}"#), 1).expect("readable");
        assert_eq!(odd.error.code, "UnexpectedResult");
        assert!(DeadLetter::parse(r#"{"source":"stepFunctions","job":{}}"#, 1).is_err());
    }

    #[test]
    fn dead_letters_and_bare_jobs_still_read() {
        let job = Job::new("o", "k.jpg", "r", Vec::new());
        let moved = DeadLetter::parse(&job.to_json(), 6).expect("a bare job");
        assert_eq!(moved.error.code, "MaxReceiveCountExceeded");
        let letter = DeadLetter { error: JobError::permanent("NotAnImage", "text"), ..moved };
        assert_eq!(DeadLetter::parse(&letter.to_json(), 1).expect("a dead letter"), letter);
    }
}
