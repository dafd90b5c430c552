//! The whole pipeline on the embedded default: API, watcher, orchestrator and workers in
//! one process on a temporary data dir, driven over real HTTP.

mod common;

use std::time::Duration;

use common::*;
use protocol::job::JobState;

const SECS_30: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_request_makes_a_512_thumbnail_and_answers_the_seed_body() {
    let s = TestServer::start(test_options()).await;
    s.drop_file("original", "myphoto.jpg", MYPHOTO);

    let (status, body) = s.post_process("?wait=30", &seed_request("myphoto.jpg")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["statusCode"], 200);
    assert_eq!(body["message"], "Image processing completed successfully");
    assert_eq!(body["sourceBucket"], "original");
    assert_eq!(body["sourceKey"], "myphoto.jpg");
    assert_eq!(body["destinationBucket"], "resized");
    assert_eq!(body["destinationKey"], "resized/myphoto_thumbnail.jpg");
    assert_eq!(body["contentType"], "image/jpeg");

    let out = std::fs::read(s.bucket_file("resized", "resized/myphoto_thumbnail.jpg")).expect("thumbnail written");
    assert_eq!(body["fileSize"], out.len());
    assert_eq!(jpeg_dimensions(&out), Some((512, 512)), "640×640 source → 512×512 JPEG");

    let job = s.job(body["jobId"].as_str().expect("jobId")).await;
    assert_eq!((job.state, job.attempts), (JobState::Success, 1));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_wait_the_job_is_queued_and_its_status_url_follows_it() {
    let s = TestServer::start(test_options()).await;
    s.drop_file("original", "dir/photo.jpg", MYPHOTO);
    let (status, body) = s.post_process("", &sidecar_request("dir/photo.jpg")).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "queued");
    let id = body["jobId"].as_str().expect("jobId").to_owned();
    assert_eq!(body["statusUrl"], format!("/jobs/{id}"));

    let url = s.url(body["statusUrl"].as_str().expect("statusUrl"));
    let record: serde_json::Value = eventually(SECS_30, "job success over HTTP", || async {
        let r: serde_json::Value = s.http.get(&url).send().await.ok()?.json().await.ok()?;
        (r["state"] == "Success").then_some(r)
    })
    .await;
    assert_eq!(record["outputs"][0]["key"], "resized/dir/photo_thumbnail.jpg");
    assert_eq!(record["attempts"], 1);
    let states: Vec<_> = record["history"].as_array().expect("history").iter().map(|h| h["state"].clone()).collect();
    assert_eq!(states, ["ProcessImage", "CheckResult", "Success"]);
    assert!(record["history"][0]["at"].as_str().expect("time").ends_with('Z'));
    // Asked for, the sidecar sits beside the rendition.
    assert!(s.bucket_file("resized", "resized/dir/photo_metadata.json").is_file());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_writes_only_its_renditions_unless_its_request_asks_for_the_sidecar() {
    let mut options = test_options();
    options.watch_bucket = None;
    let s = TestServer::start(options).await;
    s.drop_file("original", "plain.jpg", MYPHOTO);
    let (status, body) = s.post_process("?wait=30", &seed_request("plain.jpg")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(s.outputs(), ["plain_thumbnail.jpg"], "one object written, no sidecar");

    s.drop_file("original", "asked.jpg", MYPHOTO);
    let (status, body) = s.post_process("?wait=30", &sidecar_request("asked.jpg")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["outputs"].as_array().map(Vec::len), Some(1), "the sidecar is not an output: {body}");
    assert_eq!(s.outputs(), ["asked_metadata.json", "asked_thumbnail.jpg", "plain_thumbnail.jpg"]);
    let sidecar = std::fs::read(s.bucket_file("resized", "resized/asked_metadata.json")).expect("sidecar");
    let sidecar: serde_json::Value = serde_json::from_slice(&sidecar).expect("JSON");
    assert_eq!(sidecar["outputs"][0]["key"], "resized/asked_thumbnail.jpg", "{sidecar}");
    assert_eq!(sidecar["metadata"]["width"], 640, "{sidecar}");

    // Not asking is another job than asking, for the same version of the source.
    let (status, again) = s.post_process("?wait=30", &seed_request("asked.jpg")).await;
    assert_eq!(status, 200, "{again}");
    assert_ne!(again["jobId"], body["jobId"]);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metadata_policy_reaches_the_outputs_and_the_sidecar_says_what_was_kept() {
    // A photo with a capture time, a camera and a GPS position.
    const CAMERA: &[u8] = include_bytes!("../worker/tests/fixtures/camera.jpg");
    let contains = |bytes: &[u8], needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    let mut options = test_options();
    options.sidecar = true;
    options.metadata = "keep:captureTime".parse().expect("a policy");
    let s = TestServer::start(options).await;
    // The watcher's job follows the server's default.
    s.drop_file("original", "kept.jpg", CAMERA);
    let sidecar = s.bucket_file("resized", "resized/kept_metadata.json");
    eventually(SECS_30, "the watcher's job's sidecar", || async { sidecar.is_file().then_some(()) }).await;
    let thumb = std::fs::read(s.bucket_file("resized", "resized/kept_thumbnail.jpg")).expect("thumbnail");
    assert!(contains(&thumb, b"Exif\0\0") && contains(&thumb, b"2021:07:04 12:30:59"), "the capture time is kept");
    assert!(!contains(&thumb, b"ExampleCam") && !contains(&thumb, b"GPS"), "and nothing else");
    let sidecar: serde_json::Value = serde_json::from_slice(&std::fs::read(&sidecar).expect("read")).expect("JSON");
    assert_eq!(sidecar["metadata"]["kept"], serde_json::json!(["captureTime"]), "{sidecar}");

    // A request may strip instead.
    let stripped = serde_json::json!({ "sourceBucket": "original", "sourceKey": "kept.jpg",
        "destinationBucket": "resized", "metadata": "strip", "sidecar": false });
    let (status, body) = s.post_process("?wait=30", &stripped.to_string()).await;
    assert_eq!(status, 200, "{body}");
    let thumb = std::fs::read(s.bucket_file("resized", "resized/kept_thumbnail.jpg")).expect("thumbnail");
    assert!(!contains(&thumb, b"Exif\0\0") && !contains(&thumb, b"2021:07:04"), "stripped");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_iphone_heic_and_an_animated_gif_come_out_as_asked() {
    const HEIC: &[u8] = include_bytes!("../worker/tests/fixtures/photo_irot90.heic");
    const GIF: &[u8] = include_bytes!("../worker/tests/fixtures/animated.gif");
    let mut options = test_options();
    options.watch_bucket = None;
    let s = TestServer::start(options).await;
    // Told apart by content: the key says nothing of the format.
    s.drop_file("original", "IMG_0001.HEIC", HEIC);
    let (status, body) = s.post_process("?wait=30", &seed_request("IMG_0001.HEIC")).await;
    assert_eq!(status, 200, "{body}");
    let thumb = &body["outputs"][0];
    // 640×480 coded, rotated 90° by its `irot` box: an upright 384×512 thumbnail.
    assert_eq!((thumb["width"].as_u64(), thumb["height"].as_u64()), (Some(384), Some(512)), "{body}");
    let jpeg = std::fs::read(s.bucket_file("resized", "resized/IMG_0001.HEIC.thumbnail.jpg")).expect("thumbnail");
    assert_eq!(&jpeg[..2], &[0xFF, 0xD8]);

    s.drop_file("original", "wave.gif", GIF);
    let request = serde_json::json!({ "sourceBucket": "original", "sourceKey": "wave.gif", "destinationBucket": "resized",
        "renditions": [{ "name": "anim", "width": 64, "format": "webp", "animated": true },
            { "name": "still", "width": 64, "format": "webp" }] });
    let (status, body) = s.post_process("?wait=30", &request.to_string()).await;
    assert_eq!(status, 200, "{body}");
    let chunks = |key: &str, chunk: &[u8]| {
        let webp = std::fs::read(s.bucket_file("resized", key)).expect("output");
        webp.windows(4).filter(|w| *w == chunk).count()
    };
    assert_eq!(chunks("resized/wave.gif.anim.webp", b"ANMF"), 2, "both frames kept");
    assert_eq!(chunks("resized/wave.gif.still.webp", b"ANMF"), 0, "the first frame only");
    // `animated` is for WebP output only: refused at intake with a reason.
    let bad = serde_json::json!({ "sourceBucket": "original", "sourceKey": "wave.gif", "destinationBucket": "resized",
        "renditions": [{ "name": "anim", "width": 64, "format": "jpeg", "animated": true }] });
    let (status, body) = s.post_process("", &bad.to_string()).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("InvalidRendition")), "{body}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_server_default_on_the_watchers_jobs_write_the_sidecar_and_a_request_may_decline_it() {
    let mut options = test_options();
    options.sidecar = true;
    // A second bucket to read from, which the watcher does not watch.
    options.buckets = protocol::intake::Buckets::new(&["original", "uploads"], &["resized"]);
    let s = TestServer::start(options).await;
    s.drop_file("original", "watched.jpg", MYPHOTO);
    let path = s.bucket_file("resized", "resized/watched_metadata.json");
    eventually(SECS_30, "the watcher's job's sidecar", || async { path.is_file().then_some(()) }).await;

    let declined = serde_json::json!({ "sourceBucket": "uploads", "sourceKey": "declined.jpg",
        "destinationBucket": "resized", "sidecar": false });
    s.drop_file("uploads", "declined.jpg", MYPHOTO);
    let (status, body) = s.post_process("?wait=30", &declined.to_string()).await;
    assert_eq!(status, 200, "{body}");
    assert!(s.bucket_file("resized", "resized/declined_thumbnail.jpg").is_file());
    assert!(!s.bucket_file("resized", "resized/declined_metadata.json").exists(), "declined");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_dropped_into_the_original_bucket_is_processed_once_with_no_api_call() {
    let s = TestServer::start(test_options()).await;
    s.drop_file("original", "big.png", &gradient_png(4000, 3000));
    let out_path = s.bucket_file("resized", "resized/big.png.thumbnail.jpg");
    let out = eventually(SECS_30, "the watcher's thumbnail", || async { std::fs::read(&out_path).ok() }).await;
    assert_eq!(jpeg_dimensions(&out), Some((512, 384)), "4000×3000 → 512×384");
    // Several more scans pass: still exactly one job for the file.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let jobs = orchestrator_list(&s).await;
    assert_eq!(jobs.iter().filter(|j| j.source_key == "big.png").count(), 1, "one job per file");
    s.stop().await;
}

async fn orchestrator_list(s: &TestServer) -> Vec<protocol::job::JobRecord> {
    s.stack.orchestrator.list(100).await.expect("list")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_written_file_is_not_picked_up_until_it_settles() {
    let s = TestServer::start(test_options()).await;
    // Write the first half, pause longer than a scan, then the rest.
    let png = gradient_png(800, 600);
    let path = s.bucket_file("original", "slow.png");
    std::fs::write(&path, &png[..png.len() / 2]).expect("half");
    tokio::time::sleep(Duration::from_millis(600)).await;
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(&path).expect("open");
        f.write_all(&png[png.len() / 2..]).expect("rest");
    }
    let out_path = s.bucket_file("resized", "resized/slow.png.thumbnail.jpg");
    let out = eventually(SECS_30, "thumbnail", || async { std::fs::read(&out_path).ok() }).await;
    assert_eq!(jpeg_dimensions(&out), Some((512, 384)));
    let jobs = orchestrator_list(&s).await;
    let mine: Vec<_> = jobs.iter().filter(|j| j.source_key == "slow.png").collect();
    assert_eq!(mine.len(), 1, "no job for the half-written file");
    assert_eq!(mine[0].state, JobState::Success);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_dated_in_the_future_is_picked_up_once_it_settles() {
    let s = TestServer::start(test_options()).await;
    let path = s.bucket_file("original", "future.jpg");
    std::fs::write(&path, MYPHOTO).expect("write");
    let next_year = std::time::SystemTime::now() + Duration::from_secs(365 * 24 * 3600);
    std::fs::File::options().write(true).open(&path).expect("open").set_modified(next_year).expect("mtime");
    let out_path = s.bucket_file("resized", "resized/future_thumbnail.jpg");
    eventually(SECS_30, "the thumbnail of a file from the future", || async { std::fs::read(&out_path).ok() }).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_file_fails_permanently_into_the_dlq_and_succeeds_after_a_fix_and_redrive() {
    let mut options = test_options();
    options.watch_bucket = None;
    let s = TestServer::start(options).await;
    s.drop_file("original", "notes.jpg", b"these are my notes, not a photo\n");

    // Asking for the sidecar: the choice survives the dead letter and the redrive.
    let (status, body) = s.post_process("?wait=30", &sidecar_request("notes.jpg")).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "NotAnImage");
    let id = body["jobId"].as_str().expect("jobId").to_owned();
    let job = s.job(&id).await;
    assert_eq!((job.state, job.attempts), (JobState::Fail, 1), "permanent: one attempt, no retry");

    let (ok, out, err) = run_cli(s.data_dir(), &["dlq", "list"]);
    assert!(ok, "{err}");
    assert!(out.contains(&id) && out.contains("NotAnImage"), "dlq list shows the job and its reason:\n{out}");
    let (ok, out, _) = run_cli(s.data_dir(), &["dlq", "show", &id]);
    assert!(ok);
    let shown: serde_json::Value = serde_json::from_str(&out).expect("show prints JSON");
    assert_eq!(shown["deadLetter"]["history"].as_array().map(Vec::len), Some(3));

    // Fix the source, redrive, and it succeeds.
    s.drop_file("original", "notes.jpg", MYPHOTO);
    let (ok, out, err) = run_cli(s.data_dir(), &["dlq", "redrive", "--all"]);
    assert!(ok, "{err}");
    assert!(out.contains(&id), "{out}");
    let job = s.wait_job(&id, SECS_30).await;
    assert_eq!(job.state, JobState::Success);
    assert!(s.bucket_file("resized", "resized/notes_thumbnail.jpg").is_file());
    assert!(s.bucket_file("resized", "resized/notes_metadata.json").is_file(), "the redriven job wrote its sidecar");
    let (_, out, _) = run_cli(s.data_dir(), &["dlq", "list"]);
    assert!(out.contains("empty"), "{out}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dlq_over_http_shows_the_reason_and_an_operator_redrive_restarts_the_same_job() {
    let mut options = test_options();
    options.watch_bucket = None;
    let s = TestServer::start(options).await;
    s.drop_file("original", "memo.jpg", b"a memo, not a photo\n");
    let (status, body) = s.post_process("?wait=30", &seed_request("memo.jpg")).await;
    assert_eq!(status, 422, "{body}");
    let id = body["jobId"].as_str().expect("jobId").to_owned();

    let listing: serde_json::Value =
        s.http.get(s.url("/dlq")).send().await.expect("GET /dlq").json().await.expect("JSON");
    let entries = listing["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 1, "{listing}");
    assert_eq!(
        (&entries[0]["deadLetter"]["job"]["jobId"], &entries[0]["deadLetter"]["error"]["code"]),
        (&id.clone().into(), &"NotAnImage".into())
    );

    s.drop_file("original", "memo.jpg", MYPHOTO);
    let redrive = serde_json::json!({ "ids": [id] });
    let answer: serde_json::Value =
        s.http.post(s.url("/dlq/redrive")).json(&redrive).send().await.expect("redrive").json().await.expect("JSON");
    assert_eq!(answer["redriven"][0]["jobId"], id.as_str(), "{answer}");
    assert!(answer["redriven"][0].get("continuesAs").is_none(), "the embedded engine restarts the same job: {answer}");
    let job = s.wait_job(&id, SECS_30).await;
    assert_eq!(job.state, JobState::Success);
    assert!(job.history.iter().any(|h| h.state == JobState::Fail), "the first run stays in the history");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retryable_faults_are_retried_with_growing_delays_then_succeed() {
    let mut options = test_options();
    options.worker.faults = worker::faults::Faults::parse("fail-attempts=2").expect("faults");
    let s = TestServer::start(options).await;
    s.drop_file("original", "myphoto.jpg", MYPHOTO);
    // Asking for the sidecar: the choice survives the retries.
    let (status, body) = s.post_process("?wait=30", &sidecar_request("myphoto.jpg")).await;
    assert_eq!(status, 200, "{body}");
    assert!(s.bucket_file("resized", "resized/myphoto_metadata.json").is_file(), "the third attempt wrote it");

    let record: serde_json::Value = s
        .http
        .get(s.url(&format!("/jobs/{}", body["jobId"].as_str().expect("id"))))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(record["state"], "Success");
    assert_eq!(record["attempts"], 3);
    let history = record["history"].as_array().expect("history");
    let delays: Vec<u64> =
        history.iter().filter(|h| h["state"] == "Retry").map(|h| h["delayMs"].as_u64().expect("delay")).collect();
    assert_eq!(delays, [200, 400], "exponential backoff between attempts");
    let failures: Vec<_> = history.iter().filter_map(|h| h["error"]["code"].as_str()).collect();
    assert_eq!(failures, ["InjectedFault", "InjectedFault"]);
    // The attempts really were that far apart.
    let at = |state: &str, n: usize| {
        history.iter().filter(|h| h["state"] == state).nth(n).and_then(|h| h["at"].as_str()).expect("time").to_owned()
    };
    assert!(at("ProcessImage", 1) > at("Retry", 0) && at("ProcessImage", 2) > at("Retry", 1));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_json_errors_and_the_server_stays_up() {
    let s = TestServer::start(test_options()).await;
    s.drop_file("original", "myphoto.jpg", MYPHOTO);
    let big =
        format!(r#"{{"sourceBucket":"original","sourceKey":"{}","destinationBucket":"resized"}}"#, "x".repeat(70_000));
    let cases: Vec<(&str, String, u16, &str)> = vec![
        ("", "{not json".into(), 400, "MalformedJson"),
        ("", r#"{"sourceBucket":"original"}"#.into(), 400, "InvalidRequest"),
        ("", r#"{"sourceBucket":1,"sourceKey":"a","destinationBucket":"resized"}"#.into(), 400, "InvalidRequest"),
        ("", r#"{"sourceBucket":"private","sourceKey":"a.jpg","destinationBucket":"resized"}"#.into(), 403, "BucketNotAllowed"),
        ("", r#"{"sourceBucket":"original","sourceKey":"a.jpg","destinationBucket":"elsewhere"}"#.into(), 403, "BucketNotAllowed"),
        // Read and write are allowed separately: renditions cannot be read back, originals not overwritten.
        ("", r#"{"sourceBucket":"resized","sourceKey":"a.jpg","destinationBucket":"resized"}"#.into(), 403, "BucketNotAllowed"),
        ("", r#"{"sourceBucket":"original","sourceKey":"a.jpg","destinationBucket":"original"}"#.into(), 403, "BucketNotAllowed"),
        ("", seed_request("../etc/passwd"), 400, "InvalidKey"),
        ("", seed_request("/abs.jpg"), 400, "InvalidKey"),
        ("", seed_request("missing.jpg"), 404, "SourceNotFound"),
        ("", big, 413, "PayloadTooLarge"),
        ("?wait=soon", seed_request("myphoto.jpg"), 400, "InvalidWait"),
        (
            "",
            r#"{"sourceBucket":"original","sourceKey":"myphoto.jpg","destinationBucket":"resized","renditions":[{"name":"x"}]}"#.into(),
            400,
            "InvalidRendition",
        ),
    ];
    for (query, body, want_status, want_code) in cases {
        let (status, json) = s.post_process(query, &body).await;
        assert_eq!((status, json["error"]["code"].as_str()), (want_status, Some(want_code)), "{json}");
        assert!(json["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let resp = s.http.get(s.url("/jobs?limit=lots")).send().await.expect("get");
    assert_eq!(resp.status().as_u16(), 400);
    let body: serde_json::Value = resp.json().await.expect("a JSON error");
    assert_eq!(body["error"]["code"], "InvalidQuery");
    let resp = s.http.get(s.url("/jobs/nope")).send().await.expect("get");
    assert_eq!(resp.status().as_u16(), 404);
    let resp = s.http.get(s.url("/process")).send().await.expect("get");
    assert_eq!(resp.status().as_u16(), 405);
    let health = s.http.get(s.url("/healthz")).send().await.expect("health");
    assert_eq!(health.status().as_u16(), 200);
    let metrics = s.http.get(s.url("/metrics")).send().await.expect("metrics").text().await.expect("text");
    assert!(metrics.contains(r#"imgpipe_queue_messages{queue="jobs",state="visible"}"#), "{metrics}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_renditions_come_out_in_one_job() {
    let s = TestServer::start(test_options()).await;
    s.drop_file("original", "myphoto.jpg", MYPHOTO);
    let body = serde_json::json!({
        "sourceBucket": "original", "sourceKey": "myphoto.jpg", "destinationBucket": "resized",
        "renditions": [
            { "name": "small", "width": 128 },
            { "name": "banner", "width": 300, "height": 100, "fit": "cover", "quality": 70 }
        ]
    });
    let (status, resp) = s.post_process("?wait=30", &body.to_string()).await;
    assert_eq!(status, 200, "{resp}");
    let small = std::fs::read(s.bucket_file("resized", "resized/myphoto_small.jpg")).expect("small");
    let banner = std::fs::read(s.bucket_file("resized", "resized/myphoto_banner.jpg")).expect("banner");
    assert_eq!(jpeg_dimensions(&small), Some((128, 128)));
    assert_eq!(jpeg_dimensions(&banner), Some((300, 100)));
    assert_eq!(resp["outputs"].as_array().map(Vec::len), Some(2));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_not_held_up_by_a_waiting_request() {
    let mut options = test_options();
    options.worker.runner.concurrency = 0; // nobody will finish the job
    let s = TestServer::start(options).await;
    s.drop_file("original", "myphoto.jpg", MYPHOTO);
    let (http, url) = (s.http.clone(), s.url("/process?wait=120"));
    let waiting = tokio::spawn(async move { http.post(url).body(seed_request("myphoto.jpg")).send().await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = std::time::Instant::now();
    s.stop().await;
    assert!(started.elapsed() < Duration::from_secs(5), "stopped in {:?}", started.elapsed());
    let resp = waiting.await.expect("task").expect("answered");
    assert_eq!(resp.status().as_u16(), 202, "the job is still queued");
}

/// A 1×30000 PNG: enlarged to 16384 wide it would be 16384 × 491 million pixels.
fn tall_png() -> Vec<u8> {
    let img = image::GrayImage::from_pixel(1, 30_000, image::Luma([128u8]));
    let mut png = std::io::Cursor::new(Vec::new());
    img.write_to(&mut png, image::ImageFormat::Png).expect("encode");
    png.into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absurd_spec_is_refused_at_intake_and_dead_lettered_past_it_while_the_server_lives() {
    let mut options = test_options();
    options.watch_bucket = None;
    let s = TestServer::start(options).await;
    s.drop_file("original", "tall.png", &tall_png());
    let spec = serde_json::json!([{ "name": "x", "width": 16384, "enlarge": true }]);
    let body = serde_json::json!({ "sourceBucket": "original", "sourceKey": "tall.png",
                                   "destinationBucket": "resized", "renditions": spec });
    let (status, err) = s.post_process("?wait=30", &body.to_string()).await;
    assert_eq!((status, err["error"]["code"].as_str()), (400, Some("InvalidRendition")), "{err}");

    // The same spec started past intake (as an older version's job, or a hand-made one)
    // reaches a worker, which refuses it before allocating anything.
    let renditions = serde_json::from_value(spec).expect("renditions");
    let job = protocol::Job::new("original", "tall.png", "resized", renditions);
    s.stack.orchestrator.start(job.clone()).await.expect("started");
    let done = s.wait_job(&job.job_id, SECS_30).await;
    let error = done.error.expect("a reason");
    assert_eq!((done.state, done.attempts, error.class), (JobState::Fail, 1, protocol::ErrorClass::Permanent));
    let letters = orchestrator::dead_letter::list(s.stack.backends.dead_letters.as_ref()).await.expect("dlq");
    let letter = letters.iter().find_map(|i| i.letter.as_ref().ok().filter(|l| l.job.job_id == job.job_id));
    assert_eq!(letter.map(|l| &l.error), Some(&error), "the DLQ entry carries the reason");
    assert!(error.message.contains("\"x\""), "the reason names the rendition: {error}");

    let health = s.http.get(s.url("/healthz")).send().await.expect("still serving");
    assert_eq!(health.status().as_u16(), 200);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_and_a_request_for_it_make_one_job_and_a_rewrite_makes_another() {
    let s = TestServer::start(test_options()).await;
    // The original project's flow: upload into the original bucket, then ask for it.
    s.drop_file("original", "flow.jpg", MYPHOTO);
    let (status, body) = s.post_process("?wait=30", &seed_request("flow.jpg")).await;
    assert_eq!(status, 200, "{body}");
    let id = body["jobId"].as_str().expect("jobId").to_owned();
    // The watcher sees the same file settle and starts... the same job.
    let jobs_for = |jobs: Vec<protocol::job::JobRecord>| -> Vec<String> {
        jobs.into_iter().filter(|j| j.source_key == "flow.jpg").map(|j| j.job_id).collect()
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(jobs_for(orchestrator_list(&s).await), vec![id.clone()], "one job for one upload");
    let (status, again) = s.post_process("", &seed_request("flow.jpg")).await;
    assert_eq!((status, again["jobId"].as_str()), (202, Some(id.as_str())), "asking again names the same job");

    // A new version of the file is new work.
    std::thread::sleep(Duration::from_millis(20));
    s.drop_file("original", "flow.jpg", &tall_png());
    let (_, body) = s.post_process("?wait=30", &seed_request("flow.jpg")).await;
    let second = body["jobId"].as_str().expect("jobId").to_owned();
    assert_ne!(second, id, "a rewritten source is a new job");
    s.stop().await;
}

/// A flood of waiting requests for one image: past the cap they are turned away at once with
/// `Retry-After`, the one job they all name runs once, and its worker's heartbeats keep
/// arriving while the flood is served (three seconds without one and the attempt would be
/// judged lost and run again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_waiting_requests_are_capped_and_the_job_runs_once_with_its_heartbeats() {
    const REQUESTS: usize = 1000;
    const MAX_WAITING: usize = 64;
    let mut options = test_options();
    options.watch_bucket = None;
    options.limits = producer::limits::ApiLimits { max_waiting: MAX_WAITING, ..Default::default() };
    options.worker.faults = worker::faults::Faults::parse("delay-ms=5000").expect("faults");
    options.worker.runner.heartbeat_every = Duration::from_secs(1);
    options.engine.heartbeat_timeout = Duration::from_secs(3);
    let s = TestServer::start(options).await;
    s.drop_file("original", "myphoto.jpg", MYPHOTO);

    let url = s.url("/process?wait=300");
    let mut flood = tokio::task::JoinSet::new();
    for _ in 0..REQUESTS {
        let (http, url, body) = (s.http.clone(), url.clone(), seed_request("myphoto.jpg"));
        flood.spawn(async move {
            let started = tokio::time::Instant::now();
            let response = http.post(url).body(body).send().await.expect("an answer");
            let (status, retry_after) = (response.status().as_u16(), response.headers().contains_key("retry-after"));
            let json: serde_json::Value = response.json().await.expect("a JSON body");
            (status, retry_after, json, started.elapsed())
        });
    }
    let (mut done, mut turned_away, mut job_ids) = (0, 0, std::collections::BTreeSet::new());
    while let Some(answer) = flood.join_next().await {
        let (status, retry_after, json, took) = answer.expect("task");
        match status {
            200 => {
                done += 1;
                assert_eq!(json["destinationKey"], "resized/myphoto_thumbnail.jpg", "{json}");
                job_ids.insert(json["jobId"].as_str().expect("jobId").to_owned());
            }
            503 => {
                turned_away += 1;
                assert!(retry_after, "a 503 says when to come back: {json}");
                let code = json["error"]["code"].as_str().unwrap_or_default();
                assert!(["TooManyWaiting", "Overloaded"].contains(&code), "{json}");
                assert!(took < Duration::from_secs(4), "turned away at once, not after the job: {took:?}");
            }
            other => panic!("unexpected {other}: {json}"),
        }
    }
    assert_eq!((done, turned_away), (MAX_WAITING, REQUESTS - MAX_WAITING));
    assert_eq!(job_ids.len(), 1, "every request names the same job: {job_ids:?}");
    let record = s.job(job_ids.first().expect("one job")).await;
    assert_eq!(record.state, JobState::Success);
    assert_eq!(record.attempts, 1, "ran once, never judged lost: {:#?}", record.history);
    assert!(record.history.iter().all(|h| h.error.is_none()), "{:#?}", record.history);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_the_watcher_cannot_take_are_failed_jobs_with_their_reason_in_the_jobs_and_the_dlq() {
    use std::os::unix::ffi::OsStrExt;
    let s = TestServer::start(test_options()).await;
    let dir = s.bucket_file("original", "");
    // A name no bucket key may hold, and one that is not UTF-8 at all.
    std::fs::write(dir.join("two\nlines.jpg"), MYPHOTO).expect("write");
    std::fs::write(dir.join(std::ffi::OsStr::from_bytes(b"latin1-\xe9t\xe9.jpg")), MYPHOTO).expect("write");
    let refused = eventually(SECS_30, "both files recorded as failed jobs", || async {
        let jobs = orchestrator_list(&s).await;
        let failed: Vec<_> = jobs.into_iter().filter(|j| j.state == JobState::Fail).collect();
        (failed.len() == 2).then_some(failed)
    })
    .await;
    for job in &refused {
        let error = job.error.as_ref().expect("a reason");
        assert_eq!(error.code, "InvalidKey", "{job:?}");
        assert_eq!(job.attempts, 0, "never run: {job:?}");
    }
    assert!(refused.iter().any(|j| j.source_key == "latin1-\u{FFFD}t\u{FFFD}.jpg"), "{refused:?}");
    let dlq: serde_json::Value = s.http.get(s.url("/dlq")).send().await.expect("dlq").json().await.expect("json");
    let codes: Vec<&str> = dlq["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["deadLetter"]["error"]["code"].as_str())
        .collect();
    assert_eq!(codes, ["InvalidKey", "InvalidKey"], "{dlq}");
    // A refusal is not redriven: it never passed the intake's checks. It waits for a purge.
    let redrive =
        s.http.post(s.url("/dlq/redrive")).json(&serde_json::json!({ "all": true })).send().await.expect("redrive");
    let redriven: serde_json::Value = redrive.json().await.expect("json");
    assert_eq!(redriven["redriven"].as_array().map(Vec::len), Some(0), "{redriven}");
    let dlq: serde_json::Value = s.http.get(s.url("/dlq")).send().await.expect("dlq").json().await.expect("json");
    assert_eq!(dlq["entries"].as_array().map(Vec::len), Some(2), "{dlq}");
    // Later scans do not record them again.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(orchestrator_list(&s).await.len(), 2);
    s.stop().await;
}

/// The value of the one series `series` (name and labels exactly as exposed), if present.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_after_real_jobs_pass_promtool_and_the_histograms_have_observations() {
    let s = TestServer::start(test_options()).await;
    s.drop_file("original", "good.jpg", MYPHOTO);
    s.drop_file("original", "bad.jpg", b"not a photo");
    for key in ["good.jpg", "bad.jpg"] {
        let (_, body) = s.post_process("?wait=30", &seed_request(key)).await;
        let id = body["jobId"].as_str().expect("id").to_owned();
        s.wait_job(&id, SECS_30).await;
    }
    let metrics = s.http.get(s.url("/metrics")).send().await.expect("metrics").text().await.expect("text");

    for stage in ["queue_wait", "download", "decode", "resize", "encode", "upload"] {
        let count = sample(&metrics, &format!("imgpipe_stage_seconds_count{{stage=\"{stage}\"}}"));
        assert!(count.is_some_and(|n| n >= 1.0), "{stage} has no observation:\n{metrics}");
        assert!(metrics.contains(&format!("imgpipe_stage_seconds_bucket{{stage=\"{stage}\",le=\"0.005\"}}")));
    }
    let ended = |labels: &str| sample(&metrics, &format!("imgpipe_jobs_ended_total{{{labels}}}")).unwrap_or(0.0);
    assert!(ended(r#"state="Success",error="""#) >= 1.0, "{metrics}");
    assert!(ended(r#"state="Fail",error="NotAnImage""#) >= 1.0, "{metrics}");
    assert!(
        sample(&metrics, r#"imgpipe_attempts_total{outcome="permanent",error="NotAnImage"}"#).is_some_and(|n| n >= 1.0)
    );
    assert!(sample(&metrics, r#"imgpipe_bytes_total{direction="in"}"#).is_some_and(|n| n >= MYPHOTO.len() as f64));
    assert!(sample(&metrics, "imgpipe_worker_slots").is_some_and(|n| n >= 2.0), "{metrics}");
    assert!(sample(&metrics, r#"imgpipe_http_requests_total{route="/process",status="200"}"#).is_some());
    assert!(sample(&metrics, r#"imgpipe_queue_oldest_age_seconds{queue="dlq"}"#).is_some(), "{metrics}");

    // Debian's `prometheus` package has promtool; `scripts/test.sh` installs it.
    let mut promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (apt-get install prometheus, or scripts/build-deps.sh prometheus)");
    std::io::Write::write_all(promtool.stdin.as_mut().expect("stdin"), metrics.as_bytes()).expect("write");
    drop(promtool.stdin.take());
    let out = promtool.wait_with_output().expect("promtool");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "promtool check metrics:\n{said}\n{metrics}");
    s.stop().await;
}
