//! Each function's settings, read once at start-up from the same `IMGPIPE_*` variables the
//! CLI reads. [`VARS`] lists which function reads which variable and whether it must be set,
//! so the deployment template can be checked against it.

use std::time::Duration;

use worker::engine::Limits;

/// The three functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Function {
    /// `imgpipe-api`: the HTTP API behind API Gateway.
    Api,
    /// `imgpipe-s3-event`: S3 ObjectCreated events.
    S3Event,
    /// `imgpipe-worker`: SQS events from the jobs queue.
    Worker,
}

/// A variable a function reads.
#[derive(Clone, Copy, Debug)]
pub struct Var {
    /// The variable's name.
    pub name: &'static str,
    /// The functions that read it.
    pub read_by: &'static [Function],
    /// The functions that refuse to start without it.
    pub required_by: &'static [Function],
}

use Function::{Api, S3Event, Worker};

/// Must be `stepfunctions` when set: on Lambda, Step Functions is the orchestrator.
pub const ORCHESTRATOR: &str = "IMGPIPE_ORCHESTRATOR";
/// The state machine that runs each job.
pub const STATE_MACHINE_ARN: &str = "IMGPIPE_STATE_MACHINE_ARN";
/// Comma-separated buckets jobs may read from or write to.
pub const ALLOWED_BUCKETS: &str = "IMGPIPE_ALLOWED_BUCKETS";
/// Where the renditions of uploaded images go.
pub const DESTINATION_BUCKET: &str = "IMGPIPE_DESTINATION_BUCKET";
/// Where unreadable job messages go (URL or name).
pub const DEAD_LETTER_QUEUE: &str = "IMGPIPE_DEAD_LETTER_QUEUE";
/// Reports of jobs without a task token go here (URL or name), for a mixed set-up.
pub const REPORTS_QUEUE: &str = "IMGPIPE_REPORTS_QUEUE";
/// Largest source accepted, in bytes.
pub const MAX_INPUT_BYTES: &str = "IMGPIPE_MAX_INPUT_BYTES";
/// Largest source accepted, in pixels.
pub const MAX_PIXELS: &str = "IMGPIPE_MAX_PIXELS";
/// `Cache-Control` stored on every output (empty: none).
pub const CACHE_CONTROL: &str = "IMGPIPE_CACHE_CONTROL";
/// The CLI's default `Cache-Control`.
pub const DEFAULT_CACHE_CONTROL: &str = "public, max-age=31536000, immutable";
/// How often a busy job heartbeats.
pub const HEARTBEAT_INTERVAL: &str = "IMGPIPE_HEARTBEAT_INTERVAL";
/// Deliveries of one job message before it is reported as poison.
pub const MAX_RECEIVE_COUNT: &str = "IMGPIPE_MAX_RECEIVE_COUNT";
/// Records of one batch processed at once.
pub const WORKERS: &str = "IMGPIPE_WORKERS";

/// Every variable the functions read.
pub const VARS: &[Var] = &[
    Var { name: ORCHESTRATOR, read_by: &[Api, S3Event, Worker], required_by: &[] },
    Var { name: STATE_MACHINE_ARN, read_by: &[Api, S3Event], required_by: &[Api, S3Event] },
    Var { name: ALLOWED_BUCKETS, read_by: &[Api, S3Event], required_by: &[Api, S3Event] },
    Var { name: DESTINATION_BUCKET, read_by: &[S3Event], required_by: &[S3Event] },
    Var { name: DEAD_LETTER_QUEUE, read_by: &[Worker], required_by: &[Worker] },
    Var { name: REPORTS_QUEUE, read_by: &[Worker], required_by: &[] },
    Var { name: MAX_INPUT_BYTES, read_by: &[Worker], required_by: &[] },
    Var { name: MAX_PIXELS, read_by: &[Worker], required_by: &[] },
    Var { name: CACHE_CONTROL, read_by: &[Worker], required_by: &[] },
    Var { name: HEARTBEAT_INTERVAL, read_by: &[Worker], required_by: &[] },
    Var { name: MAX_RECEIVE_COUNT, read_by: &[Worker], required_by: &[] },
    Var { name: WORKERS, read_by: &[Worker], required_by: &[] },
];

/// A setting that is missing or unreadable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// A required variable is unset or empty.
    #[error("{0} must be set (see infra/template.yaml for what each function needs)")]
    Missing(&'static str),
    /// A variable holds something that cannot be read.
    #[error("{name}={value:?}: {reason}")]
    Invalid {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Reads variables through `lookup` (the process environment in the binaries, a map in tests).
pub struct Env<F: Fn(&str) -> Option<String>>(pub F);

impl Env<fn(&str) -> Option<String>> {
    /// The process environment.
    pub fn process() -> Self {
        Env(|name| std::env::var(name).ok())
    }
}

impl<F: Fn(&str) -> Option<String>> Env<F> {
    fn get(&self, name: &'static str) -> Option<String> {
        (self.0)(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
    }

    fn required(&self, name: &'static str) -> Result<String, ConfigError> {
        self.get(name).ok_or(ConfigError::Missing(name))
    }

    fn parsed<T: std::str::FromStr>(&self, name: &'static str, default: T) -> Result<T, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        match self.get(name) {
            None => Ok(default),
            Some(value) => {
                value.parse().map_err(|e: T::Err| ConfigError::Invalid { name, reason: e.to_string(), value })
            }
        }
    }

    fn duration(&self, name: &'static str, default: Duration) -> Result<Duration, ConfigError> {
        match self.get(name) {
            None => Ok(default),
            Some(value) => match protocol::time::parse_duration(&value) {
                Ok(d) if !d.is_zero() => Ok(d),
                Ok(_) => Err(ConfigError::Invalid { name, value, reason: "must be above zero".into() }),
                Err(reason) => Err(ConfigError::Invalid { name, value, reason }),
            },
        }
    }

    fn step_functions(&self) -> Result<(), ConfigError> {
        match self.get(ORCHESTRATOR) {
            None => Ok(()),
            Some(v) if v == "stepfunctions" => Ok(()),
            Some(value) => Err(ConfigError::Invalid {
                name: ORCHESTRATOR,
                value,
                reason: "the Lambda functions run with Step Functions only (`stepfunctions`)".into(),
            }),
        }
    }
}

/// What the producers (API and S3 intake) need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProducerConfig {
    /// The state machine jobs run on.
    pub state_machine_arn: String,
    /// Buckets jobs may use.
    pub allowed_buckets: Vec<String>,
    /// Where renditions of uploaded images go (read by the S3 intake only).
    pub destination_bucket: Option<String>,
}

impl ProducerConfig {
    /// Reads the settings of `function` (`Api` or `S3Event`).
    ///
    /// # Errors
    /// [`ConfigError`] for a missing or unreadable variable.
    pub fn read<F: Fn(&str) -> Option<String>>(env: &Env<F>, function: Function) -> Result<Self, ConfigError> {
        env.step_functions()?;
        let allowed_buckets: Vec<String> = env
            .required(ALLOWED_BUCKETS)?
            .split(',')
            .map(str::trim)
            .filter(|b| !b.is_empty())
            .map(String::from)
            .collect();
        let destination_bucket = if function == S3Event { Some(env.required(DESTINATION_BUCKET)?) } else { None };
        Ok(Self { state_machine_arn: env.required(STATE_MACHINE_ARN)?, allowed_buckets, destination_bucket })
    }
}

/// What the worker needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerConfig {
    /// Where unreadable job messages go.
    pub dead_letter_queue: String,
    /// Where reports of jobs without a task token go; without it they cannot be reported.
    pub reports_queue: Option<String>,
    /// Input limits.
    pub limits: Limits,
    /// `Cache-Control` on outputs.
    pub cache_control: Option<String>,
    /// Heartbeat period.
    pub heartbeat_interval: Duration,
    /// Deliveries before a job message is reported as poison.
    pub max_receive_count: u32,
    /// Records processed at once.
    pub concurrency: usize,
}

impl WorkerConfig {
    /// Reads the worker's settings; defaults as the CLI's.
    ///
    /// # Errors
    /// [`ConfigError`] for a missing or unreadable variable.
    pub fn read<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        env.step_functions()?;
        let defaults = Limits::default();
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Ok(Self {
            dead_letter_queue: env.required(DEAD_LETTER_QUEUE)?,
            reports_queue: env.get(REPORTS_QUEUE),
            limits: Limits {
                max_input_bytes: env.parsed(MAX_INPUT_BYTES, defaults.max_input_bytes)?,
                max_pixels: env.parsed(MAX_PIXELS, defaults.max_pixels)?,
                ..defaults
            },
            // As the CLI: unset means a year, immutable (keys are deterministic); empty means none.
            cache_control: match (env.0)(CACHE_CONTROL) {
                None => Some(DEFAULT_CACHE_CONTROL.to_owned()),
                Some(v) => Some(v.trim().to_owned()).filter(|v| !v.is_empty()),
            },
            heartbeat_interval: env.duration(HEARTBEAT_INTERVAL, Duration::from_secs(20))?,
            max_receive_count: env.parsed(MAX_RECEIVE_COUNT, 5)?,
            concurrency: env.parsed(WORKERS, cores)?.max(1),
        })
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
