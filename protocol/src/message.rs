//! The messages that cross queues, defined once: a [`Job`] for the worker, a
//! [`Report`] back to the orchestrator. Both are versioned JSON (`"v":1`); a reader
//! refuses versions it does not know rather than guessing.

use serde::{Deserialize, Serialize};

use crate::error::JobError;
use crate::metadata::{KeptMetadata, MetadataPolicy};
use crate::rendition::Rendition;

/// The namespace of ids made by [`Job::for_source`] (a fixed, random UUID).
const JOB_ID_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6f1c_2a54_9b3e_4d0a_8e77_1f5c_3b2d_9a41);

/// The message version this build writes and reads.
pub const MESSAGE_VERSION: u32 = 1;

/// Why a message could not be read.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    /// Not JSON, or not of the message's shape.
    #[error("malformed message: {0}")]
    Malformed(#[from] serde_json::Error),
    /// A version this build does not speak.
    #[error("unsupported message version {0} (this build reads v{MESSAGE_VERSION})")]
    UnsupportedVersion(u32),
}

/// One image to process: where it is, where its renditions go, and which attempt this is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    /// Message version, always [`MESSAGE_VERSION`].
    pub v: u32,
    /// Stable id of the job across attempts.
    pub job_id: String,
    /// Bucket holding the original.
    pub source_bucket: String,
    /// Key of the original.
    pub source_key: String,
    /// The version of the original this job is for (S3 ETag; size and mtime locally), when
    /// intake saw one: a worker that finds another version there fails the job as
    /// `SourceChanged` rather than write outputs of a version it was not asked for (the
    /// newer version has its own job). Always written, `null` when absent, so the state
    /// machine can pass it on.
    #[serde(default)]
    pub source_version: Option<String>,
    /// Bucket the renditions are written to.
    pub destination_bucket: String,
    /// What to produce.
    pub renditions: Vec<Rendition>,
    /// Also write the metadata sidecar ([`sidecar_key`](crate::rendition::sidecar_key)) after
    /// the renditions: one more PUT, so only when asked. Left out of messages when `false`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sidecar: bool,
    /// Which source metadata the outputs carry. Left out of messages when `strip`, the default.
    #[serde(default, skip_serializing_if = "MetadataPolicy::is_strip")]
    pub metadata: MetadataPolicy,
    /// 1 for the first attempt, counting up on each retry.
    pub attempt: u32,
    /// The Step Functions task token, when a state machine waits for this job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_token: Option<String>,
}

impl Job {
    /// A first attempt of a new job with a fresh time-ordered id.
    pub fn new(
        source_bucket: impl Into<String>,
        source_key: impl Into<String>,
        destination_bucket: impl Into<String>,
        renditions: Vec<Rendition>,
    ) -> Self {
        Self {
            v: MESSAGE_VERSION,
            job_id: uuid::Uuid::now_v7().to_string(),
            source_bucket: source_bucket.into(),
            source_key: source_key.into(),
            source_version: None,
            destination_bucket: destination_bucket.into(),
            renditions,
            sidecar: false,
            metadata: MetadataPolicy::Strip,
            attempt: 1,
            task_token: None,
        }
    }

    /// A first attempt whose id follows from what it does: the same source version,
    /// destination, renditions, sidecar choice and metadata policy always give the same id, so two intakes of
    /// one upload (the bucket's notification or the folder watcher, and a `POST /process`)
    /// start one job, and a rewritten source starts a new one.
    pub fn for_source(
        source_bucket: impl Into<String>,
        source_key: impl Into<String>,
        source_version: &str,
        destination_bucket: impl Into<String>,
        renditions: Vec<Rendition>,
        sidecar: bool,
        metadata: MetadataPolicy,
    ) -> Self {
        let mut job = Self::new(source_bucket, source_key, destination_bucket, renditions);
        job.sidecar = sidecar;
        job.metadata = metadata.normalized();
        let mut what = vec![
            job.source_bucket.as_str().into(),
            job.source_key.as_str().into(),
            source_version.into(),
            job.destination_bucket.as_str().into(),
            serde_json::json!(job.renditions),
        ];
        // Mixed in only when asked, so a job without the sidecar keeps the id it had before
        // the choice existed.
        if sidecar {
            what.push(serde_json::json!({ "sidecar": true }));
        }
        if !job.metadata.is_strip() {
            what.push(serde_json::json!({ "metadata": job.metadata }));
        }
        let what = serde_json::Value::Array(what).to_string();
        job.job_id = uuid::Uuid::new_v5(&JOB_ID_NAMESPACE, what.as_bytes()).to_string();
        job.source_version = Some(source_version.to_owned());
        job
    }

    /// The job that takes over `failed` when it cannot restart under its own id (a finished
    /// Step Functions execution): the same work on the source as it is now, under an id that
    /// follows from the failed job's, so redriving one letter twice starts one job.
    pub fn redrive_of(failed: &Job) -> Self {
        let mut job =
            Self::new(&failed.source_bucket, &failed.source_key, &failed.destination_bucket, failed.renditions.clone());
        job.sidecar = failed.sidecar;
        job.metadata = failed.metadata.clone();
        let what = format!("redrive of {}", failed.job_id);
        job.job_id = uuid::Uuid::new_v5(&JOB_ID_NAMESPACE, what.as_bytes()).to_string();
        job
    }

    /// Reads a job message.
    ///
    /// # Errors
    /// [`MessageError`] when the body is not a v1 job.
    pub fn from_json(body: &str) -> Result<Self, MessageError> {
        let job: Job = serde_json::from_str(body)?;
        check_version(job.v)?;
        Ok(job)
    }

    /// The message body.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// One rendition written to the destination bucket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Output {
    /// The rendition's name.
    pub rendition: String,
    /// Destination bucket.
    pub bucket: String,
    /// Destination key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// MIME type stored with the object.
    pub content_type: String,
    /// Pixel width.
    pub width: u32,
    /// Pixel height.
    pub height: u32,
}

/// What a worker tells the orchestrator about one attempt of a job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// Message version, always [`MESSAGE_VERSION`].
    pub v: u32,
    /// The job reported on.
    pub job_id: String,
    /// The attempt reported on.
    pub attempt: u32,
    /// What happened.
    #[serde(flatten)]
    pub kind: ReportKind,
}

/// The content of a [`Report`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum ReportKind {
    /// The worker is still busy with the attempt.
    Heartbeat,
    /// Every rendition was written.
    Succeeded {
        /// The renditions written.
        outputs: Vec<Output>,
        /// What the engine read from the source (format, size, camera, ...).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        metadata: Option<SourceMetadata>,
    },
    /// The attempt failed.
    Failed {
        /// Why, and whether it may be retried.
        error: JobError,
    },
}

impl Report {
    /// A report on `job`'s current attempt.
    pub fn new(job: &Job, kind: ReportKind) -> Self {
        Self { v: MESSAGE_VERSION, job_id: job.job_id.clone(), attempt: job.attempt, kind }
    }

    /// Reads a report message.
    ///
    /// # Errors
    /// [`MessageError`] when the body is not a v1 report.
    pub fn from_json(body: &str) -> Result<Self, MessageError> {
        let report: Report = serde_json::from_str(body)?;
        check_version(report.v)?;
        Ok(report)
    }

    /// The message body.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

fn check_version(v: u32) -> Result<(), MessageError> {
    if v == MESSAGE_VERSION { Ok(()) } else { Err(MessageError::UnsupportedVersion(v)) }
}

/// A finished job's results.
#[derive(Clone, Debug, PartialEq)]
pub struct Processed {
    /// The renditions written.
    pub outputs: Vec<Output>,
    /// What the engine read from the source.
    pub metadata: SourceMetadata,
}

/// Facts the image engine read from a source: what it is (format, size, orientation,
/// colour), which metadata it carried, and the camera facts the sidecar keeps. Reported
/// with a success and shown in job records through [`SourceMetadata::public`].
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct SourceMetadata {
    /// Detected format: `jpeg`, `png`, `webp`, `gif`, `bmp`, `tiff`, `heif` (HEIC and the other
    /// HEIF brands) or `avif`.
    pub format: String,
    /// Width as stored in the file, before the Exif orientation (for HEIF and AVIF, after the
    /// container's own rotation and crop, which the decoder applies).
    pub width: u32,
    /// Height as stored in the file, before orientation.
    pub height: u32,
    /// Width once the EXIF orientation is applied (what a viewer sees).
    pub upright_width: u32,
    /// Height once the EXIF orientation is applied.
    pub upright_height: u32,
    /// EXIF orientation, 1 (upright) to 8; 1 when absent.
    pub orientation: u8,
    /// Colour model of the stored samples: `rgb`, `gray`, `cmyk` or `ycck`.
    pub color_space: String,
    /// Bits per sample in the file.
    pub bit_depth: u8,
    /// Whether the source has an alpha channel.
    pub has_alpha: bool,
    /// Whether an ICC colour profile is embedded.
    pub has_icc: bool,
    /// The source's ICC profile was too large or malformed to carry into the outputs, which
    /// were written without it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub icc_dropped: bool,
    /// Whether the source carries Exif data.
    pub has_exif: bool,
    /// Whether the source carries an XMP packet.
    pub has_xmp: bool,
    /// Whether the source carries GPS coordinates (Exif GPS IFD or XMP GPS fields).
    pub has_gps: bool,
    /// Progressive JPEG or not; absent for other formats.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progressive: Option<bool>,
    /// Exif `Make`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub camera_make: Option<String>,
    /// Exif `Model`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub camera_model: Option<String>,
    /// Exif `DateTimeOriginal` (falling back to `DateTime`) as `YYYY-MM-DDTHH:MM:SS`, local time
    /// of the camera, with the Exif offset appended when the file records one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capture_time: Option<String>,
    /// What of the source's metadata the outputs carry, by the job's metadata policy: kept
    /// kinds the source had (`copyright`, `artist`, `captureTime`, `icc`). Absent when
    /// nothing was kept. AVIF and animated WebP outputs carry no Exif and no profile (their
    /// pixels are converted to sRGB).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kept: Vec<KeptMetadata>,
}

impl SourceMetadata {
    /// What a job record shows to any caller: what the image is, never who took it, with
    /// what or when (camera make, model and capture time stay in the sidecar).
    pub fn public(&self) -> Self {
        Self { camera_make: None, camera_model: None, capture_time: None, ..self.clone() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_round_trips_with_camel_case_fields() {
        let job = Job::new("original", "a/b.jpg", "resized", vec![Rendition::thumbnail()]);
        let json = job.to_json();
        assert!(json.contains(r#""v":1"#) && json.contains(r#""sourceKey":"a/b.jpg""#), "{json}");
        assert!(!json.contains("taskToken"));
        assert_eq!(Job::from_json(&json).expect("reads back"), job);
    }

    #[test]
    fn the_sidecar_choice_is_left_out_when_false_and_read_when_absent() {
        let job = Job::new("o", "k.jpg", "r", vec![Rendition::thumbnail()]);
        assert!(!job.to_json().contains("sidecar"), "{}", job.to_json());
        let asked = Job { sidecar: true, ..job.clone() };
        assert!(asked.to_json().contains(r#""sidecar":true"#), "{}", asked.to_json());
        assert_eq!(Job::from_json(&asked.to_json()).expect("reads back"), asked);
        // A message written before the field existed reads as "no sidecar".
        let old = r#"{"v":1,"jobId":"j","sourceBucket":"o","sourceKey":"k.jpg","destinationBucket":"r","renditions":[],"attempt":1}"#;
        assert!(!Job::from_json(old).expect("an old message").sidecar);
    }

    #[test]
    fn the_sidecar_choice_names_another_job_and_keeps_the_old_ids() {
        let id = |sidecar| {
            Job::for_source("o", "k.jpg", "v1", "r", vec![Rendition::thumbnail()], sidecar, MetadataPolicy::Strip)
                .job_id
        };
        assert_ne!(id(false), id(true), "asking for the sidecar is another job");
        // The id this job had before the choice existed: a second intake of an upload made
        // before the upgrade names the same job.
        assert_eq!(id(false), "7a0a293c-b685-5726-95b7-d8498d8c2f95");
        let asked = Job::for_source("o", "k.jpg", "v1", "r", vec![Rendition::thumbnail()], true, MetadataPolicy::Strip);
        assert!(asked.sidecar && Job::redrive_of(&asked).sidecar, "a redrive keeps the choice");
    }

    #[test]
    fn the_metadata_policy_names_another_job_and_strip_keeps_the_old_ids() {
        let job = |metadata| Job::for_source("o", "k.jpg", "v1", "r", vec![Rendition::thumbnail()], false, metadata);
        let strip = job(MetadataPolicy::Strip);
        assert_eq!(strip.job_id, "7a0a293c-b685-5726-95b7-d8498d8c2f95", "the id from before the policy existed");
        assert!(!strip.to_json().contains("metadata"), "{}", strip.to_json());
        let keep: MetadataPolicy = "keep:copyright".parse().expect("policy");
        let kept = job(keep.clone());
        assert_ne!(kept.job_id, strip.job_id, "keeping metadata is another job");
        assert_eq!(job("keep:".parse().expect("policy")).job_id, strip.job_id, "keep nothing is strip");
        assert!(kept.to_json().contains(r#""metadata":{"keep":["copyright"]}"#), "{}", kept.to_json());
        assert_eq!(Job::from_json(&kept.to_json()).expect("reads back").metadata, keep);
        assert_eq!(Job::redrive_of(&kept).metadata, keep, "a redrive keeps the policy");
    }

    #[test]
    fn unknown_versions_and_garbage_are_refused() {
        let job = Job::new("o", "k", "r", vec![Rendition::thumbnail()]);
        let v2 = job.to_json().replace(r#""v":1"#, r#""v":2"#);
        assert!(matches!(Job::from_json(&v2), Err(MessageError::UnsupportedVersion(2))));
        assert!(matches!(Job::from_json("not json"), Err(MessageError::Malformed(_))));
        assert!(matches!(Report::from_json(r#"{"v":1}"#), Err(MessageError::Malformed(_))));
    }

    #[test]
    fn report_kinds_are_tagged() {
        let job = Job::new("o", "k", "r", vec![Rendition::thumbnail()]);
        let failed = Report::new(&job, ReportKind::Failed { error: JobError::permanent("NotAnImage", "text") });
        let json = failed.to_json();
        assert!(json.contains(r#""type":"failed""#) && json.contains(r#""class":"permanent""#), "{json}");
        assert_eq!(Report::from_json(&json).expect("reads back"), failed);
        let hb = Report::from_json(&format!(r#"{{"v":1,"jobId":"{}","attempt":1,"type":"heartbeat"}}"#, job.job_id));
        assert_eq!(hb.expect("heartbeat").kind, ReportKind::Heartbeat);
    }
}
