//! The worker: the image engine, [`process_job`](process::process_job), and the
//! long-poll loop that feeds it from the jobs queue.

pub mod engine;
