//! imgpipe's AWS backends: the core's [`BlobStore`](pipeline_core::blob::BlobStore) on
//! S3 and [`Queue`](pipeline_core::queue::Queue) on SQS, Step Functions as the
//! orchestrator and reporter, and the set-up helpers. Beside the local backends: it
//! depends on the protocol and the core's traits only, never on the worker or the
//! orchestrator. Kept out of the core so that the embedded deployment never compiles
//! the AWS SDK.
//!
//! Layout:
//! - [`config`]: settings loaded once from the standard AWS sources; clients built once.
//! - [`s3`]: the [`S3BlobStore`].
//! - [`dynamodb`]: the workflow engine's [`JobStore`](pipeline_core::job_store::JobStore) on DynamoDB.
//! - [`sqs`]: the [`SqsQueue`], with attributes beyond the trait.
//! - [`setup`]: queues with redrive policies, buckets, bucket notifications.
//! - [`redrive`]: moving messages between queues (receive → send → delete).
//! - [`sfn`]: Step Functions as the orchestrator, the worker's task-token reports, and
//!   creating the state machine.
//! - [`backends`]: the stores and queues a command asks for by name or URL.
//! - [`error`]: SDK failures folded into the core's error classification.

pub mod backends;
pub mod config;
pub mod dynamodb;
pub mod error;
pub mod redrive;
pub mod requests;
pub mod s3;
pub mod setup;
pub mod sfn;
pub mod sqs;

pub use backends::AwsBackends;
pub use config::{AwsClients, AwsConfig};
pub use dynamodb::DynamoJobs;
pub use error::AwsError;
pub use s3::S3BlobStore;
pub use sqs::{SqsMessage, SqsQueue};
