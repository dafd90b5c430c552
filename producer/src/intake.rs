//! Turning a request into a started job: check the buckets against the allow-list, the
//! key, the renditions and that the source exists; then start the workflow. Shared by
//! the HTTP API, the folder watcher and the CLI.

use std::sync::Arc;

use axum::http::StatusCode;
use pipeline_core::blob::{BlobError, BlobStore, validate_key};
use pipeline_core::orchestration::Orchestrator;
use protocol::message::Job;
use protocol::rendition::{self, Rendition};
use serde::Deserialize;

use crate::error::ApiError;

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
    /// 400 for a bad key or renditions, 403 for a bucket outside the allow-list, 404 for
    /// a missing source, 503 when storage or the orchestrator fails.
    pub async fn submit(&self, request: ProcessRequest) -> Result<Job, ApiError> {
        for bucket in [&request.source_bucket, &request.destination_bucket] {
            if !self.allowed_buckets.iter().any(|b| b == bucket) {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "BucketNotAllowed",
                    format!("bucket {bucket:?} is not in the allow-list {:?}", self.allowed_buckets),
                ));
            }
        }
        validate_key(&request.source_key).map_err(|e| ApiError::bad_request("InvalidKey", e.to_string()))?;
        let renditions = request.renditions.unwrap_or_else(|| vec![Rendition::thumbnail()]);
        rendition::validate_list(&renditions).map_err(|m| ApiError::bad_request("InvalidRendition", m))?;
        match self.blobs.head(&request.source_bucket, &request.source_key).await {
            Ok(_) => {}
            Err(BlobError::NotFound { bucket, key }) => {
                return Err(ApiError::not_found("SourceNotFound", format!("{bucket}/{key} does not exist")));
            }
            Err(e @ BlobError::InvalidName { .. }) => return Err(ApiError::bad_request("InvalidKey", e.to_string())),
            Err(e) => return Err(ApiError::unavailable(e.to_string())),
        }
        let job = Job::new(request.source_bucket, request.source_key, request.destination_bucket, renditions);
        self.orchestrator.start(job.clone()).await.map_err(|e| ApiError::unavailable(e.to_string()))?;
        tracing::info!(job_id = %job.job_id, key = ?job.source_key, "job started");
        Ok(job)
    }
}
