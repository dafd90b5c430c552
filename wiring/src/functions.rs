//! The Lambda functions' settings: the CLI's own groups ([`WorkerArgs`], [`IntakeArgs`])
//! plus what only a function needs, parsed from `IMGPIPE_*` variables alone. Each
//! function's variables — and which it requires — are read off its command
//! ([`Function::vars`]), so the deployment template is checked against the code itself.

use std::ffi::OsString;

use clap::{CommandFactory, Parser};

use crate::settings::{IntakeArgs, WorkerArgs, env_vars};

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

impl Function {
    /// The variables the function reads, each with whether it must be set.
    pub fn vars(self) -> Vec<(String, bool)> {
        match self {
            Function::Api | Function::S3Event => env_vars(&ProducerFunction::command()),
            Function::Worker => env_vars(&WorkerFunction::command()),
        }
    }
}

/// On Lambda, Step Functions runs the workflow; the variable may only say so.
#[derive(clap::Args, Debug, Clone)]
pub struct StepFunctionsOnly {
    /// Who runs the workflow: only `stepfunctions` on Lambda.
    #[arg(long, env = "IMGPIPE_ORCHESTRATOR", default_value = "stepfunctions", value_parser = ["stepfunctions"])]
    pub orchestrator: String,
}

/// What the producers (API and S3 intake) read.
#[derive(Parser, Debug, Clone)]
#[command(name = "imgpipe-producer")]
pub struct ProducerFunction {
    /// The state machine jobs run on.
    #[arg(long, env = "IMGPIPE_STATE_MACHINE_ARN", required = true,
          value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub state_machine_arn: String,
    /// Buckets, and where uploads' renditions go.
    #[command(flatten)]
    pub intake: IntakeArgs,
    /// Step Functions only.
    #[command(flatten)]
    pub orchestrator: StepFunctionsOnly,
}

/// What the worker reads.
#[derive(Parser, Debug, Clone)]
#[command(name = "imgpipe-worker")]
pub struct WorkerFunction {
    /// Where unreadable job messages go (URL or name).
    #[arg(long, env = "IMGPIPE_DEAD_LETTER_QUEUE", required = true,
          value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub dead_letter_queue: String,
    /// Reports of jobs without a task token go here (URL or name), for a mixed set-up;
    /// without it they cannot be reported.
    #[arg(long, env = "IMGPIPE_REPORTS_QUEUE")]
    pub reports_queue: Option<String>,
    /// Pacing, limits and outputs, as the CLI's workers.
    #[command(flatten)]
    pub worker: WorkerArgs,
    /// Step Functions only.
    #[command(flatten)]
    pub orchestrator: StepFunctionsOnly,
}

/// Parses `T` from the variables `lookup` gives (the process environment in the
/// binaries, a map in tests): each set variable becomes its flag.
///
/// # Errors
/// A required variable is missing or a value cannot be read; the message names the flag
/// and its variable.
pub fn read<T: Parser>(lookup: impl Fn(&str) -> Option<String>) -> Result<T, clap::Error> {
    let command = T::command();
    let mut args: Vec<OsString> = vec![command.get_name().into()];
    for arg in command.get_arguments() {
        let (Some(var), Some(long)) = (arg.get_env().and_then(|v| v.to_str()), arg.get_long()) else { continue };
        if let Some(value) = lookup(var) {
            args.push(format!("--{long}={}", value.trim()).into());
        }
    }
    T::try_parse_from(args)
}

/// [`read`] from the process environment.
///
/// # Errors
/// As [`read`].
pub fn from_env<T: Parser>() -> Result<T, clap::Error> {
    read(|name| std::env::var(name).ok())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use worker::image::Limits;
    use worker::process::DEFAULT_CACHE_CONTROL;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        move |name: &str| map.get(name).cloned()
    }

    #[test]
    fn producers_need_the_state_machine() {
        let err =
            read::<ProducerFunction>(env(&[("IMGPIPE_READ_BUCKETS", "orig, up,")])).expect_err("no state machine");
        assert!(err.to_string().contains("--state-machine-arn"), "{err}");
        let api = read::<ProducerFunction>(env(&[
            ("IMGPIPE_READ_BUCKETS", "orig, up,"),
            ("IMGPIPE_STATE_MACHINE_ARN", "arn:sm"),
        ]))
        .expect("api settings");
        let buckets = api.intake.buckets().expect("no retired variable");
        assert_eq!(
            (api.state_machine_arn.as_str(), buckets.read, buckets.write),
            ("arn:sm", vec!["orig".to_owned(), "up".to_owned()], vec!["resized".to_owned()])
        );
        let retired = read::<ProducerFunction>(env(&[
            ("IMGPIPE_ALLOWED_BUCKETS", "orig,resized"),
            ("IMGPIPE_STATE_MACHINE_ARN", "arn:sm"),
        ]))
        .expect("parses");
        let advice = retired.intake.buckets().expect_err("refused").to_string();
        assert!(advice.contains("IMGPIPE_READ_BUCKETS") && advice.contains("IMGPIPE_WRITE_BUCKETS"), "{advice}");
        assert!(read::<ProducerFunction>(env(&[("IMGPIPE_STATE_MACHINE_ARN", "")])).is_err(), "empty is missing");
    }

    #[test]
    fn only_step_functions_orchestrates_on_lambda() {
        let e = env(&[("IMGPIPE_ORCHESTRATOR", "embedded"), ("IMGPIPE_DEAD_LETTER_QUEUE", "dlq")]);
        assert!(read::<WorkerFunction>(e).is_err());
        let e = env(&[("IMGPIPE_ORCHESTRATOR", "stepfunctions"), ("IMGPIPE_DEAD_LETTER_QUEUE", "dlq")]);
        assert!(read::<WorkerFunction>(e).is_ok());
    }

    #[test]
    fn worker_defaults_are_the_clis_and_overrides_apply() {
        let w = read::<WorkerFunction>(env(&[("IMGPIPE_DEAD_LETTER_QUEUE", "dlq")])).expect("defaults");
        let runner = w.worker.runner().expect("valid");
        assert_eq!((runner.heartbeat_every, runner.max_receive_count), (Duration::from_secs(20), 5));
        assert_eq!(w.worker.cache_control().as_deref(), Some(DEFAULT_CACHE_CONTROL));
        assert_eq!(w.worker.limits(), Limits::default());
        let w = read::<WorkerFunction>(env(&[
            ("IMGPIPE_DEAD_LETTER_QUEUE", "dlq"),
            ("IMGPIPE_HEARTBEAT_INTERVAL", "90s"),
            ("IMGPIPE_VISIBILITY_TIMEOUT", "5m"),
            ("IMGPIPE_MAX_PIXELS", "1000"),
            ("IMGPIPE_CACHE_CONTROL", ""),
            ("IMGPIPE_WORKERS", "3"),
        ]))
        .expect("overrides");
        let runner = w.worker.runner().expect("valid with a longer visibility");
        assert_eq!(
            (runner.heartbeat_every, w.worker.limits().max_pixels, runner.concurrency),
            (Duration::from_secs(90), 1000, 3)
        );
        assert_eq!(w.worker.cache_control(), None);
        let bad =
            read::<WorkerFunction>(env(&[("IMGPIPE_DEAD_LETTER_QUEUE", "dlq"), ("IMGPIPE_MAX_INPUT_BYTES", "lots")]));
        assert!(bad.is_err_and(|e| e.to_string().contains("--max-input-bytes")));
    }

    #[test]
    fn the_functions_list_what_they_read() {
        let api = Function::Api.vars();
        assert!(api.contains(&("IMGPIPE_STATE_MACHINE_ARN".to_owned(), true)), "{api:?}");
        assert!(api.contains(&("IMGPIPE_READ_BUCKETS".to_owned(), false)), "{api:?}");
        assert!(api.contains(&("IMGPIPE_WRITE_BUCKETS".to_owned(), false)), "{api:?}");
        assert!(!api.iter().any(|(name, _)| name == "IMGPIPE_ALLOWED_BUCKETS"), "retired, not listed: {api:?}");
        let worker = Function::Worker.vars();
        assert!(worker.contains(&("IMGPIPE_DEAD_LETTER_QUEUE".to_owned(), true)), "{worker:?}");
        assert!(worker.contains(&("IMGPIPE_HEARTBEAT_INTERVAL".to_owned(), false)), "{worker:?}");
        assert!(!worker.iter().any(|(name, _)| name == "IMGPIPE_STATE_MACHINE_ARN"), "{worker:?}");
    }
}
