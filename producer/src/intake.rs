//! Turning a request into a started job: check the buckets against the allow-list, the
//! key, the renditions and that the source exists; then start the workflow. Shared by
//! the HTTP API, the folder watcher and the CLI.

use std::sync::Arc;

use pipeline_core::blob::{BlobError, BlobStore};
use pipeline_core::orchestration::Orchestrator;
use protocol::intake::IntakeError;
use protocol::keys::validate_key;
use protocol::message::Job;
use protocol::rendition::{self, Rendition};
use serde::Deserialize;

/// The request body of `POST /process`, as the original project sent it.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessRequest {
    /// Bucket of the original.
    pub source_bucket: String,
    /// Key of the original.
    pub source_key: String,
    /// Bucket for the renditions.
    pub destination_bucket: String,
    /// What to produce; the default `thumbnail` when absent.
    #[serde(default)]
    pub renditions: Option<Vec<Rendition>>,
}

/// What intake needs, built once.
#[derive(Clone, Debug)]
pub struct Intake {
    /// Starts jobs.
    pub orchestrator: Arc<dyn Orchestrator>,
    /// Where sources are looked up.
    pub blobs: Arc<dyn BlobStore>,
    /// Buckets jobs may read from or write to.
    pub allowed_buckets: Vec<String>,
}

impl Intake {
    /// Validates `request` and starts its job.
    ///
    /// # Errors
    /// An [`IntakeError`]: permanent for a bucket outside the allow-list, a bad key or
    /// renditions, a missing source or a used id; retryable when storage or the
    /// orchestrator fails.
    pub async fn submit(&self, request: ProcessRequest) -> Result<Job, IntakeError> {
        for bucket in [&request.source_bucket, &request.destination_bucket] {
            if !self.allowed_buckets.iter().any(|b| b == bucket) {
                return Err(IntakeError::NotAllowed { bucket: bucket.clone(), allowed: self.allowed_buckets.clone() });
            }
        }
        validate_key(&request.source_key).map_err(|e| IntakeError::InvalidKey(e.to_string()))?;
        let renditions = request.renditions.unwrap_or_else(|| vec![Rendition::thumbnail()]);
        rendition::validate_list(&renditions).map_err(IntakeError::InvalidRendition)?;
        let source = match self.blobs.head(&request.source_bucket, &request.source_key).await {
            Ok(meta) => meta,
            Err(BlobError::NotFound { bucket, key }) => return Err(IntakeError::SourceMissing { bucket, key }),
            Err(e @ BlobError::InvalidName { .. }) => return Err(IntakeError::InvalidKey(e.to_string())),
            Err(e) => return Err(IntakeError::Unavailable(e.to_string())),
        };
        let (bucket, key, destination) = (request.source_bucket, request.source_key, request.destination_bucket);
        // One job per source version and spec: a second intake of the same upload is the same job.
        let job = match &source.version {
            Some(version) => Job::for_source(bucket, key, version, destination, renditions),
            None => Job::new(bucket, key, destination, renditions),
        };
        match self.start(job.clone()).await {
            Err(IntakeError::Conflict(_)) if source.version.is_some() => {
                tracing::info!(job_id = %job.job_id, key = ?job.source_key, "already started for this version of the source");
                Ok(job)
            }
            started => started,
        }
    }

    async fn start(&self, job: Job) -> Result<Job, IntakeError> {
        self.orchestrator.start(job.clone()).await.map_err(|e| {
            if e.conflict { IntakeError::Conflict(e.to_string()) } else { IntakeError::Unavailable(e.to_string()) }
        })?;
        tracing::info!(job_id = %job.job_id, key = ?job.source_key, "job started");
        Ok(job)
    }
}
