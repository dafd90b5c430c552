//! A Step Functions rig on the emulator: buckets, the jobs queue and its DLQ, the state
//! machine generated from the workflow with short deadlines, the orchestrator, and a
//! real `worker::Runner` reporting with `SfnReporter`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_sfn::config::interceptors::BeforeTransmitInterceptorContextMut;
use aws_sdk_sfn::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_sfn::error::BoxError;
use bytes::Bytes;
use pipeline_aws::setup::{self, QueueSettings};
use pipeline_aws::sfn::{SfnOrchestrator, SfnReporter, setup as sfn_setup};
use pipeline_aws::{AwsBackends, S3BlobStore, SqsQueue};
use pipeline_core::blob::{BlobStore, PutOptions};
use pipeline_core::orchestration::Orchestrator;
use pipeline_core::queue::{Queue, Received};
use protocol::asl::AslOptions;
use protocol::job::JobRecord;
use protocol::message::Job;
use protocol::rendition::Rendition;
use protocol::workflow::{Jitter, Policy, RetryPolicy};
use tokio_util::sync::CancellationToken;
use wiring::functions::{self, ProducerFunction};
use worker::faults::Faults;
use worker::image::Limits;
use worker::{RenderSlots, Runner, RunnerConfig, WorkerDeps};

use crate::emulator::{aws, unique};

/// A worker that says nothing for this long is lost.
pub const HEARTBEAT: Duration = Duration::from_secs(2);
/// The longest a test waits for an execution to get somewhere.
pub const PATIENCE: Duration = Duration::from_secs(40);

/// Puts each rig's Step Functions calls in an account of its own. moto 5.2.1 fails every
/// StartExecution (HTTP 500, "cannot pickle '_thread.RLock'") once an execution has run in
/// the same account and region (getmoto/moto#10077, fixed in 5.2.5); its SQS integration
/// still sends to the default account, where the queues are.
#[derive(Debug)]
struct Account(String);

impl Intercept for Account {
    fn name(&self) -> &'static str {
        "moto-account"
    }

    fn modify_before_signing(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        context.request_mut().headers_mut().insert("x-moto-account-id", self.0.clone());
        Ok(())
    }
}

/// Everything one scenario needs, its names unique on the shared emulator.
pub struct Rig {
    /// The emulator's clients (Step Functions through `sfn`).
    pub aws: AwsBackends,
    /// Step Functions, as this rig's own account.
    pub sfn: aws_sdk_sfn::Client,
    /// The orchestrator on the rig's state machine.
    pub orchestrator: SfnOrchestrator,
    /// The S3 store.
    pub store: S3BlobStore,
    /// The originals bucket.
    pub originals: String,
    /// The renditions bucket.
    pub resized: String,
    /// The jobs queue.
    pub jobs: SqsQueue,
    /// The dead-letter queue.
    pub dlq: SqsQueue,
}

impl Rig {
    /// A fresh rig: two buckets, queues, and a state machine with 2 s heartbeats and up to
    /// 3 attempts 1 s apart.
    pub async fn new(prefix: &str) -> Self {
        Self::with_heartbeat(prefix, HEARTBEAT).await
    }

    /// A fresh rig whose state machine declares a worker lost after `heartbeat` of silence
    /// (under 10 s: the task timeout is 20 s less it).
    pub async fn with_heartbeat(prefix: &str, heartbeat: Duration) -> Self {
        let aws = aws().await;
        let account = format!("{:012}", uuid::Uuid::new_v4().as_u128() % 1_000_000_000_000);
        let conf = aws_sdk_sfn::config::Builder::from(aws.config().sdk()).interceptor(Account(account)).build();
        let sfn = aws_sdk_sfn::Client::from_conf(conf);
        let store = aws.s3();
        let (originals, resized) = (unique(&format!("{prefix}-orig")), unique(&format!("{prefix}-out")));
        store.create_bucket(&originals).await.unwrap();
        store.create_bucket(&resized).await.unwrap();
        let settings = QueueSettings { visibility_timeout: Duration::from_secs(10), ..QueueSettings::default() };
        let (jobs, dlq) = setup::create_queue_with_dlq(
            &aws.clients().sqs,
            &unique(&format!("{prefix}-jobs")),
            &unique(&format!("{prefix}-dlq")),
            5,
            &settings,
        )
        .await
        .unwrap();
        let options = AslOptions {
            jobs_queue_url: jobs.url().to_owned(),
            dead_letter_queue_url: dlq.url().to_owned(),
            policy: Policy {
                retry: RetryPolicy {
                    max_attempts: 3,
                    interval: Duration::from_secs(1),
                    backoff_rate: 1.0,
                    max_delay: Duration::from_secs(1),
                    jitter: Jitter::Full,
                },
                heartbeat_timeout: heartbeat,
                task_timeout: Duration::from_secs(20) - heartbeat,
                ..Policy::default()
            },
        };
        let name = unique(&format!("{prefix}-workflow"));
        let arn = sfn_setup::create_state_machine(&sfn, &name, &options, sfn_setup::EMULATOR_ROLE_ARN).await.unwrap();
        let again = sfn_setup::create_state_machine(&sfn, &name, &options, sfn_setup::EMULATOR_ROLE_ARN).await;
        assert_eq!(again.unwrap(), arn, "setting up twice updates the same state machine");
        let orchestrator = SfnOrchestrator::new(sfn.clone(), arn);
        Self { aws: aws.with_sfn(sfn.clone()), sfn, orchestrator, store, originals, resized, jobs, dlq }
    }

    /// The producers' settings as the Lambda functions read them from their variables,
    /// on this rig's buckets and `state_machine_arn`.
    pub fn producer_settings(&self, state_machine_arn: &str) -> ProducerFunction {
        let vars = [
            ("IMGPIPE_STATE_MACHINE_ARN", state_machine_arn),
            ("IMGPIPE_READ_BUCKETS", &self.originals),
            ("IMGPIPE_WRITE_BUCKETS", &self.resized),
            ("IMGPIPE_DESTINATION_BUCKET", &self.resized),
        ];
        functions::read(|name| vars.iter().find(|(n, _)| *n == name).map(|(_, v)| (*v).to_owned())).unwrap()
    }

    /// Puts an original.
    pub async fn put(&self, key: &str, body: impl Into<Bytes>) {
        self.store.put(&self.originals, key, body.into(), &PutOptions::default()).await.unwrap();
    }

    /// A job for `key` with the default thumbnail.
    pub fn job(&self, key: &str) -> Job {
        Job::new(&self.originals, key, &self.resized, vec![Rendition::thumbnail()])
    }

    /// Starts a real worker on the jobs queue; cancel the token to stop it.
    pub fn worker(&self, faults: Faults) -> (CancellationToken, tokio::task::JoinHandle<()>) {
        let deps = WorkerDeps {
            blobs: self.aws.blob_store(),
            limits: Limits::default(),
            budget: worker::image::MemoryBudget::unlimited(),
            cache_control: None,
            faults,
            renders: RenderSlots::new(2),
        };
        let runner = Runner {
            jobs: Arc::new(self.jobs.clone()),
            dead_letters: Arc::new(self.dlq.clone()),
            reporter: Arc::new(SfnReporter::new(self.sfn.clone())),
            deps: Arc::new(deps),
            config: RunnerConfig {
                concurrency: 2,
                visibility: Duration::from_secs(10),
                heartbeat_every: Duration::from_millis(700),
                poll_wait: Duration::from_secs(1),
                drain_deadline: Duration::from_secs(5),
                max_receive_count: 5,
            },
        };
        let stop = CancellationToken::new();
        (stop.clone(), tokio::spawn(runner.run(stop)))
    }

    /// Receives the next job message as a worker would, hidden for `visibility`.
    pub async fn take_message(&self, visibility: Duration) -> (Received, Job) {
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            if let Some(m) = self.jobs.receive(1, Duration::from_secs(1), visibility).await.unwrap().pop() {
                let job = Job::from_json(&m.body).unwrap();
                return (m, job);
            }
        }
        panic!("no job message arrived");
    }

    /// Polls the job until `done` holds, and returns its record.
    pub async fn wait_for(&self, job_id: &str, what: &str, done: impl Fn(&JobRecord) -> bool) -> JobRecord {
        let deadline = Instant::now() + PATIENCE;
        let mut last = None;
        while Instant::now() < deadline {
            if let Some(record) = self.orchestrator.get(job_id).await.unwrap() {
                if done(&record) {
                    return record;
                }
                last = Some(record);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        panic!("job {job_id} never got {what}; last seen: {last:#?}");
    }

    /// Waits until the jobs queue holds nothing, visible or in flight.
    pub async fn wait_until_jobs_queue_empty(&self) {
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            let stats = self.jobs.stats().await.unwrap();
            if stats.visible + stats.in_flight + stats.delayed == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        panic!("the jobs queue never emptied: {:?}", self.jobs.stats().await.unwrap());
    }
}

/// The states a record went through, in order.
pub fn states(record: &JobRecord) -> Vec<&str> {
    record.history.iter().map(|h| h.state.as_str()).collect()
}
