//! Every window between two durable steps, on the embedded stack: the real `imgpipe`
//! binary aborts at a named crash point (`IMGPIPE_FAULTS=crash-at=<point>`), as a power cut
//! or `kill -9` would leave it; what runs next must finish the work exactly once.
//!
//! | window | crash point | one outcome |
//! | --- | --- | --- |
//! | submit → enqueue | `job-recorded` | the job runs once, nobody asks again |
//! | outputs written → report | `outputs-written` | redelivered, one success |
//! | report → delete | `reported` | the duplicate is dropped, one success |
//! | dead letter sent → `Fail` | `letter-sent` | one DLQ entry, one restart |
//! | redrive → letter deleted | `redriven` | the next redrive removes it, no second start |

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use common::{MYPHOTO, eventually, imgpipe, seed_request, spawn_worker};
use serde_json::Value;
use tempfile::TempDir;

/// `imgpipe serve` on `data` as a child process, with `faults` and `workers` workers.
struct Served {
    child: Child,
    url: String,
}

impl Served {
    fn start(data: &Path, workers: &str, faults: &str) -> Self {
        let mut child = imgpipe(
            data,
            &[
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--workers",
                workers,
                "--visibility-timeout",
                "2s",
                "--heartbeat-interval",
                "500ms",
                "--retry-interval",
                "200ms",
            ],
            &[("IMGPIPE_FAULTS", faults)],
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("serve prints its address");
        let url = line.split_whitespace().find(|w| w.starts_with("http://")).expect("address line").to_owned();
        Self { child, url }
    }

    /// Waits for the process to abort at its crash point.
    fn crashed(mut self) {
        let status = self.child.wait().expect("wait");
        assert!(!status.success(), "serve exited cleanly instead of crashing: {status}");
    }

    async fn get(&self, path: &str) -> Value {
        reqwest::get(format!("{}{path}", self.url)).await.expect("get").json().await.expect("json")
    }

    async fn get_text(&self, path: &str) -> String {
        reqwest::get(format!("{}{path}", self.url)).await.expect("get").text().await.expect("text")
    }

    async fn post(&self, path: &str, body: String) -> Result<Value, reqwest::Error> {
        reqwest::Client::new().post(format!("{}{path}", self.url)).body(body).send().await?.json().await
    }

    async fn job_ends(&self, id: &str) -> Value {
        eventually(Duration::from_secs(60), "the job to end", || async {
            let job = self.get(&format!("/jobs/{id}")).await;
            matches!(job["state"].as_str(), Some("Success" | "Fail")).then_some(job)
        })
        .await
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn drop_file(data: &Path, key: &str, bytes: &[u8]) {
    let path = data.join("buckets/original").join(key);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, bytes).expect("write");
}

fn output_exists(data: &Path, key: &str) -> bool {
    data.join("buckets/resized").join(key).is_file()
}

/// How many history entries of `job` are in `state`.
fn entries(job: &Value, state: &str) -> usize {
    job["history"].as_array().expect("history").iter().filter(|h| h["state"] == state).count()
}

/// A job for a file that is not an image, ended in `Fail` with its letter on the DLQ.
async fn failed_job(s: &Served, data: &Path) -> String {
    drop_file(data, "notes.jpg", b"not a photo");
    let id = s.post("/process", seed_request("notes.jpg")).await.expect("accepted")["jobId"]
        .as_str()
        .expect("jobId")
        .to_owned();
    assert_eq!(s.job_ends(&id).await["state"], "Fail");
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_recorded_but_never_sent_runs_once_after_a_restart() {
    let dir = TempDir::new().expect("tempdir");
    let data = dir.path();
    drop_file(data, "myphoto.jpg", MYPHOTO);
    let s = Served::start(data, "1", "crash-at=job-recorded");
    // The first intake (the watcher, or this request) commits the job and dies before the send.
    let answer = s.post("/process", seed_request("myphoto.jpg")).await;
    s.crashed();
    assert!(answer.is_err(), "the server should have died before it answered: {answer:?}");

    // Nobody asks again: the restarted engine finds the attempt stored but not sent.
    let s = Served::start(data, "1", "");
    let jobs = eventually(Duration::from_secs(60), "the job to end", || async {
        let jobs = s.get("/jobs").await["jobs"].as_array().cloned().unwrap_or_default();
        jobs.iter().all(|j| j["state"] == "Success").then_some(jobs).filter(|j| !j.is_empty())
    })
    .await;
    assert_eq!(jobs.len(), 1, "one job: {jobs:?}");
    let job = s.job_ends(jobs[0]["jobId"].as_str().expect("id")).await;
    assert_eq!((entries(&job, "ProcessImage"), entries(&job, "Success")), (1, 1), "{job}");
    assert!(output_exists(data, "resized/myphoto_thumbnail.jpg"));
    // A client that retries its request is answered with the same job.
    let again = s.post("/process", seed_request("myphoto.jpg")).await.expect("answered");
    assert_eq!(again["jobId"], job["jobId"], "{again}");
}

/// A worker that crashes at `point` after taking the seed job; a healthy worker then takes
/// the redelivered message, and the job ends in one success with one attempt.
async fn worker_crash(point: &str) {
    let dir = TempDir::new().expect("tempdir");
    let data = dir.path();
    drop_file(data, "myphoto.jpg", MYPHOTO);
    let s = Served::start(data, "0", "");
    let mut crashing = spawn_worker(data, &[("IMGPIPE_FAULTS", &format!("crash-at={point}"))]);
    let id = s.post("/process", seed_request("myphoto.jpg")).await.expect("accepted")["jobId"]
        .as_str()
        .expect("jobId")
        .to_owned();
    let status = crashing.wait().expect("wait");
    assert!(!status.success(), "the worker should have crashed at {point}: {status}");
    let mut healthy = spawn_worker(data, &[]);
    let job = s.job_ends(&id).await;
    // The message is gone from the queue once the healthy worker is done with it.
    eventually(Duration::from_secs(30), "the jobs queue to empty", || async {
        let m = s.get_text("/metrics").await;
        let depth: u64 = m
            .lines()
            .filter(|l| l.starts_with("imgpipe_queue_messages{queue=\"jobs\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum();
        (depth == 0).then_some(())
    })
    .await;
    let _ = healthy.kill();
    let _ = healthy.wait();
    drop(s);
    assert_eq!(job["state"], "Success", "{job}");
    assert_eq!((job["attempts"].as_u64(), entries(&job, "Success")), (Some(1), 1), "{job}");
    assert!(output_exists(dir.path(), "resized/myphoto_thumbnail.jpg"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_dies_after_writing_outputs_is_redelivered_and_succeeds_once() {
    worker_crash("outputs-written").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_dies_after_reporting_leaves_one_success() {
    worker_crash("reported").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_sent_twice_is_one_entry_and_one_restart() {
    let dir = TempDir::new().expect("tempdir");
    let data = dir.path();
    let s = Served::start(data, "1", "crash-at=letter-sent");
    drop_file(data, "notes.jpg", b"not a photo");
    let _ = s.post("/process", seed_request("notes.jpg")).await;
    s.crashed();

    // The restarted engine sends the letter again: the queue holds two copies, operators see one.
    let s = Served::start(data, "1", "");
    let listing = eventually(Duration::from_secs(60), "the dead letter", || async {
        let l = s.get("/dlq").await;
        (l["entries"].as_array()?.len() == 1 && l["entries"][0]["copies"] == 2).then_some(l)
    })
    .await;
    let id = listing["entries"][0]["deadLetter"]["job"]["jobId"].as_str().expect("job id").to_owned();
    assert_eq!(s.job_ends(&id).await["state"], "Fail");

    drop_file(data, "notes.jpg", MYPHOTO);
    let redriven = s.post("/dlq/redrive", serde_json::json!({ "all": true }).to_string()).await.expect("redrive");
    let started: Vec<&Value> =
        redriven["redriven"].as_array().expect("list").iter().filter(|r| r.get("alreadyRestarted").is_none()).collect();
    assert_eq!(started.len(), 1, "one start for two copies: {redriven}");
    let job = eventually(Duration::from_secs(60), "the redriven job to succeed", || async {
        let job = s.get(&format!("/jobs/{id}")).await;
        (job["state"] == "Success").then_some(job)
    })
    .await;
    assert_eq!(entries(&job, "Success"), 1, "{job}");
    assert_eq!(s.get("/dlq").await["entries"].as_array().map(Vec::len), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redrive_that_dies_before_removing_the_letter_does_not_start_the_job_twice() {
    let dir = TempDir::new().expect("tempdir");
    let data = dir.path();
    let s = Served::start(data, "1", "crash-at=redriven");
    let id = failed_job(&s, data).await;
    drop_file(data, "notes.jpg", MYPHOTO);
    let _ = s.post("/dlq/redrive", serde_json::json!({ "ids": [id] }).to_string()).await;
    s.crashed();

    let s = Served::start(data, "1", "");
    let job = eventually(Duration::from_secs(60), "the redriven job to succeed", || async {
        let job = s.get(&format!("/jobs/{id}")).await;
        (job["state"] == "Success").then_some(job)
    })
    .await;
    // The letter is still there (once the dead scan's hold on it runs out); redriving it
    // again removes it and starts nothing.
    eventually(Duration::from_secs(60), "the letter to be visible again", || async {
        (s.get("/dlq").await["entries"].as_array()?.len() == 1).then_some(())
    })
    .await;
    let again = s.post("/dlq/redrive", serde_json::json!({ "ids": [id] }).to_string()).await.expect("redrive");
    assert_eq!(again["redriven"][0]["alreadyRestarted"], true, "{again}");
    assert_eq!(again["missing"].as_array().map(Vec::len), Some(0), "{again}");
    assert_eq!(s.get("/dlq").await["entries"].as_array().map(Vec::len), Some(0));
    let job_after = s.get(&format!("/jobs/{id}")).await;
    assert_eq!((entries(&job_after, "Success"), job_after["state"].clone()), (1, Value::from("Success")), "{job}");
    let redrives = job_after["history"]
        .as_array()
        .expect("history")
        .iter()
        .filter(|h| h["note"].as_str().is_some_and(|d| d.contains("redriven")))
        .count();
    assert_eq!(redrives, 1, "{job_after}");
}
