//! `imgpipe-worker`: SQS events from the jobs queue → process and report each job.

use imgpipe_lambda::config::{Env, WorkerConfig};
use imgpipe_lambda::{Clients, init_tracing, startup_error, worker};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    init_tracing();
    let config = WorkerConfig::read(&Env::process()).map_err(startup_error)?;
    let clients = Clients::from_env().await;
    worker::run(worker::build(&config, &clients).await.map_err(startup_error)?).await
}
