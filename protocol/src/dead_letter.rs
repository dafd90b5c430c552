//! What sits on the dead-letter queue: a failed job with its reason and the whole
//! history of its attempts. Three shapes arrive there and are read as one
//! [`DeadLetter`]: the embedded engine's, the state machine's `DeadLetter` state's, and a
//! bare job message moved by the jobs queue's redrive policy.

use serde::{Deserialize, Serialize};

use crate::error::JobError;
use crate::job::{HistoryEntry, JobRecord};
use crate::message::{Job, MESSAGE_VERSION};
use crate::sfn::DEAD_LETTER_SOURCE;
use crate::time::{now_ms, rfc3339};

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
        if v["source"] != DEAD_LETTER_SOURCE {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorClass;

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
