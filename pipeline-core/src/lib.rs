//! The contracts between imgpipe's parts and their local backends: the blob-store,
//! queue, orchestrator and reporter traits with the conformance suites every backend
//! passes, and the local implementations (folders as buckets, a SQLite file with SQS
//! semantics). The vocabulary they speak — messages, errors, renditions — is the
//! `protocol` crate's.
//!
//! Layout:
//! - [`blob`]: the [`BlobStore`](blob::BlobStore) trait and the local folder store (key rules: `protocol::keys`).
//! - [`job_store`]: the [`JobStore`](job_store::JobStore) the workflow engine keeps its jobs in.
//! - [`orchestration`]: the [`Orchestrator`](orchestration::Orchestrator) contract.
//! - [`queue`]: the [`Queue`](queue::Queue) trait and the SQLite queue.
//! - [`report`]: the [`Reporter`](report::Reporter) contract workers report through.
//! - [`sqlite`]: the shared SQLite handle the queue and the embedded orchestrator use.
//! - [`conformance`]: contract suites every backend must pass, written once.
//! - [`telemetry`]: the Prometheus metrics, named once.
//! - [`crash`]: named crash points, for the tests that show each window closes.

pub mod blob;
pub mod conformance;
pub mod crash;
pub mod job_store;
pub mod orchestration;
pub mod queue;
pub mod report;
pub mod sqlite;
pub mod telemetry;
