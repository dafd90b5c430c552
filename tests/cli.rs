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
fn process_keeps_only_the_metadata_asked_for() {
    let dir = TempDir::new().expect("tempdir");
    let camera = concat!(env!("CARGO_MANIFEST_DIR"), "/worker/tests/fixtures/camera.jpg");
    let out = dir.path().join("out");
    let out_arg = out.to_str().expect("utf-8");
    let (ok, _, err) = run_cli(dir.path(), &["process", camera, "--out", out_arg, "--keep", "captureTime", "-q"]);
    assert!(ok, "{err}");
    let thumb = std::fs::read(out.join("camera_thumbnail.jpg")).expect("thumbnail");
    let has = |needle: &[u8]| thumb.windows(needle.len()).any(|w| w == needle);
    assert!(has(b"2021:07:04 12:30:59") && !has(b"ExampleCam"), "the capture time, nothing else");
    let (ok, _, err) = run_cli(dir.path(), &["process", camera, "--out", out_arg, "--keep", "copyright,gps"]);
    assert!(!ok && err.contains("\"gps\" cannot be kept"), "{err}");
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

#[test]
fn shell_completions_name_every_command_and_parse() {
    let dir = TempDir::new().expect("tempdir");
    let (ok, script, err) = run_cli(dir.path(), &["completions", "bash"]);
    assert!(ok, "{err}");
    for command in ["serve", "worker", "submit", "jobs", "dlq", "redrive", "completions"] {
        assert!(script.contains(command), "{command} missing from the bash completions");
    }
    let checked = std::process::Command::new("bash")
        .arg("-n")
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut bash| {
            std::io::Write::write_all(bash.stdin.as_mut().expect("stdin"), script.as_bytes())?;
            drop(bash.stdin.take());
            bash.wait()
        })
        .expect("bash");
    assert!(checked.success(), "bash -n rejects the script");
    let (ok, _, err) = run_cli(dir.path(), &["completions", "tcsh"]);
    assert!(!ok && err.contains("possible values"), "{err}");
}

#[tokio::test]
async fn submit_of_a_folder_and_a_glob_shows_progress_and_a_summary() {
    let dir = TempDir::new().expect("tempdir");
    let shoot = dir.path().join("shoot");
    std::fs::create_dir_all(shoot.join("day2")).expect("dirs");
    for i in 0..150 {
        std::fs::write(shoot.join(format!("{i:03}.jpg")), common::MYPHOTO).expect("photo");
    }
    for i in 0..50 {
        std::fs::write(shoot.join("day2").join(format!("{i:03}.jpg")), common::MYPHOTO).expect("photo");
    }
    let data = dir.path().join("data");
    wiring::Deployment::open(&data, protocol::workflow::Policy::default(), 5).await.expect("data dir");
    let (ok, out, err) = run_cli(&data, &["submit", "--progress", "plain", shoot.to_str().expect("utf-8")]);
    assert!(ok, "{err}");
    assert_eq!(out.lines().filter(|l| l.starts_with("submitted ")).count(), 200, "{out}");
    assert!(data.join("buckets/original/day2/049.jpg").is_file(), "a folder's files keep their path inside it");
    assert!(err.lines().any(|l| l.starts_with("submitted 200/200 (") && l.ends_with("0 failed")), "{err}");
    let row: Vec<&str> = err
        .lines()
        .find(|l| l.starts_with("submitted ") && !l.contains('('))
        .expect("summary")
        .split_whitespace()
        .collect();
    assert_eq!(&row[..4], ["submitted", "200", "200", "0"], "{err}");

    // A quoted pattern is expanded here; one that matches nothing is an error.
    let pattern = format!("{}/day2/00*.jpg", shoot.display());
    let (ok, out, err) = run_cli(&data, &["submit", "--progress", "none", "--prefix", "again/", &pattern]);
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 10, "{out}");
    let (ok, _, err) = run_cli(&data, &["submit", &format!("{}/*.png", shoot.display())]);
    assert!(!ok && err.contains("no file matches"), "{err}");
}

#[test]
fn each_command_shows_only_the_flags_it_uses() {
    let dir = TempDir::new().expect("tempdir");
    let help = |args: &[&str]| {
        let (ok, out, err) = run_cli(dir.path(), args);
        assert!(ok, "{args:?}: {err}");
        out
    };
    for command in ["process", "asl", "completions"] {
        let out = help(&[command, "--help"]);
        for flag in ["--queue-backend", "--jobs-queue", "--state-machine-arn", "--data-dir", "--health-file"] {
            assert!(!out.contains(&format!("{flag} <")), "`{command} --help` lists {flag}:\n{out}");
        }
        assert!(out.contains("--log"), "{out}");
    }
    for command in ["serve", "worker", "dlq"] {
        let out = help(&[command, "--help"]);
        assert!(out.contains("--queue-backend") && out.contains("--data-dir"), "{command}: {out}");
    }
    let (ok, out, _) = run_cli(dir.path(), &["--version"]);
    assert!(ok && out.starts_with("imgpipe "), "{out}");
}
