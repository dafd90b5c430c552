//! The API in process: requests through the router with `oneshot`, a local store in a temp
//! dir, and an in-memory orchestrator whose records the test controls.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use pipeline_core::blob::local::LocalBlobStore;
use pipeline_core::orchestration::{Orchestrator, OrchestratorError};
use producer::api::{ApiState, router};
use producer::auth::ApiKeys;
use producer::intake::Intake;
use producer::limits::ApiLimits;
use protocol::intake::Buckets;
use protocol::job::{JobRecord, JobState};
use protocol::message::Job;
use protocol::metadata::MetadataPolicy;
use tempfile::TempDir;
use tokio::sync::broadcast;
use tower::ServiceExt;

/// Records started jobs; answers `get` and `list` from them. Starting a job takes the
/// milliseconds set by `slow_start`; reads are counted; ends are announced when the
/// fourth field holds a sender.
#[derive(Debug, Default)]
struct Jobs(Mutex<Vec<JobRecord>>, AtomicU64, AtomicU64, Option<broadcast::Sender<String>>);

impl Jobs {
    fn slow_start(&self, ms: u64) {
        self.1.store(ms, Ordering::Relaxed);
    }

    fn gets(&self) -> u64 {
        self.2.load(Ordering::Relaxed)
    }

    /// Ends every job with success, announcing each when ends are announced.
    fn succeed_all(&self) {
        let mut records = self.0.lock().expect("lock");
        for record in records.iter_mut() {
            record.state = JobState::Success;
            record.outputs = vec![protocol::message::Output {
                rendition: "thumbnail".into(),
                bucket: "resized".into(),
                key: "resized/p_thumbnail.jpg".into(),
                size: 1,
                content_type: "image/jpeg".into(),
                width: 1,
                height: 1,
            }];
            if let Some(ended) = &self.3 {
                let _ = ended.send(record.job_id.clone());
            }
        }
    }
}

#[async_trait]
impl Orchestrator for Jobs {
    async fn start(&self, job: Job) -> Result<(), OrchestratorError> {
        tokio::time::sleep(Duration::from_millis(self.1.load(Ordering::Relaxed))).await;
        let record = JobRecord {
            job_id: job.job_id,
            state: JobState::ProcessImage,
            attempts: 1,
            source_bucket: job.source_bucket,
            source_key: job.source_key,
            destination_bucket: job.destination_bucket,
            renditions: job.renditions,
            created_at: "2024-01-01T00:00:00Z".into(),
            updated_at: "2024-01-01T00:00:00Z".into(),
            outputs: Vec::new(),
            metadata: None,
            error: None,
            history: Vec::new(),
        };
        self.0.lock().expect("lock").push(record);
        Ok(())
    }

    async fn refuse(&self, job: Job, _: protocol::JobError) -> Result<(), OrchestratorError> {
        // The API answers its refusals; nothing here records one.
        Err(OrchestratorError::new(format!("unexpected refusal of {}", job.job_id)))
    }

    async fn get(&self, job_id: &str) -> Result<Option<JobRecord>, OrchestratorError> {
        self.2.fetch_add(1, Ordering::Relaxed);
        Ok(self.0.lock().expect("lock").iter().find(|r| r.job_id == job_id).cloned())
    }

    async fn list(&self, limit: usize) -> Result<Vec<JobRecord>, OrchestratorError> {
        Ok(self.0.lock().expect("lock").iter().rev().take(limit).cloned().collect())
    }

    fn ended(&self) -> Option<broadcast::Receiver<String>> {
        self.3.as_ref().map(broadcast::Sender::subscribe)
    }
}

struct App {
    data: TempDir,
    jobs: Arc<Jobs>,
    router: Router,
}

fn app() -> App {
    app_with(|state| state)
}

fn app_with(configure: impl FnOnce(ApiState) -> ApiState) -> App {
    app_on(Jobs::default(), configure)
}

fn app_on(jobs: Jobs, configure: impl FnOnce(ApiState) -> ApiState) -> App {
    let data = TempDir::new().expect("data dir");
    let store = LocalBlobStore::new(data.path());
    store.create_bucket("original").expect("bucket");
    store.create_bucket("resized").expect("bucket");
    let jobs = Arc::new(jobs);
    let intake = Intake {
        orchestrator: Arc::clone(&jobs) as Arc<dyn Orchestrator>,
        blobs: Arc::new(store),
        buckets: Buckets::new(&["original"], &["resized"]),
        sidecar: false,
        metadata: MetadataPolicy::Strip,
    };
    App { router: router(configure(ApiState::new(intake, Vec::new()))), data, jobs }
}

async fn call(router: &Router, request: Request<Body>) -> (StatusCode, serde_json::Value) {
    let response = router.clone().oneshot(request).await.expect("response");
    let status = response.status();
    let bytes = response.into_body().collect().await.expect("body").to_bytes();
    (status, serde_json::from_slice(&bytes).expect("a JSON body"))
}

fn process(key: &str) -> Request<Body> {
    let body = serde_json::json!({ "sourceBucket": "original", "sourceKey": key, "destinationBucket": "resized" });
    Request::post("/process")
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .expect("request")
}

#[tokio::test]
async fn keys_no_backend_could_carry_are_refused_at_intake() {
    let app = app();
    let bad = [
        "line\nbreak.jpg",
        "cr\r.jpg",
        "tab\t.jpg",
        "del\u{7f}.jpg",
        "esc\u{1b}[2J.jpg",
        "c1\u{85}.jpg",
        "back\\slash.jpg",
        "nonchar\u{FFFE}.jpg",
        "nonchar\u{FFFF}.jpg",
        "nonchar\u{FDD0}.jpg",
    ];
    for key in bad {
        // The file exists: only the key rules stand between it and a job.
        std::fs::write(app.data.path().join("buckets/original").join(key), b"x").expect("write source");
        let (status, body) = call(&app.router, process(key)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{key:?}: {body}");
        assert_eq!(body["error"]["code"], "InvalidKey", "{key:?}: {body}");
        let message = body["error"]["message"].as_str().expect("a message");
        assert!(!message.contains(key), "the message quotes the key escaped: {message}");
    }
    assert!(app.jobs.0.lock().expect("lock").is_empty(), "no job started");

    std::fs::write(app.data.path().join("buckets/original/caf\u{e9}.jpg"), b"x").expect("write source");
    let (status, body) = call(&app.router, process("caf\u{e9}.jpg")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");

    // A valid key so long that its outputs' keys (`resized/…_thumbnail.jpg`) would not be
    // (found by the request fuzz target): refused before the source is even looked up.
    let long = format!("{}.png", "a".repeat(1010));
    let (status, body) = call(&app.router, process(&long)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("InvalidKey")), "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("outputs")), "{body}");
}

/// `POST /process` for `key` with `"sidecar": sidecar` (left out when `None`); the job id.
async fn job_id_with_sidecar(app: &App, key: &str, sidecar: Option<bool>) -> String {
    let mut body = serde_json::json!({ "sourceBucket": "original", "sourceKey": key, "destinationBucket": "resized" });
    if let Some(sidecar) = sidecar {
        body["sidecar"] = sidecar.into();
    }
    let request = Request::post("/process").body(Body::from(body.to_string())).expect("request");
    let (status, body) = call(&app.router, request).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    body["jobId"].as_str().expect("a job id").to_owned()
}

#[tokio::test]
async fn the_sidecar_is_the_requests_choice_else_the_servers_and_names_another_job() {
    let app = app();
    std::fs::write(app.data.path().join("buckets/original/p.jpg"), b"x").expect("write source");
    let without = job_id_with_sidecar(&app, "p.jpg", None).await;
    assert_eq!(job_id_with_sidecar(&app, "p.jpg", Some(false)).await, without, "off by default");
    let with = job_id_with_sidecar(&app, "p.jpg", Some(true)).await;
    assert_ne!(with, without, "asking for the sidecar is another job");

    // A server that writes it by default: a request that does not say is one that asks.
    let on = app_with(|mut state| {
        state.intake.sidecar = true;
        state
    });
    std::fs::write(on.data.path().join("buckets/original/p.jpg"), b"x").expect("write source");
    let asked = job_id_with_sidecar(&on, "p.jpg", Some(true)).await;
    assert_eq!(job_id_with_sidecar(&on, "p.jpg", None).await, asked);
    assert_ne!(job_id_with_sidecar(&on, "p.jpg", Some(false)).await, asked);
    // A boolean, nothing else.
    let body = serde_json::json!({ "sourceBucket": "original", "sourceKey": "p.jpg", "destinationBucket": "resized",
        "sidecar": "yes" });
    let request = Request::post("/process").body(Body::from(body.to_string())).expect("request");
    let (status, body) = call(&app.router, request).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("InvalidRequest")), "{body}");
}

/// `POST /process` for `key` with `"metadata": policy` (left out when `None`): the status and body.
async fn with_metadata(app: &App, key: &str, policy: Option<serde_json::Value>) -> (StatusCode, serde_json::Value) {
    let mut body = serde_json::json!({ "sourceBucket": "original", "sourceKey": key, "destinationBucket": "resized" });
    if let Some(policy) = policy {
        body["metadata"] = policy;
    }
    call(&app.router, Request::post("/process").body(Body::from(body.to_string())).expect("request")).await
}

#[tokio::test]
async fn the_metadata_policy_is_the_requests_else_the_servers_and_names_another_job() {
    let app = app();
    std::fs::write(app.data.path().join("buckets/original/p.jpg"), b"x").expect("write source");
    let id = |(status, body): (StatusCode, serde_json::Value)| {
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        body["jobId"].as_str().expect("a job id").to_owned()
    };
    let default = id(with_metadata(&app, "p.jpg", None).await);
    assert_eq!(id(with_metadata(&app, "p.jpg", Some("strip".into())).await), default, "strip by default");
    assert_eq!(id(with_metadata(&app, "p.jpg", Some(serde_json::json!({"keep": []}))).await), default);
    let kept = id(with_metadata(&app, "p.jpg", Some(serde_json::json!({"keep": ["copyright", "icc"]}))).await);
    assert_ne!(kept, default, "keeping metadata is another job");

    // Location is never kept; anything but the two shapes is refused with a JSON reason.
    for bad in [serde_json::json!({"keep": ["gps"]}), "all".into(), serde_json::json!({"keep": "copyright"})] {
        let (status, body) = with_metadata(&app, "p.jpg", Some(bad.clone())).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("InvalidRequest")),
            "{bad}"
        );
    }

    // A server that keeps the copyright by default: a request that does not say keeps it.
    let on = app_with(|mut state| {
        state.intake.metadata = "keep:copyright".parse().expect("a policy");
        state
    });
    std::fs::write(on.data.path().join("buckets/original/p.jpg"), b"x").expect("write source");
    let asked = id(with_metadata(&on, "p.jpg", Some(serde_json::json!({"keep": ["copyright"]}))).await);
    assert_eq!(id(with_metadata(&on, "p.jpg", None).await), asked);
    assert_ne!(id(with_metadata(&on, "p.jpg", Some("strip".into())).await), asked);
}

#[tokio::test]
async fn error_bodies_name_the_object_never_a_local_path() {
    let app = app();
    let data_dir = app.data.path().to_string_lossy().into_owned();
    // A missing source: 404.
    let (status, body) = call(&app.router, process("missing.jpg")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(!body.to_string().contains(&data_dir), "{body}");
    // A file name longer than the file system allows: an i/o failure, 503.
    let long = format!("{}.jpg", "a".repeat(300));
    let (status, body) = call(&app.router, process(&long)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let message = body["error"]["message"].as_str().expect("a message");
    assert!(!message.contains(&data_dir), "the data dir leaks: {message}");
    assert!(!message.contains("buckets/"), "the store's layout leaks: {message}");
    assert!(message.contains(&format!("original/{long}")), "the object is named: {message}");
}

#[tokio::test]
async fn job_records_show_no_camera_or_capture_facts() {
    let app = app();
    std::fs::write(app.data.path().join("buckets/original/p.jpg"), b"x").expect("write source");
    let (status, body) = call(&app.router, process("p.jpg")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let id = body["jobId"].as_str().expect("job id").to_owned();
    // Fields the engine does not know (coordinates, a serial, an artist) cannot even be
    // stored: the record's metadata is typed.
    app.jobs.0.lock().expect("lock")[0].metadata = serde_json::from_value(serde_json::json!({
        "format": "jpeg", "width": 4000, "height": 3000, "uprightWidth": 3000, "uprightHeight": 4000,
        "orientation": 6, "colorSpace": "rgb", "bitDepth": 8, "hasAlpha": false, "hasIcc": true,
        "hasExif": true, "hasXmp": false, "hasGps": true, "progressive": false,
        "cameraMake": "Canon", "cameraModel": "EOS R5", "captureTime": "2024-05-01T10:11:12+02:00",
        "gpsLatitude": 48.85, "bodySerialNumber": "0123456789", "artist": "Jane Doe",
    }))
    .expect("metadata");
    let get = |uri: String| Request::get(uri).body(Body::empty()).expect("request");
    let (_, one) = call(&app.router, get(format!("/jobs/{id}"))).await;
    let (_, full) = call(&app.router, get(format!("/jobs/{id}?metadata=full"))).await;
    let (_, list) = call(&app.router, get("/jobs".into())).await;
    for metadata in [&one["metadata"], &full["metadata"], &list["jobs"][0]["metadata"]] {
        assert_eq!(metadata["width"], 4000, "{metadata}");
        assert_eq!(metadata["orientation"], 6, "{metadata}");
        assert_eq!(metadata["format"], "jpeg", "{metadata}");
        let text = metadata.to_string();
        for private in ["Canon", "EOS R5", "2024-05-01", "48.85", "0123456789", "Jane Doe"] {
            assert!(!text.contains(private), "{private} shown: {text}");
        }
    }
}

fn with_key(mut request: Request<Body>, key: &str) -> Request<Body> {
    request.headers_mut().insert("authorization", format!("Bearer {key}").parse().expect("header"));
    request
}

#[tokio::test]
async fn with_keys_each_route_needs_a_key_of_its_scope() {
    let mut keys = ApiKeys::none();
    keys.add_list("read:read-key-1,submit:submit-key-2,operator:operator-key-3").expect("keys");
    let app = app_with(|state| state.with_keys(keys));
    std::fs::write(app.data.path().join("buckets/original/p.jpg"), b"x").expect("write source");
    let get = |uri: &str| Request::get(uri).body(Body::empty()).expect("request");

    // No key, or one that is not configured: 401 with a challenge, and no job.
    for request in [process("p.jpg"), with_key(process("p.jpg"), "submit-key-"), get("/jobs")] {
        let response = app.router.clone().oneshot(request).await.expect("response");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
        let bytes = response.into_body().collect().await.expect("body").to_bytes();
        let body: serde_json::Value = serde_json::from_slice(&bytes).expect("a JSON body");
        assert_eq!(body["error"]["code"], "Unauthorized", "{body}");
    }
    // A read key reads but cannot submit.
    let (status, body) = call(&app.router, with_key(process("p.jpg"), "read-key-1")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "InsufficientScope", "{body}");
    assert!(app.jobs.0.lock().expect("lock").is_empty(), "no job started");
    let (status, _) = call(&app.router, with_key(get("/jobs"), "read-key-1")).await;
    assert_eq!(status, StatusCode::OK);
    // Submit and operator keys submit; X-Api-Key works as well as a bearer token.
    let (status, body) = call(&app.router, with_key(process("p.jpg"), "submit-key-2")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let mut request = process("p.jpg");
    request.headers_mut().insert("x-api-key", "operator-key-3".parse().expect("header"));
    let (status, body) = call(&app.router, request).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let id = body["jobId"].as_str().expect("job id").to_owned();
    let (status, _) = call(&app.router, with_key(get(&format!("/jobs/{id}")), "submit-key-2")).await;
    assert_eq!(status, StatusCode::OK);
    // The health check stays open.
    let (status, _) = call(&app.router, get("/healthz")).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn without_keys_the_router_is_open() {
    let app = app_with(|state| state.with_keys(ApiKeys::none()));
    std::fs::write(app.data.path().join("buckets/original/p.jpg"), b"x").expect("write source");
    let (status, body) = call(&app.router, process("p.jpg")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
}

fn waiting(key: &str, secs: u64) -> Request<Body> {
    let mut request = process(key);
    *request.uri_mut() = format!("/process?wait={secs}").parse().expect("uri");
    request
}

#[tokio::test]
async fn past_the_waiting_cap_a_wait_is_turned_away_at_once_with_retry_after() {
    let limits = ApiLimits { max_waiting: 2, ..ApiLimits::default() };
    let app = app_with(|state| state.with_limits(limits));
    std::fs::write(app.data.path().join("buckets/original/p.jpg"), b"x").expect("write source");
    // The jobs never end: each waiting request holds its place for its whole wait.
    let started = Instant::now();
    let (a, b, c) = tokio::join!(
        app.router.clone().oneshot(waiting("p.jpg", 2)),
        app.router.clone().oneshot(waiting("p.jpg", 2)),
        app.router.clone().oneshot(waiting("p.jpg", 2)),
    );
    let mut statuses = Vec::new();
    for response in [a, b, c] {
        let response = response.expect("response");
        let status = response.status();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(response.headers()["retry-after"], "1");
        }
        let bytes = response.into_body().collect().await.expect("body").to_bytes();
        let body: serde_json::Value = serde_json::from_slice(&bytes).expect("a JSON body");
        if status == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(body["error"]["code"], "TooManyWaiting", "{body}");
        }
        statuses.push(status);
    }
    statuses.sort();
    assert_eq!(statuses, [StatusCode::ACCEPTED, StatusCode::ACCEPTED, StatusCode::SERVICE_UNAVAILABLE]);
    assert_eq!(app.jobs.0.lock().expect("lock").len(), 2, "the request turned away started no job");
    assert!(started.elapsed() >= Duration::from_secs(2), "the two others waited their time");
    // Their places are free again.
    let (status, body) = call(&app.router, waiting("p.jpg", 0)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
}

#[tokio::test]
async fn past_the_in_flight_cap_requests_are_turned_away_but_health_checks_pass() {
    let limits = ApiLimits { max_in_flight: 1, ..ApiLimits::default() };
    let app = app_with(|state| state.with_limits(limits));
    std::fs::write(app.data.path().join("buckets/original/p.jpg"), b"x").expect("write source");
    let held = tokio::spawn(app.router.clone().oneshot(waiting("p.jpg", 2)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let get = |uri: &str| Request::get(uri).body(Body::empty()).expect("request");
    let response = app.router.clone().oneshot(get("/jobs")).await.expect("response");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "1");
    let (status, _) = call(&app.router, get("/healthz")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(held.await.expect("task").expect("response").status(), StatusCode::ACCEPTED);
    let (status, _) = call(&app.router, get("/jobs")).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_request_past_its_time_ends_in_a_503() {
    let limits = ApiLimits { request_timeout: Duration::from_millis(200), ..ApiLimits::default() };
    let app = app_with(|state| state.with_limits(limits));
    std::fs::write(app.data.path().join("buckets/original/p.jpg"), b"x").expect("write source");
    app.jobs.slow_start(5_000);
    let started = Instant::now();
    let (status, body) = call(&app.router, process("p.jpg")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "RequestTimeout", "{body}");
    assert!(started.elapsed() < Duration::from_secs(2));
    // A waiting request has its wait on top: it is answered when the wait ends.
    app.jobs.slow_start(0);
    let (status, body) = call(&app.router, waiting("p.jpg", 1)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
}

#[tokio::test]
async fn a_waiter_sleeps_until_its_job_ends_rather_than_poll_the_store() {
    let (ended, _) = broadcast::channel(16);
    let app = app_on(Jobs(Mutex::default(), AtomicU64::new(0), AtomicU64::new(0), Some(ended)), |state| state);
    std::fs::write(app.data.path().join("buckets/original/p.jpg"), b"x").expect("write source");
    // A job that does not end: a few reads in three seconds, not one every few milliseconds.
    let (status, body) = call(&app.router, waiting("p.jpg", 3)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert!(app.jobs.gets() <= 3, "{} reads while waiting 3 s", app.jobs.gets());
    // Another job's end does not wake it; its own does, at once.
    let started = Instant::now();
    let pending = tokio::spawn(app.router.clone().oneshot(waiting("p.jpg", 10)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    if let Some(ended) = &app.jobs.3 {
        let _ = ended.send("some-other-job".into());
    }
    app.jobs.succeed_all();
    let response = pending.await.expect("task").expect("response");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(started.elapsed() < Duration::from_millis(900), "woken by the end, not a poll: {:?}", started.elapsed());
}

#[tokio::test]
async fn without_announcements_a_waiter_still_sees_its_job_end() {
    let app = app();
    std::fs::write(app.data.path().join("buckets/original/p.jpg"), b"x").expect("write source");
    let pending = tokio::spawn(app.router.clone().oneshot(waiting("p.jpg", 10)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.jobs.succeed_all();
    let response = pending.await.expect("task").expect("response");
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_openapi_description_is_open_and_agrees_with_the_code() {
    let mut keys = ApiKeys::none();
    keys.add_list("read:read-key-1").expect("keys");
    let app = app_with(|state| state.with_keys(keys));
    let (status, doc) = call(&app.router, Request::get("/openapi.json").body(Body::empty()).expect("request")).await;
    assert_eq!(status, StatusCode::OK, "served without a key, like /healthz");
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")), "{doc}");
    for path in ["/process", "/jobs", "/jobs/{id}", "/metrics", "/healthz"] {
        assert!(doc["paths"][path].is_object(), "{path} is described");
    }
    let process = &doc["paths"]["/process"]["post"];
    let wait = process["parameters"].as_array().and_then(|p| p.iter().find(|p| p["name"] == "wait")).expect("wait");
    assert_eq!(wait["schema"]["maximum"], producer::api::MAX_WAIT_SECS, "{wait}");
    for status in ["200", "202", "400", "401", "403", "404", "413", "422", "503"] {
        assert!(process["responses"][status].is_object(), "POST /process lists {status}");
    }
    let schemas = &doc["components"]["schemas"];
    let renditions = &schemas["ProcessRequest"]["properties"]["renditions"];
    assert_eq!(renditions["maxItems"], protocol::rendition::MAX_RENDITIONS, "{renditions}");
    let request = &schemas["ProcessRequest"];
    let sidecar = &request["properties"]["sidecar"];
    assert!(sidecar["description"].as_str().is_some_and(|d| d.contains("IMGPIPE_SIDECAR")), "{sidecar}");
    assert!(!request["required"].as_array().expect("required fields").contains(&"sidecar".into()), "{request}");
    let metadata = &request["properties"]["metadata"];
    assert!(metadata.to_string().contains("IMGPIPE_METADATA"), "{metadata}");
    let policy = &schemas["MetadataPolicy"]["oneOf"];
    assert_eq!((&policy[0]["enum"][0], &policy[1]["required"][0]), (&"strip".into(), &"keep".into()), "{policy}");
    let kinds = &schemas["KeptMetadata"]["enum"];
    assert_eq!(kinds, &serde_json::json!(["copyright", "artist", "captureTime", "icc"]), "only these can be kept");
    let width = &schemas["Rendition"]["properties"]["width"];
    assert_eq!(width["maximum"], protocol::rendition::MAX_DIMENSION, "{width}");
    assert_eq!(schemas["Rendition"]["additionalProperties"], false, "unknown rendition fields are refused");
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    let list = &doc["paths"]["/jobs"]["get"]["parameters"][0];
    assert_eq!((&list["name"], &list["schema"]["maximum"]), (&"limit".into(), &producer::api::MAX_LIST.into()));
    // What the description calls out of range is refused, not quietly clamped.
    let get = |uri: &str| with_key(Request::get(uri).body(Body::empty()).expect("request"), "read-key-1");
    assert_eq!(call(&app.router, get("/jobs?limit=1001")).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(call(&app.router, get("/jobs?limit=1000")).await.0, StatusCode::OK);
}

#[tokio::test]
async fn the_dead_letter_queue_is_read_with_a_read_key_and_operated_only_with_an_operator_key() {
    use orchestrator::dead_letter::{DeadLetters, Restart};
    use pipeline_core::queue::Queue;
    use pipeline_core::queue::sqlite::SqliteQueue;
    use protocol::dead_letter::DeadLetter;

    let dir = TempDir::new().expect("dir");
    let db = pipeline_core::sqlite::Db::open(&dir.path().join("q.db")).expect("db");
    let dlq: Arc<dyn Queue> = Arc::new(SqliteQueue::open(&db, "dlq").expect("dlq"));
    let jobs = Arc::new(Jobs::default());
    let failed = |id: &str| {
        let error = protocol::JobError::permanent("NotAnImage", "not an image");
        let record = pipeline_core::conformance::failed_record(id, &format!("{id}.jpg"), error);
        let mut letter = DeadLetter::from_record(&record);
        letter.job.task_token = Some("SECRET-TOKEN".into());
        letter.to_json()
    };
    for id in ["j1", "j2"] {
        dlq.send(&failed(id), Duration::ZERO).await.expect("send");
    }
    let dead_letters =
        DeadLetters { queue: Arc::clone(&dlq), restart: Restart::Fresh(Arc::clone(&jobs) as Arc<dyn Orchestrator>) };
    let mut keys = ApiKeys::none();
    keys.add_list("read:read-key-1,submit:submit-key-2,operator:operator-key-3").expect("keys");
    let app = app_with(|state| state.with_keys(keys).with_dead_letters(dead_letters));
    let request = |method: &str, uri: &str, key: &str, body: &str| {
        with_key(Request::builder().method(method).uri(uri).body(Body::from(body.to_owned())).expect("request"), key)
    };

    let (status, listing) = call(&app.router, request("GET", "/dlq", "read-key-1", "")).await;
    assert_eq!(status, StatusCode::OK, "{listing}");
    let entries = listing["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 2, "{listing}");
    assert_eq!(entries[0]["deadLetter"]["error"]["code"], "NotAnImage", "{listing}");
    assert!(!listing.to_string().contains("SECRET-TOKEN"), "task tokens are redacted: {listing}");

    // Redrive and purge need the operator scope.
    for key in ["read-key-1", "submit-key-2"] {
        let (status, body) = call(&app.router, request("POST", "/dlq/redrive", key, r#"{"all":true}"#)).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("InsufficientScope")),
            "{body}"
        );
        assert_eq!(call(&app.router, request("DELETE", "/dlq", key, "")).await.0, StatusCode::FORBIDDEN);
    }
    assert!(jobs.0.lock().expect("lock").is_empty(), "nothing was restarted");
    for bad in ["{}", r#"{"ids":["j1"],"all":true}"#, r#"{"ids":"j1"}"#, r#"{"everything":true}"#] {
        let (status, body) = call(&app.router, request("POST", "/dlq/redrive", "operator-key-3", bad)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }

    let (status, body) =
        call(&app.router, request("POST", "/dlq/redrive", "operator-key-3", r#"{"ids":["j1","nope"]}"#)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["missing"], serde_json::json!(["nope"]), "{body}");
    let fresh = body["redriven"][0]["continuesAs"].as_str().expect("a fresh job takes j1 over");
    assert_eq!(jobs.0.lock().expect("lock").iter().map(|r| r.job_id.clone()).collect::<Vec<_>>(), [fresh]);
    let (_, listing) = call(&app.router, request("GET", "/dlq", "read-key-1", "")).await;
    assert_eq!(listing["entries"].as_array().map(Vec::len), Some(1), "j1 left the queue: {listing}");

    let (status, body) = call(&app.router, request("DELETE", "/dlq", "operator-key-3", "")).await;
    assert_eq!((status, &body["purged"]), (StatusCode::OK, &serde_json::json!(1)), "{body}");
    let (_, listing) = call(&app.router, request("GET", "/dlq", "read-key-1", "")).await;
    assert_eq!(listing["entries"], serde_json::json!([]));
}
