//! Turning a request into a started job: check the buckets against the allow-lists, the
//! key, the renditions and that the source exists; then start the workflow. Shared by
//! the HTTP API, the folder watcher and the CLI.

use std::sync::Arc;

use pipeline_core::blob::{BlobError, BlobStore};
use pipeline_core::orchestration::Orchestrator;
use protocol::JobError;
use protocol::intake::{Buckets, IntakeError};
use protocol::keys::validate_key;
use protocol::message::Job;
use protocol::metadata::MetadataPolicy;
use protocol::rendition::{self, Rendition};
use serde::Deserialize;

/// The request body of `POST /process`, as the original project sent it.
#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"sourceBucket": "original", "sourceKey": "myphoto.jpg", "destinationBucket": "resized"}))]
pub struct ProcessRequest {
    /// Bucket of the original: one of the buckets jobs may read from.
    pub source_bucket: String,
    /// Key of the original.
    pub source_key: String,
    /// Bucket for the renditions: one of the buckets jobs may write to.
    pub destination_bucket: String,
    /// What to produce; the default `thumbnail` (512 px box, JPEG q80) when absent.
    #[serde(default)]
    #[schema(min_items = 1, max_items = 16)]
    pub renditions: Option<Vec<Rendition>>,
    /// Also write the metadata sidecar beside the renditions (`resized/<stem>_metadata.json`
    /// for a `<stem>.jpg` source): the source's metadata (camera facts included), its version
    /// and the outputs. One more object written per job, so off unless asked; when absent the
    /// server's default applies (`IMGPIPE_SIDECAR`, off unless set). Asking for it makes
    /// another job than not asking.
    #[serde(default)]
    pub sidecar: Option<bool>,
    /// Which source metadata the outputs carry: `"strip"` (none) or `{"keep": [...]}` with any
    /// of `copyright`, `artist`, `captureTime`, `icc`. Location is never kept. When absent the
    /// server's default applies (`IMGPIPE_METADATA`, `strip` unless set). Another policy makes
    /// another job.
    #[serde(default)]
    pub metadata: Option<MetadataPolicy>,
}

impl ProcessRequest {
    /// The checks that need no storage: the buckets against `buckets`, the key and the
    /// renditions. Returns the renditions the job will produce and whether it writes the
    /// sidecar (the request's choice, else `default_sidecar`).
    ///
    /// # Errors
    /// A permanent [`IntakeError`] naming the first rule broken.
    pub fn validate(&self, buckets: &Buckets, default_sidecar: bool) -> Result<(Vec<Rendition>, bool), IntakeError> {
        buckets.check(&self.source_bucket, &self.source_key, &self.destination_bucket)?;
        validate_key(&self.source_key).map_err(|e| IntakeError::InvalidKey(e.to_string()))?;
        let renditions = self.renditions.clone().unwrap_or_else(|| vec![Rendition::thumbnail()]);
        rendition::validate_list(&renditions).map_err(IntakeError::InvalidRendition)?;
        let sidecar = self.sidecar.unwrap_or(default_sidecar);
        // A key near the length limit leaves no room for the outputs' (found by fuzzing).
        let outputs = renditions.iter().map(|r| rendition::output_key(&self.source_key, r));
        for key in outputs.chain(sidecar.then(|| rendition::sidecar_key(&self.source_key))) {
            validate_key(&key).map_err(|e| {
                IntakeError::InvalidKey(format!("the source key leaves no valid key for its outputs: {e}"))
            })?;
        }
        Ok((renditions, sidecar))
    }
}

/// What [`Intake::take`] made of an input.
#[derive(Debug)]
pub enum Taken {
    /// Its job started (or had started before, for the same version).
    Started(Job),
    /// Refused for good, and recorded as this failed job.
    Refused(Job, IntakeError),
    /// Nothing to do: the source is gone.
    Skipped(IntakeError),
}

/// What intake needs, built once.
#[derive(Clone, Debug)]
pub struct Intake {
    /// Starts jobs.
    pub orchestrator: Arc<dyn Orchestrator>,
    /// Where sources are looked up.
    pub blobs: Arc<dyn BlobStore>,
    /// Buckets jobs may read from and write to.
    pub buckets: Buckets,
    /// Whether a job whose request does not say writes the metadata sidecar
    /// (`IMGPIPE_SIDECAR`): every job of the folder watcher and of S3 notifications.
    pub sidecar: bool,
    /// The metadata policy of a job whose request does not say (`IMGPIPE_METADATA`).
    pub metadata: MetadataPolicy,
}

impl Intake {
    /// The policy `request` asks for, else the default.
    fn metadata_of(&self, request: &ProcessRequest) -> MetadataPolicy {
        request.metadata.clone().unwrap_or_else(|| self.metadata.clone()).normalized()
    }

    /// Validates `request` and starts its job.
    ///
    /// # Errors
    /// An [`IntakeError`]: permanent for a bucket outside its allow-list, a source that is
    /// a rendition, a bad key or
    /// renditions, a missing source or a used id; retryable when storage or the
    /// orchestrator fails.
    pub async fn submit(&self, request: ProcessRequest) -> Result<Job, IntakeError> {
        let (renditions, sidecar) = request.validate(&self.buckets, self.sidecar)?;
        let metadata = self.metadata_of(&request);
        let source = match self.blobs.head(&request.source_bucket, &request.source_key).await {
            Ok(meta) => meta,
            Err(BlobError::NotFound { bucket, key }) => return Err(IntakeError::SourceMissing { bucket, key }),
            Err(e @ BlobError::InvalidName { .. }) => return Err(IntakeError::InvalidKey(e.to_string())),
            Err(e) => return Err(IntakeError::Unavailable(e.to_string())),
        };
        let (bucket, key, destination) = (request.source_bucket, request.source_key, request.destination_bucket);
        // One job per source version and spec: a second intake of the same upload is the same job.
        let job = match &source.version {
            Some(version) => Job::for_source(bucket, key, version, destination, renditions, sidecar, metadata),
            None => Job { sidecar, metadata, ..Job::new(bucket, key, destination, renditions) },
        };
        match self.start(job.clone()).await {
            Err(IntakeError::Conflict(_)) if source.version.is_some() => {
                tracing::info!(job_id = %job.job_id, key = ?job.source_key, "already started for this version of the source");
                Ok(job)
            }
            started => started,
        }
    }

    /// For intakes nobody can answer (the folder watcher, S3 notifications): starts
    /// `request`'s job as [`Intake::submit`] does, and records an input refused for good as
    /// a failed job with its reason (dead-lettered, never run), so it is seen in `imgpipe
    /// jobs` and the DLQ rather than only in a log. A source gone before its job could start
    /// is skipped: nothing is left to process.
    ///
    /// # Errors
    /// A retryable [`IntakeError`]: storage or the orchestrator failed, recording a refusal
    /// included; the caller tries the input again later.
    pub async fn take(&self, request: ProcessRequest) -> Result<Taken, IntakeError> {
        let refused = match self.submit(request.clone()).await {
            Ok(job) => return Ok(Taken::Started(job)),
            Err(e) if e.is_retryable() => return Err(e),
            Err(e @ IntakeError::SourceMissing { .. }) => return Ok(Taken::Skipped(e)),
            Err(e) => e,
        };
        self.refuse(request, refused).await
    }

    /// Records `request`, refused for `why`, as a failed job (see [`Intake::take`]).
    ///
    /// # Errors
    /// A retryable [`IntakeError`]: the refusal could not be recorded.
    pub async fn refuse(&self, request: ProcessRequest, why: IntakeError) -> Result<Taken, IntakeError> {
        let metadata = self.metadata_of(&request);
        let renditions = request.renditions.unwrap_or_else(|| vec![Rendition::thumbnail()]);
        let sidecar = request.sidecar.unwrap_or(self.sidecar);
        // One record per refused input, however often it is announced.
        let (bucket, key, destination) = (request.source_bucket, request.source_key, request.destination_bucket);
        let job = Job::for_source(bucket, key, "refused", destination, renditions, sidecar, metadata);
        let error = JobError::permanent(why.code(), why.to_string());
        match self.orchestrator.refuse(job.clone(), error).await {
            Ok(()) => {
                tracing::warn!(job_id = %job.job_id, key = ?job.source_key, error = %why, "input refused; recorded as a failed job");
            }
            Err(e) if e.conflict => tracing::debug!(job_id = %job.job_id, "refusal recorded before"),
            Err(e) => {
                return Err(IntakeError::Unavailable(format!("{why}; and the refusal could not be recorded: {e}")));
            }
        }
        Ok(Taken::Refused(job, why))
    }

    async fn start(&self, job: Job) -> Result<Job, IntakeError> {
        self.orchestrator.start(job.clone()).await.map_err(|e| {
            if e.conflict { IntakeError::Conflict(e.to_string()) } else { IntakeError::Unavailable(e.to_string()) }
        })?;
        tracing::info!(job_id = %job.job_id, key = ?job.source_key, "job started");
        Ok(job)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sidecar_is_the_requests_choice_else_the_default_and_its_key_is_checked_only_when_written() {
        let buckets = Buckets::new(&["original"], &["resized"]);
        let request = |sidecar: Option<bool>, key: &str| {
            let body = serde_json::json!({ "sourceBucket": "original", "sourceKey": key, "destinationBucket": "resized",
                "renditions": [{ "name": "t", "width": 10 }], "sidecar": sidecar });
            serde_json::from_value::<ProcessRequest>(body).expect("a request")
        };
        let chosen = |sidecar, default| request(sidecar, "a.jpg").validate(&buckets, default).expect("valid").1;
        assert!(!chosen(None, false) && chosen(None, true), "absent: the default");
        assert!(chosen(Some(true), false) && !chosen(Some(false), true), "the request's choice wins");

        // `resized/<stem>_t.jpg` fits in a key, `resized/<stem>_metadata.json` does not.
        let long = format!("{}.jpg", "a".repeat(1005));
        request(Some(false), &long).validate(&buckets, true).expect("no sidecar, no sidecar key");
        let refused = request(None, &long).validate(&buckets, true).expect_err("the sidecar's key is too long");
        assert!(matches!(refused, IntakeError::InvalidKey(_)), "{refused:?}");
    }
}
