//! The worker's reports as task-token calls: SendTaskSuccess with the outputs,
//! SendTaskFailure with a typed error name and the [`JobError`] as the cause, and
//! SendTaskHeartbeat. A token the service no longer waits on (the attempt timed out,
//! was answered, or its execution ended) is [`ReportError::Stale`]: the job message can go.

use std::sync::Arc;

use async_trait::async_trait;
use pipeline_core::report::{ReportError, Reporter};
use protocol::error::JobError;
use protocol::message::{Job, Processed};
use protocol::sfn::{PERMANENT_ERROR, RETRYABLE_ERROR, failure_cause, success_output};

use crate::error::AwsError;

/// The service's answers for a token nobody waits on any more.
const STALE: &[&str] = &["TaskTimedOut", "TaskDoesNotExist", "InvalidToken"];

/// Reports to Step Functions with the task token the job carries.
#[derive(Clone, Debug)]
pub struct SfnReporter {
    client: aws_sdk_sfn::Client,
}

impl SfnReporter {
    /// Reports through `client`.
    pub fn new(client: aws_sdk_sfn::Client) -> Self {
        Self { client }
    }
}

fn token(job: &Job) -> Result<&str, ReportError> {
    job.task_token.as_deref().filter(|t| !t.is_empty()).ok_or_else(|| {
        ReportError::Failed(format!(
            "job {} carries no task token: it was not started by a state machine, so Step Functions cannot take its report",
            job.job_id
        ))
    })
}

fn classify(e: &AwsError) -> ReportError {
    if e.has_code(STALE) { ReportError::Stale(e.to_string()) } else { ReportError::Failed(e.to_string()) }
}

#[async_trait]
impl Reporter for SfnReporter {
    async fn heartbeat(&self, job: &Job) -> Result<(), ReportError> {
        self.client
            .send_task_heartbeat()
            .task_token(token(job)?)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| classify(&AwsError::from_sdk("SendTaskHeartbeat", &e)))
    }

    async fn finish(&self, job: &Job, outcome: &Result<Processed, JobError>) -> Result<(), ReportError> {
        let token = token(job)?;
        match outcome {
            Ok(done) => self
                .client
                .send_task_success()
                .task_token(token)
                .output(success_output(done))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| classify(&AwsError::from_sdk("SendTaskSuccess", &e))),
            Err(error) => self
                .client
                .send_task_failure()
                .task_token(token)
                .error(if error.is_retryable() { RETRYABLE_ERROR } else { PERMANENT_ERROR })
                .cause(failure_cause(job, error))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| classify(&AwsError::from_sdk("SendTaskFailure", &e))),
        }
    }
}

/// Sends the reports of jobs with a task token to Step Functions and the others to
/// another reporter (the embedded orchestrator's reports queue), for a worker that
/// serves both during a migration or in a mixed set-up.
#[derive(Clone, Debug)]
pub struct RoutingReporter {
    step_functions: Arc<dyn Reporter>,
    otherwise: Arc<dyn Reporter>,
}

impl RoutingReporter {
    /// Jobs with a token go to `step_functions`, the rest to `otherwise`.
    pub fn new(step_functions: Arc<dyn Reporter>, otherwise: Arc<dyn Reporter>) -> Self {
        Self { step_functions, otherwise }
    }

    fn pick(&self, job: &Job) -> &dyn Reporter {
        if job.task_token.is_some() { self.step_functions.as_ref() } else { self.otherwise.as_ref() }
    }
}

#[async_trait]
impl Reporter for RoutingReporter {
    async fn heartbeat(&self, job: &Job) -> Result<(), ReportError> {
        self.pick(job).heartbeat(job).await
    }

    async fn finish(&self, job: &Job, outcome: &Result<Processed, JobError>) -> Result<(), ReportError> {
        self.pick(job).finish(job, outcome).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::rendition::Rendition;

    #[tokio::test]
    async fn a_job_without_a_token_cannot_be_reported() {
        let conf =
            aws_sdk_sfn::Config::builder().behavior_version(aws_sdk_sfn::config::BehaviorVersion::latest()).build();
        let reporter = SfnReporter::new(aws_sdk_sfn::Client::from_conf(conf));
        let job = Job::new("o", "k.jpg", "r", vec![Rendition::thumbnail()]);
        let err = reporter.heartbeat(&job).await.expect_err("no token");
        assert!(matches!(&err, ReportError::Failed(m) if m.contains("no task token")), "{err}");
    }
}
