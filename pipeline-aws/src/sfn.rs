//! Step Functions as the orchestrator: one Standard execution of `ImageProcessingWorkflow`
//! per job, named by the job id, read back as the job's record.
//!
//! - [`SfnOrchestrator`]: StartExecution (idempotent), and DescribeExecution with
//!   GetExecutionHistory mapped into a [`JobRecord`].
//! - [`reporter`]: the worker's task-token calls (success, failure, heartbeat).
//! - [`setup`]: creating the state machine from the orchestrator's generated definition.
//! - `history`: the pure mapping from history events to workflow states and attempts.

mod history;
pub mod reporter;
pub mod setup;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sfn::operation::describe_execution::DescribeExecutionOutput;
use aws_sdk_sfn::types::ExecutionStatus;
use pipeline_core::orchestration::{Orchestrator, OrchestratorError};
use pipeline_core::queue::Queue;
use protocol::JobError;
use protocol::dead_letter::DeadLetter;
use protocol::job::JobRecord;
use protocol::message::Job;
use protocol::time::rfc3339;
use serde_json::Value;

use crate::error::AwsError;
use protocol::sfn::{Event, Status, fold, job_error};
pub use reporter::{RoutingReporter, SfnReporter};

/// Runs jobs as executions of one state machine.
#[derive(Clone, Debug)]
pub struct SfnOrchestrator {
    client: aws_sdk_sfn::Client,
    state_machine_arn: String,
    /// Where inputs refused at intake are recorded, as the state machine's own letters are.
    dead_letters: Option<Arc<dyn Queue>>,
}

impl SfnOrchestrator {
    /// Jobs run on the state machine `state_machine_arn`.
    pub fn new(client: aws_sdk_sfn::Client, state_machine_arn: impl Into<String>) -> Self {
        Self { client, state_machine_arn: state_machine_arn.into(), dead_letters: None }
    }

    /// The same orchestrator recording refused inputs on `queue` (the state machine's DLQ).
    #[must_use]
    pub fn with_dead_letters(mut self, queue: Arc<dyn Queue>) -> Self {
        self.dead_letters = Some(queue);
        self
    }

    /// The state machine's ARN.
    pub fn state_machine_arn(&self) -> &str {
        &self.state_machine_arn
    }

    /// The ARN of the execution that runs `job_id`.
    pub fn execution_arn(&self, job_id: &str) -> String {
        format!("{}:{job_id}", self.state_machine_arn.replacen(":stateMachine:", ":execution:", 1))
    }

    async fn describe(&self, arn: &str) -> Result<Option<DescribeExecutionOutput>, AwsError> {
        match self.client.describe_execution().execution_arn(arn).send().await {
            Ok(out) => Ok(Some(out)),
            Err(e) => {
                let e = AwsError::from_sdk("DescribeExecution", &e);
                if e.has_code(&["ExecutionDoesNotExist"]) { Ok(None) } else { Err(e) }
            }
        }
    }

    async fn events(&self, arn: &str) -> Result<Vec<Event>, AwsError> {
        let mut events = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let page = self
                .client
                .get_execution_history()
                .execution_arn(arn)
                .max_results(1000)
                .set_next_token(next.take())
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("GetExecutionHistory", &e))?;
            events.extend(page.events().iter().map(history::event));
            match page.next_token() {
                Some(t) if !t.is_empty() => next = Some(t.to_owned()),
                _ => return Ok(events),
            }
        }
    }

    /// The record of the execution `arn`, or `None` when there is none.
    async fn record(&self, arn: &str) -> Result<Option<JobRecord>, AwsError> {
        let Some(out) = self.describe(arn).await? else { return Ok(None) };
        let events = self.events(arn).await?;
        Ok(Some(to_record(&out, &events)))
    }
}

fn to_record(out: &DescribeExecutionOutput, events: &[Event]) -> JobRecord {
    let input: Value = out.input().and_then(|i| serde_json::from_str(i).ok()).unwrap_or_default();
    let output: Value = out.output().and_then(|o| serde_json::from_str(o).ok()).unwrap_or_default();
    let text = |key: &str| input[key].as_str().unwrap_or_default().to_owned();
    let status = match out.status() {
        ExecutionStatus::Succeeded => Status::Succeeded,
        ExecutionStatus::Running | ExecutionStatus::PendingRedrive => Status::Running,
        _ => Status::Failed,
    };
    let folded = fold(events, status);
    let mut error = folded.error;
    if error.is_none() && status == Status::Failed {
        error = out.error().map(|e| job_error(e, out.cause()));
    }
    let result = &output["result"];
    let started = out.start_date().to_millis().unwrap_or_default();
    let updated = out.stop_date().and_then(|d| d.to_millis().ok()).or(folded.last_ms).unwrap_or(started);
    JobRecord {
        job_id: out.name().map_or_else(|| text("jobId"), str::to_owned),
        state: folded.state,
        attempts: folded.attempts,
        source_bucket: text("sourceBucket"),
        source_key: text("sourceKey"),
        destination_bucket: text("destinationBucket"),
        renditions: serde_json::from_value(input["renditions"].clone()).unwrap_or_default(),
        created_at: rfc3339(started),
        updated_at: rfc3339(updated),
        outputs: serde_json::from_value(result["outputs"].clone()).unwrap_or_default(),
        metadata: result.get("metadata").and_then(|m| serde_json::from_value(m.clone()).ok()),
        error,
        history: folded.history,
    }
}

fn failed(e: AwsError) -> OrchestratorError {
    OrchestratorError::new(e.to_string())
}

#[async_trait]
impl Orchestrator for SfnOrchestrator {
    /// Starts the execution named by the job id with the job as its input. Starting the
    /// same job again is a no-op; another job under a used id is refused.
    async fn start(&self, job: Job) -> Result<(), OrchestratorError> {
        let job = Job { task_token: None, ..job };
        let input = protocol::sfn::execution_input(&job);
        let started = self
            .client
            .start_execution()
            .state_machine_arn(&self.state_machine_arn)
            .name(&job.job_id)
            .input(&input)
            .send()
            .await;
        let e = match started {
            Ok(out) => {
                tracing::info!(job_id = %job.job_id, execution = out.execution_arn(), "execution started");
                return Ok(());
            }
            Err(e) => AwsError::from_sdk("StartExecution", &e),
        };
        if !e.has_code(&["ExecutionAlreadyExists"]) {
            return Err(failed(e));
        }
        let existing = self.describe(&self.execution_arn(&job.job_id)).await.map_err(failed)?;
        // Compared as jobs: an input written before a field existed reads as its default.
        let same = existing.and_then(|out| out.input().and_then(|i| Job::from_json(i).ok())).is_some_and(|j| j == job);
        if same {
            tracing::info!(job_id = %job.job_id, "execution already started");
            Ok(())
        } else {
            Err(OrchestratorError::conflict(format!("another job already ran under the id {}", job.job_id)))
        }
    }

    /// An execution cannot start in `DeadLetter`: the refusal goes to the dead-letter queue
    /// as a letter of its own, where operators see it with the state machine's.
    async fn refuse(&self, job: Job, error: JobError) -> Result<(), OrchestratorError> {
        let queue = self.dead_letters.as_ref().ok_or_else(|| {
            OrchestratorError::new("no dead-letter queue to record the refusal on (IMGPIPE_DEAD_LETTER_QUEUE)")
        })?;
        let letter = DeadLetter::refused(&job, &error, protocol::time::now_ms());
        queue.send(&letter.to_json(), Duration::ZERO).await.map_err(|e| OrchestratorError::new(e.to_string()))?;
        tracing::warn!(job_id = %job.job_id, key = ?job.source_key, code = %error.code, "input refused; dead-lettered");
        Ok(())
    }

    async fn get(&self, job_id: &str) -> Result<Option<JobRecord>, OrchestratorError> {
        self.record(&self.execution_arn(job_id)).await.map_err(failed)
    }

    /// The newest executions; each costs a DescribeExecution and a GetExecutionHistory.
    async fn list(&self, limit: usize) -> Result<Vec<JobRecord>, OrchestratorError> {
        let page_size = i32::try_from(limit.clamp(1, 1000)).unwrap_or(1000);
        let listed = self
            .client
            .list_executions()
            .state_machine_arn(&self.state_machine_arn)
            .max_results(page_size)
            .send()
            .await
            .map_err(|e| failed(AwsError::from_sdk("ListExecutions", &e)))?;
        let mut records = Vec::new();
        for item in listed.executions().iter().take(limit) {
            if let Some(mut record) = self.record(item.execution_arn()).await.map_err(failed)? {
                record.history.clear();
                records.push(record);
            }
        }
        records.sort_by(|a, b| b.created_at.cmp(&a.created_at));
        Ok(records)
    }
}
