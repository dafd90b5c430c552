//! The vocabulary every imgpipe crate shares: job and report messages, error
//! classification, the blob-store and queue contracts, and their local backends
//! (folders as buckets, a SQLite file with SQS semantics).
//!
//! Layout:
//! - [`message`]: versioned JSON messages (`"v":1`) — jobs, reports, outputs.
//! - [`rendition`]: what a job asks the image engine to produce.
//! - [`error`]: the retryable / permanent classification every failure is folded into.
//! - [`blob`]: the [`BlobStore`](blob::BlobStore) trait, key rules, and the local folder store.
//! - [`orchestration`]: the [`Orchestrator`](orchestration::Orchestrator) contract and job records.
//! - [`queue`]: the [`Queue`](queue::Queue) trait and the SQLite queue.
//! - [`report`]: the [`Reporter`](report::Reporter) contract workers report through.
//! - [`sqlite`]: the shared SQLite handle the queue and the embedded orchestrator use.
//! - [`conformance`]: contract suites every backend must pass, written once.

pub mod blob;
pub mod conformance;
pub mod error;
pub mod message;
pub mod orchestration;
pub mod queue;
pub mod rendition;
pub mod report;
pub mod sqlite;
pub mod time;

pub use error::{ErrorClass, JobError};
pub use message::{Job, Output, Report, ReportKind};
pub use rendition::Rendition;
