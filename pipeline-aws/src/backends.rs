//! The AWS backends a command asks for, by queue name or URL, from settings loaded and
//! clients built once: what `main` hands to the library code as `Arc<dyn …>`.

use std::sync::Arc;

use pipeline_core::blob::BlobStore;
use pipeline_core::queue::{Queue, QueueError};

use crate::config::{AwsClients, AwsConfig};
use crate::s3::S3BlobStore;
use crate::sqs::SqsQueue;

/// One process's AWS clients and the backends built on them. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AwsBackends {
    config: AwsConfig,
    clients: AwsClients,
}

impl AwsBackends {
    /// Loads the standard AWS settings and builds the clients.
    pub async fn from_env() -> Self {
        Self::new(AwsConfig::from_env().await)
    }

    /// Builds the clients from `config`.
    pub fn new(config: AwsConfig) -> Self {
        let clients = config.clients();
        Self { config, clients }
    }

    /// The settings the clients were built from.
    pub fn config(&self) -> &AwsConfig {
        &self.config
    }

    /// The shared clients.
    pub fn clients(&self) -> &AwsClients {
        &self.clients
    }

    /// The same backends talking to Step Functions through `sfn` (a client with its own
    /// interceptors or settings).
    pub fn with_sfn(mut self, sfn: aws_sdk_sfn::Client) -> Self {
        self.clients.sfn = sfn;
        self
    }

    /// The Step Functions client.
    pub fn sfn(&self) -> &aws_sdk_sfn::Client {
        &self.clients.sfn
    }

    /// The S3 store.
    pub fn s3(&self) -> S3BlobStore {
        S3BlobStore::new(self.clients.s3.clone())
    }

    /// The S3 store, as the pipeline takes it.
    pub fn blob_store(&self) -> Arc<dyn BlobStore> {
        Arc::new(self.s3())
    }

    /// The SQS queue named by `name_or_url` (a name costs one call to resolve).
    ///
    /// # Errors
    /// No such queue, or a service failure.
    pub async fn sqs(&self, name_or_url: &str) -> Result<SqsQueue, QueueError> {
        SqsQueue::connect(self.clients.sqs.clone(), name_or_url).await
    }

    /// The SQS queue named by `name_or_url`, as the pipeline takes it.
    ///
    /// # Errors
    /// No such queue, or a service failure.
    pub async fn queue(&self, name_or_url: &str) -> Result<Arc<dyn Queue>, QueueError> {
        Ok(Arc::new(self.sqs(name_or_url).await?))
    }
}
