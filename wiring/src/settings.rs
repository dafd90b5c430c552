//! Every setting, defined once: a flag with an `IMGPIPE_*` variable behind it, a default
//! taken from the code that uses it, and one meaning. The CLI reads them from flags and
//! the environment; the Lambda functions parse the very same groups from the environment
//! alone ([`crate::functions`]), so a variable cannot mean two things. Durations read as
//! `500ms`, `30s`, `5m`, `2h`, or a bare number of seconds.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use protocol::intake::Buckets;
use protocol::metadata::MetadataPolicy;
use protocol::workflow::{Jitter, Policy, RetryPolicy};
use worker::RunnerConfig;
use worker::image::{Limits, MemoryBudget};
use worker::process::DEFAULT_CACHE_CONTROL;

/// A duration as flags write it; shown in help the same way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span(pub Duration);

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (ms, secs) = (self.0.as_millis(), self.0.as_secs());
        if ms % 1000 != 0 {
            write!(f, "{ms}ms")
        } else if secs != 0 && secs % 3600 == 0 {
            write!(f, "{}h", secs / 3600)
        } else if secs != 0 && secs % 60 == 0 {
            write!(f, "{}m", secs / 60)
        } else {
            write!(f, "{secs}s")
        }
    }
}

impl FromStr for Span {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        protocol::time::parse_duration(s).map(Span)
    }
}

/// A memory budget as flags write it: `auto`, `off`, or a size (`1536MiB`, `2GiB`, bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemorySize {
    /// Half of what the process may use ([`worker::image::budget::available_memory`]).
    Auto,
    /// No budget.
    Off,
    /// This many bytes.
    Bytes(u64),
}

impl MemorySize {
    /// The budget this names.
    pub fn budget(self) -> MemoryBudget {
        match self {
            MemorySize::Off => MemoryBudget::unlimited(),
            MemorySize::Bytes(n) => MemoryBudget::new(n),
            MemorySize::Auto => match worker::image::budget::available_memory() {
                Some(total) => MemoryBudget::new((total / 2).max(256 << 20)),
                None => MemoryBudget::unlimited(),
            },
        }
    }
}

impl fmt::Display for MemorySize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MemorySize::Auto => f.write_str("auto"),
            MemorySize::Off => f.write_str("off"),
            MemorySize::Bytes(n) if n % (1 << 30) == 0 => write!(f, "{}GiB", n >> 30),
            MemorySize::Bytes(n) if n % (1 << 20) == 0 => write!(f, "{}MiB", n >> 20),
            MemorySize::Bytes(n) => write!(f, "{n}"),
        }
    }
}

impl FromStr for MemorySize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        match s {
            "auto" => return Ok(MemorySize::Auto),
            "off" => return Ok(MemorySize::Off),
            _ => {}
        }
        let advice = || format!("{s:?}: write auto, off, or a size above zero such as 1536MiB or 2GiB");
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (digits, unit) = s.split_at(split);
        let shift = match unit.trim() {
            "" | "B" => 0,
            "K" | "KiB" => 10,
            "M" | "MiB" => 20,
            "G" | "GiB" => 30,
            _ => return Err(advice()),
        };
        let n: u64 = digits.parse().map_err(|_| advice())?;
        n.checked_mul(1 << shift).filter(|&bytes| bytes > 0).map(MemorySize::Bytes).ok_or_else(advice)
    }
}

/// Where buckets live.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BlobStoreKind {
    /// Folders in the data dir.
    #[default]
    Local,
    /// Amazon S3.
    S3,
}

/// Where queues live.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum QueueKind {
    /// The SQLite file in the data dir.
    #[default]
    Sqlite,
    /// Amazon SQS.
    Sqs,
}

/// Who runs the workflow.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OrchestratorKind {
    /// The embedded engine, its job store in the data dir's SQLite file.
    #[default]
    Embedded,
    /// AWS Step Functions (`--state-machine-arn`).
    #[value(name = "stepfunctions")]
    StepFunctions,
}

/// Where the workflow engine keeps its jobs (with `--orchestrator embedded`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum JobStoreKind {
    /// The data dir's SQLite file: one engine process (or several on one machine).
    #[default]
    Sqlite,
    /// A DynamoDB table (`--jobs-table`): several engines anywhere, conditional writes.
    #[value(name = "dynamodb")]
    DynamoDb,
}

/// Where the embedded deployment keeps its files.
#[derive(clap::Args, Debug, Clone)]
pub struct DataArgs {
    /// Folder holding the buckets (`buckets/<bucket>/<key>`) and the SQLite file.
    #[arg(long, env = "IMGPIPE_DATA_DIR", default_value = "./data", global = true)]
    pub data_dir: PathBuf,
}

/// Which backends a deployment is on, and the names of its queues.
#[derive(clap::Args, Debug, Clone)]
pub struct BackendArgs {
    /// Where buckets live.
    #[arg(long, env = "IMGPIPE_BLOB_STORE", value_enum, default_value_t, global = true)]
    pub blob_store: BlobStoreKind,
    /// Where queues live.
    #[arg(long, env = "IMGPIPE_QUEUE_BACKEND", value_enum, default_value_t, global = true)]
    pub queue_backend: QueueKind,
    /// Who runs the workflow.
    #[arg(long, env = "IMGPIPE_ORCHESTRATOR", value_enum, default_value_t, global = true)]
    pub orchestrator: OrchestratorKind,
    /// Where the workflow engine keeps its jobs.
    #[arg(long, env = "IMGPIPE_JOB_STORE", value_enum, default_value_t, global = true)]
    pub job_store: JobStoreKind,
    /// The DynamoDB table of jobs, with `--job-store dynamodb`.
    #[arg(long, env = "IMGPIPE_JOBS_TABLE", default_value = "imgpipe-jobs", global = true)]
    pub jobs_table: String,
    /// The jobs queue: a name, or an SQS queue URL.
    #[arg(long, env = "IMGPIPE_JOBS_QUEUE", default_value = "jobs", global = true)]
    pub jobs_queue: String,
    /// The workers' reports queue (embedded orchestrator): a name, or an SQS queue URL.
    #[arg(long, env = "IMGPIPE_REPORTS_QUEUE", default_value = "reports", global = true)]
    pub reports_queue: String,
    /// The dead-letter queue: a name, or an SQS queue URL.
    #[arg(long, env = "IMGPIPE_DEAD_LETTER_QUEUE", default_value = "dlq", global = true)]
    pub dead_letter_queue: String,
    /// The state machine running the workflow, with `--orchestrator stepfunctions`.
    #[arg(long, env = "IMGPIPE_STATE_MACHINE_ARN", global = true)]
    pub state_machine_arn: Option<String>,
}

impl Default for BackendArgs {
    fn default() -> Self {
        Self {
            blob_store: BlobStoreKind::Local,
            queue_backend: QueueKind::Sqlite,
            orchestrator: OrchestratorKind::Embedded,
            job_store: JobStoreKind::Sqlite,
            jobs_table: "imgpipe-jobs".into(),
            jobs_queue: "jobs".into(),
            reports_queue: "reports".into(),
            dead_letter_queue: "dlq".into(),
            state_machine_arn: None,
        }
    }
}

impl BackendArgs {
    /// Whether any backend needs the AWS SDK.
    pub fn uses_aws(&self) -> bool {
        self.blob_store == BlobStoreKind::S3
            || self.queue_backend == QueueKind::Sqs
            || self.step_functions()
            || self.dynamodb_jobs()
    }

    /// Whether the engine keeps its jobs in DynamoDB.
    pub fn dynamodb_jobs(&self) -> bool {
        !self.step_functions() && self.job_store == JobStoreKind::DynamoDb
    }

    /// Whether Step Functions runs the workflow.
    pub fn step_functions(&self) -> bool {
        self.orchestrator == OrchestratorKind::StepFunctions
    }
}

/// How the workflow retries retryable failures.
#[derive(clap::Args, Debug, Clone)]
pub struct RetryArgs {
    /// Attempts per job, the first included.
    #[arg(long, env = "IMGPIPE_MAX_ATTEMPTS", default_value_t = RetryPolicy::default().max_attempts)]
    pub max_attempts: u32,
    /// Backoff ceiling before the second attempt; it doubles per attempt.
    #[arg(long, env = "IMGPIPE_RETRY_INTERVAL", default_value_t = Span(RetryPolicy::default().interval))]
    pub retry_interval: Span,
    /// The backoff ceiling never grows past this.
    #[arg(long, env = "IMGPIPE_RETRY_MAX_DELAY", default_value_t = Span(RetryPolicy::default().max_delay))]
    pub retry_max_delay: Span,
    /// Draw each backoff uniformly under its ceiling (`full`) or wait the ceiling (`none`).
    #[arg(long, env = "IMGPIPE_RETRY_JITTER", default_value = "full", value_parser = ["full", "none"])]
    pub retry_jitter: String,
}

impl RetryArgs {
    /// The retry policy.
    pub fn policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.max_attempts.max(1),
            interval: self.retry_interval.0,
            max_delay: self.retry_max_delay.0,
            jitter: if self.retry_jitter == "none" { Jitter::None } else { Jitter::Full },
            ..RetryPolicy::default()
        }
    }
}

/// The workflow's pacing: retries, and when an attempt's worker counts as lost. Read by
/// the embedded engine, and turned into the state machine's retriers and timeouts.
#[derive(clap::Args, Debug, Clone)]
pub struct WorkflowArgs {
    /// Retries of retryable failures.
    #[command(flatten)]
    pub retry: RetryArgs,
    /// A queued attempt no worker has taken for this long counts as lost (embedded engine;
    /// Step Functions counts the wait against the heartbeat timeout).
    #[arg(long, env = "IMGPIPE_QUEUE_TIMEOUT", default_value_t = Span(Policy::default().queue_timeout))]
    pub queue_timeout: Span,
    /// The longest one attempt may run once a worker holds it (from its first heartbeat).
    #[arg(long, env = "IMGPIPE_TASK_TIMEOUT", default_value_t = Span(Policy::default().task_timeout))]
    pub task_timeout: Span,
    /// A busy attempt with no heartbeat for this long counts as a lost worker.
    #[arg(long, env = "IMGPIPE_HEARTBEAT_TIMEOUT", default_value_t = Span(Policy::default().heartbeat_timeout))]
    pub heartbeat_timeout: Span,
}

impl WorkflowArgs {
    /// The workflow policy.
    pub fn policy(&self) -> Policy {
        Policy {
            retry: self.retry.policy(),
            queue_timeout: self.queue_timeout.0,
            task_timeout: self.task_timeout.0,
            heartbeat_timeout: self.heartbeat_timeout.0,
        }
    }
}

/// How workers take jobs and what they may spend on one.
#[derive(clap::Args, Debug, Clone)]
pub struct WorkerArgs {
    /// Jobs processed at once [default: the number of cores]; 0 with `serve` runs no workers in it.
    #[arg(long, env = "IMGPIPE_WORKERS")]
    pub workers: Option<usize>,
    /// Visibility timeout of a received job, renewed by heartbeats.
    #[arg(long, env = "IMGPIPE_VISIBILITY_TIMEOUT", default_value_t = Span(RunnerConfig::default().visibility))]
    pub visibility_timeout: Span,
    /// How often a busy job renews its visibility and heartbeats.
    #[arg(long, env = "IMGPIPE_HEARTBEAT_INTERVAL", default_value_t = Span(RunnerConfig::default().heartbeat_every))]
    pub heartbeat_interval: Span,
    /// On shutdown, how long held jobs may finish before they are released.
    #[arg(long, env = "IMGPIPE_DRAIN_TIMEOUT", default_value_t = Span(RunnerConfig::default().drain_deadline))]
    pub drain_timeout: Span,
    /// Deliveries of one job message before it is failed as poison.
    #[arg(long, env = "IMGPIPE_MAX_RECEIVE_COUNT", default_value_t = RunnerConfig::default().max_receive_count)]
    pub max_receive_count: u32,
    /// Largest source accepted, in bytes.
    #[arg(long, env = "IMGPIPE_MAX_INPUT_BYTES", default_value_t = Limits::default().max_input_bytes)]
    pub max_input_bytes: u64,
    /// Largest source accepted, in pixels (width × height), checked before decoding.
    #[arg(long, env = "IMGPIPE_MAX_PIXELS", default_value_t = Limits::default().max_pixels)]
    pub max_pixels: u64,
    /// Memory the jobs of this process share: each reserves its estimated peak before decoding
    /// and waits for room; one that alone exceeds it fails as TooLarge. `auto`: half of the
    /// memory the process may use (cgroup limit, Lambda memory size or RAM); `off`: no budget.
    #[arg(long, env = "IMGPIPE_MEMORY_BUDGET", default_value_t = MemorySize::Auto)]
    pub memory_budget: MemorySize,
    /// `Cache-Control` stored on every output (empty: none).
    #[arg(long, env = "IMGPIPE_CACHE_CONTROL", default_value = DEFAULT_CACHE_CONTROL)]
    pub cache_control: String,
    /// Injected faults for drills, e.g. `delay-ms=3000,fail-attempts=2`.
    #[arg(long, env = "IMGPIPE_FAULTS", default_value = "", hide = true, value_parser = worker::faults::Faults::parse)]
    pub faults: worker::faults::Faults,
}

impl WorkerArgs {
    /// The runner's configuration.
    ///
    /// # Errors
    /// A heartbeat interval not below the visibility timeout, or a visibility under a second.
    pub fn runner(&self) -> anyhow::Result<RunnerConfig> {
        let defaults = RunnerConfig::default();
        let (visibility, heartbeat) = (self.visibility_timeout.0, self.heartbeat_interval.0);
        anyhow::ensure!(
            visibility >= Duration::from_secs(1),
            "--visibility-timeout (IMGPIPE_VISIBILITY_TIMEOUT) must be at least 1s"
        );
        anyhow::ensure!(
            !heartbeat.is_zero() && heartbeat < visibility,
            "--heartbeat-interval (IMGPIPE_HEARTBEAT_INTERVAL) must be above zero and below --visibility-timeout, \
             or jobs would run twice"
        );
        Ok(RunnerConfig {
            concurrency: self.workers.unwrap_or(defaults.concurrency),
            visibility,
            heartbeat_every: heartbeat,
            drain_deadline: self.drain_timeout.0,
            max_receive_count: self.max_receive_count,
            ..defaults
        })
    }

    /// The engine's input limits.
    pub fn limits(&self) -> Limits {
        Limits { max_input_bytes: self.max_input_bytes, max_pixels: self.max_pixels, ..Limits::default() }
    }

    /// `Cache-Control` for outputs, `None` when set empty.
    pub fn cache_control(&self) -> Option<String> {
        Some(self.cache_control.trim().to_owned()).filter(|c| !c.is_empty())
    }
}

/// Which buckets jobs may use, and where the renditions of uploaded images go.
#[derive(clap::Args, Debug, Clone)]
pub struct IntakeArgs {
    /// Buckets jobs may read sources from [default: the watched bucket, --source-bucket].
    #[arg(long, env = "IMGPIPE_READ_BUCKETS", value_delimiter = ',')]
    pub read_buckets: Vec<String>,
    /// Buckets jobs may write renditions to [default: --destination-bucket].
    #[arg(long, env = "IMGPIPE_WRITE_BUCKETS", value_delimiter = ',')]
    pub write_buckets: Vec<String>,
    /// Split into `IMGPIPE_READ_BUCKETS` and `IMGPIPE_WRITE_BUCKETS`: refused with that advice.
    #[arg(long, env = "IMGPIPE_ALLOWED_BUCKETS", hide = true)]
    pub allowed_buckets: Option<String>,
    /// The bucket whose uploads become jobs.
    #[arg(long, env = "IMGPIPE_SOURCE_BUCKET", default_value = "original")]
    pub source_bucket: String,
    /// Where renditions of uploaded images go.
    #[arg(long, env = "IMGPIPE_DESTINATION_BUCKET", default_value = "resized")]
    pub destination_bucket: String,
    /// What a job gets when its request does not say: the sidecar, the metadata policy.
    #[command(flatten)]
    pub job_defaults: JobDefaults,
}

/// What a job gets when its request does not say (whether it writes the metadata sidecar,
/// which source metadata its outputs keep): a group of its own, so `imgpipe submit` reads the
/// same settings as the intakes of `serve` and the Lambda functions.
#[derive(clap::Args, Debug, Clone, Default, PartialEq, Eq)]
pub struct JobDefaults {
    /// Jobs also write `resized/<stem>_metadata.json` (the source's metadata, camera facts
    /// included, its version and the outputs) unless their request says otherwise (`"sidecar"`
    /// in `POST /process`); the jobs of the folder watcher, of S3 notifications and of `imgpipe
    /// submit` always follow this. Off by default: a second object written per job. `--sidecar`
    /// alone means true.
    #[arg(long = "sidecar", id = "sidecar", env = "IMGPIPE_SIDECAR", value_name = "BOOL",
          action = clap::ArgAction::Set, num_args = 0..=1, require_equals = true, default_value_t = false,
          default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    pub sidecar: bool,
    /// Which source metadata the outputs carry unless the request says (`"metadata"` in `POST
    /// /process`): `strip` (none; a colour profile is converted away, the pixels written as
    /// sRGB) or `keep:` with any of `copyright`, `artist`, `captureTime`, `icc`, comma-separated.
    /// Location, maker notes and serial numbers are never kept.
    #[arg(long = "metadata", env = "IMGPIPE_METADATA", value_name = "POLICY", default_value = "strip")]
    pub metadata: MetadataPolicy,
}

impl IntakeArgs {
    /// The allow-lists: each defaults to the one bucket uploads come from or go to.
    ///
    /// # Errors
    /// The retired `IMGPIPE_ALLOWED_BUCKETS` is set (one list for both would let a key
    /// holder read from every bucket jobs write to).
    pub fn buckets(&self) -> anyhow::Result<Buckets> {
        anyhow::ensure!(
            self.allowed_buckets.is_none(),
            "IMGPIPE_ALLOWED_BUCKETS (--allowed-buckets) is split in two: set IMGPIPE_READ_BUCKETS to the buckets \
             jobs may read from and IMGPIPE_WRITE_BUCKETS to those they may write to"
        );
        let or = |list: &[String], default: &str| {
            if list.iter().all(|b| b.trim().is_empty()) { vec![default.to_owned()] } else { list.to_vec() }
        };
        Ok(Buckets::new(
            &or(&self.read_buckets, &self.source_bucket),
            &or(&self.write_buckets, &self.destination_bucket),
        ))
    }
}

/// The groups `imgpipe worker` reads its settings from: the data dir, the backends and the
/// worker's own (the CLI flattens these same groups, beside its log filter and health file).
/// Container deployments of the worker (ECS, Kubernetes) are checked against it.
#[derive(clap::Parser, Debug, Clone)]
#[command(name = "imgpipe-worker-groups")]
pub struct WorkerGroups {
    /// The data dir (local backends only).
    #[command(flatten)]
    pub data: DataArgs,
    /// The backends and queue names.
    #[command(flatten)]
    pub backends: BackendArgs,
    /// Pacing, limits and outputs.
    #[command(flatten)]
    pub worker: WorkerArgs,
}

impl WorkerGroups {
    /// Their `IMGPIPE_*` variables, each with whether it must be set.
    pub fn vars() -> Vec<(String, bool)> {
        env_vars(&<Self as clap::CommandFactory>::command())
    }

    /// The settings the variables `lookup` gives would make, defaults for the rest.
    ///
    /// # Errors
    /// A value that cannot be read; the message names the flag and its variable.
    pub fn read(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, clap::Error> {
        crate::functions::read(lookup)
    }
}

/// The `IMGPIPE_*` variables a command reads, each with whether it must be set (hidden
/// ones, read only to refuse them or for tests, left out).
pub fn env_vars(command: &clap::Command) -> Vec<(String, bool)> {
    let mut vars: Vec<(String, bool)> = command
        .get_arguments()
        .filter(|a| !a.is_hide_set())
        .filter_map(|a| {
            let name = a.get_env()?.to_str()?.to_owned();
            name.starts_with("IMGPIPE_").then_some((name, a.is_required_set()))
        })
        .collect();
    vars.sort();
    vars.dedup();
    vars
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser, Debug)]
    struct All {
        #[command(flatten)]
        backends: BackendArgs,
        #[command(flatten)]
        workflow: WorkflowArgs,
        #[command(flatten)]
        worker: WorkerArgs,
    }

    #[test]
    fn spans_print_as_they_parse() {
        for text in ["500ms", "30s", "5m", "2h", "90s", "0s", "1500ms"] {
            let span: Span = text.parse().expect("a duration");
            assert_eq!(span.to_string(), text);
        }
        assert_eq!("120".parse::<Span>().expect("bare seconds").to_string(), "2m");
    }

    #[test]
    fn the_defaults_are_the_codes_own() {
        let all = All::try_parse_from(["imgpipe"]).expect("no flags needed");
        assert_eq!(all.workflow.policy(), Policy::default());
        let runner = all.worker.runner().expect("valid");
        let defaults = RunnerConfig::default();
        assert_eq!(
            (runner.visibility, runner.heartbeat_every, runner.drain_deadline, runner.max_receive_count),
            (defaults.visibility, defaults.heartbeat_every, defaults.drain_deadline, defaults.max_receive_count)
        );
        assert_eq!(all.worker.limits(), Limits::default());
        assert_eq!(all.worker.cache_control().as_deref(), Some(DEFAULT_CACHE_CONTROL));
        assert!(!all.backends.uses_aws());
    }

    #[test]
    fn kinds_read_as_documented() {
        let all = All::try_parse_from(["imgpipe", "--blob-store", "s3", "--orchestrator", "stepfunctions"])
            .expect("valid kinds");
        assert_eq!(
            (all.backends.blob_store, all.backends.orchestrator),
            (BlobStoreKind::S3, OrchestratorKind::StepFunctions)
        );
        assert!(all.backends.uses_aws() && all.backends.step_functions());
        assert!(All::try_parse_from(["imgpipe", "--queue-backend", "kafka"]).is_err());
    }

    #[test]
    fn the_worker_groups_list_and_read_the_backends_and_the_pacing() {
        let vars = WorkerGroups::vars();
        for name in ["IMGPIPE_DATA_DIR", "IMGPIPE_JOBS_QUEUE", "IMGPIPE_QUEUE_BACKEND", "IMGPIPE_DRAIN_TIMEOUT"] {
            assert!(vars.contains(&(name.to_owned(), false)), "{name} missing from {vars:?}");
        }
        // Settings of `serve` and of the workflow are not the worker's.
        assert!(!vars.iter().any(|(name, _)| name == "IMGPIPE_LISTEN" || name == "IMGPIPE_TASK_TIMEOUT"), "{vars:?}");

        let read = WorkerGroups::read(|name| (name == "IMGPIPE_DRAIN_TIMEOUT").then(|| "90s".to_owned()));
        let groups = read.expect("valid");
        assert_eq!(groups.worker.drain_timeout, Span(Duration::from_secs(90)));
        assert_eq!(groups.backends.queue_backend, QueueKind::Sqlite);
        assert!(WorkerGroups::read(|name| (name == "IMGPIPE_ORCHESTRATOR").then(|| "sfn".to_owned())).is_err());
    }

    /// The intake's settings alone, as `serve` and the producer functions read them.
    #[derive(Parser, Debug)]
    struct IntakeOnly {
        #[command(flatten)]
        intake: IntakeArgs,
    }

    #[test]
    fn the_sidecar_is_off_unless_asked_as_a_flag_or_a_variable() {
        let sidecar = |args: &[&str]| {
            let args = std::iter::once("imgpipe").chain(args.iter().copied());
            IntakeOnly::try_parse_from(args).map(|i| i.intake.job_defaults.sidecar)
        };
        assert!(!sidecar(&[]).expect("no flags needed"));
        assert!(sidecar(&["--sidecar"]).expect("the flag alone"));
        assert!(!sidecar(&["--sidecar=false"]).expect("a value"));
        assert!(sidecar(&["--sidecar=yes"]).expect("a yes"));
        assert!(sidecar(&["--sidecar=maybe"]).is_err());
        // The Lambda functions read it as every setting: `--sidecar=<the variable's value>`.
        let read = |value: &str| {
            crate::functions::read::<IntakeOnly>(|name| (name == "IMGPIPE_SIDECAR").then(|| value.to_owned()))
                .map(|i| i.intake.job_defaults.sidecar)
        };
        assert!(read("true").expect("true"));
        assert!(!read("0").expect("0"));
    }

    #[test]
    fn the_metadata_policy_is_strip_unless_set() {
        let policy = |args: &[&str]| {
            let args = std::iter::once("imgpipe").chain(args.iter().copied());
            IntakeOnly::try_parse_from(args).map(|i| i.intake.job_defaults.metadata)
        };
        assert_eq!(policy(&[]).expect("no flags needed"), MetadataPolicy::Strip);
        let kept = policy(&["--metadata", "keep:copyright,icc"]).expect("a list");
        assert_eq!(kept.to_string(), "keep:copyright,icc");
        let err = policy(&["--metadata", "keep:gps"]).expect_err("location is never kept").to_string();
        assert!(err.contains("\"gps\" cannot be kept"), "{err}");
        let read =
            crate::functions::read::<IntakeOnly>(|name| (name == "IMGPIPE_METADATA").then(|| "keep:artist".to_owned()));
        assert_eq!(read.expect("the variable").intake.job_defaults.metadata.to_string(), "keep:artist");
    }

    #[test]
    fn unsafe_heartbeats_are_refused_naming_the_setting() {
        let all = All::try_parse_from(["imgpipe", "--heartbeat-interval", "60s", "--visibility-timeout", "30s"])
            .expect("parses");
        let err = all.worker.runner().expect_err("a heartbeat past the visibility would run jobs twice");
        assert!(err.to_string().contains("IMGPIPE_HEARTBEAT_INTERVAL"), "{err}");
    }

    #[test]
    fn memory_budgets_read_as_written() {
        let read = |s: &str| s.parse::<MemorySize>();
        assert_eq!(read("auto"), Ok(MemorySize::Auto));
        assert_eq!(read("off"), Ok(MemorySize::Off));
        assert_eq!(read("1536MiB"), Ok(MemorySize::Bytes(1536 << 20)));
        assert_eq!(read("2G"), Ok(MemorySize::Bytes(2 << 30)));
        assert_eq!(read("4096"), Ok(MemorySize::Bytes(4096)));
        for bad in ["0", "0GiB", "2TB", "-1", "", "GiB", "99999999999999999999G"] {
            assert!(read(bad).is_err(), "{bad:?} is refused");
        }
        for size in [MemorySize::Auto, MemorySize::Off, MemorySize::Bytes(3 << 30), MemorySize::Bytes(1536 << 20)] {
            assert_eq!(read(&size.to_string()), Ok(size), "{size} reads back");
        }
        assert_eq!(MemorySize::Bytes(1 << 20).budget().total(), Some(1 << 20));
        assert_eq!(MemorySize::Off.budget().total(), None);
        let auto = MemorySize::Auto.budget().total().expect("this machine says how much memory it has");
        assert!(auto >= 256 << 20, "{auto}");
    }
}
