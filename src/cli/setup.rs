//! `imgpipe setup`: make the buckets and queues a deployment needs, so `serve` and
//! `worker` find them — folders and the SQLite file locally; on AWS the S3 buckets, the
//! jobs queue with its redrive policy to the DLQ, the reports queue, and optionally the
//! S3 notification queue wired to the original bucket. Safe to run again.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use pipeline_aws::AwsBackends;
use pipeline_aws::setup::{self, QueueSettings};
use pipeline_core::blob::local::LocalBlobStore;

use crate::backends::BackendArgs;
use crate::config::{DataArgs, parse_duration};

/// Arguments of `imgpipe setup`.
#[derive(clap::Args, Debug)]
pub struct SetupArgs {
    /// Buckets to create.
    #[arg(long, env = "IMGPIPE_ALLOWED_BUCKETS", value_delimiter = ',', default_value = "original,resized")]
    buckets: Vec<String>,
    /// Deliveries of a job message before SQS moves it to the DLQ.
    #[arg(long, default_value_t = 5)]
    max_receive_count: u32,
    /// Default visibility timeout of the SQS queues.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    visibility_timeout: Duration,
    /// Also create this SQS queue and send the source bucket's ObjectCreated events to it.
    #[arg(long, env = "IMGPIPE_S3_EVENTS_QUEUE")]
    s3_events_queue: Option<String>,
    /// The bucket whose uploads become jobs.
    #[arg(long, env = "IMGPIPE_SOURCE_BUCKET", default_value = "original")]
    source_bucket: String,
    /// With `--orchestrator stepfunctions`: the name of the state machine to create or update.
    #[arg(long, default_value = "ImageProcessingWorkflow")]
    state_machine_name: String,
    /// With `--orchestrator stepfunctions`: the role the state machine assumes (may send to the jobs queue and the DLQ).
    #[arg(long, env = "IMGPIPE_STATE_MACHINE_ROLE_ARN")]
    role_arn: Option<String>,
    #[command(flatten)]
    retry: crate::config::RetryArgs,
    /// With `--orchestrator stepfunctions`: a worker silent this long is lost (HeartbeatSeconds).
    #[arg(long, env = "IMGPIPE_HEARTBEAT_TIMEOUT", default_value = "2m", value_parser = parse_duration)]
    heartbeat_timeout: Duration,
    /// With `--orchestrator stepfunctions`: the longest one attempt may take (TimeoutSeconds).
    #[arg(long, env = "IMGPIPE_TASK_TIMEOUT", default_value = "15m", value_parser = parse_duration)]
    task_timeout: Duration,
}

pub(crate) async fn run(data: &DataArgs, backends: &BackendArgs, args: SetupArgs) -> anyhow::Result<ExitCode> {
    let aws = if backends.uses_aws() { Some(AwsBackends::from_env().await) } else { None };
    match &aws {
        Some(aws) if backends.blob_store == "s3" => {
            let s3 = aws.s3();
            for bucket in &args.buckets {
                s3.create_bucket(bucket).await.with_context(|| format!("cannot create bucket {bucket}"))?;
                println!("bucket s3://{bucket}");
            }
        }
        _ => {
            let local = LocalBlobStore::new(&data.data_dir);
            for bucket in &args.buckets {
                local.create_bucket(bucket)?;
                println!("bucket {}", local.bucket_dir(bucket).display());
            }
        }
    }
    match &aws {
        Some(aws) if backends.queue_backend == "sqs" => {
            let sqs = &aws.clients().sqs;
            let settings = QueueSettings { visibility_timeout: args.visibility_timeout, ..QueueSettings::default() };
            let (jobs, dlq) = setup::create_queue_with_dlq(
                sqs,
                &backends.jobs_queue,
                &backends.dead_letter_queue,
                args.max_receive_count,
                &settings,
            )
            .await?;
            println!("queue {} (to {} after {} receives)", jobs.url(), dlq.url(), args.max_receive_count);
            if backends.step_functions() {
                let role = args.role_arn.as_deref().context("--orchestrator stepfunctions needs --role-arn")?;
                let options = protocol::asl::AslOptions {
                    jobs_queue_url: jobs.url().to_owned(),
                    dead_letter_queue_url: dlq.url().to_owned(),
                    retry: args.retry.policy(),
                    heartbeat: args.heartbeat_timeout,
                    timeout: args.task_timeout,
                };
                let client = pipeline_aws::sfn::client(aws.config());
                let arn =
                    pipeline_aws::sfn::setup::create_state_machine(&client, &args.state_machine_name, &options, role)
                        .await?;
                println!("state machine {arn}");
            } else {
                let reports = setup::create_queue(sqs, &backends.reports_queue, &settings).await?;
                println!("queue {}", reports.url());
            }
        }
        _ => {
            crate::embedded::Embedded::open_with(&data.data_dir, backends, protocol::workflow::Policy::default(), 5)
                .await?;
            println!("queues in {}", data.data_dir.join("imgpipe.db").display());
        }
    }
    if let Some(name) = &args.s3_events_queue {
        let Some(aws) = aws.as_ref().filter(|_| backends.blob_store == "s3") else {
            anyhow::bail!("--s3-events-queue needs --blob-store s3");
        };
        let settings = QueueSettings { visibility_timeout: args.visibility_timeout, ..QueueSettings::default() };
        let events = setup::create_queue(&aws.clients().sqs, name, &settings).await?;
        // Events for our own outputs (resized/ in the same bucket) are ignored by the intake.
        setup::notify_object_created(&aws.s3(), &args.source_bucket, &events, None).await?;
        println!("s3://{} ObjectCreated -> {}", args.source_bucket, events.url());
    }
    Ok(ExitCode::SUCCESS)
}
