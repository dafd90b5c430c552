//! The `imgpipe` command: the CLI over the deployment the `wiring` crate opens, and the
//! parts `serve` runs. `main` only calls [`cli::main`].

pub mod cli;
pub mod health;
pub mod s3_intake;
pub mod serve;
