//! Jobs from S3: ObjectCreated notifications delivered to an SQS queue, parsed leniently,
//! one job per created object. Events for the outputs of the same bucket are ignored, so
//! writing renditions next to the originals cannot trigger itself.

use std::sync::Arc;
use std::time::Duration;

use pipeline_core::queue::Queue;
use producer::intake::{Intake, ProcessRequest, Taken};
use protocol::s3_event;
use tokio_util::sync::CancellationToken;

/// The S3 notification consumer.
#[derive(Clone, Debug)]
pub struct S3EventIntake {
    /// The queue S3 notifies.
    pub events: Arc<dyn Queue>,
    /// Starts the jobs.
    pub intake: Intake,
    /// Where renditions go.
    pub destination_bucket: String,
}

/// What became of a notification message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Handled {
    /// Every record is started, skipped or refused for good: delete the message.
    Done,
    /// A job could not be started for now: keep the message for another try. Records
    /// started already are recognised then (a job's id follows from its source's version).
    Retry,
    /// The message, or a record of it, cannot be read: keep it, so the queue's redrive
    /// policy moves it to the events queue's DLQ for an operator (its readable records were
    /// started meanwhile).
    Unreadable(String),
}

/// Receives after which an unreadable message is dropped, for an events queue that has no
/// DLQ to move it to (`imgpipe setup` gives it one that takes it after fewer).
const MAX_UNREADABLE_RECEIVES: u32 = 20;

impl S3EventIntake {
    /// Consumes notifications until `shutdown` is cancelled.
    pub async fn run(self, shutdown: CancellationToken) {
        tracing::info!(queue = self.events.name(), "taking jobs from S3 notifications");
        while !shutdown.is_cancelled() {
            // Not raced against shutdown: what arrives is handled, nothing is left hidden.
            let received = self.events.receive(10, Duration::from_secs(5), Duration::from_secs(60)).await;
            match received {
                Ok(messages) => {
                    for m in messages {
                        let delete = match self.handle(&m.body).await {
                            Handled::Done => true,
                            Handled::Retry => false,
                            Handled::Unreadable(why) if m.receive_count >= MAX_UNREADABLE_RECEIVES => {
                                tracing::error!(message_id = %m.message_id, %why, receives = m.receive_count,
                                    "dropping an unreadable notification: the events queue has no DLQ to take it");
                                true
                            }
                            Handled::Unreadable(why) => {
                                tracing::error!(message_id = %m.message_id, %why,
                                    "an unreadable notification stays on the queue for its DLQ");
                                false
                            }
                        };
                        if delete {
                            if let Err(e) = self.events.delete(&m.receipt).await {
                                tracing::warn!(error = %e, "could not delete a handled notification");
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "receiving S3 notifications failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// Starts a job per created object the message names, record by record.
    pub async fn handle(&self, body: &str) -> Handled {
        let parsed = match s3_event::parse_records(body) {
            Ok(parsed) => parsed,
            Err(e) => return Handled::Unreadable(e.to_string()),
        };
        let mut retry = false;
        for record in parsed.created {
            if self.intake.buckets.is_output(&record.bucket, &record.key) {
                tracing::debug!(key = ?record.key, "ignoring our own output");
                continue;
            }
            let request = ProcessRequest {
                source_bucket: record.bucket.clone(),
                source_key: record.key.clone(),
                destination_bucket: self.destination_bucket.clone(),
                renditions: None,
                sidecar: None,
                metadata: None,
            };
            match self.intake.take(request).await {
                Ok(Taken::Started(_) | Taken::Refused(..)) => {}
                Ok(Taken::Skipped(e)) => {
                    tracing::info!(bucket = ?record.bucket, key = ?record.key, error = %e, "not starting a job");
                }
                Err(e) => {
                    tracing::warn!(key = ?record.key, error = %e, "could not start the job; will retry");
                    retry = true;
                }
            }
        }
        match parsed.refused.first() {
            Some(e) => Handled::Unreadable(format!("{} unreadable record(s), first: {e}", parsed.refused.len())),
            None if retry => Handled::Retry,
            None => Handled::Done,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pipeline_core::blob::PutOptions;
    use protocol::intake::Buckets;

    fn event(keys: &[&str]) -> String {
        let records: Vec<_> = keys
            .iter()
            .map(|k| {
                serde_json::json!({ "eventName": "ObjectCreated:Put",
                    "s3": { "bucket": { "name": "original" }, "object": { "key": k } } })
            })
            .collect();
        serde_json::json!({ "Records": records }).to_string()
    }

    #[tokio::test]
    async fn records_are_handled_one_by_one_and_an_unreadable_one_keeps_the_message_for_the_dlq() {
        let dir = tempfile::TempDir::new().expect("dir");
        let stack = wiring::Deployment::open(dir.path(), protocol::workflow::Policy::default(), 5).await.expect("open");
        let blobs = stack.blobs();
        for key in ["a.jpg", "b.jpg"] {
            blobs.put("original", key, bytes::Bytes::from_static(b"x"), &PutOptions::default()).await.expect("put");
        }
        let intake = Intake {
            orchestrator: Arc::clone(&stack.orchestrator),
            blobs,
            buckets: Buckets::new(&["original"], &["resized"]),
            sidecar: false,
            metadata: protocol::metadata::MetadataPolicy::Strip,
        };
        let s3 =
            S3EventIntake { events: Arc::clone(&stack.backends.jobs), intake, destination_bucket: "resized".into() };

        // A key that is not UTF-8 between two good ones: both good ones start, the message stays.
        let handled = s3.handle(&event(&["a.jpg", "%FF", "b.jpg"])).await;
        assert!(matches!(&handled, Handled::Unreadable(why) if why.contains("UTF-8")), "{handled:?}");
        let started: Vec<String> =
            stack.orchestrator.list(10).await.expect("list").into_iter().map(|j| j.source_key).collect();
        assert_eq!(started.len(), 2, "{started:?}");
        // Delivered again (before the DLQ takes it): the same two jobs, no more.
        assert!(matches!(s3.handle(&event(&["a.jpg", "%FF", "b.jpg"])).await, Handled::Unreadable(_)));
        assert_eq!(stack.orchestrator.list(10).await.expect("list").len(), 2, "no duplicate jobs");
        // A missing source is refused for good; not JSON at all is unreadable.
        assert_eq!(s3.handle(&event(&["missing.jpg", "a.jpg"])).await, Handled::Done);
        assert!(matches!(s3.handle("not json").await, Handled::Unreadable(_)));
    }
}
