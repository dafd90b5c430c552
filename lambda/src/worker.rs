//! The worker on SQS events: each record is read and handled on its own
//! ([`SqsWorker::handle_record`]) and the batch answers with exactly the ids that should
//! come back ([`SqsBatchResponse`]), so one bad message never fails its batch.
//!
//! What a record becomes:
//! - a job, processed and reported by [`Attempts::run`] (the same attempt the container
//!   runner makes): reported, or already resolved, it is done and Lambda deletes it; a
//!   permanent job failure is *reported* too (the workflow dead-letters it), so it is done;
//! - a report that could not be delivered: a batch item failure,
//!   redelivered after the visibility timeout (the queue's redrive policy is the backstop);
//! - a body that is not a job: sent to the dead-letter queue at once, as the long-poll
//!   runner does, because retrying cannot make it readable; only if that send fails is it
//!   a batch item failure, left to the redrive policy.

use std::sync::Arc;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use lambda_runtime::{LambdaEvent, service_fn};
use pipeline_aws::AwsBackends;
use pipeline_aws::sfn::{RoutingReporter, SfnReporter};
use pipeline_core::report::{QueueReporter, Reporter};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use wiring::WorkerSettings;
use wiring::functions::WorkerFunction;
use wiring::settings::OrchestratorKind;
use worker::attempt::{Attempts, Delivery, Disposition, Hold};
use worker::process::JOBS_PER_RENDER;

/// What became of one record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordOutcome {
    /// Finished with: Lambda deletes the message.
    Done,
    /// Hand the message back for another delivery, for this reason.
    Retry(String),
}

/// What the handler needs, built once per execution environment and cloned per record.
#[derive(Clone, Debug)]
pub struct SqsWorker {
    /// The attempt logic every worker shares.
    pub attempts: Attempts,
    /// Render slots: records are held [`JOBS_PER_RENDER`] times as many at once, so one
    /// record's download, writes and report overlap another's render.
    pub concurrency: usize,
    /// Cancelled when the execution environment shuts down: records not yet started are
    /// handed back.
    pub shutdown: CancellationToken,
}

impl SqsWorker {
    /// Handles every record of `event`, [`JOBS_PER_RENDER`] × [`Self::concurrency`] at a time, and
    /// answers with the ids of those to redeliver, in the order they came.
    pub async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        let permits = Arc::new(Semaphore::new(self.concurrency.max(1) * JOBS_PER_RENDER));
        let mut tasks = Vec::with_capacity(event.records.len());
        for record in event.records {
            let (this, permits) = (self.clone(), permits.clone());
            let id = record.message_id.clone().unwrap_or_default();
            tasks.push((
                id,
                tokio::spawn(async move {
                    let _permit = permits.acquire_owned().await;
                    this.handle_record(&record).await
                }),
            ));
        }
        let mut response = SqsBatchResponse::default();
        for (id, task) in tasks {
            let outcome = task.await.unwrap_or_else(|e| RecordOutcome::Retry(format!("the handler crashed: {e}")));
            if let RecordOutcome::Retry(reason) = outcome {
                // An empty id makes Lambda retry the whole batch, the safe side for a record
                // it cannot name (SQS always sends one).
                tracing::warn!(message_id = %id, %reason, "handing the message back");
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = id;
                response.batch_item_failures.push(failure);
            }
        }
        response
    }

    /// Handles one record through [`Attempts::run`]: the per-message work, apart from the
    /// batch glue. The service holds the message while it runs, so there is no lease to
    /// renew and no hard stop; an undeliverable report is handed back at once.
    pub async fn handle_record(&self, record: &SqsMessage) -> RecordOutcome {
        if self.shutdown.is_cancelled() {
            return RecordOutcome::Retry("shutting down before it started".into());
        }
        let delivery = Delivery {
            message_id: record.message_id.as_deref().unwrap_or_default(),
            body: record.body.as_deref().unwrap_or_default(),
            receive_count: record.attributes.get("ApproximateReceiveCount").and_then(|n| n.parse::<u32>().ok()),
            sent_at_ms: record.attributes.get("SentTimestamp").and_then(|n| n.parse::<u64>().ok()),
        };
        match self.attempts.run(delivery, Hold::default()).await {
            Disposition::Delete => RecordOutcome::Done,
            Disposition::Release { reason, .. } => RecordOutcome::Retry(reason),
        }
    }
}

/// Builds the worker from its settings and the clients built in `main`: jobs with a task
/// token report to Step Functions; jobs without one to the reports queue when there is
/// one, else they cannot be reported and come back until the redrive policy moves them.
///
/// # Errors
/// Settings that would let jobs run twice, or a queue that cannot be resolved.
pub async fn build(settings: &WorkerFunction, aws: &AwsBackends) -> anyhow::Result<SqsWorker> {
    if settings.orchestrator.orchestrator == OrchestratorKind::Embedded && settings.reports_queue.is_none() {
        anyhow::bail!("IMGPIPE_ORCHESTRATOR=embedded needs IMGPIPE_REPORTS_QUEUE, where the workers report");
    }
    let step_functions: Arc<dyn Reporter> = Arc::new(SfnReporter::new(aws.sfn().clone()));
    let otherwise: Arc<dyn Reporter> = match &settings.reports_queue {
        Some(name) => Arc::new(QueueReporter::new(aws.queue(name).await?)),
        None => step_functions.clone(),
    };
    let worker = WorkerSettings::read(&settings.worker)?;
    let attempts = Attempts {
        deps: Arc::new(worker.deps(aws.blob_store())),
        reporter: Arc::new(RoutingReporter::new(step_functions, otherwise)),
        dead_letters: aws.queue(&settings.dead_letter_queue).await?,
        heartbeat_every: worker.runner.heartbeat_every,
        max_receive_count: worker.runner.max_receive_count,
    };
    Ok(SqsWorker { attempts, concurrency: worker.runner.concurrency.max(1), shutdown: CancellationToken::new() })
}

/// Serves SQS events until the execution environment ends. The runtime's graceful-shutdown
/// hook (SIGTERM, delivered because it registers a no-op extension) cancels
/// [`SqsWorker::shutdown`].
///
/// # Errors
/// The runtime's, when it cannot talk to the Lambda Runtime API.
pub async fn run(worker: SqsWorker) -> Result<(), lambda_runtime::Error> {
    let shutdown = worker.shutdown.clone();
    lambda_runtime::spawn_graceful_shutdown_handler(move || async move {
        tracing::info!("execution environment shutting down");
        shutdown.cancel();
    })
    .await;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let worker = worker.clone();
        async move { Ok::<_, std::convert::Infallible>(worker.handle(event.payload).await) }
    }))
    .await
}
