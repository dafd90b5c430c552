//! The Amazon States Language definition of `ImageProcessingWorkflow`, generated from the
//! same [`RetryPolicy`] and state names the embedded engine runs, so the two cannot drift.
//!
//! `ProcessImage` sends the job with its task token to the jobs queue
//! (`sqs:sendMessage.waitForTaskToken`) and waits for the worker's SendTaskSuccess or
//! SendTaskFailure. Workers fail with one of two error names, so the retriers can tell
//! them apart: [`PERMANENT_ERROR`] (never retried) and [`RETRYABLE_ERROR`] (retried
//! with backoff and full jitter, as is a lost worker's heartbeat timeout). The cause is
//! the [`JobError`](crate::error::JobError) as JSON.

use std::time::Duration;

use serde_json::{Value, json};

use crate::sfn::{DEAD_LETTER_SOURCE, PERMANENT_ERROR, RETRYABLE_ERROR, SUCCEEDED};
use crate::workflow::{Jitter, Policy, STATES, WORKFLOW_NAME};

/// What the generated definition needs to know.
#[derive(Clone, Debug)]
pub struct AslOptions {
    /// URL of the jobs queue (a `${...}` substitution in templates).
    pub jobs_queue_url: String,
    /// URL of the dead-letter queue.
    pub dead_letter_queue_url: String,
    /// The workflow's retries and timeouts, as the embedded engine reads them.
    pub policy: Policy,
}

impl Default for AslOptions {
    fn default() -> Self {
        Self {
            jobs_queue_url: "${JobsQueueUrl}".into(),
            dead_letter_queue_url: "${DeadLetterQueueUrl}".into(),
            policy: Policy::default(),
        }
    }
}

impl AslOptions {
    /// `HeartbeatSeconds`: a worker silent this long is lost. Step Functions starts this
    /// clock when the job is queued, so it also bounds the wait for a worker.
    pub fn heartbeat(&self) -> Duration {
        self.policy.heartbeat_timeout
    }

    /// `TimeoutSeconds`: the task timeout means the same as in the embedded engine — the
    /// longest an attempt may run from its first heartbeat — and that first heartbeat
    /// comes at most one heartbeat timeout after the task started.
    pub fn timeout(&self) -> Duration {
        self.policy.heartbeat_timeout + self.policy.task_timeout
    }
}

fn whole_secs(d: Duration) -> u64 {
    d.as_secs().max(1)
}

/// The state machine definition.
///
/// # Errors
/// A sentence when the options cannot make a sound definition (heartbeat not below the timeout).
pub fn definition(options: &AslOptions) -> Result<Value, String> {
    let (heartbeat, timeout) = (whole_secs(options.heartbeat()), whole_secs(options.timeout()));
    if heartbeat >= timeout {
        return Err(format!("HeartbeatSeconds ({heartbeat}) must be below TimeoutSeconds ({timeout})"));
    }
    let retry = &options.policy.retry;
    let mut retryable = json!({
        "ErrorEquals": [RETRYABLE_ERROR, "States.HeartbeatTimeout", "States.Timeout"],
        "IntervalSeconds": whole_secs(retry.interval),
        "BackoffRate": retry.backoff_rate,
        "MaxAttempts": retry.max_attempts.saturating_sub(1),
        "MaxDelaySeconds": whole_secs(retry.max_delay),
    });
    if retry.jitter == Jitter::Full {
        retryable["JitterStrategy"] = json!("FULL");
    }
    let states = json!({
        "ProcessImage": {
            "Type": "Task",
            "Comment": "Queue the job with its task token; a worker reports with SendTaskSuccess/Failure and heartbeats.",
            "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
            "Parameters": {
                "QueueUrl": options.jobs_queue_url,
                "MessageBody": {
                    "v": 1,
                    "jobId.$": "$.jobId",
                    "sourceBucket.$": "$.sourceBucket",
                    "sourceKey.$": "$.sourceKey",
                    "sourceVersion.$": "$.sourceVersion",
                    "destinationBucket.$": "$.destinationBucket",
                    "renditions.$": "$.renditions",
                    "sidecar.$": "$.sidecar",
                    "metadata.$": "$.metadata",
                    "attempt.$": "States.MathAdd($$.State.RetryCount, 1)",
                    "taskToken.$": "$$.Task.Token"
                }
            },
            "HeartbeatSeconds": heartbeat,
            "TimeoutSeconds": timeout,
            "ResultPath": "$.result",
            "Retry": [
                { "ErrorEquals": [PERMANENT_ERROR], "MaxAttempts": 0 },
                retryable
            ],
            "Catch": [
                { "ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "DeadLetter" }
            ],
            "Next": "CheckResult"
        },
        "CheckResult": {
            "Type": "Choice",
            "Choices": [
                { "Variable": "$.result.status", "StringEquals": SUCCEEDED, "Next": "Success" }
            ],
            "Default": "DeadLetter"
        },
        "Success": { "Type": "Succeed" },
        "DeadLetter": {
            "Type": "Task",
            "Comment": "Put the job and its failure on the dead-letter queue.",
            "Resource": "arn:aws:states:::sqs:sendMessage",
            "Parameters": {
                "QueueUrl": options.dead_letter_queue_url,
                "MessageBody": {
                    "v": 1,
                    "source": DEAD_LETTER_SOURCE,
                    "executionArn.$": "$$.Execution.Id",
                    "job.$": "$",
                    "enteredAt.$": "$$.State.EnteredTime"
                }
            },
            "ResultPath": null,
            // SQS throttling or an outage must not lose the letter: a minute of tries; past
            // that the execution still fails, its history naming why, and the template's
            // alarm on executions that failed without a dead letter fires.
            "Retry": [{
                "ErrorEquals": ["States.ALL"],
                "IntervalSeconds": 1,
                "BackoffRate": 2.0,
                "MaxAttempts": 6,
                "MaxDelaySeconds": 20,
                "JitterStrategy": "FULL"
            }],
            "Catch": [
                { "ErrorEquals": ["States.ALL"], "ResultPath": "$.deadLetterError", "Next": "Fail" }
            ],
            "Next": "Fail"
        },
        "Fail": { "Type": "Fail", "Error": "ImageProcessingFailed", "Cause": "the job was dead-lettered" }
    });
    Ok(json!({
        "Comment": format!("{WORKFLOW_NAME}: generated by `imgpipe asl` from the orchestrator's workflow definition"),
        "StartAt": STATES[0].0.as_str(),
        "States": states,
    }))
}

/// The states a definition can move to from `state` (its `Next`, `Default`, choices and catchers).
pub fn successors(definition: &Value, state: &str) -> Vec<String> {
    let s = &definition["States"][state];
    let mut out: Vec<String> = Vec::new();
    let mut push = |v: &Value| {
        if let Some(n) = v.as_str() {
            if !out.iter().any(|o| o == n) {
                out.push(n.to_owned());
            }
        }
    };
    push(&s["Next"]);
    push(&s["Default"]);
    for list in ["Choices", "Catch"] {
        for c in s[list].as_array().into_iter().flatten() {
            push(&c["Next"]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workflow::{JobState, RetryPolicy, allows};

    #[test]
    fn the_definition_follows_the_workflow_table() {
        let def = definition(&AslOptions::default()).expect("valid");
        let names: Vec<&str> = def["States"].as_object().expect("states").keys().map(String::as_str).collect();
        for (state, _) in STATES {
            // Retry is the task's own retrier in ASL; CheckResult is a Choice state.
            if *state != JobState::Retry {
                assert!(names.contains(&state.as_str()), "{state} missing");
            }
        }
        assert_eq!(def["StartAt"], "ProcessImage");
        for from in &names {
            for to in successors(&def, from) {
                // Retry is the task's own retrier in ASL, so ProcessImage may skip straight to DeadLetter.
                let (Some(f), Some(t)) = (JobState::parse(from), JobState::parse(&to)) else {
                    panic!("{from} -> {to} names a state the workflow does not have");
                };
                let ok = allows(f, t) || (f == JobState::ProcessImage && t == JobState::DeadLetter);
                assert!(ok, "{from} -> {to} is not in the workflow");
            }
        }
    }

    #[test]
    fn retriers_put_permanent_errors_first_and_carry_the_policy() {
        let policy = RetryPolicy {
            max_attempts: 5,
            interval: Duration::from_secs(3),
            backoff_rate: 2.0,
            max_delay: Duration::from_secs(40),
            jitter: Jitter::Full,
        };
        let options = AslOptions { policy: Policy { retry: policy, ..Policy::default() }, ..AslOptions::default() };
        let def = definition(&options).expect("valid");
        let task = &def["States"]["ProcessImage"];
        assert_eq!(task["Resource"], "arn:aws:states:::sqs:sendMessage.waitForTaskToken");
        assert_eq!(task["Parameters"]["MessageBody"]["taskToken.$"], "$$.Task.Token");
        let retry = task["Retry"].as_array().expect("retriers");
        assert_eq!(retry[0], json!({ "ErrorEquals": [PERMANENT_ERROR], "MaxAttempts": 0 }));
        assert_eq!(retry[1]["MaxAttempts"], 4, "attempts in all minus the first");
        assert_eq!((retry[1]["IntervalSeconds"].as_u64(), retry[1]["MaxDelaySeconds"].as_u64()), (Some(3), Some(40)));
        assert_eq!(retry[1]["JitterStrategy"], "FULL");
        assert!(retry[1]["ErrorEquals"].as_array().expect("names").contains(&json!("States.HeartbeatTimeout")));
        assert!(task["HeartbeatSeconds"].as_u64() < task["TimeoutSeconds"].as_u64());
    }

    #[test]
    fn a_heartbeat_not_below_the_timeout_is_refused() {
        let policy =
            Policy { heartbeat_timeout: Duration::from_secs(900), task_timeout: Duration::ZERO, ..Policy::default() };
        let bad = AslOptions { policy, ..AslOptions::default() };
        assert!(definition(&bad).is_err());
    }

    #[test]
    fn the_queued_body_spells_every_job_field() {
        let def = definition(&AslOptions::default()).expect("valid");
        let body = def["States"]["ProcessImage"]["Parameters"]["MessageBody"].as_object().expect("a body");
        let mut sent: Vec<&str> = body.keys().map(|k| k.trim_end_matches(".$")).collect();
        // Every optional field set, so the job's message spells them all.
        let mut job = crate::message::Job::new("o", "k.jpg", "r", Vec::new());
        job.task_token = Some("token".into());
        job.sidecar = true;
        job.metadata = "keep:copyright".parse().expect("a policy");
        let job = serde_json::to_value(&job).expect("json");
        let mut fields: Vec<&str> = job.as_object().expect("an object").keys().map(String::as_str).collect();
        sent.sort_unstable();
        fields.sort_unstable();
        assert_eq!(sent, fields, "the state machine must send exactly the fields a worker reads");
    }

    #[test]
    fn every_path_the_queued_body_reads_is_in_the_execution_input() {
        let def = definition(&AslOptions::default()).expect("valid");
        let body = def["States"]["ProcessImage"]["Parameters"]["MessageBody"].as_object().expect("a body");
        // The plainest job: no version, no sidecar, nothing optional set.
        let job = crate::message::Job::new("o", "k.jpg", "r", Vec::new());
        let input: Value = serde_json::from_str(&crate::sfn::execution_input(&job)).expect("JSON");
        for path in body.values().filter_map(Value::as_str).filter_map(|p| p.strip_prefix("$.")) {
            assert!(input.get(path).is_some(), "the input has no {path}, so the execution would fail: {input}");
        }
        assert_eq!(input["sidecar"], false);
        assert_eq!(input["metadata"], "strip");
        let back = crate::message::Job::from_json(&input.to_string()).expect("the input reads as the job");
        assert_eq!(back, job);
    }
}
