//! imgpipe's contracts as plain data and pure functions: what crosses a queue, what a
//! failure means, how a job moves through its workflow, what Step Functions is told and
//! tells back, how S3 names new objects, and which renditions and keys are valid. No I/O:
//! tokio, SQLite and the AWS SDK never enter this crate's dependency tree, so every rule
//! here is tested by tables.
//!
//! Layout:
//! - [`message`]: versioned JSON messages (`"v":1`) — jobs, reports, outputs.
//! - [`error`]: the retryable / permanent classification every failure is folded into.
//! - [`intake`]: why a request to start a job was refused, with its class.
//! - [`rendition`]: what a job asks the image engine to produce, and the output key rules.
//! - [`keys`]: which object keys and bucket names every backend carries.
//! - [`workflow`]: `ImageProcessingWorkflow` — states, retry policy, the pure [`workflow::step`].
//! - [`job`]: a job as both orchestrators record it (state, attempts, history).
//! - [`dead_letter`]: what sits on the dead-letter queue, in all its shapes.
//! - [`sfn`]: the Step Functions contract; [`asl`]: the state machine generated from the workflow.
//! - [`s3_event`]: S3 ObjectCreated notifications, parsed leniently.
//! - [`time`]: durations as flags read them, RFC 3339 times.

pub mod asl;
pub mod dead_letter;
pub mod error;
pub mod intake;
pub mod job;
pub mod keys;
pub mod message;
pub mod metadata;
pub mod rendition;
pub mod s3_event;
pub mod sfn;
pub mod time;
pub mod workflow;

pub use error::{ErrorClass, JobError};
pub use message::{Job, Output, Report, ReportKind};
pub use rendition::Rendition;
