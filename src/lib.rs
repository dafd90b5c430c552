//! The `imgpipe` command: the embedded deployment wired from the library crates, and the
//! CLI over it. `main` only calls [`cli::main`].

pub mod cli;
pub mod config;
pub mod embedded;
pub mod serve;
