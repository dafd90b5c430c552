//! The producer's HTTP API on Lambda: the same axum router `imgpipe serve` runs, adapted by
//! `lambda_http` to API Gateway HTTP API (payload v2) events, with S3 as the store and Step
//! Functions or the workflow engine (its jobs in DynamoDB) as the orchestrator. `POST
//! /process` starts the job and answers 202; `GET /jobs/{id}` reads it back; with the engine,
//! `/dlq` lists, redrives and purges the dead-letter queue.
//!
//! API Gateway stops waiting after 30 s, so `?wait=` above about 25 s ends in a 503 from
//! API Gateway while the job carries on; poll `statusUrl` instead.

use std::sync::Arc;

use axum::Router;
use orchestrator::dead_letter::{DeadLetters, Restart};
use orchestrator::{EmbeddedEngine, Queues};
use pipeline_aws::sfn::SfnOrchestrator;
use pipeline_aws::{AwsBackends, DynamoJobs};
use pipeline_core::orchestration::Orchestrator;
use producer::api::{ApiState, router};
use producer::intake::Intake;
use protocol::workflow::Policy;
use wiring::functions::{LambdaWorkflow, ProducerFunction};

/// Who runs the workflow, from the settings: Step Functions, or the workflow engine on its
/// DynamoDB table (which also answers `/dlq`: list, redrive, purge).
///
/// # Errors
/// A setting the choice needs is missing, or a queue cannot be resolved.
pub async fn workflow(
    settings: &ProducerFunction,
    aws: &AwsBackends,
) -> Result<(Arc<dyn Orchestrator>, Option<DeadLetters>), lambda_runtime::Error> {
    Ok(match settings.workflow.workflow().map_err(crate::startup_error)? {
        LambdaWorkflow::StepFunctions { state_machine_arn } => {
            (Arc::new(SfnOrchestrator::new(aws.sfn().clone(), state_machine_arn)), None)
        }
        LambdaWorkflow::Engine { jobs_table, jobs_queue, reports_queue, dead_letter_queue } => {
            let queue = |name: String| async move { aws.queue(&name).await.map_err(crate::startup_error) };
            let queues = Queues {
                jobs: queue(jobs_queue).await?,
                reports: queue(reports_queue).await?,
                dead_letters: queue(dead_letter_queue).await?,
            };
            let dead_letters = Arc::clone(&queues.dead_letters);
            let store = DynamoJobs::new(aws.clients().dynamodb.clone(), jobs_table);
            // The policy the engine containers run with: the defaults, as here.
            let engine = EmbeddedEngine::new(Arc::new(store), queues, Policy::default());
            let restart = DeadLetters { queue: dead_letters, restart: Restart::Same(engine.clone()) };
            (Arc::new(engine), Some(restart))
        }
    })
}

/// The intake both producers share: the allow-lists, S3 for existence checks, and
/// `orchestrator` to start each job.
///
/// # Errors
/// The settings name no valid allow-lists (see [`wiring::settings::IntakeArgs::buckets`]).
pub fn intake(
    settings: &ProducerFunction,
    aws: &AwsBackends,
    orchestrator: Arc<dyn Orchestrator>,
) -> Result<Intake, lambda_runtime::Error> {
    Ok(Intake {
        orchestrator,
        blobs: aws.blob_store(),
        buckets: settings.intake.buckets().map_err(crate::startup_error)?,
        sidecar: settings.intake.job_defaults.sidecar,
        metadata: settings.intake.job_defaults.metadata.clone(),
    })
}

/// The API's router. `/metrics` reports no queue depths here: CloudWatch has them.
///
/// # Errors
/// As [`workflow`] and [`intake`].
pub async fn app(settings: &ProducerFunction, aws: &AwsBackends) -> Result<Router, lambda_runtime::Error> {
    let (orchestrator, dead_letters) = workflow(settings, aws).await?;
    let mut state = ApiState::new(intake(settings, aws, orchestrator)?, Vec::new());
    if let Some(dead_letters) = dead_letters {
        state = state.with_dead_letters(dead_letters);
    }
    Ok(router(state))
}

/// Serves API Gateway events with `app` until the execution environment ends.
///
/// # Errors
/// The runtime's, when it cannot talk to the Lambda Runtime API.
pub async fn run(app: Router) -> Result<(), lambda_http::Error> {
    lambda_http::run(app).await
}
