//! `process_job`: one job, start to finish — read the original, render every rendition
//! with one decode, write the outputs and, when the job asks, the metadata sidecar. It knows nothing of
//! queues, Lambda events or HTTP; the adapters around it only translate.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use pipeline_core::blob::{BlobStore, PutOptions};
use pipeline_core::telemetry;
use protocol::JobError;
pub use protocol::message::Processed;
use protocol::message::{Job, Output};
use protocol::rendition::{output_key, sidecar_key, validate_list};

use crate::faults::Faults;
use crate::image::{self, Limits, MemoryBudget};
pub use crate::renders::RenderSlots;

/// The `Cache-Control` of outputs unless configured. An output's key stays the same when its
/// source is replaced, so it is not `immutable`: fresh for five minutes, then served stale for
/// up to a day while a cache revalidates it (outputs carry an ETag), so a replaced image shows
/// within minutes and a CDN still absorbs the load.
pub const DEFAULT_CACHE_CONTROL: &str = "public, max-age=300, stale-while-revalidate=86400";

/// What `process_job` needs, built once and lent to every job.
#[derive(Clone, Debug)]
pub struct WorkerDeps {
    /// Where originals are read and renditions written.
    pub blobs: Arc<dyn BlobStore>,
    /// Input limits, checked before decoding.
    pub limits: Limits,
    /// The memory the renders of this process share.
    pub budget: MemoryBudget,
    /// `Cache-Control` stored on every output.
    pub cache_control: Option<String>,
    /// Injected faults, for drills and tests; none by default.
    pub faults: Faults,
    /// The renders that may run at once.
    pub renders: RenderSlots,
}

/// How many jobs a worker holds per render slot: while one job downloads, writes its outputs
/// and reports, another renders, so no core waits on storage or the orchestrator.
pub const JOBS_PER_RENDER: usize = 2;

/// Runs one attempt of `job`.
///
/// # Errors
/// A classified [`JobError`]: permanent for a missing or bad source, retryable for
/// storage trouble.
pub async fn process_job(job: &Job, deps: &WorkerDeps) -> Result<Processed, JobError> {
    validate_list(&job.renditions).map_err(|m| JobError::permanent("InvalidJob", m))?;
    deps.faults.before_attempt(job).await?;

    let download = Instant::now();
    let source = deps.blobs.get(&job.source_bucket, &job.source_key, deps.limits.max_input_bytes).await?;
    telemetry::stage("download", download.elapsed().as_secs_f64());
    metrics::counter!(telemetry::BYTES, "direction" => "in").increment(source.body.len() as u64);
    // The version read comes with the bytes read (one S3 response, one open file).
    same_version(job, source.meta.version.as_deref())?;
    let version = source.meta.version.clone();
    let (renditions, policy, limits, budget) =
        (job.renditions.clone(), job.metadata.clone(), deps.limits, deps.budget.clone());
    let rendered =
        deps.renders.run(move || image::render_within(&source.body, &renditions, &policy, &limits, &budget)).await??;

    // Replaced while it rendered: the newer version's job may already have written its outputs.
    if job.source_version.is_some() {
        same_version(job, deps.blobs.head(&job.source_bucket, &job.source_key).await?.version.as_deref())?;
    }

    let upload = Instant::now();
    let metadata = rendered.metadata;
    let mut outputs = Vec::with_capacity(rendered.outputs.len());
    for (encoded, rendition) in rendered.outputs.into_iter().zip(&job.renditions) {
        let key = output_key(&job.source_key, rendition);
        let size = encoded.bytes.len() as u64;
        let options =
            PutOptions { content_type: Some(encoded.content_type.into()), cache_control: deps.cache_control.clone() };
        deps.blobs.put(&job.destination_bucket, &key, Bytes::from(encoded.bytes), &options).await?;
        outputs.push(Output {
            rendition: encoded.rendition,
            bucket: job.destination_bucket.clone(),
            key,
            size,
            content_type: encoded.content_type.into(),
            width: encoded.width,
            height: encoded.height,
        });
    }
    // Only when asked: a second PUT per job. Written last, naming the version the outputs came
    // from: a reader that finds the sidecar finds the whole set, and can tell which upload it
    // belongs to.
    if job.sidecar {
        let sidecar = serde_json::json!({
            "source": { "bucket": job.source_bucket, "key": job.source_key, "version": version },
            "metadata": metadata, "outputs": outputs,
        });
        let options = PutOptions { content_type: Some("application/json".into()), cache_control: None };
        let body = Bytes::from(serde_json::to_vec_pretty(&sidecar).unwrap_or_default());
        deps.blobs.put(&job.destination_bucket, &sidecar_key(&job.source_key), body, &options).await?;
    }
    telemetry::stage("upload", upload.elapsed().as_secs_f64());
    metrics::counter!(telemetry::BYTES, "direction" => "out").increment(outputs.iter().map(|o| o.size).sum());
    Ok(Processed { outputs, metadata })
}

/// Whether `found` is the version of the source `job` names (any, when it names none).
///
/// # Errors
/// A permanent `SourceChanged`: the outputs would be of a version the job was not asked for,
/// and the newer version has its own job.
fn same_version(job: &Job, found: Option<&str>) -> Result<(), JobError> {
    match &job.source_version {
        Some(wanted) if found != Some(wanted.as_str()) => Err(JobError::permanent(
            "SourceChanged",
            format!(
                "{}/{} was replaced after this job started (version {wanted}, now {}); the job for the new version \
                 writes the outputs",
                job.source_bucket,
                job.source_key,
                found.unwrap_or("gone")
            ),
        )),
        _ => Ok(()),
    }
}
