//! The worker: the image [`engine`], [`process_job`](process::process_job) for one job,
//! and the long-poll [`runner`] that feeds it from the jobs queue and reports outcomes.

pub mod engine;
pub mod execute;
pub mod faults;
pub mod process;
pub mod report;
pub mod runner;

pub use process::{Processed, WorkerDeps, process_job};
pub use runner::{Runner, RunnerConfig};
