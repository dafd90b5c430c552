//! Why a request to start a job was refused, in the protocol's terms: each reason has a
//! stable code and a class — permanent (the same request can never pass) or retryable
//! (storage or the orchestrator failed). The HTTP API maps them to status codes; the
//! watcher and the S3 intakes only ask whether to try again.

use crate::error::ErrorClass;
use crate::rendition::OUTPUT_PREFIX;

/// What a job does with a bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Reads its source from it.
    Read,
    /// Writes its renditions to it.
    Write,
}

impl std::fmt::Display for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Access::Read => "read sources from",
            Access::Write => "write renditions to",
        })
    }
}

/// The buckets jobs may read sources from and write renditions to: two lists, so a key
/// holder who may write thumbnails into `resized` cannot have a job read a private bucket.
///
/// Renditions always go under [`OUTPUT_PREFIX`], and a key under it in a bucket jobs write
/// to is never a source ([`Buckets::is_output`]): a destination that is also a watched
/// source bucket cannot feed itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Buckets {
    /// Buckets jobs may read sources from.
    pub read: Vec<String>,
    /// Buckets jobs may write renditions to.
    pub write: Vec<String>,
}

impl Buckets {
    /// The two lists, without empty or repeated names.
    pub fn new<S: AsRef<str>>(read: &[S], write: &[S]) -> Self {
        let clean = |names: &[S]| {
            let mut out: Vec<String> = Vec::new();
            for name in names.iter().map(|n| n.as_ref().trim()).filter(|n| !n.is_empty()) {
                if !out.iter().any(|o| o == name) {
                    out.push(name.to_owned());
                }
            }
            out
        };
        Self { read: clean(read), write: clean(write) }
    }

    /// Every bucket named, read ones first, each once.
    pub fn all(&self) -> Vec<String> {
        let mut all = self.read.clone();
        all.extend(self.write.iter().filter(|w| !self.read.contains(w)).cloned());
        all
    }

    /// Whether `key` in `bucket` is where a job writes its renditions: never a source.
    pub fn is_output(&self, bucket: &str, key: &str) -> bool {
        key.starts_with(OUTPUT_PREFIX) && self.write.iter().any(|w| w == bucket)
    }

    /// Whether a job may read `source_key` from `source_bucket` and write to `destination_bucket`.
    ///
    /// # Errors
    /// [`IntakeError::NotAllowed`] for a bucket outside its list, [`IntakeError::SourceIsOutput`]
    /// for a source that is itself a rendition.
    pub fn check(&self, source_bucket: &str, source_key: &str, destination_bucket: &str) -> Result<(), IntakeError> {
        for (bucket, access, allowed) in
            [(source_bucket, Access::Read, &self.read), (destination_bucket, Access::Write, &self.write)]
        {
            if !allowed.iter().any(|b| b == bucket) {
                return Err(IntakeError::NotAllowed { bucket: bucket.to_owned(), access, allowed: allowed.clone() });
            }
        }
        if self.is_output(source_bucket, source_key) {
            return Err(IntakeError::SourceIsOutput { bucket: source_bucket.to_owned(), key: source_key.to_owned() });
        }
        Ok(())
    }
}

/// A refused intake.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IntakeError {
    /// A bucket outside the allow-list for what the job would do with it.
    #[error("jobs may not {access} bucket {bucket:?} (allowed: {allowed:?})")]
    NotAllowed {
        /// The bucket asked for.
        bucket: String,
        /// What the job would do with it.
        access: Access,
        /// The buckets allowed for that.
        allowed: Vec<String>,
    },
    /// A source under the output prefix of a bucket jobs write to: a rendition, not an original.
    #[error("{bucket}/{key} is where renditions are written (under {OUTPUT_PREFIX:?}), not a source")]
    SourceIsOutput {
        /// Its bucket.
        bucket: String,
        /// Its key.
        key: String,
    },
    /// A key no backend should carry.
    #[error("{0}")]
    InvalidKey(String),
    /// Renditions that break the rules or the limits.
    #[error("{0}")]
    InvalidRendition(String),
    /// The source object does not exist.
    #[error("{bucket}/{key} does not exist")]
    SourceMissing {
        /// Its bucket.
        bucket: String,
        /// Its key.
        key: String,
    },
    /// A job with this id already exists.
    #[error("{0}")]
    Conflict(String),
    /// Storage or the orchestrator failed; a later try may pass.
    #[error("{0}")]
    Unavailable(String),
}

impl IntakeError {
    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            IntakeError::NotAllowed { .. } => "BucketNotAllowed",
            IntakeError::SourceIsOutput { .. } => "SourceIsOutput",
            IntakeError::InvalidKey(_) => "InvalidKey",
            IntakeError::InvalidRendition(_) => "InvalidRendition",
            IntakeError::SourceMissing { .. } => "SourceNotFound",
            IntakeError::Conflict(_) => "JobExists",
            IntakeError::Unavailable(_) => "ServiceUnavailable",
        }
    }

    /// Whether trying the same request again may pass.
    pub fn class(&self) -> ErrorClass {
        match self {
            IntakeError::Unavailable(_) => ErrorClass::Retryable,
            _ => ErrorClass::Permanent,
        }
    }

    /// Whether trying the same request again may pass.
    pub fn is_retryable(&self) -> bool {
        self.class() == ErrorClass::Retryable
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_failures_of_the_services_are_retryable() {
        let missing = IntakeError::SourceMissing { bucket: "original".into(), key: "a.jpg".into() };
        let cases = [
            (
                IntakeError::NotAllowed { bucket: "x".into(), access: Access::Read, allowed: vec![] },
                "BucketNotAllowed",
                false,
            ),
            (IntakeError::SourceIsOutput { bucket: "b".into(), key: "resized/a.jpg".into() }, "SourceIsOutput", false),
            (IntakeError::InvalidKey("..".into()), "InvalidKey", false),
            (IntakeError::InvalidRendition("no box".into()), "InvalidRendition", false),
            (missing.clone(), "SourceNotFound", false),
            (IntakeError::Conflict("job j exists".into()), "JobExists", false),
            (IntakeError::Unavailable("S3 503".into()), "ServiceUnavailable", true),
        ];
        for (error, code, retryable) in cases {
            assert_eq!((error.code(), error.is_retryable()), (code, retryable), "{error}");
        }
        assert_eq!(missing.to_string(), "original/a.jpg does not exist");
    }

    #[test]
    fn sources_and_destinations_are_allowed_separately() {
        let buckets = Buckets::new(&["original", "shared", " ", "original"], &["resized", "shared"]);
        assert_eq!(buckets.read, ["original", "shared"]);
        assert_eq!(buckets.all(), ["original", "shared", "resized"]);
        assert_eq!(buckets.check("original", "a.jpg", "resized"), Ok(()));
        assert_eq!(buckets.check("shared", "a.jpg", "shared"), Ok(()));
        let refused = |s: &str, d: &str| match buckets.check(s, "a.jpg", d) {
            Err(IntakeError::NotAllowed { bucket, access, .. }) => Some((bucket, access)),
            _ => None,
        };
        // Writing a bucket does not let a job read it, nor the other way round.
        assert_eq!(refused("resized", "resized"), Some(("resized".into(), Access::Read)));
        assert_eq!(refused("original", "original"), Some(("original".into(), Access::Write)));
        let e = buckets.check("original", "a.jpg", "original").expect_err("not writable");
        assert_eq!(
            e.to_string(),
            r#"jobs may not write renditions to bucket "original" (allowed: ["resized", "shared"])"#
        );
    }

    #[test]
    fn renditions_in_a_bucket_jobs_write_are_never_sources() {
        let buckets = Buckets::new(&["original", "shared"], &["shared"]);
        assert!(buckets.is_output("shared", "resized/a_thumbnail.jpg"));
        assert!(!buckets.is_output("original", "resized/a.jpg"), "original is never written to");
        assert!(!buckets.is_output("shared", "photos/resized/a.jpg"));
        assert!(matches!(
            buckets.check("shared", "resized/a_thumbnail.jpg", "shared"),
            Err(IntakeError::SourceIsOutput { .. })
        ));
        assert_eq!(buckets.check("original", "resized/a.jpg", "shared"), Ok(()));
    }
}
