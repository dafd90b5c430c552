//! `imgpipe-api`: the HTTP API behind API Gateway (HTTP API, payload v2).

use imgpipe_lambda::{api, init_tracing, startup_error};
use pipeline_aws::AwsBackends;
use wiring::functions::{ProducerFunction, from_env};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    init_tracing();
    let settings: ProducerFunction = from_env().map_err(startup_error)?;
    let aws = AwsBackends::from_env().await;
    api::run(api::app(&settings, &aws).await?).await
}
