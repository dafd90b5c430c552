//! Prometheus metrics: one recorder per process (the API, the orchestrator and the workers
//! of a `serve`, or the workers of an `imgpipe worker`), fed through the `metrics` macros
//! wherever the work happens and read at `/metrics`. Every name is defined here, once.
//!
//! | metric | type | labels | recorded by |
//! | --- | --- | --- | --- |
//! | `imgpipe_http_requests_total` | counter | `route`, `status` | the API |
//! | `imgpipe_jobs_accepted_total` | counter | | the API |
//! | `imgpipe_workflow_steps_total` | counter | `state` (entered) | the embedded engine |
//! | `imgpipe_jobs_ended_total` | counter | `state` (`Success`/`Fail`), `error` (code) | the embedded engine |
//! | `imgpipe_dead_letters_total` | counter | `result` (`sent`/`failed`) | the embedded engine |
//! | `imgpipe_attempts_total` | counter | `outcome` (`succeeded`/`retryable`/`permanent`), `error` | workers |
//! | `imgpipe_stage_seconds` | histogram | `stage`: `queue_wait`, `download`, `decode`, `resize`, `encode`, `upload` | workers |
//! | `imgpipe_attempt_seconds` | histogram | | workers |
//! | `imgpipe_bytes_total` | counter | `direction` (`in`/`out`) | workers |
//! | `imgpipe_worker_slots`, `imgpipe_worker_slots_busy` | gauge | | workers |
//! | `imgpipe_heartbeats_total` | counter | `result` (`sent`/`failed`) | workers |
//! | `imgpipe_queue_messages` | gauge | `queue`, `state` | the API, at each scrape |
//! | `imgpipe_queue_oldest_age_seconds` | gauge | `queue` | the API, at each scrape (SQLite queues) |
//! | `imgpipe_aws_requests_total` | counter | `service`, `operation` | every AWS client (each HTTP attempt, retries too) |
//! | `imgpipe_aws_empty_receives_total` | counter | | SQS clients: receives that returned no message |

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Requests the API answered.
pub const HTTP_REQUESTS: &str = "imgpipe_http_requests_total";
/// Jobs the API accepted.
pub const JOBS_ACCEPTED: &str = "imgpipe_jobs_accepted_total";
/// Workflow states entered.
pub const WORKFLOW_STEPS: &str = "imgpipe_workflow_steps_total";
/// Jobs that reached `Success` or `Fail`.
pub const JOBS_ENDED: &str = "imgpipe_jobs_ended_total";
/// Dead letters sent, or not.
pub const DEAD_LETTERS: &str = "imgpipe_dead_letters_total";
/// Attempts a worker finished, by outcome.
pub const ATTEMPTS: &str = "imgpipe_attempts_total";
/// Time spent per stage of an attempt.
pub const STAGE_SECONDS: &str = "imgpipe_stage_seconds";
/// Time an attempt took, from delivery to report.
pub const ATTEMPT_SECONDS: &str = "imgpipe_attempt_seconds";
/// Bytes read (sources) and written (outputs).
pub const BYTES: &str = "imgpipe_bytes_total";
/// Jobs a worker process takes at once.
pub const WORKER_SLOTS: &str = "imgpipe_worker_slots";
/// Of those, the ones busy.
pub const WORKER_SLOTS_BUSY: &str = "imgpipe_worker_slots_busy";
/// Heartbeats a worker sent, or failed to.
pub const HEARTBEATS: &str = "imgpipe_heartbeats_total";
/// Messages per queue and state.
pub const QUEUE_MESSAGES: &str = "imgpipe_queue_messages";
/// Age of a queue's oldest message.
pub const QUEUE_OLDEST_AGE: &str = "imgpipe_queue_oldest_age_seconds";

/// AWS requests sent, by service and operation: what the bill counts.
pub const AWS_REQUESTS: &str = "imgpipe_aws_requests_total";
/// SQS receives that came back empty (idle long polls), counted in [`AWS_REQUESTS`] too.
pub const AWS_EMPTY_RECEIVES: &str = "imgpipe_aws_empty_receives_total";
/// DynamoDB capacity units the job store consumed, by kind (`read`, `write`) and operation: what it bills.
pub const DYNAMODB_UNITS: &str = "imgpipe_dynamodb_units_total";

/// Buckets of every `_seconds` histogram: 5 ms to 5 min.
const SECONDS_BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs this process's recorder (once; later calls return the same handle). Metrics
/// recorded before it are not kept, so a process installs it as it starts.
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new();
        // The matcher and buckets are constants: setting them cannot fail.
        let builder = builder
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was installed elsewhere; /metrics shows only this one's");
        }
        describe();
        handle
    })
}

/// The metrics in the Prometheus text format (0.0.4).
pub fn render() -> String {
    install().render()
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(HTTP_REQUESTS, "Requests the API answered, by route and status.");
    describe_counter!(JOBS_ACCEPTED, "Jobs accepted by this API since it started.");
    describe_counter!(WORKFLOW_STEPS, "Workflow states entered, by state.");
    describe_counter!(JOBS_ENDED, "Jobs that ended, by final state and error code.");
    describe_counter!(DEAD_LETTERS, "Dead letters sent to the dead-letter queue, or that could not be sent yet.");
    describe_counter!(ATTEMPTS, "Attempts workers finished, by outcome and error code.");
    describe_histogram!(STAGE_SECONDS, metrics::Unit::Seconds, "Time per stage of an attempt.");
    describe_histogram!(ATTEMPT_SECONDS, metrics::Unit::Seconds, "Time an attempt took, delivery to report.");
    describe_counter!(BYTES, "Bytes of sources read and outputs written.");
    describe_gauge!(WORKER_SLOTS, "Jobs this process's workers hold at once (two per render slot).");
    describe_gauge!(WORKER_SLOTS_BUSY, "Worker slots busy with a job.");
    describe_counter!(HEARTBEATS, "Heartbeats sent to the orchestrator, or that failed.");
    describe_gauge!(QUEUE_MESSAGES, "Messages in each queue, by state.");
    describe_gauge!(QUEUE_OLDEST_AGE, "How long the oldest message of a queue has waited.");
    describe_counter!(AWS_REQUESTS, "AWS requests sent (each attempt, retries too), by service and operation.");
    describe_counter!(AWS_EMPTY_RECEIVES, "SQS receives that returned no message.");
    describe_counter!(
        DYNAMODB_UNITS,
        "DynamoDB capacity units the job store consumed, by kind (read, write) and operation."
    );
}

/// Records `seconds` for `stage` of an attempt.
pub fn stage(stage: &'static str, seconds: f64) {
    metrics::histogram!(STAGE_SECONDS, "stage" => stage).record(seconds);
}
