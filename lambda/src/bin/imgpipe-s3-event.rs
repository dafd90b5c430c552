//! `imgpipe-s3-event`: S3 ObjectCreated events → one job per object.

use imgpipe_lambda::s3_event::{self, S3EventHandler};
use imgpipe_lambda::{api, init_tracing, startup_error};
use pipeline_aws::AwsBackends;
use wiring::functions::{ProducerFunction, from_env};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    init_tracing();
    let settings: ProducerFunction = from_env().map_err(startup_error)?;
    let aws = AwsBackends::from_env().await;
    let destination_bucket = settings.intake.destination_bucket.clone();
    let (orchestrator, _) = api::workflow(&settings, &aws).await?;
    s3_event::run(S3EventHandler { intake: api::intake(&settings, &aws, orchestrator)?, destination_bucket }).await
}
