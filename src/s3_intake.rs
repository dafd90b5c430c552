//! Jobs from S3: ObjectCreated notifications delivered to an SQS queue, parsed leniently,
//! one job per created object. Events for the outputs of the same bucket are ignored, so
//! writing renditions next to the originals cannot trigger itself.

use std::sync::Arc;
use std::time::Duration;

use pipeline_core::queue::Queue;
use producer::intake::{Intake, ProcessRequest};
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
                        if self.handle(&m.body).await {
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

    /// Starts a job per created object; whether the message is done with (false: keep it
    /// for another try, because the orchestrator or storage failed).
    pub async fn handle(&self, body: &str) -> bool {
        let records = match s3_event::parse(body) {
            Ok(records) => records,
            Err(e) => {
                tracing::error!(error = %e, "dropping a message that is not an S3 notification");
                return true;
            }
        };
        let mut done = true;
        for record in records {
            if self.intake.buckets.is_output(&record.bucket, &record.key) {
                tracing::debug!(key = ?record.key, "ignoring our own output");
                continue;
            }
            let request = ProcessRequest {
                source_bucket: record.bucket.clone(),
                source_key: record.key.clone(),
                destination_bucket: self.destination_bucket.clone(),
                renditions: None,
            };
            match self.intake.submit(request).await {
                Ok(_) => {}
                Err(e) if !e.is_retryable() => {
                    tracing::warn!(bucket = ?record.bucket, key = ?record.key, error = %e, "not starting a job");
                }
                Err(e) => {
                    tracing::warn!(key = ?record.key, error = %e, "could not start the job; will retry");
                    done = false;
                }
            }
        }
        done
    }
}
