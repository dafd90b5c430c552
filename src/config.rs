//! Settings shared by several commands, each a flag with an `IMGPIPE_*` variable behind
//! it. Durations read as `500ms`, `30s`, `5m`, `2h`, or a bare number of seconds.

use std::path::PathBuf;
use std::time::Duration;

use protocol::workflow::Policy;
use protocol::workflow::{Jitter, RetryPolicy};
use worker::RunnerConfig;
use worker::engine::Limits;

pub use protocol::time::parse_duration;

/// Where the embedded deployment keeps its files.
#[derive(clap::Args, Debug, Clone)]
pub struct DataArgs {
    /// Folder holding the buckets (`buckets/<bucket>/<key>`) and the SQLite file.
    #[arg(long, env = "IMGPIPE_DATA_DIR", default_value = "./data", global = true)]
    pub data_dir: PathBuf,
}

/// How the workflow retries retryable failures.
#[derive(clap::Args, Debug, Clone)]
pub struct RetryArgs {
    /// Attempts per job, the first included.
    #[arg(long, env = "IMGPIPE_MAX_ATTEMPTS", default_value_t = 4)]
    pub max_attempts: u32,
    /// Backoff ceiling before the second attempt; it doubles per attempt.
    #[arg(long, env = "IMGPIPE_RETRY_INTERVAL", default_value = "2s", value_parser = parse_duration)]
    pub retry_interval: Duration,
    /// The backoff ceiling never grows past this.
    #[arg(long, env = "IMGPIPE_RETRY_MAX_DELAY", default_value = "60s", value_parser = parse_duration)]
    pub retry_max_delay: Duration,
    /// Draw each backoff uniformly under its ceiling (`full`) or wait the ceiling (`none`).
    #[arg(long, env = "IMGPIPE_RETRY_JITTER", default_value = "full", value_parser = ["full", "none"])]
    pub retry_jitter: String,
}

impl RetryArgs {
    /// The retry policy.
    pub fn policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.max_attempts.max(1),
            interval: self.retry_interval,
            backoff_rate: 2.0,
            max_delay: self.retry_max_delay,
            jitter: if self.retry_jitter == "none" { Jitter::None } else { Jitter::Full },
        }
    }
}

/// How the workflow retries and when it gives up on a worker.
#[derive(clap::Args, Debug, Clone)]
pub struct EngineArgs {
    /// Retries of retryable failures.
    #[command(flatten)]
    pub retry: RetryArgs,
    /// A queued attempt no worker has taken for this long counts as lost.
    #[arg(long, env = "IMGPIPE_QUEUE_TIMEOUT", default_value = "1h", value_parser = parse_duration)]
    pub queue_timeout: Duration,
    /// An attempt running longer than this (from the worker's first heartbeat) counts as lost.
    #[arg(long, env = "IMGPIPE_TASK_TIMEOUT", default_value = "10m", value_parser = parse_duration)]
    pub task_timeout: Duration,
    /// A busy attempt with no heartbeat for this long counts as a lost worker.
    #[arg(long, env = "IMGPIPE_HEARTBEAT_TIMEOUT", default_value = "2m", value_parser = parse_duration)]
    pub heartbeat_timeout: Duration,
}

impl EngineArgs {
    /// The engine's configuration.
    pub fn config(&self) -> Policy {
        Policy {
            retry: self.retry.policy(),
            queue_timeout: self.queue_timeout,
            task_timeout: self.task_timeout,
            heartbeat_timeout: self.heartbeat_timeout,
        }
    }
}

/// How workers take jobs.
#[derive(clap::Args, Debug, Clone)]
pub struct WorkerArgs {
    /// Jobs processed at once [default: the number of cores]; 0 with `serve` runs no workers in it.
    #[arg(long, env = "IMGPIPE_WORKERS")]
    pub workers: Option<usize>,
    /// Visibility timeout of a received job, renewed by heartbeats.
    #[arg(long, env = "IMGPIPE_VISIBILITY_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub visibility_timeout: Duration,
    /// How often a busy job renews its visibility and heartbeats.
    #[arg(long, env = "IMGPIPE_HEARTBEAT_INTERVAL", default_value = "20s", value_parser = parse_duration)]
    pub heartbeat_interval: Duration,
    /// On shutdown, how long held jobs may finish before they are released.
    #[arg(long, env = "IMGPIPE_DRAIN_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// Deliveries of one job message before it is failed as poison.
    #[arg(long, env = "IMGPIPE_MAX_RECEIVE_COUNT", default_value_t = 5)]
    pub max_receive_count: u32,
    /// Largest source accepted, in bytes.
    #[arg(long, env = "IMGPIPE_MAX_INPUT_BYTES", default_value_t = Limits::default().max_input_bytes)]
    pub max_input_bytes: u64,
    /// Largest source accepted, in pixels (width × height), checked before decoding.
    #[arg(long, env = "IMGPIPE_MAX_PIXELS", default_value_t = Limits::default().max_pixels)]
    pub max_pixels: u64,
    /// `Cache-Control` stored on every output.
    #[arg(long, env = "IMGPIPE_CACHE_CONTROL", default_value = "public, max-age=31536000, immutable")]
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
        anyhow::ensure!(self.visibility_timeout >= Duration::from_secs(1), "--visibility-timeout must be at least 1s");
        anyhow::ensure!(
            !self.heartbeat_interval.is_zero() && self.heartbeat_interval < self.visibility_timeout,
            "--heartbeat-interval must be above zero and below --visibility-timeout, or jobs would run twice"
        );
        Ok(RunnerConfig {
            concurrency: self.workers.unwrap_or(defaults.concurrency),
            visibility: self.visibility_timeout,
            heartbeat_every: self.heartbeat_interval,
            poll_wait: Duration::from_secs(5),
            drain_deadline: self.drain_timeout,
            max_receive_count: self.max_receive_count,
        })
    }

    /// The engine's input limits.
    pub fn limits(&self) -> Limits {
        Limits { max_input_bytes: self.max_input_bytes, max_pixels: self.max_pixels, ..Limits::default() }
    }
}
