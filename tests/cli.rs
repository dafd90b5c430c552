//! The command line as a user meets it: help, errors and exit codes.

mod common;

use common::run_cli;
use tempfile::TempDir;

#[test]
fn every_command_has_help() {
    let dir = TempDir::new().expect("tempdir");
    for args in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["worker", "--help"],
        vec!["process", "--help"],
        vec!["submit", "--help"],
        vec!["jobs", "--help"],
        vec!["dlq", "--help"],
        vec!["dlq", "redrive", "--help"],
    ] {
        let (ok, out, err) = run_cli(dir.path(), &args);
        assert!(ok, "{args:?}: {err}");
        assert!(out.contains("Usage:"), "{args:?}: {out}");
    }
}

#[test]
fn commands_on_a_missing_data_dir_fail_with_a_message() {
    let dir = TempDir::new().expect("tempdir");
    let missing = dir.path().join("nothing-here");
    for args in [vec!["jobs"], vec!["dlq", "list"]] {
        let (ok, _, err) = run_cli(&missing, &args);
        assert!(!ok, "{args:?} should fail");
        assert!(err.contains("holds no imgpipe data"), "{args:?}: {err}");
    }
}

#[test]
fn bad_flags_and_unsafe_commands_are_refused() {
    let dir = TempDir::new().expect("tempdir");
    let (ok, _, err) = run_cli(dir.path(), &["serve", "--task-timeout", "soon"]);
    assert!(!ok && err.contains("not a duration"), "{err}");
    let (ok, _, err) = run_cli(dir.path(), &["serve", "--max-in-flight", "0"]);
    assert!(!ok && err.contains("IMGPIPE_MAX_IN_FLIGHT"), "{err}");
    let (ok, _, err) = run_cli(dir.path(), &["bogus"]);
    assert!(!ok && err.contains("unrecognized subcommand"), "{err}");
}

#[test]
fn serve_on_a_public_address_needs_api_keys() {
    let dir = TempDir::new().expect("tempdir");
    let data = dir.path().join("data");
    let (ok, _, err) = run_cli(&data, &["serve", "--listen", "0.0.0.0:0"]);
    assert!(!ok, "serve must refuse: {err}");
    assert!(err.contains("IMGPIPE_API_KEYS"), "{err}");
    assert!(!data.exists(), "refused before it touched the data dir");
    let (ok, _, err) = run_cli(&data, &["serve", "--listen", "0.0.0.0:0", "--api-keys", "admin:secret-key"]);
    assert!(!ok && err.contains("unknown scope") && !err.contains("secret-key"), "{err}");
}

#[tokio::test]
async fn submit_then_jobs_and_purge_need_confirmation() {
    let dir = TempDir::new().expect("tempdir");
    let photo = dir.path().join("myphoto.jpg");
    std::fs::write(&photo, common::MYPHOTO).expect("photo");
    let data = dir.path().join("data");
    // `submit` needs a data dir that `serve` made; make one the same way.
    wiring::Deployment::open(&data, protocol::workflow::Policy::default(), 5).await.expect("data dir");
    let (ok, out, err) = run_cli(&data, &["submit", photo.to_str().expect("utf-8")]);
    assert!(ok, "{err}");
    let id = out.split_whitespace().last().expect("job id").to_owned();
    assert!(data.join("buckets/original/myphoto.jpg").is_file());
    let (ok, out, _) = run_cli(&data, &["jobs"]);
    assert!(ok && out.contains(&id) && out.contains("ProcessImage"), "{out}");
    let (ok, out, _) = run_cli(&data, &["jobs", &id]);
    let record: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert!(ok && record["sourceKey"] == "myphoto.jpg");
    let (ok, _, err) = run_cli(&data, &["jobs", "no-such-job"]);
    assert!(!ok && err.contains("no job"), "{err}");
    // Purge without --yes and without a terminal refuses.
    let (ok, _, err) = run_cli(&data, &["dlq", "purge"]);
    assert!(!ok && err.contains("--yes"), "{err}");
    let (ok, out, _) = run_cli(&data, &["dlq", "purge", "--yes"]);
    assert!(ok && out.contains("purged 0"), "{out}");
    let (ok, _, err) = run_cli(&data, &["dlq", "redrive"]);
    assert!(!ok && err.contains("--all"), "{err}");
}
