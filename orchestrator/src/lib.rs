//! The orchestrator: `ImageProcessingWorkflow` defined once ([`workflow`]), the embedded
//! engine that runs it over SQLite ([`engine`]), and the dead-letter queue's tools
//! ([`dead_letter`]).

pub mod asl;
pub mod dead_letter;
pub mod engine;
mod store;
pub mod workflow;

pub use engine::{EmbeddedEngine, EngineConfig, Queues};
