//! Reporting to the orchestrator: the contract lives in the core, so other backends
//! (Step Functions) implement it without depending on the worker.

pub use pipeline_core::report::{QueueReporter, ReportError, Reporter};
pub use protocol::message::Processed;
