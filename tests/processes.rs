//! Workers as separate processes on one data dir: killed mid-job, stopped by SIGTERM,
//! and several at once. These run the real `imgpipe` binary.

mod common;

use std::process::Child;
use std::time::Duration;

use common::*;
use protocol::job::JobState;

const SECS_60: Duration = Duration::from_secs(60);

/// A server with no workers of its own: only the processes started by the test work.
async fn server_without_workers() -> TestServer {
    let mut options = test_options();
    options.worker.runner.concurrency = 0;
    options.watch_bucket = None;
    TestServer::start(options).await
}

async fn submit(s: &TestServer, key: &str) -> String {
    submit_body(s, key, &seed_request(key)).await
}

async fn submit_body(s: &TestServer, key: &str, body: &str) -> String {
    s.drop_file("original", key, MYPHOTO);
    let (status, body) = s.post_process("", body).await;
    assert_eq!(status, 202, "{body}");
    body["jobId"].as_str().expect("jobId").to_owned()
}

async fn wait_in_flight(s: &TestServer) {
    let jobs = std::sync::Arc::clone(&s.stack.backends.jobs);
    eventually(Duration::from_secs(20), "a worker to take the job", || async {
        (jobs.stats().await.ok()?.in_flight == 1).then_some(())
    })
    .await;
}

fn signal(child: &Child, sig: libc::c_int) {
    let pid = libc::pid_t::try_from(child.id()).expect("pid");
    // SAFETY: sending a signal to our own child process by pid.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::kill(pid, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_job_is_redelivered_and_outputs_are_written_once() {
    let s = server_without_workers().await;
    let mut slow = spawn_worker(s.data_dir(), &[("IMGPIPE_FAULTS", "delay-ms=20000")]);
    // With the sidecar: the redelivery writes it once too.
    let id = submit_body(&s, "myphoto.jpg", &sidecar_request("myphoto.jpg")).await;
    wait_in_flight(&s).await;
    tokio::time::sleep(Duration::from_millis(1200)).await; // heartbeats have renewed visibility by now
    slow.kill().expect("SIGKILL");
    slow.wait().expect("reaped");
    assert_eq!(s.job(&id).await.state, JobState::ProcessImage, "killed before finishing");

    let mut healthy = spawn_worker(s.data_dir(), &[]);
    let job = s.wait_job(&id, SECS_60).await;
    healthy.kill().expect("stop");
    healthy.wait().expect("reaped");
    assert_eq!(job.state, JobState::Success);
    assert_eq!(job.attempts, 1, "the queue redelivered the same attempt; the workflow did not retry");
    assert_eq!(s.outputs(), ["myphoto_metadata.json", "myphoto_thumbnail.jpg"], "exactly one set of outputs");
    let thumb = std::fs::read(s.bucket_file("resized", "resized/myphoto_thumbnail.jpg")).expect("thumb");
    assert_eq!(jpeg_dimensions(&thumb), Some((512, 512)));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_job_in_hand_finish_before_the_worker_exits() {
    let s = server_without_workers().await;
    let mut worker = spawn_worker(s.data_dir(), &[("IMGPIPE_FAULTS", "delay-ms=1500")]);
    let id = submit(&s, "myphoto.jpg").await;
    wait_in_flight(&s).await;
    signal(&worker, libc::SIGTERM);
    let started = std::time::Instant::now();
    let status = worker.wait().expect("exit");
    assert!(status.success(), "clean exit after draining: {status:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    // The job finished during the drain: its report is on the queue already.
    let job = s.wait_job(&id, Duration::from_secs(10)).await;
    assert_eq!(job.state, JobState::Success);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_past_the_drain_deadline_releases_the_job_for_another_worker() {
    let s = server_without_workers().await;
    let mut worker = imgpipe(
        s.data_dir(),
        &["worker", "--workers", "1", "--visibility-timeout", "60s", "--drain-timeout", "500ms"],
        &[("IMGPIPE_FAULTS", "delay-ms=30000")],
    )
    .stderr(std::process::Stdio::null())
    .spawn()
    .expect("spawn");
    let id = submit(&s, "myphoto.jpg").await;
    wait_in_flight(&s).await;
    signal(&worker, libc::SIGTERM);
    assert!(worker.wait().expect("exit").success());
    // Released at once (visibility 0), not after the 60 s visibility timeout.
    let jobs = std::sync::Arc::clone(&s.stack.backends.jobs);
    assert_eq!(jobs.stats().await.expect("stats").visible, 1, "the job is back on the queue");
    let mut healthy = spawn_worker(s.data_dir(), &[]);
    let job = s.wait_job(&id, Duration::from_secs(20)).await;
    healthy.kill().expect("stop");
    healthy.wait().expect("reaped");
    assert_eq!((job.state, job.attempts), (JobState::Success, 1));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_worker_processes_share_one_queue_and_do_each_job_once() {
    let s = server_without_workers().await;
    let mut workers: Vec<Child> = (0..3).map(|_| spawn_worker(s.data_dir(), &[])).collect();
    let mut ids = Vec::new();
    for i in 0..12 {
        ids.push(submit(&s, &format!("batch/p{i:02}.jpg")).await);
    }
    for id in &ids {
        let job = s.wait_job(id, SECS_60).await;
        assert_eq!((job.state, job.attempts), (JobState::Success, 1), "{id}");
    }
    for w in &mut workers {
        w.kill().expect("stop");
        w.wait().expect("reaped");
    }
    let dir = s.bucket_file("resized", "resized/batch");
    let mut thumbs: Vec<_> = std::fs::read_dir(dir)
        .expect("outputs")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with("_thumbnail.jpg"))
        .collect();
    thumbs.sort();
    let want: Vec<_> = (0..12).map(|i| format!("p{i:02}_thumbnail.jpg")).collect();
    assert_eq!(thumbs, want);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_replaced_while_its_job_waits_ends_that_job_and_only_the_new_version_is_written() {
    let s = server_without_workers().await;
    s.drop_file("original", "a.jpg", MYPHOTO);
    let (status, body) = s.post_process("", &sidecar_request("a.jpg")).await;
    assert_eq!(status, 202, "{body}");
    let old_id = body["jobId"].as_str().expect("jobId").to_owned();
    // Replaced before any worker took the job: a 300×200 image under the same key.
    s.drop_file("original", "a.jpg", &gradient_png(300, 200));
    let (status, body) = s.post_process("", &sidecar_request("a.jpg")).await;
    assert_eq!(status, 202, "{body}");
    let new_id = body["jobId"].as_str().expect("jobId").to_owned();
    assert_ne!(old_id, new_id, "a new version is a new job");

    let mut worker = spawn_worker(s.data_dir(), &[]);
    let old = s.wait_job(&old_id, SECS_60).await;
    let new = s.wait_job(&new_id, SECS_60).await;
    worker.kill().expect("stop");
    worker.wait().expect("reaped");
    let error = old.error.expect("the old job failed");
    assert_eq!(
        (old.state, error.code.as_str(), old.attempts),
        (JobState::Fail, "SourceChanged", 1),
        "{}",
        error.message
    );
    assert!(old.outputs.is_empty());
    assert_eq!(new.state, JobState::Success);
    let thumb = std::fs::read(s.bucket_file("resized", "resized/a_thumbnail.jpg")).expect("thumb");
    assert_eq!(jpeg_dimensions(&thumb), Some((300, 200)), "the outputs are the new version's");
    let sidecar = std::fs::read(s.bucket_file("resized", "resized/a_metadata.json")).expect("sidecar");
    let sidecar: serde_json::Value = serde_json::from_slice(&sidecar).expect("JSON");
    let version = s.stack.blobs().head("original", "a.jpg").await.expect("head").version;
    assert_eq!(sidecar["source"]["version"].as_str(), version.as_deref(), "the sidecar names the version: {sidecar}");
    s.stop().await;
}
