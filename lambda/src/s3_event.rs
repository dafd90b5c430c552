//! S3 ObjectCreated events, S3 invoking the function directly: one job per created object.
//!
//! - Keys arrive form-encoded (`+` is a space, `%2F` a slash) and are decoded first.
//! - Recursion-safe twice over: the template notifies only for the original bucket, and
//!   here keys under `resized/` in a bucket jobs write to are skipped, so renditions never
//!   start jobs even if both buckets were one.
//! - A record refused for good (not allowed, bad key) is recorded as a failed job with its
//!   reason — on the dead-letter queue when the function has one; where it has none, recording
//!   fails and the event goes the way of a 5xx below, to the on-failure destination. A source
//!   already gone is skipped. A 5xx (S3 or Step Functions failing), or a record that cannot be
//!   read at all (no bucket or key, a key that is not UTF-8), fails the invocation after the
//!   other records were tried, so Lambda's asynchronous retries run it again and, past them,
//!   the template's on-failure destination keeps the event for an operator. Records that had
//!   succeeded are recognised when tried again: a job's id follows from its source's version.

use aws_lambda_events::event::s3::{S3Event, S3EventRecord};
use lambda_runtime::{LambdaEvent, service_fn};
use producer::intake::{Intake, ProcessRequest, Taken};
use protocol::s3_event::form_decode;

/// Why an event must be retried.
#[derive(Debug, thiserror::Error)]
#[error("{failed} of the event's records could not start a job (first: {first})")]
pub struct S3IntakeError {
    /// How many records failed with a 5xx-class error.
    pub failed: usize,
    /// The first failure.
    pub first: String,
}

/// What an event became.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Handled {
    /// Ids of the jobs started.
    pub started: Vec<String>,
    /// Ids of the failed jobs recorded for records refused for good (a bucket outside the
    /// allow-lists, a bad key).
    pub refused: Vec<String>,
    /// Records skipped: other event kinds, our own outputs, sources already gone.
    pub skipped: usize,
}

/// The S3 event handler.
#[derive(Clone, Debug)]
pub struct S3EventHandler {
    /// Validates and starts jobs.
    pub intake: Intake,
    /// Where renditions go.
    pub destination_bucket: String,
}

impl S3EventHandler {
    /// Starts a job per created object in `event`.
    ///
    /// # Errors
    /// [`S3IntakeError`] when any record failed with a 5xx-class error.
    pub async fn handle(&self, event: S3Event) -> Result<Handled, S3IntakeError> {
        let mut handled = Handled::default();
        let mut failures = Vec::new();
        for record in &event.records {
            let request = match self.request(record) {
                Ok(Some(request)) => request,
                Ok(None) => {
                    handled.skipped += 1;
                    continue;
                }
                Err(unreadable) => {
                    tracing::error!(%unreadable, "a record that cannot be read; failing the invocation");
                    failures.push(unreadable);
                    continue;
                }
            };
            let (bucket, key) = (request.source_bucket.clone(), request.source_key.clone());
            match self.intake.take(request).await {
                Ok(Taken::Started(job)) => handled.started.push(job.job_id),
                Ok(Taken::Refused(job, _)) => handled.refused.push(job.job_id),
                Ok(Taken::Skipped(e)) => {
                    tracing::info!(?bucket, ?key, error = %e, "not starting a job");
                    handled.skipped += 1;
                }
                Err(e) => {
                    tracing::error!(?bucket, ?key, error = %e, "could not start the job; failing the invocation");
                    failures.push(format!("{bucket}/{key}: {e}"));
                }
            }
        }
        match failures.first() {
            None => Ok(handled),
            Some(first) => Err(S3IntakeError { failed: failures.len(), first: first.clone() }),
        }
    }

    /// The job request for `record`; `None` when it names no new object of ours to process.
    ///
    /// # Errors
    /// A sentence saying why the record cannot be read.
    fn request(&self, record: &S3EventRecord) -> Result<Option<ProcessRequest>, String> {
        let name = record.event_name.as_deref().unwrap_or_default();
        if !name.trim_start_matches("s3:").starts_with("ObjectCreated:") {
            tracing::debug!(event = name, "ignoring an event that creates nothing");
            return Ok(None);
        }
        let bucket = record.s3.bucket.name.as_deref().filter(|b| !b.is_empty());
        let raw_key = record.s3.object.key.as_deref().filter(|k| !k.is_empty());
        let (Some(bucket), Some(raw_key)) = (bucket, raw_key) else {
            return Err(format!("a {name} record without a bucket name or an object key"));
        };
        let Some(key) = form_decode(raw_key) else {
            return Err(format!("{bucket}: the key {raw_key:?} does not decode to UTF-8"));
        };
        if self.intake.buckets.is_output(bucket, &key) {
            tracing::debug!(?key, "ignoring our own output");
            return Ok(None);
        }
        Ok(Some(ProcessRequest {
            source_bucket: bucket.to_owned(),
            source_key: key,
            destination_bucket: self.destination_bucket.clone(),
            renditions: None,
            sidecar: None,
            metadata: None,
        }))
    }
}

/// Serves S3 events until the execution environment ends.
///
/// # Errors
/// The runtime's, when it cannot talk to the Lambda Runtime API.
pub async fn run(handler: S3EventHandler) -> Result<(), lambda_runtime::Error> {
    lambda_runtime::run(service_fn(move |event: LambdaEvent<S3Event>| {
        let handler = handler.clone();
        async move {
            let handled = handler.handle(event.payload).await.map_err(lambda_runtime::Error::from)?;
            tracing::info!(started = handled.started.len(), skipped = handled.skipped, "event handled");
            Ok::<_, lambda_runtime::Error>(handled.started)
        }
    }))
    .await
}
