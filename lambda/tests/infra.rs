//! The deployment template agrees with the code: the committed state machine is the one
//! the orchestrator generates, every `IMGPIPE_*` variable a function is given is one it
//! reads (and every one it requires is given), the code zips are the crate's binaries, and
//! the queue timings hold. `IMGPIPE_BLESS=1` rewrites `infra/statemachine.asl.json`.
//!
//! The template is read by indentation, not by a YAML library: CloudFormation's short
//! tags (`!Ref`, `!Sub`) need one with tag support, and these checks only need keys.

use std::collections::BTreeSet;

use protocol::asl::{AslOptions, definition};
use wiring::functions::Function;

const TEMPLATE: &str = include_str!("../../infra/template.yaml");
const ASL_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/statemachine.asl.json");
const CARGO_TOML: &str = include_str!("../Cargo.toml");

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

/// `key: value` pairs nested under the first `section:` line of `lines`.
fn under(lines: &[&'static str], section: &str) -> Vec<(&'static str, &'static str)> {
    let Some(start) = lines.iter().position(|l| l.trim() == format!("{section}:")) else { return Vec::new() };
    let depth = indent(lines[start]);
    lines[start + 1..]
        .iter()
        .take_while(|l| l.trim().is_empty() || indent(l) > depth)
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
