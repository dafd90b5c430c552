//! The command line: parse, set up logging and the runtime once, dispatch.

mod dlq;
mod jobs;
pub mod process;
mod progress;
mod setup;
mod submit;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use clap::{Parser, Subcommand};
use producer::auth::ApiKeys;
use producer::limits::ApiLimits;
use tokio_util::sync::CancellationToken;
use wiring::settings::{BackendArgs, DataArgs, IntakeArgs, Span, WorkerArgs, WorkflowArgs};
use wiring::{Backends, Deployment, WorkerSettings};

use crate::health;
use crate::serve::{ServeOptions, Server, cancel_on_signals, check_exposure};

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
    /// Heartbeat file `serve` and `worker` rewrite every few seconds, for `imgpipe health`.
    #[arg(long, env = "IMGPIPE_HEALTH_FILE", global = true)]
    health_file: Option<PathBuf>,
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
    Setup(Box<setup::SetupArgs>),
    /// Print the Step Functions definition of the workflow (Amazon States Language).
    Asl(AslArgs),
    /// Exit 0 while a running `serve` or `worker` keeps its heartbeat file fresh (container health checks).
    Health(HealthArgs),
    /// List, inspect, redrive or purge the dead-letter queue.
    Dlq {
        #[command(subcommand)]
        command: dlq::DlqCommand,
    },
    /// Print a shell completion script, e.g. `imgpipe completions bash > /etc/bash_completion.d/imgpipe`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

#[derive(clap::Args, Debug)]
struct ServeArgs {
    /// Address of the HTTP API. Any address but a loopback one needs API keys.
    #[arg(long, env = "IMGPIPE_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// API keys as comma-separated `scope:key` entries; scopes are `read`, `submit`, `operator`.
    #[arg(long, env = "IMGPIPE_API_KEYS", hide_env_values = true)]
    api_keys: Option<String>,
    /// A file of API keys, one `scope:key` a line (`#` starts a comment).
    #[arg(long, env = "IMGPIPE_API_KEY_FILE")]
    api_key_file: Option<PathBuf>,
    /// `POST /process?wait=` requests waiting at once; past it, 503 with `Retry-After` (0: no waiting).
    #[arg(long, env = "IMGPIPE_MAX_WAITING", default_value_t = ApiLimits::default().max_waiting)]
    max_waiting: usize,
    /// Requests served at once (`/healthz` aside); past it, 503 with `Retry-After`.
    #[arg(long, env = "IMGPIPE_MAX_IN_FLIGHT", default_value_t = ApiLimits::default().max_in_flight)]
    max_in_flight: usize,
    /// The longest a request may take; a `?wait` request may take its wait on top.
    #[arg(long, env = "IMGPIPE_REQUEST_TIMEOUT", default_value_t = Span(ApiLimits::default().request_timeout))]
    request_timeout: Span,
    /// Buckets, and what the watcher or the S3 events turn into jobs.
    #[command(flatten)]
    intake: IntakeArgs,
    /// Do not watch the source bucket's folder (local buckets only).
    #[arg(long, env = "IMGPIPE_NO_WATCH")]
    no_watch: bool,
    /// Make jobs from the S3 ObjectCreated notifications on this SQS queue (name or URL).
    #[arg(long, env = "IMGPIPE_S3_EVENTS_QUEUE")]
    s3_events_queue: Option<String>,
    #[command(flatten)]
    workflow: WorkflowArgs,
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
    #[command(flatten)]
    workflow: WorkflowArgs,
}

#[derive(clap::Args, Debug)]
struct HealthArgs {
    /// A heartbeat older than this counts as a hung or dead process.
    #[arg(long, default_value = "30s")]
    max_age: Span,
}

#[derive(clap::Args, Debug)]
struct WorkerOnlyArgs {
    #[command(flatten)]
    worker: WorkerArgs,
    /// Serve this worker's Prometheus metrics at `http://ADDR/metrics` (a loopback address,
    /// or the container's own: metrics tell no secrets but are not for the internet).
    #[arg(long, env = "IMGPIPE_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
}

/// The deployment flags every command accepts (they may come before the command:
/// `imgpipe --data-dir D serve`), and the commands that have no use for them: their help
/// leaves them out.
const DEPLOYMENT_FLAGS: &[&str] = &[
    "data_dir",
    "blob_store",
    "queue_backend",
    "orchestrator",
    "jobs_queue",
    "reports_queue",
    "dead_letter_queue",
    "state_machine_arn",
];
const WITHOUT_A_DEPLOYMENT: &[&str] = &["process", "asl", "health", "completions"];

/// The command line, each command's help showing only the flags it uses.
fn command() -> clap::Command {
    let mut command = <Cli as clap::CommandFactory>::command();
    // A command that has its own copy of a global flag does not get the global one: give
    // these commands hidden copies, still accepted (and ignored) where a script passes them.
    let hidden =
        |id: &str| command.get_arguments().find(|a| a.get_id() == id).map(|a| a.clone().global(false).hide(true));
    let copies: Vec<(&str, Vec<clap::Arg>)> = WITHOUT_A_DEPLOYMENT
        .iter()
        .map(|name| {
            let flags = DEPLOYMENT_FLAGS.iter().copied().chain((*name != "health").then_some("health_file"));
            (*name, flags.filter_map(&hidden).collect())
        })
        .collect();
    for (name, args) in copies {
        command = command.mut_subcommand(name, |sub| sub.args(args));
    }
    command
}

/// Runs the command line; the process exit code.
pub fn main() -> ExitCode {
    let matches = command().get_matches();
    let cli = match <Cli as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log).unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let result = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt.block_on(run(&cli.data, &cli.backends, cli.health_file.as_deref(), cli.command)),
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
        buckets: args.intake.buckets()?,
        watch_bucket: (!args.no_watch).then(|| args.intake.source_bucket.clone()),
        s3_events_queue: None,
        destination_bucket: args.intake.destination_bucket.clone(),
        sidecar: args.intake.job_defaults.sidecar,
        metadata: args.intake.job_defaults.metadata.clone(),
        engine: args.workflow.policy(),
        worker: WorkerSettings::read(&args.worker)?,
        keys: api_keys(args)?,
        limits: api_limits(args)?,
    })
}

fn api_limits(args: &ServeArgs) -> anyhow::Result<ApiLimits> {
    anyhow::ensure!(args.max_in_flight > 0, "--max-in-flight (IMGPIPE_MAX_IN_FLIGHT) must be at least 1");
    anyhow::ensure!(
        !args.request_timeout.0.is_zero(),
        "--request-timeout (IMGPIPE_REQUEST_TIMEOUT) must be above zero"
    );
    Ok(ApiLimits {
        max_waiting: args.max_waiting,
        max_in_flight: args.max_in_flight,
        request_timeout: args.request_timeout.0,
    })
}

/// The keys of `--api-keys` and `--api-key-file` together.
fn api_keys(args: &ServeArgs) -> anyhow::Result<ApiKeys> {
    let mut keys = ApiKeys::none();
    if let Some(list) = &args.api_keys {
        keys.add_list(list).context("IMGPIPE_API_KEYS")?;
    }
    if let Some(path) = &args.api_key_file {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        keys.add_file_text(&text).with_context(|| format!("IMGPIPE_API_KEY_FILE {}", path.display()))?;
    }
    Ok(keys)
}

async fn run(
    data: &DataArgs,
    backends: &BackendArgs,
    health_file: Option<&Path>,
    command: Command,
) -> anyhow::Result<ExitCode> {
    // The long-running commands stop on SIGTERM or Ctrl-C and beat while they run.
    let shutdown = CancellationToken::new();
    if matches!(command, Command::Serve(_) | Command::Worker(_)) {
        cancel_on_signals(shutdown.clone());
        if let Some(path) = health_file {
            health::beat(path.to_owned(), shutdown.clone());
        }
    }
    match command {
        Command::Serve(args) => {
            let mut options = serve_options(&args)?;
            check_exposure(options.listen, &options.keys)?;
            let stack =
                Deployment::open_with(&data.data_dir, backends, options.engine, args.worker.max_receive_count).await?;
            if let Some(name) = &args.s3_events_queue {
                let aws = match stack.backends.aws.clone() {
                    Some(aws) => aws,
                    None => pipeline_aws::AwsBackends::from_env().await,
                };
                options.s3_events_queue = Some(aws.queue(name).await?);
            }
            let server = Server::bind(stack, options).await?;
            println!("imgpipe serving on http://{} (data dir {})", server.addr, data.data_dir.display());
            server.run(shutdown).await?;
        }
        Command::Worker(args) => {
            // Only what a worker needs: the stores and queues, and where it reports.
            let mut settings = WorkerSettings::read(&args.worker)?;
            settings.runner.concurrency = settings.runner.concurrency.max(1);
            let opened = Backends::open(backends, &data.data_dir, None, args.worker.max_receive_count).await?;
            let reporter = wiring::reporter(backends, &opened)?;
            pipeline_core::telemetry::install();
            if let Some(addr) = args.metrics_listen {
                serve_metrics(addr, shutdown.clone()).await?;
            }
            wiring::runner(&opened, reporter, &settings).run(shutdown).await;
        }
        Command::Process(args) => process::run(args)?,
        Command::Completions { shell } => {
            // Into a buffer first: the generator panics on a write error, and a closed pipe is none.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut <Cli as clap::CommandFactory>::command(), "imgpipe", &mut script);
            match std::io::Write::write_all(&mut std::io::stdout(), &script) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => return Err(e.into()),
                _ => {}
            }
        }
        Command::Health(args) => {
            let path = health_file.context("no heartbeat file to check: set IMGPIPE_HEALTH_FILE or --health-file")?;
            health::check(path, args.max_age.0)?;
        }
        Command::Asl(args) => {
            let options = protocol::asl::AslOptions {
                jobs_queue_url: args.jobs_queue_url,
                dead_letter_queue_url: args.dead_letter_queue_url,
                policy: args.workflow.policy(),
            };
            let definition = protocol::asl::definition(&options).map_err(anyhow::Error::msg)?;
            println!("{}", serde_json::to_string_pretty(&definition)?);
        }
        Command::Setup(args) => return setup::run(data, backends, *args).await,
        Command::Submit(args) => return submit::run(&open(data, backends).await?, args).await,
        Command::Jobs(args) => return jobs::run(&open(data, backends).await?, args).await,
        Command::Dlq { command } => return dlq::run(&open(data, backends).await?, command).await,
    }
    Ok(ExitCode::SUCCESS)
}

/// Opens the data dir for a short command (no workers, default pacing).
async fn open(data: &DataArgs, backends: &BackendArgs) -> anyhow::Result<Deployment> {
    if !data.data_dir.join("imgpipe.db").exists() {
        anyhow::bail!("{} holds no imgpipe data (run `imgpipe serve --data-dir ...` first)", data.data_dir.display());
    }
    // Short commands never receive jobs, so the jobs queue's redrive setting is moot here.
    let max_receive_count = worker::RunnerConfig::default().max_receive_count;
    Deployment::open_with(&data.data_dir, backends, protocol::workflow::Policy::default(), max_receive_count).await
}

/// Serves `GET /metrics` on `addr` until `shutdown`, for a worker process.
async fn serve_metrics(addr: SocketAddr, shutdown: CancellationToken) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (--metrics-listen)"))?;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(|| async {
            ([("content-type", "text/plain; version=0.0.4")], pipeline_core::telemetry::render())
        }),
    );
    tracing::info!(%addr, "worker metrics at /metrics");
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await {
            tracing::warn!(error = %e, "the metrics listener stopped");
        }
    });
    Ok(())
}
