//! imgpipe on AWS Lambda: thin adapters around the same core the CLI runs.
//!
//! Layout:
//! - [`api`]: the producer's axum router through `lambda_http`, behind an API Gateway HTTP API.
//! - [`s3_event`]: S3 ObjectCreated events (S3 invoking the function directly) → one job per object.
//! - [`worker`]: SQS events from the jobs queue → `execute` per record, partial batch failures.
//!
//! The binaries in `src/bin` read their settings with `wiring::functions` (the CLI's own
//! settings, from the environment), build the AWS clients once and call a `run` here.

pub mod api;
pub mod s3_event;
pub mod worker;

/// Plain-text logs without timestamps (CloudWatch stamps each line), filtered by `RUST_LOG`
/// (default `info`). For the binaries' `main`.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt().with_env_filter(filter).with_ansi(false).without_time().init();
}

/// A start-up failure (a missing setting, an unresolvable queue), logged in plain words and
/// returned for `main` to exit with: the function then fails its init, visibly.
pub fn startup_error(e: impl std::fmt::Display) -> lambda_runtime::Error {
    tracing::error!("cannot start: {e}");
    format!("cannot start: {e}").into()
}
