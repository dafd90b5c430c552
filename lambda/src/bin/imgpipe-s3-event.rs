//! `imgpipe-s3-event`: S3 ObjectCreated events → one job per object.

use imgpipe_lambda::config::{ConfigError, DESTINATION_BUCKET, Env, Function, ProducerConfig};
use imgpipe_lambda::s3_event::{self, S3EventHandler};
use imgpipe_lambda::{Clients, api, init_tracing, startup_error};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    init_tracing();
    let config = ProducerConfig::read(&Env::process(), Function::S3Event).map_err(startup_error)?;
    let destination_bucket =
        config.destination_bucket.clone().ok_or(ConfigError::Missing(DESTINATION_BUCKET)).map_err(startup_error)?;
    let clients = Clients::from_env().await;
    s3_event::run(S3EventHandler { intake: api::intake(&config, &clients), destination_bucket }).await
}
