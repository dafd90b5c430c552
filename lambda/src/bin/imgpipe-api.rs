//! `imgpipe-api`: the HTTP API behind API Gateway (HTTP API, payload v2).

use imgpipe_lambda::config::{Env, Function, ProducerConfig};
use imgpipe_lambda::{Clients, api, init_tracing, startup_error};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    init_tracing();
    let config = ProducerConfig::read(&Env::process(), Function::Api).map_err(startup_error)?;
    let clients = Clients::from_env().await;
    api::run(api::app(&config, &clients)).await
}
