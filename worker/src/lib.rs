//! The worker: the [`image`] engine, [`process_job`](process::process_job) for one job,
//! one [`attempt`] per delivered message (shared by the container runner and the Lambda
//! handler), and the long-poll [`runner`] that feeds attempts from the jobs queue.

pub mod attempt;
pub mod faults;
pub mod image;
pub mod process;
mod renders;
pub mod runner;

pub use process::{Processed, RenderSlots, WorkerDeps, process_job};
pub use runner::{Runner, RunnerConfig};
