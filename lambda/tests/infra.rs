//! The deployment files agree with the code: the committed state machine is the one the
//! orchestrator generates, every `IMGPIPE_*` variable a function or a container worker (ECS
//! task, Kubernetes pod) is given is one it reads (and every one it requires is given), the
//! code zips are the crate's binaries, and the queue, drain and stop timings hold.
//! `IMGPIPE_BLESS=1` rewrites `infra/statemachine.asl.json`.
//!
//! The files are read by indentation, not by a YAML library: CloudFormation's short tags
//! (`!Ref`, `!Sub`) need one with tag support, and these checks only need keys.

use std::collections::BTreeSet;

use protocol::asl::{AslOptions, definition};
use wiring::functions::{self, Function};
use wiring::settings::{BackendArgs, BlobStoreKind, JobStoreKind, OrchestratorKind, QueueKind, WorkerGroups, env_vars};

const TEMPLATE: &str = include_str!("../../infra/template.yaml");
const ASL_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/statemachine.asl.json");
const CARGO_TOML: &str = include_str!("../Cargo.toml");
/// The CLI, for the variables its `Cli` struct reads beside the settings groups.
const CLI: &str = include_str!("../../src/cli/mod.rs");
const K8S_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/k8s");
const K8S_KUSTOMIZATION: &str = include_str!("../../infra/k8s/kustomization.yaml");
const K8S_DEPLOYMENT: &str = include_str!("../../infra/k8s/deployment.yaml");
const K8S_CONFIG: &str = include_str!("../../infra/k8s/configmap.yaml");
const K8S_ACCOUNT: &str = include_str!("../../infra/k8s/serviceaccount.yaml");
const K8S_SCALER: &str = include_str!("../../infra/k8s/scaledobject.yaml");

/// Fargate's longest stop timeout.
const FARGATE_MAX_STOP_TIMEOUT: u64 = 120;
/// Time a stopping worker keeps after its drain to release what it holds and exit.
const RELEASE_MARGIN: u64 = 10;

/// The functions' logical ids in the template.
const FUNCTIONS: &[(&str, Function, &str)] = &[
    ("ApiFunction", Function::Api, "imgpipe-api"),
    ("S3EventFunction", Function::S3Event, "imgpipe-s3-event"),
    ("WorkerFunction", Function::Worker, "imgpipe-worker"),
];

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// The lines of resource `name` (under `Resources:`, two spaces in).
fn resource(name: &str) -> Vec<&'static str> {
    let header = format!("  {name}:");
    let mut lines = TEMPLATE.lines().skip_while(|l| *l != header);
    assert!(lines.next().is_some(), "no resource {name} in the template");
    lines.take_while(|l| l.trim().is_empty() || indent(l) > 2).collect()
}

/// The lines nested under the first `section:` (or `- section:`) line of `lines` (none without one).
fn block(lines: &[&'static str], section: &str) -> Vec<&'static str> {
    let header = format!("{section}:");
    let Some(start) = lines.iter().map(|l| l.trim()).position(|l| l == header || l.strip_prefix("- ") == Some(&header))
    else {
        return Vec::new();
    };
    let depth = indent(lines[start]);
    lines[start + 1..].iter().take_while(|l| l.trim().is_empty() || indent(l) > depth).copied().collect()
}

/// `key: value` pairs nested under the first `section:` line of `lines`, comments skipped.
fn under(lines: &[&'static str], section: &str) -> Vec<(&'static str, &'static str)> {
    block(lines, section)
        .into_iter()
        .filter(|l| !l.trim().starts_with('#'))
        .filter_map(|l| l.trim().split_once(':').map(|(k, v)| (k.trim(), v.trim())))
        .collect()
}

/// The value of the first `key:` line in `lines`.
fn value(lines: &[&'static str], key: &str) -> &'static str {
    let prefix = format!("{key}:");
    lines.iter().find_map(|l| l.trim().strip_prefix(prefix.as_str())).unwrap_or_else(|| panic!("no {key}")).trim()
}

fn number(lines: &[&'static str], key: &str) -> u64 {
    value(lines, key).trim_matches('"').parse().unwrap_or_else(|e| panic!("{key}: {e}"))
}

/// The lines of parameter `name`.
fn resource_parameter(name: &str) -> Vec<&'static str> {
    let header = format!("  {name}:");
    let mut lines = TEMPLATE.lines().skip_while(|l| *l != header);
    assert!(lines.next().is_some(), "no parameter {name} in the template");
    lines.take_while(|l| l.trim().is_empty() || indent(l) > 2).collect()
}

/// The logical ids under `Resources:`.
fn resource_names() -> Vec<&'static str> {
    TEMPLATE
        .lines()
        .skip_while(|l| *l != "Resources:")
        .skip(1)
        .take_while(|l| l.trim().is_empty() || l.starts_with(' ') || l.starts_with('#'))
        .filter(|l| indent(l) == 2 && !l.trim().starts_with('#'))
        .filter_map(|l| l.trim().strip_suffix(':'))
        .collect()
}

#[test]
fn the_committed_state_machine_is_the_generated_one() {
    let generated = definition(&AslOptions::default()).expect("a definition");
    let text = format!("{}\n", serde_json::to_string_pretty(&generated).expect("JSON"));
    if std::env::var("IMGPIPE_BLESS").is_ok_and(|v| !v.is_empty()) {
        std::fs::write(ASL_PATH, &text).expect("write the definition");
    }
    let committed = std::fs::read_to_string(ASL_PATH).expect("infra/statemachine.asl.json (IMGPIPE_BLESS=1 writes it)");
    assert!(committed == text, "infra/statemachine.asl.json is stale: run `imgpipe asl > infra/statemachine.asl.json`");

    // Each `${...}` in it is substituted by the template.
    let machine = resource("StateMachine");
    assert_eq!(value(&machine, "DefinitionUri"), "statemachine.asl.json");
    let substituted: BTreeSet<&str> = under(&machine, "DefinitionSubstitutions").iter().map(|(k, _)| *k).collect();
    let placeholders: BTreeSet<&str> =
        committed.split("${").skip(1).filter_map(|rest| rest.split_once('}').map(|(name, _)| name)).collect();
    assert_eq!(placeholders, substituted);
}

#[test]
fn every_variable_set_is_read_and_every_required_one_is_set() {
    for (logical_id, function, _) in FUNCTIONS {
        let set: BTreeSet<&str> = under(&resource(logical_id), "Variables").iter().map(|(k, _)| *k).collect();
        let reads = function.vars();
        for name in set.iter().filter(|n| n.starts_with("IMGPIPE_")) {
            assert!(reads.iter().any(|(v, _)| v == name), "{logical_id} sets {name}, which it never reads");
        }
        for (name, _) in reads.iter().filter(|(_, required)| *required) {
            assert!(set.contains(name.as_str()), "{logical_id} needs {name} but the template does not set it");
        }
    }
    // No IMGPIPE_* variable anywhere else in the template (e.g. on a resource the checks miss).
    let in_functions: usize =
        FUNCTIONS.iter().map(|(id, ..)| resource(id).iter().filter(|l| l.trim().starts_with("IMGPIPE_")).count()).sum();
    let everywhere = TEMPLATE.lines().filter(|l| l.trim().starts_with("IMGPIPE_")).count();
    assert_eq!(in_functions, everywhere);
}

#[test]
fn code_zips_are_the_crates_binaries() {
    for (logical_id, _, bin) in FUNCTIONS {
        assert!(CARGO_TOML.contains(&format!("name = \"{bin}\"")), "no binary {bin} in lambda/Cargo.toml");
        let function = resource(logical_id);
        assert_eq!(value(&function, "CodeUri"), format!("../target/lambda/{bin}/bootstrap.zip"));
        assert_eq!((value(&function, "Handler"), value(&function, "Runtime")), ("bootstrap", "provided.al2023"));
    }
}

#[test]
fn queue_timings_hold() {
    let worker = resource("WorkerFunction");
    let jobs = resource("JobsQueue");
    let timeout = number(&worker, "Timeout");
    assert!(number(&jobs, "VisibilityTimeout") >= 6 * timeout, "visibility must be at least 6x the worker timeout");
    let max_receive = number(&jobs, "maxReceiveCount");
    assert!(max_receive >= 5);
    let poison_after: u64 = value(&worker, "IMGPIPE_MAX_RECEIVE_COUNT").trim_matches('"').parse().expect("a count");
    assert_eq!(max_receive, poison_after + 1, "the last delivery is reported as poison before SQS moves it");

    let source = resource("WorkerEventSource");
    assert!(source.iter().any(|l| l.contains("ReportBatchItemFailures")), "partial batch failures are on");
    assert!(source.iter().any(|l| l.trim() == "MaximumConcurrency: !Ref WorkerMaxConcurrency"));

    let options = AslOptions::default();
    let interval = protocol::time::parse_duration(value(&worker, "IMGPIPE_HEARTBEAT_INTERVAL")).expect("a duration");
    assert!(interval * 3 <= options.heartbeat(), "several heartbeats fit in HeartbeatSeconds");
    assert!(options.timeout().as_secs() >= timeout, "one attempt's deadline covers a whole invocation");
}

// ---------------------------------------------------------------- container workers

/// The `IMGPIPE_*` variables `imgpipe worker` reads: its settings groups, and the CLI's own
/// (`env = "IMGPIPE_..."` in `struct Cli`: the log filter, the health file).
fn worker_reads() -> BTreeSet<String> {
    let cli = CLI
        .split_once("pub struct Cli {")
        .and_then(|(_, rest)| rest.split_once("\n}"))
        .map(|(body, _)| body)
        .expect("struct Cli in src/cli/mod.rs");
    let globals =
        cli.split("env = \"").skip(1).filter_map(|rest| rest.split_once('"').map(|(name, _)| name.to_owned()));
    let reads: BTreeSet<String> = WorkerGroups::vars().into_iter().map(|(name, _)| name).chain(globals).collect();
    assert!(reads.contains("IMGPIPE_LOG") && reads.contains("IMGPIPE_DRAIN_TIMEOUT"), "{reads:?}");
    reads
}

/// `{ Name: N, Value: V }` entries under the first `Environment:` of `lines` (an ECS container).
fn container_env(lines: &[&'static str]) -> Vec<(&'static str, &'static str)> {
    block(lines, "Environment")
        .into_iter()
        .filter_map(|l| {
            let entry = l.trim().strip_prefix("- {")?.strip_suffix('}')?;
            let (name, value) = entry.split_once(", Value:")?;
            Some((name.trim().strip_prefix("Name:")?.trim(), value.trim()))
        })
        .collect()
}

/// `env` as deployed with `Orchestrator=engine` (`engine`) or without: each
/// `!If [OnEngine, a, b]` value resolved to its branch.
fn resolved(env: &[(&'static str, &'static str)], engine: bool) -> Vec<(&'static str, &'static str)> {
    let branch = |v: &'static str| {
        let Some(branches) = v.strip_prefix("!If [OnEngine, ").and_then(|r| r.strip_suffix(']')) else { return v };
        let (a, b) = branches.rsplit_once(", ").unwrap_or_else(|| panic!("two branches: {v}"));
        if engine { a } else { b }
    };
    env.iter().map(|&(k, v)| (k, branch(v))).collect()
}

/// What a container worker given `env` does, checked against the template's queue and the
/// state machine: it runs on S3, SQS and Step Functions, reads every `IMGPIPE_*` variable it
/// is given, drains within its stop timeout, and holds its jobs safely.
fn check_container_worker(who: &str, env: &[(&str, &str)], stop_timeout: u64, orchestrator: OrchestratorKind) {
    let reads = worker_reads();
    for (name, _) in env.iter().filter(|(name, _)| name.starts_with("IMGPIPE_")) {
        assert!(reads.contains(*name), "{who} sets {name}, which `imgpipe worker` never reads");
    }
    let lookup = |name: &str| env.iter().find(|(k, _)| *k == name).map(|(_, v)| v.trim_matches('"').to_owned());
    let settings = WorkerGroups::read(lookup).unwrap_or_else(|e| panic!("{who}: {e}"));
    let backends = &settings.backends;
    assert_eq!(
        (backends.blob_store, backends.queue_backend, backends.orchestrator),
        (BlobStoreKind::S3, QueueKind::Sqs, orchestrator),
        "{who} runs on S3, SQS and {orchestrator:?}"
    );
    let reports = (orchestrator == OrchestratorKind::Embedded).then_some("IMGPIPE_REPORTS_QUEUE");
    for name in ["IMGPIPE_JOBS_QUEUE", "IMGPIPE_DEAD_LETTER_QUEUE"].into_iter().chain(reports) {
        assert!(lookup(name).is_some_and(|v| !v.is_empty()), "{who} must name its queue in {name}");
    }
    // Refuses a heartbeat at or past the visibility, as the binary does at start.
    let runner = settings.worker.runner().unwrap_or_else(|e| panic!("{who}: {e}"));

    let drain = runner.drain_deadline.as_secs();
    assert!(
        drain + RELEASE_MARGIN <= stop_timeout,
        "{who}: the drain ({drain} s) and the release of what is left must end before SIGKILL ({stop_timeout} s)"
    );
    let asl = AslOptions::default();
    assert!(runner.heartbeat_every * 2 <= runner.visibility, "{who}: one failed renewal must not lose a held job");
    assert!(runner.heartbeat_every * 3 <= asl.heartbeat(), "{who}: several heartbeats fit in HeartbeatSeconds");
    assert!(
        runner.visibility < asl.heartbeat(),
        "{who}: a killed worker's job must reappear before the workflow counts its worker lost"
    );
    let max_receive = number(&resource("JobsQueue"), "maxReceiveCount");
    assert_eq!(
        u64::from(runner.max_receive_count) + 1,
        max_receive,
        "{who}: the last delivery is reported as poison before SQS moves it"
    );
}

#[test]
fn exactly_one_worker_form_is_deployed() {
    assert_eq!(value(&resource_parameter("WorkerPlatform"), "AllowedValues"), "[lambda, ecs]");
    let conditions = block(&TEMPLATE.lines().collect::<Vec<_>>(), "Conditions");
    assert!(conditions.iter().any(|l| l.trim() == "WorkerOnLambda: !Equals [!Ref WorkerPlatform, lambda]"));
    assert!(conditions.iter().any(|l| l.trim() == "WorkerOnEcs: !Equals [!Ref WorkerPlatform, ecs]"));

    let condition_of = |name: &str| {
        resource(name)
            .iter()
            .filter(|l| indent(l) == 4)
            .find_map(|l| l.trim().strip_prefix("Condition: "))
            .map(str::trim)
    };
    for name in ["WorkerFunction", "WorkerEventSource", "WorkerFunctionRole", "WorkerLogGroup"] {
        assert_eq!(condition_of(name), Some("WorkerOnLambda"), "{name} is the Lambda worker's");
    }
    // Every other resource named Worker* is the container worker's.
    let names = resource_names();
    let ecs: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| {
            n.starts_with("Worker")
                && !["WorkerFunction", "WorkerEventSource", "WorkerFunctionRole", "WorkerLogGroup"].contains(n)
        })
        .collect();
    for name in ["WorkerCluster", "WorkerTaskDefinition", "WorkerService", "WorkerScalableTarget", "WorkerWakeAlarm"] {
        assert!(ecs.contains(&name), "no {name}");
    }
    for name in ecs {
        assert_eq!(condition_of(name), Some("WorkerOnEcs"), "{name} is the container worker's");
    }
}

#[test]
fn the_ecs_worker_agrees_with_the_binary_and_the_queue() {
    let task = resource("WorkerTaskDefinition");
    let env = container_env(&task);
    assert!(env.len() >= 5, "{env:?}");
    let stop_timeout = number(&task, "StopTimeout");
    assert!(stop_timeout <= FARGATE_MAX_STOP_TIMEOUT, "Fargate stops a container at most 120 s after SIGTERM");
    check_container_worker(
        "WorkerTaskDefinition",
        &resolved(&env, false),
        stop_timeout,
        OrchestratorKind::StepFunctions,
    );
    let engine = resolved(&env, true);
    check_container_worker("WorkerTaskDefinition (engine)", &engine, stop_timeout, OrchestratorKind::Embedded);
    let queue = |name: &str| engine.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
    assert_eq!(queue("IMGPIPE_JOBS_QUEUE"), Some("!Ref JobsQueue"));
    assert_eq!(queue("IMGPIPE_DEAD_LETTER_QUEUE"), Some("!Ref DeadLetterQueue"));
    assert_eq!(queue("IMGPIPE_REPORTS_QUEUE"), Some("!Ref ReportsQueue"), "with the engine, jobs report to it");

    assert_eq!(value(&task, "Command"), "[worker]");
    assert_eq!(value(&task, "User"), "\"10001:10001\"");
    assert_eq!(value(&task, "ReadonlyRootFilesystem"), "true");
    assert_eq!(value(&task, "RuntimePlatform"), "{ CpuArchitecture: ARM64, OperatingSystemFamily: LINUX }");
    assert!(!task.iter().any(|l| l.trim().starts_with("HealthCheck:")), "the worker has no health check to give ECS");
    assert!(!task.iter().any(|l| l.contains("PortMappings")), "the worker opens no port");

    // Every IMGPIPE_* entry of the template's containers is in this task or the engine's (each checked).
    let everywhere = TEMPLATE.lines().filter(|l| l.contains("Name: IMGPIPE_")).count();
    let engine_task = container_env(&resource("EngineTaskDefinition"));
    let ours = env.iter().chain(&engine_task).filter(|(name, _)| name.starts_with("IMGPIPE_")).count();
    assert_eq!(ours, everywhere);
}

#[test]
fn the_ecs_task_role_is_the_worker_functions() {
    // Statement for statement, less the function's own log writes (ECS writes the task's).
    let statements = |role: &str| -> Vec<Vec<String>> {
        let lines = resource(role);
        let policy = lines.iter().position(|l| l.trim() == "- PolicyName: worker").expect("a worker policy");
        let mut all: Vec<Vec<String>> = Vec::new();
        for line in block(&lines[policy..], "Statement")
            .iter()
            .map(|l| l.trim())
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            match all.last_mut() {
                Some(current) if !line.starts_with("- Sid:") => current.push(line.to_owned()),
                _ => all.push(vec![line.to_owned()]),
            }
        }
        all.retain(|s| s[0] != "- Sid: Logs");
        all
    };
    let function = statements("WorkerFunctionRole");
    assert!(function.len() >= 5, "{function:?}");
    assert_eq!(statements("WorkerTaskRole"), function);
}

#[test]
fn the_ecs_fleet_scales_on_backlog_per_task_and_from_zero() {
    let target = resource("WorkerScalableTarget");
    assert_eq!((number(&target, "MinCapacity"), value(&target, "MaxCapacity")), (0, "!Ref WorkerMaxTasks"));

    let tracking = resource("WorkerBacklogScaling");
    assert_eq!(value(&tracking, "PolicyType"), "TargetTrackingScaling");
    assert_eq!(value(&tracking, "TargetValue"), "!Ref BacklogPerTaskTarget");
    assert_eq!(value(&tracking, "Expression"), "(waiting + inflight) / running");
    for metric in ["ApproximateNumberOfMessagesVisible", "ApproximateNumberOfMessagesNotVisible", "RunningTaskCount"] {
        assert!(tracking.iter().any(|l| l.trim() == format!("MetricName: {metric}")), "no {metric}");
    }

    // Target tracking cannot leave zero (no running task: no ratio); the alarm wakes a task.
    let wake = resource("WorkerWakeScaling");
    assert_eq!(value(&wake, "PolicyType"), "StepScaling");
    let alarm = resource("WorkerWakeAlarm");
    assert_eq!(value(&alarm, "Expression"), "IF(waiting > 0 AND FILL(desired, 0) == 0, 1, 0)");
    assert_eq!(value(&alarm, "AlarmActions"), "[!Ref WorkerWakeScaling]");
    assert!(alarm.iter().any(|l| l.trim() == "MetricName: DesiredTaskCount"));
}

#[test]
fn the_kubernetes_worker_agrees_with_the_binary_and_the_queue() {
    let deployment: Vec<&str> = K8S_DEPLOYMENT.lines().collect();
    let config: Vec<&str> = K8S_CONFIG.lines().collect();
    let data = under(&config, "data");
    assert!(data.len() >= 5, "{data:?}");

    // The pods take their whole environment from the ConfigMap, and set none of their own.
    assert_eq!(under(&deployment, "configMapRef"), vec![("name", value(&config, "name"))]);
    assert!(!deployment.iter().any(|l| l.trim() == "env:"), "set variables in configmap.yaml");
    let stop_timeout = number(&deployment, "terminationGracePeriodSeconds");
    check_container_worker("infra/k8s", &data, stop_timeout, OrchestratorKind::StepFunctions);
    let jobs = value(&config, "IMGPIPE_JOBS_QUEUE");
    assert!(jobs.starts_with("https://sqs.") && jobs.ends_with("-jobs"), "the stack's JobsQueueUrl, not {jobs}");
    assert!(value(&config, "IMGPIPE_DEAD_LETTER_QUEUE").ends_with("-dlq"));

    assert_eq!(value(&deployment, "args"), "[\"worker\"]");
    assert_eq!(value(&deployment, "serviceAccountName"), value(&K8S_ACCOUNT.lines().collect::<Vec<_>>(), "name"));
    for (key, want) in [
        ("runAsNonRoot", "true"),
        ("runAsUser", "10001"),
        ("readOnlyRootFilesystem", "true"),
        ("allowPrivilegeEscalation", "false"),
        ("drop", "[\"ALL\"]"),
    ] {
        assert_eq!(value(&deployment, key), want, "{key}");
    }
    assert!(!deployment.iter().any(|l| l.contains("ports:") || l.contains("containerPort")), "no ports");
    assert!(!deployment.iter().any(|l| l.trim().starts_with("replicas:")), "KEDA owns the replica count");
    assert!(under(&deployment, "limits").iter().any(|(k, _)| *k == "memory"), "a memory limit");
}

#[test]
fn keda_scales_the_deployment_on_the_jobs_queue() {
    let scaler: Vec<&str> = K8S_SCALER.lines().collect();
    let config: Vec<&str> = K8S_CONFIG.lines().collect();
    assert_eq!((value(&scaler, "apiVersion"), value(&scaler, "kind")), ("keda.sh/v1alpha1", "ScaledObject"));
    assert_eq!(
        under(&scaler, "scaleTargetRef"),
        vec![("name", value(&K8S_DEPLOYMENT.lines().collect::<Vec<_>>(), "name"))]
    );
    assert_eq!(number(&scaler, "minReplicaCount"), 0, "idle costs nothing");
    assert!(number(&scaler, "maxReplicaCount") >= 1);
    let triggers = block(&scaler, "triggers");
    assert_eq!(triggers.iter().filter(|l| l.trim().starts_with("- type:")).count(), 1, "one trigger");
    assert_eq!(value(&triggers, "- type"), "aws-sqs-queue");
    // Jobs being worked on count, or a fleet that keeps up would be scaled in under its jobs.
    assert_eq!(value(&scaler, "scaleOnInFlight"), "\"true\"");
    assert_eq!(value(&scaler, "activationQueueLength"), "\"0\"", "the first job wakes a worker");
    // The queue is the one the pods read, in the pods' region.
    let from_env = value(&scaler, "queueURLFromEnv");
    assert!(under(&config, "data").iter().any(|(k, _)| *k == from_env), "{from_env} is not in the ConfigMap");
    assert_eq!(from_env, "IMGPIPE_JOBS_QUEUE");
    assert_eq!(value(&scaler, "awsRegion"), value(&config, "AWS_REGION"));
    // The same backlog per worker as the ECS fleet's default target.
    let target = value(&resource_parameter("BacklogPerTaskTarget"), "Default");
    assert_eq!(value(&scaler, "queueLength"), format!("\"{target}\""));
    let scale_down = under(&scaler, "scaleDown");
    assert!(
        scale_down.iter().any(|(k, v)| *k == "stabilizationWindowSeconds" && v.parse::<u64>().is_ok_and(|s| s >= 60)),
        "scale-down is stabilized: {scale_down:?}"
    );
    // Its authentication is declared beside it, with the workers' own identity.
    let auth = K8S_SCALER
        .split("\n---\n")
        .find(|doc| doc.contains("\nkind: TriggerAuthentication\n"))
        .expect("a TriggerAuthentication");
    let auth: Vec<&str> = auth.lines().collect();
    assert_eq!(under(&scaler, "authenticationRef"), vec![("name", value(&auth, "name"))]);
    assert_eq!(under(&auth, "podIdentity"), vec![("provider", "aws"), ("identityOwner", "workload")]);
}

#[test]
fn kustomize_applies_every_manifest() {
    let listed: BTreeSet<String> = K8S_KUSTOMIZATION
        .lines()
        .skip_while(|l| *l != "resources:")
        .skip(1)
        .take_while(|l| l.starts_with("  - "))
        .map(|l| l.trim_start_matches("  - ").trim().to_owned())
        .collect();
    let files: BTreeSet<String> = std::fs::read_dir(K8S_DIR)
        .expect("infra/k8s")
        .map(|e| e.expect("an entry").file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".yaml") && name != "kustomization.yaml")
        .collect();
    assert_eq!(listed, files);
}

/// `imgpipe serve`'s deployment settings, as the engine containers are given them.
#[derive(clap::Parser, Debug)]
struct Serve {
    #[command(flatten)]
    backends: BackendArgs,
}

#[test]
fn the_engine_containers_run_serve_on_the_table_the_code_makes() {
    use clap::CommandFactory;
    use pipeline_aws::dynamodb::{CREATED_INDEX, DUE_INDEX, UNSENT_INDEX};

    assert_eq!(value(&resource_parameter("Orchestrator"), "AllowedValues"), "[stepfunctions, engine]");
    let task = resource("EngineTaskDefinition");
    let env = container_env(&task);
    let reads: BTreeSet<String> = env_vars(&Serve::command()).into_iter().map(|(name, _)| name).collect();
    for (name, _) in env.iter().filter(|(name, _)| name.starts_with("IMGPIPE_")) {
        assert!(reads.contains(*name), "the engine is given {name}, which `imgpipe serve` never reads");
    }
    let lookup = |name: &str| env.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned());
    let serve: Serve = functions::read(lookup).expect("the engine's settings");
    let b = &serve.backends;
    assert_eq!(
        (b.blob_store, b.queue_backend, b.orchestrator, b.job_store),
        (BlobStoreKind::S3, QueueKind::Sqs, OrchestratorKind::Embedded, JobStoreKind::DynamoDb)
    );
    assert_eq!(
        [b.jobs_table.as_str(), &b.jobs_queue, &b.reports_queue, &b.dead_letter_queue],
        ["!Ref JobsTable", "!Ref JobsQueue", "!Ref ReportsQueue", "!Ref DeadLetterQueue"]
    );
    assert_eq!(
        value(&task, "Command"),
        "[serve, --workers, \"0\", --listen, \"127.0.0.1:8080\"]",
        "no workers, no open port"
    );
    assert_eq!(value(&resource("EngineService"), "DesiredCount"), "!Ref EngineTasks");

    // The table DynamoJobs::create_table makes: its key and the three indexes it queries.
    let table = resource("JobsTable").join("\n");
    assert!(table.contains("KeySchema: [{ AttributeName: job_id, KeyType: HASH }]"), "{table}");
    assert!(table.contains("BillingMode: PAY_PER_REQUEST"));
    for (index, hash, range) in [
        (DUE_INDEX, "due_state", "due_at"),
        (UNSENT_INDEX, "unsent", "updated_at"),
        (CREATED_INDEX, "created_month", "created_at"),
    ] {
        let schema = format!(
            "- IndexName: {index}\n          KeySchema: [{{ AttributeName: {hash}, KeyType: HASH }}, {{ AttributeName: {range}, KeyType: RANGE }}]\n          Projection: {{ ProjectionType: KEYS_ONLY }}"
        );
        assert!(table.contains(&schema), "{index}: {table}");
    }
}
