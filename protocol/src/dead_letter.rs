//! What sits on the dead-letter queue: a failed job with its reason and the whole
//! history of its attempts. Three shapes arrive there and are read as one
//! [`DeadLetter`]: the embedded engine's, the state machine's `DeadLetter` state's, and a
//! bare job message moved by the jobs queue's redrive policy.

use serde::{Deserialize, Serialize};

use crate::error::JobError;
use crate::job::{HistoryEntry, JobRecord};
use crate::message::{Job, MESSAGE_VERSION};
use crate::sfn::DEAD_LETTER_SOURCE;
use crate::time::rfc3339;
use crate::workflow::JobState;

/// The history note of an input refused at intake.
pub const REFUSED_NOTE: &str = "refused at intake";

/// The error code of a job message the jobs queue moved to the DLQ by its redrive policy.
pub const MOVED_BY_QUEUE: &str = "MaxReceiveCountExceeded";

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
    /// Every step, oldest first (empty for a message the queue moved on its own), less the
    /// `history_trimmed` ones left out to fit the queue's message size.
    pub history: Vec<HistoryEntry>,
    /// Steps left out of `history` after the first, to fit [`MAX_DEAD_LETTER_BYTES`]; the job
    /// store (or the execution) keeps them all.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub history_trimmed: u32,
    /// When it was dead-lettered, RFC 3339 UTC.
    pub dead_lettered_at: String,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The largest dead-letter body sent: SQS takes 256 KiB a message, and a job redriven many
/// times carries a long history.
pub const MAX_DEAD_LETTER_BYTES: usize = 240 * 1024;

/// The longest error message a dead letter carries whole.
const MAX_ERROR_MESSAGE_BYTES: usize = 8 * 1024;

impl DeadLetter {
    /// The dead letter for a job record in `DeadLetter`.
    pub fn from_record(record: &JobRecord) -> Self {
        let job = Job {
            v: MESSAGE_VERSION,
            job_id: record.job_id.clone(),
            source_bucket: record.source_bucket.clone(),
            source_key: record.source_key.clone(),
            // A redrive processes the source as it is then.
            source_version: None,
            destination_bucket: record.destination_bucket.clone(),
            renditions: record.renditions.clone(),
            // A record does not say; the engine redrives the job it stored, which does.
            sidecar: false,
            metadata: crate::metadata::MetadataPolicy::Strip,
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
            history_trimmed: 0,
            // When the job entered `DeadLetter`, not when this copy is sent: a letter sent
            // again after a crash is the same letter, byte for byte.
            dead_lettered_at: record.updated_at.clone(),
        }
    }

    /// The letter for an input refused at intake, never run (see `workflow::Event::Refused`):
    /// for orchestrators that keep no record of their own for it.
    pub fn refused(job: &Job, error: &JobError, now: i64) -> Self {
        let entry = HistoryEntry {
            at: rfc3339(now),
            state: JobState::DeadLetter,
            attempt: 0,
            error: Some(error.clone()),
            delay_ms: None,
            ceiling_ms: None,
            note: Some(REFUSED_NOTE.into()),
        };
        Self {
            v: MESSAGE_VERSION,
            job: Job { attempt: 0, task_token: None, ..job.clone() },
            error: error.clone(),
            attempts: 0,
            history: vec![entry],
            history_trimmed: 0,
            dead_lettered_at: rfc3339(now),
        }
    }

    /// Whether this letter records an input refused at intake (see [`DeadLetter::refused`]).
    pub fn refused_at_intake(&self) -> bool {
        self.attempts == 0 && self.history.iter().any(|h| h.note.as_deref() == Some(REFUSED_NOTE))
    }

    /// Whether this is a job message the jobs queue moved (its job never reported) rather
    /// than a letter an orchestrator sent.
    pub fn moved_by_queue(&self) -> bool {
        self.error.code == MOVED_BY_QUEUE && self.history.is_empty()
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
                MOVED_BY_QUEUE,
                format!("moved by the jobs queue after {receive_count} deliveries that never completed"),
            ),
            job,
            history: Vec::new(),
            history_trimmed: 0,
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
            history_trimmed: 0,
            dead_lettered_at: v["enteredAt"].as_str().unwrap_or_default().to_owned(),
        }))
    }

    /// The message body, at most [`MAX_DEAD_LETTER_BYTES`]: past it, the error message is cut
    /// to 8 KiB and history steps after the first are left out, oldest first, so the letter
    /// still says what the job was, why it failed and how it ended.
    pub fn to_json(&self) -> String {
        let body = serde_json::to_string(self).unwrap_or_default();
        if body.len() <= MAX_DEAD_LETTER_BYTES {
            return body;
        }
        let mut letter = self.clone();
        if letter.error.message.len() > MAX_ERROR_MESSAGE_BYTES {
            let mut end = MAX_ERROR_MESSAGE_BYTES;
            while !letter.error.message.is_char_boundary(end) {
                end -= 1;
            }
            letter.error.message.truncate(end);
            letter.error.message.push_str(" [cut]");
        }
        loop {
            let body = serde_json::to_string(&letter).unwrap_or_default();
            if body.len() <= MAX_DEAD_LETTER_BYTES || letter.history.len() <= 1 {
                return body;
            }
            // Leave out what the excess is worth in average steps, at least one, after the first.
            let per_step = body.len() / letter.history.len();
            let excess = body.len() - MAX_DEAD_LETTER_BYTES;
            let n = (excess / per_step.max(1) + 1).min(letter.history.len() - 1);
            letter.history.drain(1..=n);
            letter.history_trimmed += u32::try_from(n).unwrap_or(u32::MAX);
        }
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

    #[test]
    fn a_letter_too_large_for_the_queue_keeps_its_job_reason_first_and_last_steps() {
        let step = |i: u32| HistoryEntry {
            at: format!("2026-01-01T00:00:{:02}.000Z", i % 60),
            state: crate::job::JobState::Retry,
            attempt: i,
            error: Some(JobError::retryable("Throttled", "x".repeat(120))),
            delay_ms: Some(1000),
            ceiling_ms: None,
            note: Some(format!("step {i}")),
        };
        let record = JobRecord {
            job_id: "j".into(),
            state: crate::job::JobState::DeadLetter,
            attempts: 4,
            source_bucket: "o".into(),
            source_key: "a.jpg".into(),
            destination_bucket: "r".into(),
            renditions: vec![crate::Rendition::thumbnail()],
            created_at: String::new(),
            updated_at: String::new(),
            outputs: Vec::new(),
            metadata: None,
            error: Some(JobError::permanent("CorruptImage", "é".repeat(100_000))),
            history: (0..3000).map(step).collect(),
        };
        let letter = DeadLetter::from_record(&record);
        assert!(serde_json::to_string(&letter).expect("json").len() > 300 << 10, "the test's letter is oversized");
        let body = letter.to_json();
        assert!(body.len() <= MAX_DEAD_LETTER_BYTES, "{} bytes", body.len());
        let back = DeadLetter::parse(&body, 1).expect("reads back");
        assert_eq!((back.job, back.error.code.as_str()), (letter.job.clone(), "CorruptImage"));
        assert!(back.error.message.ends_with("[cut]") && back.error.message.len() < 9 << 10);
        assert_eq!(back.history.first(), letter.history.first(), "the first step stays");
        assert_eq!(back.history.last(), letter.history.last(), "the last step stays");
        assert_eq!(back.history.len() + back.history_trimmed as usize, 3000, "the count of the rest is kept");
        // A letter that fits is sent whole.
        let small = DeadLetter { history: letter.history[..3].to_vec(), ..letter };
        let small = DeadLetter { error: JobError::permanent("CorruptImage", "bad"), ..small };
        assert_eq!(DeadLetter::parse(&small.to_json(), 1).expect("reads"), small);
    }
}
