//! The command line: parse, set up logging and the runtime once, dispatch.

mod dlq;
mod jobs;
pub mod process;
mod setup;
mod submit;

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use worker::RunnerConfig;

use crate::backends::BackendArgs;
use crate::config::{DataArgs, EngineArgs, WorkerArgs};
use crate::embedded::Embedded;
use crate::serve::{ServeOptions, Server, cancel_on_signals};

/// Resize, orient and strip uploaded images — on one machine, or on AWS.
#[derive(Parser, Debug)]
#[command(name = "imgpipe", version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    backends: BackendArgs,
    /// Log filter (`info`, `debug`, `imgpipe=debug,worker=trace`, ...).
    #[arg(long, env = "IMGPIPE_LOG", default_value = "info", global = true)]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run everything on one machine: HTTP API, folder watcher, orchestrator and workers.
    Serve(Box<ServeArgs>),
    /// Run workers only, sharing a data dir's queues with a `serve`.
    Worker(Box<WorkerOnlyArgs>),
    /// Resize image files straight into a folder, with no queue.
    Process(process::ProcessArgs),
    /// Put files into the original bucket and start a job for each.
    Submit(submit::SubmitArgs),
    /// List recent jobs, or show one with its history.
    Jobs(jobs::JobsArgs),
    /// Create the buckets and queues a deployment needs (local, or S3 and SQS).
    Setup(setup::SetupArgs),
    /// Print the Step Functions definition of the workflow (Amazon States Language).
    Asl(AslArgs),
    /// List, inspect, redrive or purge the dead-letter queue.
    Dlq {
        #[command(subcommand)]
        command: dlq::DlqCommand,
    },
}

#[derive(clap::Args, Debug)]
struct ServeArgs {
    /// Address of the HTTP API.
    #[arg(long, env = "IMGPIPE_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Buckets jobs may read from or write to.
    #[arg(long, env = "IMGPIPE_ALLOWED_BUCKETS", value_delimiter = ',', default_value = "original,resized")]
    allowed_buckets: Vec<String>,
    /// The bucket watched for new images.
    #[arg(long, env = "IMGPIPE_SOURCE_BUCKET", default_value = "original")]
    source_bucket: String,
    /// Where renditions of watched images go.
    #[arg(long, env = "IMGPIPE_DESTINATION_BUCKET", default_value = "resized")]
    destination_bucket: String,
    /// Do not watch the source bucket's folder (local buckets only).
    #[arg(long, env = "IMGPIPE_NO_WATCH")]
    no_watch: bool,
    /// Make jobs from the S3 ObjectCreated notifications on this SQS queue (name or URL).
    #[arg(long, env = "IMGPIPE_S3_EVENTS_QUEUE")]
    s3_events_queue: Option<String>,
    #[command(flatten)]
    engine: EngineArgs,
    #[command(flatten)]
    worker: WorkerArgs,
}

#[derive(clap::Args, Debug)]
struct AslArgs {
    /// URL of the jobs queue, or a `${...}` substitution for templates.
    #[arg(long, default_value = "${JobsQueueUrl}")]
    jobs_queue_url: String,
    /// URL of the dead-letter queue, or a `${...}` substitution.
    #[arg(long, default_value = "${DeadLetterQueueUrl}")]
    dead_letter_queue_url: String,
    /// A worker silent this long is lost (HeartbeatSeconds).
    #[arg(long, env = "IMGPIPE_HEARTBEAT_TIMEOUT", default_value = "2m", value_parser = crate::config::parse_duration)]
    heartbeat_timeout: std::time::Duration,
    /// The longest one attempt may take, queue wait included (TimeoutSeconds).
    #[arg(long, env = "IMGPIPE_TASK_TIMEOUT", default_value = "15m", value_parser = crate::config::parse_duration)]
    task_timeout: std::time::Duration,
    #[command(flatten)]
    retry: crate::config::RetryArgs,
}

#[derive(clap::Args, Debug)]
struct WorkerOnlyArgs {
    #[command(flatten)]
    worker: WorkerArgs,
}

/// Runs the command line; the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log).unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let result = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt.block_on(run(&cli.data, &cli.backends, cli.command)),
        Err(e) => Err(e.into()),
    };
    result.unwrap_or_else(|e| {
        eprintln!("imgpipe: {e:#}");
        ExitCode::FAILURE
    })
}

fn serve_options(args: &ServeArgs) -> anyhow::Result<ServeOptions> {
    Ok(ServeOptions {
        listen: args.listen,
        allowed_buckets: args.allowed_buckets.clone(),
        watch_bucket: (!args.no_watch).then(|| args.source_bucket.clone()),
        s3_events_queue: None,
        destination_bucket: args.destination_bucket.clone(),
        engine: args.engine.config(),
        runner: args.worker.runner()?,
        limits: args.worker.limits(),
        cache_control: Some(args.worker.cache_control.clone()).filter(|c| !c.is_empty()),
        faults: args.worker.faults.clone(),
    })
}

async fn run(data: &DataArgs, backends: &BackendArgs, command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve(args) => {
            let mut options = serve_options(&args)?;
            let stack =
                Embedded::open_with(&data.data_dir, backends, options.engine, args.worker.max_receive_count).await?;
            if let Some(name) = &args.s3_events_queue {
                let aws = match stack.backends.aws.clone() {
                    Some(aws) => aws,
                    None => pipeline_aws::AwsBackends::from_env().await,
                };
                options.s3_events_queue = Some(aws.queue(name).await?);
            }
            let server = Server::bind(stack, options).await?;
            println!("imgpipe serving on http://{} (data dir {})", server.addr, data.data_dir.display());
            let shutdown = CancellationToken::new();
            cancel_on_signals(shutdown.clone());
            server.run(shutdown).await?;
        }
        Command::Worker(args) => {
            let w = &args.worker;
            let opened = backends.open(&data.data_dir, None, w.max_receive_count).await?;
            let options = ServeOptions {
                listen: SocketAddr::from(([127, 0, 0, 1], 0)),
                allowed_buckets: Vec::new(),
                watch_bucket: None,
                s3_events_queue: None,
                destination_bucket: String::new(),
                engine: protocol::workflow::Policy::default(),
                runner: {
                    let runner = w.runner()?;
                    RunnerConfig { concurrency: runner.concurrency.max(1), ..runner }
                },
                limits: w.limits(),
                cache_control: Some(w.cache_control.clone()).filter(|c| !c.is_empty()),
                faults: w.faults.clone(),
            };
            let shutdown = CancellationToken::new();
            cancel_on_signals(shutdown.clone());
            let reporter = crate::backends::reporter(backends, &opened)?;
            crate::serve::runner(&opened, reporter, &options).run(shutdown).await;
        }
        Command::Process(args) => process::run(args)?,
        Command::Asl(args) => {
            let options = protocol::asl::AslOptions {
                jobs_queue_url: args.jobs_queue_url,
                dead_letter_queue_url: args.dead_letter_queue_url,
                retry: args.retry.policy(),
                heartbeat: args.heartbeat_timeout,
                timeout: args.task_timeout,
            };
            let definition = protocol::asl::definition(&options).map_err(anyhow::Error::msg)?;
            println!("{}", serde_json::to_string_pretty(&definition)?);
        }
        Command::Setup(args) => return setup::run(data, backends, args).await,
        Command::Submit(args) => return submit::run(&open(data, backends).await?, args).await,
        Command::Jobs(args) => return jobs::run(&open(data, backends).await?, args).await,
        Command::Dlq { command } => return dlq::run(&open(data, backends).await?, command).await,
    }
    Ok(ExitCode::SUCCESS)
}

/// Opens the data dir for a short command (no workers, default pacing).
async fn open(data: &DataArgs, backends: &BackendArgs) -> anyhow::Result<Embedded> {
    if !data.data_dir.join("imgpipe.db").exists() {
        anyhow::bail!("{} holds no imgpipe data (run `imgpipe serve --data-dir ...` first)", data.data_dir.display());
    }
    // Short commands never receive jobs, so the jobs queue's redrive setting is moot here.
    Embedded::open_with(&data.data_dir, backends, protocol::workflow::Policy::default(), 5).await
}
