//! The pipeline on S3 + SQS, against the AWS emulator (moto server) on 127.0.0.1: the real
//! `imgpipe` binary configured by `IMGPIPE_*` and the standard `AWS_*` variables, as a
//! container fleet would run it. `scripts/test.sh` starts the emulator and sets
//! `IMGPIPE_TEST_AWS_ENDPOINT`.

mod common;

use std::time::Duration;

use common::aws::Rig;
use common::{MYPHOTO, eventually, jpeg_dimensions};
use pipeline_core::blob::BlobStore;

fn outputs_once(keys: &[String], want: &[&str]) {
    let mut keys = keys.to_vec();
    keys.sort();
    assert_eq!(keys, want.iter().map(|k| (*k).to_owned()).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_to_s3_becomes_a_thumbnail_through_the_notification_queue() {
    let mut rig = Rig::new().await;
    rig.serve(&["--s3-events-queue", &rig.name("events")]);
    rig.put_original("uploads/my photo.jpg", MYPHOTO).await;
    let out = eventually(Duration::from_secs(60), "the thumbnail in S3", || {
        rig.output("resized/uploads/my photo_thumbnail.jpg")
    })
    .await;
    assert_eq!(jpeg_dimensions(&out), Some((512, 512)));
    let head = rig.s3.head(&rig.resized(), "resized/uploads/my photo_thumbnail.jpg").await.expect("head");
    assert_eq!(head.content_type, "image/jpeg");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_process_on_s3_and_sqs_succeeds() {
    let mut rig = Rig::new().await;
    let url = rig.serve(&[]);
    rig.seed_request_succeeds(&url).await;
    // No sidecar unless asked: one object written.
    let keys: Vec<String> = rig.s3.list(&rig.resized(), "").await.expect("list").into_iter().map(|m| m.key).collect();
    outputs_once(&keys, &["resized/myphoto_thumbnail.jpg"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_job_on_sqs_is_redelivered_with_one_set_of_outputs() {
    let mut rig = Rig::new().await;
    // The server's default: every job writes the sidecar.
    let url = rig.serve(&["--workers", "0", "--sidecar"]);
    let (slow, id) = rig.job_held_by_a_worker(&url, "delay-ms=30000").await;
    rig.children[slow].kill().expect("SIGKILL");
    rig.children[slow].wait().expect("reaped");
    rig.worker("");
    let job = rig.wait_job(&url, &id).await;
    assert_eq!((job["state"].as_str(), job["attempts"].as_u64()), (Some("Success"), Some(1)));
    let keys: Vec<String> = rig.s3.list(&rig.resized(), "").await.expect("list").into_iter().map(|m| m.key).collect();
    outputs_once(&keys, &["resized/myphoto_metadata.json", "resized/myphoto_thumbnail.jpg"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_message_reaches_the_dlq_after_max_receive_count_and_redrives_once_fixed() {
    let mut rig = Rig::new().await;
    let url = rig.serve(&["--workers", "0"]);
    rig.put_original("poison.jpg", MYPHOTO).await;
    let id = rig.post(&url, "poison.jpg", "").await["jobId"].as_str().expect("id").to_owned();
    // Each delivery crashes the worker, as a decoder bug would; restart it like a supervisor.
    let dlq = rig.aws.queue(&rig.name("dlq")).await.expect("dlq");
    let mut restarts = 0;
    loop {
        let i = rig.worker("crash-key=poison");
        restarts += 1;
        // The worker crashes on its next delivery, unless the queue has moved the job away.
        let mut listed = String::new();
        for _ in 0..100 {
            if rig.children[i].try_wait().expect("status").is_some() {
                break;
            }
            listed = rig.run(&["dlq", "list"]).1;
            if listed.contains(&id) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        if !listed.contains(&id) {
            listed = rig.run(&["dlq", "list"]).1;
        }
        if listed.contains(&id) {
            assert!(listed.contains("MaxReceiveCountExceeded"), "{listed}");
            let _ = rig.children[i].kill();
            let _ = rig.children[i].wait();
            break;
        }
        assert!(restarts < 8, "never dead-lettered; dlq list:\n{listed}");
    }
    assert!(restarts >= 2, "moved only after maxReceiveCount deliveries");
    assert_eq!(dlq.stats().await.expect("stats").visible, 1, "listing neither loses nor hides it");
    // Fixed: a worker without the bug; redrive brings the job back and it succeeds.
    rig.worker("");
    let (ok, out, err) = rig.run(&["dlq", "redrive", &id]);
    assert!(ok, "{err}\n{out}");
    let job = rig.wait_job(&url, &id).await;
    assert_eq!(job["state"], "Success", "{job}");
    assert!(rig.output("resized/poison_thumbnail.jpg").await.is_some());
    let (_, listed, _) = rig.run(&["dlq", "list"]);
    assert!(listed.contains("empty"), "{listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_worker_processes_on_one_sqs_queue_do_every_job_once() {
    let mut rig = Rig::new().await;
    let url = rig.serve(&["--workers", "0"]);
    for _ in 0..3 {
        rig.worker("");
    }
    let mut ids = Vec::new();
    for i in 0..9 {
        let key = format!("batch/p{i}.jpg");
        rig.put_original(&key, MYPHOTO).await;
        ids.push(rig.post(&url, &key, "").await["jobId"].as_str().expect("id").to_owned());
    }
    for id in &ids {
        let job = rig.wait_job(&url, id).await;
        assert_eq!((job["state"].as_str(), job["attempts"].as_u64()), (Some("Success"), Some(1)), "{job}");
    }
    let thumbs: Vec<String> = rig
        .s3
        .list(&rig.resized(), "resized/batch/")
        .await
        .expect("list")
        .into_iter()
        .map(|m| m.key)
        .filter(|k| k.ends_with("_thumbnail.jpg"))
        .collect();
    let want: Vec<String> = (0..9).map(|i| format!("resized/batch/p{i}_thumbnail.jpg")).collect();
    outputs_once(&thumbs, &want.iter().map(String::as_str).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_on_sqs_drains_the_job_in_hand() {
    let mut rig = Rig::new().await;
    let url = rig.serve(&["--workers", "0"]);
    let (w, id) = rig.job_held_by_a_worker(&url, "delay-ms=1500").await;
    let pid = libc::pid_t::try_from(rig.children[w].id()).expect("pid");
    // SAFETY: signalling our own child.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
    assert_eq!(rc, 0);
    let started = std::time::Instant::now();
    assert!(rig.children[w].wait().expect("exit").success());
    assert!(started.elapsed() < Duration::from_secs(15), "drained within the deadline");
    let job = rig.wait_job(&url, &id).await;
    assert_eq!((job["state"].as_str(), job["attempts"].as_u64()), (Some("Success"), Some(1)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn step_functions_runs_the_workflow_with_the_container_worker_and_redrives_failures() {
    let mut rig = Rig::with_step_functions().await;
    // Every job asks for the sidecar: the state machine passes the choice on, to the worker
    // and through the dead letter to the job that takes it over.
    let url = rig.serve(&["--sidecar"]);
    let body = rig.seed_request_succeeds(&url).await;
    assert!(rig.output("resized/myphoto_metadata.json").await.is_some(), "the sidecar is written");
    let job = rig.wait_job(&url, body["jobId"].as_str().expect("id")).await;
    let states: Vec<&str> =
        job["history"].as_array().expect("history").iter().filter_map(|h| h["state"].as_str()).collect();
    assert_eq!(states, ["ProcessImage", "CheckResult", "Success"], "{job}");

    // A permanent failure: DeadLetter → Fail, the job on the DLQ; fixed and redriven, it succeeds.
    rig.put_original("notes.jpg", b"not a photo").await;
    let failed = rig.post(&url, "notes.jpg", "?wait=60").await;
    let id = failed["jobId"].as_str().expect("id").to_owned();
    assert!(failed["error"]["code"].as_str().is_some(), "{failed}");
    let ended = rig.wait_job(&url, &id).await;
    assert_eq!(
        (ended["state"].as_str(), ended["error"]["code"].as_str()),
        (Some("Fail"), Some("NotAnImage")),
        "{ended}"
    );
    let (_, listed, _) = rig.run(&["dlq", "list"]);
    assert!(listed.contains(&id), "{listed}");
    rig.put_original("notes.jpg", MYPHOTO).await;
    let (ok, out, err) = rig.run(&["dlq", "redrive", &id]);
    assert!(ok, "{err}\n{out}");
    let fresh =
        out.lines().find_map(|l| l.split(" continues as job ").nth(1)).expect("the new job id").trim().to_owned();
    assert_eq!(rig.wait_job(&url, &fresh).await["state"], "Success");
    assert!(rig.output("resized/notes_thumbnail.jpg").await.is_some());
    assert!(rig.output("resized/notes_metadata.json").await.is_some(), "the redriven job wrote its sidecar");
}

/// The workflow's states for three scenarios, as `GET /jobs/{id}` tells them.
async fn scenario_states(rig: &mut Rig) -> Vec<Vec<String>> {
    let url = rig.serve(&["--workers", "0"]);
    // Attempt 1 of every job fails with a retryable fault; good jobs then succeed.
    rig.worker("fail-attempts=1");
    rig.put_original("good.jpg", MYPHOTO).await;
    rig.put_original("bad.jpg", b"not a photo").await;
    let mut out = Vec::new();
    for key in ["good.jpg", "bad.jpg"] {
        let id = rig.post(&url, key, "").await["jobId"].as_str().expect("id").to_owned();
        let job = rig.wait_job(&url, &id).await;
        out.push(
            job["history"]
                .as_array()
                .expect("history")
                .iter()
                .filter_map(|h| h["state"].as_str().map(str::to_owned))
                .collect(),
        );
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_on_sqlite_and_on_dynamodb_and_step_functions_walk_the_same_states() {
    let mut embedded = Rig::new().await;
    let mut dynamodb = Rig::with_dynamodb().await;
    let mut step_functions = Rig::with_step_functions().await;
    let a = scenario_states(&mut embedded).await;
    let b = scenario_states(&mut step_functions).await;
    let c = scenario_states(&mut dynamodb).await;
    assert_eq!(
        a[0],
        ["ProcessImage", "CheckResult", "Retry", "ProcessImage", "CheckResult", "Success"],
        "retried, then succeeded"
    );
    assert_eq!(a[1], ["ProcessImage", "CheckResult", "Retry", "ProcessImage", "CheckResult", "DeadLetter", "Fail"]);
    assert_eq!(a, b, "the same scenarios give the same sequence of states on both orchestrators");
    assert_eq!(a, c, "and with the engine's jobs in DynamoDB");
}

/// How many history entries of `job` are in `state`.
fn entries(job: &serde_json::Value, state: &str) -> usize {
    job["history"].as_array().expect("history").iter().filter(|h| h["state"] == state).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_that_die_after_writing_or_after_reporting_leave_one_success_on_every_orchestrator() {
    for mut rig in [Rig::new().await, Rig::with_dynamodb().await, Rig::with_step_functions().await] {
        worker_windows(&mut rig).await;
    }
}

/// A worker crashes after writing, then another after reporting; a healthy one takes over.
async fn worker_windows(rig: &mut Rig) {
    let url = rig.serve(&["--workers", "0"]);
    for (key, point) in [("written.jpg", "outputs-written"), ("reported.jpg", "reported")] {
        let crashing = rig.worker(&format!("crash-at={point}"));
        rig.put_original(key, MYPHOTO).await;
        let id = rig.post(&url, key, "").await["jobId"].as_str().expect("id").to_owned();
        assert!(rig.crashed(crashing), "the worker should have crashed at {point}");
        let healthy = rig.worker("");
        let job = rig.wait_job(&url, &id).await;
        assert_eq!((job["state"].as_str(), entries(&job, "Success")), (Some("Success"), 1), "{point}: {job}");
        assert_eq!(entries(&job, "ProcessImage"), 1, "{point}: one attempt: {job}");
        let thumbnail = format!("resized/{}_thumbnail.jpg", key.trim_end_matches(".jpg"));
        assert!(rig.output(&thumbnail).await.is_some(), "{point}");
        eventually(Duration::from_secs(30), "the jobs queue to empty", || async {
            (rig.jobs_in_flight().await == 0).then_some(())
        })
        .await;
        let _ = rig.children[healthy].kill();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redrive_that_dies_before_removing_the_letter_starts_one_job_on_step_functions() {
    let mut rig = Rig::with_step_functions().await;
    let url = rig.serve_with_faults(&[], "crash-at=redriven");
    let server = rig.children.len() - 1;
    rig.put_original("notes.jpg", b"not a photo").await;
    let id = rig.post(&url, "notes.jpg", "").await["jobId"].as_str().expect("id").to_owned();
    assert_eq!(rig.wait_job(&url, &id).await["state"], "Fail");
    eventually(Duration::from_secs(30), "the dead letter", || async {
        (rig.dlq(&url).await["entries"].as_array()?.len() == 1).then_some(())
    })
    .await;
    rig.put_original("notes.jpg", MYPHOTO).await;
    assert!(rig.redrive(&url, &id).await.is_err(), "the server dies before it answers");
    assert!(rig.crashed(server));

    let url = rig.serve(&[]);
    // The letter comes back once the dead scan's hold runs out; redriving it again names the
    // same fresh job and starts nothing.
    eventually(Duration::from_secs(60), "the letter to be visible again", || async {
        (rig.dlq(&url).await["entries"].as_array()?.len() == 1).then_some(())
    })
    .await;
    let again = rig.redrive(&url, &id).await.expect("redrive");
    let entry = &again["redriven"][0];
    assert_eq!(entry["alreadyRestarted"], true, "{again}");
    let fresh = entry["continuesAs"].as_str().expect("the fresh job").to_owned();
    assert_eq!(rig.wait_job(&url, &fresh).await["state"], "Success");
    assert_eq!(rig.dlq(&url).await["entries"].as_array().map(Vec::len), Some(0));
    let jobs: serde_json::Value = reqwest::get(format!("{url}/jobs")).await.expect("jobs").json().await.expect("json");
    let for_notes = jobs["jobs"].as_array().expect("jobs").iter().filter(|j| j["sourceKey"] == "notes.jpg").count();
    assert_eq!(for_notes, 2, "the failed job and one fresh job: {jobs}");
}

/// An S3 notification for a bucket jobs may not read, as S3 would send it.
fn notification_from(bucket: &str, key: &str) -> String {
    serde_json::json!({ "Records": [{ "eventName": "ObjectCreated:Put", "eventSource": "aws:s3",
        "s3": { "bucket": { "name": bucket }, "object": { "key": key, "size": 10, "eTag": "abc" } } }] })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_that_cannot_become_a_job_is_a_dead_letter_with_its_reason_on_every_orchestrator() {
    for mut rig in [Rig::new().await, Rig::with_dynamodb().await, Rig::with_step_functions().await] {
        let url = rig.serve(&["--s3-events-queue", &rig.name("events")]);
        let events = rig.aws.queue(&rig.name("events")).await.expect("events queue");
        events.send(&notification_from("someone-elses-bucket", "x.jpg"), Duration::ZERO).await.expect("send");
        let listing = eventually(Duration::from_secs(60), "the refusal on the DLQ", || async {
            let l = rig.dlq(&url).await;
            (l["entries"].as_array()?.len() == 1).then_some(l)
        })
        .await;
        let letter = &listing["entries"][0]["deadLetter"];
        assert_eq!(letter["error"]["code"], "BucketNotAllowed", "{listing}");
        assert_eq!(letter["job"]["sourceBucket"], "someone-elses-bucket", "{listing}");
        // The notification itself is done with: nothing left on the events queue.
        eventually(Duration::from_secs(30), "the events queue to empty", || async {
            let s = events.stats().await.ok()?;
            (s.visible + s.in_flight == 0).then_some(())
        })
        .await;
    }
}

/// Uploads a non-image `rounds` times and, after each, lists the DLQ with the CLI until the
/// failed job shows: every round must see it, and see it once.
async fn every_failure_is_listed(rig: &mut Rig, rounds: usize) {
    let url = rig.serve(&["--s3-events-queue", &rig.name("events")]);
    for round in 0..rounds {
        let key = format!("notes/{round}.jpg");
        rig.put_original_bytes(&key, bytes::Bytes::from_static(b"not a photo")).await.expect("upload");
        let started = std::time::Instant::now();
        let listed = eventually(Duration::from_secs(60), &format!("round {round}: {key} on the DLQ"), || async {
            let (ok, out, err) = rig.run(&["dlq", "list", "--json"]);
            assert!(ok, "{err}");
            let entries: Vec<serde_json::Value> = serde_json::from_str(&out).expect("JSON");
            let mine: Vec<_> = entries.into_iter().filter(|e| e["deadLetter"]["job"]["sourceKey"] == key).collect();
            (!mine.is_empty()).then_some(mine)
        })
        .await;
        assert_eq!(listed.len(), 1, "round {round}: {listed:?}");
        assert_eq!(listed[0]["deadLetter"]["error"]["code"], "NotAnImage", "round {round}");
        let id = listed[0]["deadLetter"]["job"]["jobId"].as_str().expect("id");
        assert_eq!(rig.wait_job(&url, id).await["state"], "Fail", "round {round}");
        println!("round {round}: listed after {:.1?}", started.elapsed());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dlq_listing_shows_every_failed_upload_twenty_times_in_a_row_on_every_orchestrator() {
    every_failure_is_listed(&mut Rig::new().await, 20).await;
    every_failure_is_listed(&mut Rig::with_dynamodb().await, 20).await;
    every_failure_is_listed(&mut Rig::with_step_functions().await, 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_its_post_and_a_repeated_notification_make_one_job_on_s3() {
    for mut rig in [Rig::new().await, Rig::with_step_functions().await] {
        let url = rig.serve(&["--s3-events-queue", &rig.name("events")]);
        rig.put_original("once.jpg", MYPHOTO).await;
        // The upload's notification starts the job; the POST for the same upload names it.
        let posted = rig.post(&url, "once.jpg", "?wait=60").await;
        let id = posted["jobId"].as_str().expect("id").to_owned();
        assert_eq!(rig.wait_job(&url, &id).await["state"], "Success");
        // S3 delivers a notification twice now and then: the same version, the same job.
        let events = rig.aws.queue(&rig.name("events")).await.expect("events queue");
        let etag = rig.s3.head(&rig.original(), "once.jpg").await.expect("head").version.expect("etag");
        let again = serde_json::json!({ "Records": [{ "eventName": "ObjectCreated:Put", "eventSource": "aws:s3",
            "s3": { "bucket": { "name": rig.original() }, "object": { "key": "once.jpg", "eTag": etag } } }] });
        events.send(&again.to_string(), Duration::ZERO).await.expect("send");
        eventually(Duration::from_secs(30), "the repeated notification to be handled", || async {
            let s = events.stats().await.ok()?;
            (s.visible + s.in_flight == 0).then_some(())
        })
        .await;
        let jobs: serde_json::Value =
            reqwest::get(format!("{url}/jobs")).await.expect("jobs").json().await.expect("json");
        let mine: Vec<_> =
            jobs["jobs"].as_array().expect("jobs").iter().filter(|j| j["sourceKey"] == "once.jpg").collect();
        assert_eq!(mine.len(), 1, "one job for one upload: {jobs}");
        assert_eq!(mine[0]["jobId"], id.as_str());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_engines_on_one_dynamodb_table_do_every_job_once_and_either_redrives() {
    let mut rig = Rig::with_dynamodb().await;
    // Two replicas of the API and engine, two workers: every request, report and timer may
    // land on either engine; the table's conditional writes keep each job's steps in order.
    let urls = [rig.serve(&["--workers", "0"]), rig.serve(&["--workers", "0"])];
    rig.worker("");
    rig.worker("");
    let mut ids = Vec::new();
    for i in 0..12 {
        let key = format!("many/{i}.jpg");
        rig.put_original_bytes(&key, bytes::Bytes::from_static(MYPHOTO)).await.expect("upload");
        ids.push(rig.post(&urls[i % 2], &key, "").await["jobId"].as_str().expect("id").to_owned());
    }
    for (i, id) in ids.iter().enumerate() {
        // Read through the replica that did not take the request.
        let job = rig.wait_job(&urls[(i + 1) % 2], id).await;
        assert_eq!((job["state"].as_str(), entries(&job, "Success")), (Some("Success"), 1), "{job}");
        assert_eq!(entries(&job, "ProcessImage"), 1, "one attempt: {job}");
        assert!(rig.output(&format!("resized/many/{i}_thumbnail.jpg")).await.is_some());
    }
    let listed = reqwest::get(format!("{}/jobs?limit=100", urls[0])).await.expect("jobs").json::<serde_json::Value>();
    let listed = listed.await.expect("json");
    let n = listed["jobs"].as_array().map_or(0, |j| j.iter().filter(|j| j["state"] == "Success").count());
    assert_eq!(n, 12, "the listing shows every job: {listed}");

    // A permanent failure is dead-lettered with its reason; fixed, the other replica redrives it.
    rig.put_original("notes.jpg", b"not a photo").await;
    let id = rig.post(&urls[0], "notes.jpg", "").await["jobId"].as_str().expect("id").to_owned();
    let failed = rig.wait_job(&urls[1], &id).await;
    assert_eq!((failed["state"].as_str(), failed["error"]["code"].as_str()), (Some("Fail"), Some("NotAnImage")));
    rig.put_original("notes.jpg", MYPHOTO).await;
    eventually(Duration::from_secs(30), "the letter on the DLQ", || async {
        rig.dlq(&urls[1]).await["entries"].as_array().is_some_and(|e| e.len() == 1).then_some(())
    })
    .await;
    rig.redrive(&urls[1], &id).await.expect("redrive");
    let job = eventually(Duration::from_secs(60), "the redriven job to succeed", || async {
        let job: serde_json::Value = reqwest::get(format!("{}/jobs/{id}", urls[0])).await.ok()?.json().await.ok()?;
        (job["state"] == "Success").then_some(job)
    })
    .await;
    assert_eq!(entries(&job, "DeadLetter"), 1, "the history keeps the failure: {job}");
    assert!(rig.output("resized/notes_thumbnail.jpg").await.is_some());
}
