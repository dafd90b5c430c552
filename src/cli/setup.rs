//! `imgpipe setup`: make the buckets and queues a deployment needs, so `serve` and
//! `worker` find them — folders and the SQLite file locally; on AWS the S3 buckets, the
//! jobs queue with its redrive policy to the DLQ, the reports queue, and optionally the
//! S3 notification queue wired to the original bucket. Safe to run again.

use std::process::ExitCode;

use anyhow::Context;
use pipeline_aws::AwsBackends;
use pipeline_aws::setup::{self, QueueSettings};
use pipeline_core::blob::local::LocalBlobStore;

use wiring::Deployment;
use wiring::settings::{BackendArgs, BlobStoreKind, DataArgs, IntakeArgs, QueueKind, Span, WorkflowArgs};

/// Arguments of `imgpipe setup`.
#[derive(clap::Args, Debug)]
pub struct SetupArgs {
    /// Buckets to create, and where uploads become jobs.
    #[command(flatten)]
    intake: IntakeArgs,
    /// Deliveries of a job message before a worker reports it as poison; SQS moves it to
    /// the DLQ one delivery later.
    #[arg(long, env = "IMGPIPE_MAX_RECEIVE_COUNT", default_value_t = worker::RunnerConfig::default().max_receive_count)]
    max_receive_count: u32,
    /// Default visibility timeout of the SQS queues.
    #[arg(long, env = "IMGPIPE_VISIBILITY_TIMEOUT", default_value_t = Span(worker::RunnerConfig::default().visibility))]
    visibility_timeout: Span,
    /// Also create this SQS queue and send the source bucket's ObjectCreated events to it.
    #[arg(long, env = "IMGPIPE_S3_EVENTS_QUEUE")]
    s3_events_queue: Option<String>,
    /// With `--orchestrator stepfunctions`: the name of the state machine to create or update.
    #[arg(long, default_value = protocol::workflow::WORKFLOW_NAME)]
    state_machine_name: String,
    /// With `--orchestrator stepfunctions`: the role the state machine assumes (may send to the jobs queue and the DLQ).
    #[arg(long, env = "IMGPIPE_STATE_MACHINE_ROLE_ARN")]
    role_arn: Option<String>,
    /// With `--orchestrator stepfunctions`: the retries and timeouts of the state machine.
    #[command(flatten)]
    workflow: WorkflowArgs,
}

pub(crate) async fn run(data: &DataArgs, backends: &BackendArgs, args: SetupArgs) -> anyhow::Result<ExitCode> {
    let aws = if backends.uses_aws() { Some(AwsBackends::from_env().await) } else { None };
    match &aws {
        Some(aws) if backends.blob_store == BlobStoreKind::S3 => {
            let s3 = aws.s3();
            for bucket in &args.intake.buckets()?.all() {
                s3.create_bucket(bucket).await.with_context(|| format!("cannot create bucket {bucket}"))?;
                println!("bucket s3://{bucket}");
            }
        }
        _ => {
            let local = LocalBlobStore::new(&data.data_dir);
            for bucket in &args.intake.buckets()?.all() {
                local.create_bucket(bucket)?;
                println!("bucket {}", local.bucket_dir(bucket).display());
            }
        }
    }
    match &aws {
        Some(aws) if backends.queue_backend == QueueKind::Sqs => {
            let sqs = &aws.clients().sqs;
            let settings = QueueSettings { visibility_timeout: args.visibility_timeout.0, ..QueueSettings::default() };
            let moved_after = args.max_receive_count.saturating_add(1);
            let (jobs, dlq) = setup::create_queue_with_dlq(
                sqs,
                &backends.jobs_queue,
                &backends.dead_letter_queue,
                moved_after,
                &settings,
            )
            .await?;
            println!("queue {} (to {} after {moved_after} receives)", jobs.url(), dlq.url());
            if backends.step_functions() {
                let role = args.role_arn.as_deref().context("--orchestrator stepfunctions needs --role-arn")?;
                let options = protocol::asl::AslOptions {
                    jobs_queue_url: jobs.url().to_owned(),
                    dead_letter_queue_url: dlq.url().to_owned(),
                    policy: args.workflow.policy(),
                };
                let arn =
                    pipeline_aws::sfn::setup::create_state_machine(aws.sfn(), &args.state_machine_name, &options, role)
                        .await?;
                println!("state machine {arn}");
            } else {
                let reports = setup::create_queue(sqs, &backends.reports_queue, &settings).await?;
                println!("queue {}", reports.url());
            }
        }
        _ => {
            Deployment::open_with(&data.data_dir, backends, args.workflow.policy(), args.max_receive_count).await?;
            println!("queues in {}", data.data_dir.join("imgpipe.db").display());
        }
    }
    if backends.dynamodb_jobs() {
        let aws = aws.as_ref().context("DynamoDB needs the AWS settings")?;
        let store = pipeline_aws::DynamoJobs::new(aws.clients().dynamodb.clone(), &backends.jobs_table);
        store.create_table().await.with_context(|| format!("cannot create table {}", backends.jobs_table))?;
        println!("table {} (the workflow engine's jobs)", backends.jobs_table);
    }
    if let Some(name) = &args.s3_events_queue {
        let Some(aws) = aws.as_ref().filter(|_| backends.blob_store == BlobStoreKind::S3) else {
            anyhow::bail!("--s3-events-queue needs --blob-store s3");
        };
        let settings = QueueSettings { visibility_timeout: args.visibility_timeout.0, ..QueueSettings::default() };
        // Its own DLQ: a notification that cannot be read is kept there for an operator.
        let dlq_name = format!("{name}-dlq");
        let (events, events_dlq) =
            setup::create_queue_with_dlq(&aws.clients().sqs, name, &dlq_name, args.max_receive_count, &settings)
                .await?;
        // Events for our own outputs (resized/ in the same bucket) are ignored by the intake.
        setup::notify_object_created(&aws.s3(), &args.intake.source_bucket, &events, None).await?;
        println!(
            "s3://{} ObjectCreated -> {} (dead letters: {})",
            args.intake.source_bucket,
            events.url(),
            events_dlq.url()
        );
    }
    Ok(ExitCode::SUCCESS)
}
