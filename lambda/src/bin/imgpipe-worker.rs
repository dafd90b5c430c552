//! `imgpipe-worker`: SQS events from the jobs queue → process and report each job.

use imgpipe_lambda::{init_tracing, startup_error, worker};
use pipeline_aws::AwsBackends;
use wiring::functions::{WorkerFunction, from_env};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    init_tracing();
    let settings: WorkerFunction = from_env().map_err(startup_error)?;
    let aws = AwsBackends::from_env().await;
    worker::run(worker::build(&settings, &aws).await.map_err(startup_error)?).await
}
