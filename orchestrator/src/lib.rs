//! The embedded workflow engine: runs `ImageProcessingWorkflow` (defined in
//! `protocol::workflow`) over a job store ([`engine`]; SQLite: [`SqliteJobs`]), and the dead-letter queue's
//! tools for operators ([`dead_letter`]).

pub mod dead_letter;
pub mod engine;
mod error;
mod store;

pub use engine::{EmbeddedEngine, Queues};
pub use error::EngineError;
pub use store::SqliteJobs;
