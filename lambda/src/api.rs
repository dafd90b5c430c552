//! The producer's HTTP API on Lambda: the same axum router `imgpipe serve` runs, adapted by
//! `lambda_http` to API Gateway HTTP API (payload v2) events, with Step Functions as the
//! orchestrator and S3 as the store. `POST /process` starts a named execution and answers
//! 202; `GET /jobs/{id}` reads the execution back.
//!
//! API Gateway stops waiting after 30 s, so `?wait=` above about 25 s ends in a 503 from
//! API Gateway while the job carries on; poll `statusUrl` instead.

use std::sync::Arc;

use axum::Router;
use pipeline_aws::sfn::SfnOrchestrator;
use producer::api::{ApiState, router};
use producer::intake::Intake;

use pipeline_aws::AwsBackends;
use wiring::functions::ProducerFunction;

/// The intake both producers share: the allow-lists, S3 for existence checks, and one
/// execution of the state machine per job.
///
/// # Errors
/// The settings name no valid allow-lists (see [`wiring::settings::IntakeArgs::buckets`]).
pub fn intake(settings: &ProducerFunction, aws: &AwsBackends) -> Result<Intake, lambda_runtime::Error> {
    Ok(Intake {
        orchestrator: Arc::new(SfnOrchestrator::new(aws.sfn().clone(), &settings.state_machine_arn)),
        blobs: aws.blob_store(),
        buckets: settings.intake.buckets().map_err(crate::startup_error)?,
    })
}

/// The API's router. `/metrics` reports no queue depths here: CloudWatch has them.
///
/// # Errors
/// As [`intake`].
pub fn app(settings: &ProducerFunction, aws: &AwsBackends) -> Result<Router, lambda_runtime::Error> {
    Ok(router(ApiState::new(intake(settings, aws)?, Vec::new())))
}

/// Serves API Gateway events with `app` until the execution environment ends.
///
/// # Errors
/// The runtime's, when it cannot talk to the Lambda Runtime API.
pub async fn run(app: Router) -> Result<(), lambda_http::Error> {
    lambda_http::run(app).await
}
