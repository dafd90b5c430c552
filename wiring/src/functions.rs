//! The Lambda functions' settings: the CLI's own groups ([`WorkerArgs`], [`IntakeArgs`])
//! plus what only a function needs, parsed from `IMGPIPE_*` variables alone. Each
//! function's variables — and which it requires — are read off its command
//! ([`Function::vars`]), so the deployment template is checked against the code itself.

use std::ffi::OsString;

use clap::{CommandFactory, Parser};

use crate::settings::{IntakeArgs, OrchestratorKind, WorkerArgs, env_vars};

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

/// Who runs the workflow behind the Lambda functions: Step Functions, or the workflow engine
/// with its jobs in DynamoDB (its report loop and timers run elsewhere: `imgpipe serve`
/// containers on the same table).
#[derive(clap::Args, Debug, Clone)]
pub struct LambdaOrchestration {
    /// Who runs the workflow: `stepfunctions` (`--state-machine-arn`), or `embedded` (the
    /// workflow engine, its jobs in `--jobs-table`).
    #[arg(long, env = "IMGPIPE_ORCHESTRATOR", value_enum, default_value_t = OrchestratorKind::StepFunctions)]
    pub orchestrator: OrchestratorKind,
    /// The state machine jobs run on, with `stepfunctions`.
    #[arg(long, env = "IMGPIPE_STATE_MACHINE_ARN", value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub state_machine_arn: Option<String>,
    /// Where the engine keeps its jobs: only `dynamodb` on Lambda.
    #[arg(long, env = "IMGPIPE_JOB_STORE", default_value = "dynamodb", value_parser = ["dynamodb"])]
    pub job_store: String,
    /// The engine's DynamoDB table, with `embedded`.
    #[arg(long, env = "IMGPIPE_JOBS_TABLE", value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub jobs_table: Option<String>,
    /// The jobs queue (URL or name), with `embedded`: the engine sends attempts there.
    #[arg(long, env = "IMGPIPE_JOBS_QUEUE", value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub jobs_queue: Option<String>,
    /// The workers' reports queue (URL or name), with `embedded`.
    #[arg(long, env = "IMGPIPE_REPORTS_QUEUE", value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub reports_queue: Option<String>,
    /// The dead-letter queue (URL or name), with `embedded`: refused inputs and failed jobs
    /// go there, and `/dlq` reads and redrives it.
    #[arg(long, env = "IMGPIPE_DEAD_LETTER_QUEUE", value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub dead_letter_queue: Option<String>,
}

/// What runs the workflow, read from [`LambdaOrchestration`] with what it needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LambdaWorkflow {
    /// Step Functions, on this state machine.
    StepFunctions {
        /// Its ARN.
        state_machine_arn: String,
    },
    /// The workflow engine on a DynamoDB table and these queues (URLs or names).
    Engine {
        /// The table of jobs.
        jobs_table: String,
        /// Where attempts go.
        jobs_queue: String,
        /// Where workers report.
        reports_queue: String,
        /// Where failed jobs go.
        dead_letter_queue: String,
    },
}

impl LambdaOrchestration {
    /// The workflow these settings name.
    ///
    /// # Errors
    /// A setting the choice needs is missing; the message names its variable.
    pub fn workflow(&self) -> anyhow::Result<LambdaWorkflow> {
        let need = |value: &Option<String>, var: &str| {
            value.clone().ok_or_else(|| anyhow::anyhow!("IMGPIPE_ORCHESTRATOR={} needs {var}", self.name()))
        };
        Ok(match self.orchestrator {
            OrchestratorKind::StepFunctions => LambdaWorkflow::StepFunctions {
                state_machine_arn: need(&self.state_machine_arn, "IMGPIPE_STATE_MACHINE_ARN")?,
            },
            OrchestratorKind::Embedded => LambdaWorkflow::Engine {
                jobs_table: need(&self.jobs_table, "IMGPIPE_JOBS_TABLE")?,
                jobs_queue: need(&self.jobs_queue, "IMGPIPE_JOBS_QUEUE")?,
                reports_queue: need(&self.reports_queue, "IMGPIPE_REPORTS_QUEUE")?,
                dead_letter_queue: need(&self.dead_letter_queue, "IMGPIPE_DEAD_LETTER_QUEUE")?,
            },
        })
    }

    fn name(&self) -> &'static str {
        match self.orchestrator {
            OrchestratorKind::StepFunctions => "stepfunctions",
            OrchestratorKind::Embedded => "embedded",
        }
    }
}

/// What the producers (API and S3 intake) read.
#[derive(Parser, Debug, Clone)]
#[command(name = "imgpipe-producer")]
pub struct ProducerFunction {
    /// Buckets, and where uploads' renditions go.
    #[command(flatten)]
    pub intake: IntakeArgs,
    /// Who runs the workflow.
    #[command(flatten)]
    pub workflow: LambdaOrchestration,
}

/// On the worker the orchestrator is told by each job (a task token, or none: a report to
/// the reports queue); the variable is accepted for symmetry with the producers.
#[derive(clap::Args, Debug, Clone)]
pub struct AnyOrchestrator {
    /// Who runs the workflow (jobs with a task token report to Step Functions, the others to
    /// `IMGPIPE_REPORTS_QUEUE`).
    #[arg(long, env = "IMGPIPE_ORCHESTRATOR", value_enum, default_value_t = OrchestratorKind::StepFunctions)]
    pub orchestrator: OrchestratorKind,
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
    /// Who runs the workflow.
    #[command(flatten)]
    pub orchestrator: AnyOrchestrator,
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
    fn producers_need_what_their_orchestrator_needs() {
        let api = read::<ProducerFunction>(env(&[("IMGPIPE_READ_BUCKETS", "orig, up,")])).expect("parses");
        let err = api.workflow.workflow().expect_err("no state machine").to_string();
        assert!(err.contains("IMGPIPE_STATE_MACHINE_ARN"), "{err}");
        let api = read::<ProducerFunction>(env(&[
            ("IMGPIPE_READ_BUCKETS", "orig, up,"),
            ("IMGPIPE_STATE_MACHINE_ARN", "arn:sm"),
        ]))
        .expect("api settings");
        let buckets = api.intake.buckets().expect("no retired variable");
        assert_eq!(
            api.workflow.workflow().expect("complete"),
            LambdaWorkflow::StepFunctions { state_machine_arn: "arn:sm".into() }
        );
        assert_eq!(
            (buckets.read, buckets.write),
            (vec!["orig".to_owned(), "up".to_owned()], vec!["resized".to_owned()])
        );
        let retired = read::<ProducerFunction>(env(&[
            ("IMGPIPE_ALLOWED_BUCKETS", "orig,resized"),
            ("IMGPIPE_STATE_MACHINE_ARN", "arn:sm"),
        ]))
        .expect("parses");
        let advice = retired.intake.buckets().expect_err("refused").to_string();
        assert!(advice.contains("IMGPIPE_READ_BUCKETS") && advice.contains("IMGPIPE_WRITE_BUCKETS"), "{advice}");
        assert!(read::<ProducerFunction>(env(&[("IMGPIPE_STATE_MACHINE_ARN", "")])).is_err(), "empty is missing");
        assert!(!api.intake.job_defaults.sidecar, "no sidecar unless asked");
        let sidecar =
            read::<ProducerFunction>(env(&[("IMGPIPE_STATE_MACHINE_ARN", "arn:sm"), ("IMGPIPE_SIDECAR", "true")]));
        assert!(sidecar.expect("a boolean").intake.job_defaults.sidecar);

        // The engine: a table and its three queues, each named when missing.
        let mut engine = vec![
            ("IMGPIPE_ORCHESTRATOR", "embedded"),
            ("IMGPIPE_JOBS_TABLE", "t"),
            ("IMGPIPE_JOBS_QUEUE", "j"),
            ("IMGPIPE_REPORTS_QUEUE", "r"),
            ("IMGPIPE_DEAD_LETTER_QUEUE", "d"),
        ];
        let complete = read::<ProducerFunction>(env(&engine)).expect("engine settings").workflow.workflow();
        assert_eq!(
            complete.expect("complete"),
            LambdaWorkflow::Engine {
                jobs_table: "t".into(),
                jobs_queue: "j".into(),
                reports_queue: "r".into(),
                dead_letter_queue: "d".into()
            }
        );
        engine.retain(|(name, _)| *name != "IMGPIPE_REPORTS_QUEUE");
        let err = read::<ProducerFunction>(env(&engine)).expect("parses").workflow.workflow().expect_err("no reports");
        assert!(err.to_string().contains("IMGPIPE_REPORTS_QUEUE"), "{err}");
        let sqlite =
            read::<ProducerFunction>(env(&[("IMGPIPE_ORCHESTRATOR", "embedded"), ("IMGPIPE_JOB_STORE", "sqlite")]));
        assert!(sqlite.is_err(), "no SQLite file on Lambda");
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
        assert!(api.contains(&("IMGPIPE_STATE_MACHINE_ARN".to_owned(), false)), "{api:?}");
        assert!(api.contains(&("IMGPIPE_JOBS_TABLE".to_owned(), false)), "{api:?}");
        assert!(api.contains(&("IMGPIPE_READ_BUCKETS".to_owned(), false)), "{api:?}");
        assert!(api.contains(&("IMGPIPE_WRITE_BUCKETS".to_owned(), false)), "{api:?}");
        assert!(!api.iter().any(|(name, _)| name == "IMGPIPE_ALLOWED_BUCKETS"), "retired, not listed: {api:?}");
        assert_eq!(Function::S3Event.vars(), api, "both producers read the intake's settings");
        assert!(api.contains(&("IMGPIPE_SIDECAR".to_owned(), false)), "{api:?}");
        let worker = Function::Worker.vars();
        assert!(worker.contains(&("IMGPIPE_DEAD_LETTER_QUEUE".to_owned(), true)), "{worker:?}");
        assert!(worker.contains(&("IMGPIPE_HEARTBEAT_INTERVAL".to_owned(), false)), "{worker:?}");
        assert!(!worker.iter().any(|(name, _)| name == "IMGPIPE_STATE_MACHINE_ARN"), "{worker:?}");
    }
}
