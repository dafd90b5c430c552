//! The `imgpipe` command: the deployments wired from the library crates, and the CLI over
//! them. `main` only calls [`cli::main`].

pub mod backends;
pub mod cli;
pub mod config;
pub mod embedded;
pub mod s3_intake;
pub mod serve;
