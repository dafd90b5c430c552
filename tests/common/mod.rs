//! Shared rig for the end-to-end tests: a real `serve` stack in-process on port 0 with a
//! temporary data dir, the real `imgpipe` binary for process-level tests, and helpers.
#![allow(dead_code, clippy::unwrap_used, clippy::missing_panics_doc)]

pub mod aws;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use imgpipe::serve::{ServeOptions, Server};
use protocol::intake::Buckets;
use protocol::job::JobRecord;
use protocol::metadata::MetadataPolicy;
use protocol::workflow::Policy;
use protocol::workflow::{Jitter, RetryPolicy};
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;
use wiring::{Deployment, WorkerSettings};
use worker::RunnerConfig;

/// The seed project's sample photo (640×640).
pub const MYPHOTO: &[u8] = include_bytes!("../fixtures/myphoto.jpg");

pub struct TestServer {
    pub dir: TempDir,
    pub addr: SocketAddr,
    pub stack: Deployment,
    pub shutdown: CancellationToken,
    pub handle: tokio::task::JoinHandle<anyhow::Result<()>>,
    pub http: reqwest::Client,
}

/// Options for tests: quick retries without jitter, short timeouts, two workers.
pub fn test_options() -> ServeOptions {
    ServeOptions {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        buckets: Buckets::new(&["original"], &["resized"]),
        watch_bucket: Some("original".into()),
        s3_events_queue: None,
        destination_bucket: "resized".into(),
        sidecar: false,
        metadata: MetadataPolicy::Strip,
        engine: Policy {
            retry: RetryPolicy {
                max_attempts: 4,
                interval: Duration::from_millis(200),
                backoff_rate: 2.0,
                max_delay: Duration::from_secs(5),
                jitter: Jitter::None,
            },
            queue_timeout: Duration::from_secs(60),
            task_timeout: Duration::from_secs(60),
            heartbeat_timeout: Duration::from_secs(30),
        },
        worker: WorkerSettings {
            runner: RunnerConfig {
                concurrency: 2,
                visibility: Duration::from_secs(10),
                heartbeat_every: Duration::from_secs(2),
                poll_wait: Duration::from_secs(1),
                drain_deadline: Duration::from_secs(5),
                max_receive_count: 5,
            },
            limits: worker::image::Limits::default(),
            budget: worker::image::MemoryBudget::unlimited(),
            cache_control: Some("max-age=60".into()),
            faults: worker::faults::Faults::default(),
        },
        keys: producer::auth::ApiKeys::none(),
        limits: producer::limits::ApiLimits::default(),
    }
}

impl TestServer {
    pub async fn start(options: ServeOptions) -> Self {
        let dir = TempDir::new().unwrap();
        let stack =
            Deployment::open(dir.path(), options.engine, options.worker.runner.max_receive_count).await.unwrap();
        let server = Server::bind(stack.clone(), options).await.unwrap();
        let addr = server.addr;
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(server.run(shutdown.clone()));
        Self { dir, addr, stack, shutdown, handle, http: reqwest::Client::new() }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn bucket_file(&self, bucket: &str, key: &str) -> PathBuf {
        self.dir.path().join("buckets").join(bucket).join(key)
    }

    /// The names of the objects in the `resized` bucket's `resized/` folder, sorted.
    pub fn outputs(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.bucket_file("resized", "resized"))
            .map(|d| d.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect())
            .unwrap_or_default();
        names.sort();
        names
    }

    /// Puts a file into a bucket the way a user would: straight into the folder.
    pub fn drop_file(&self, bucket: &str, key: &str, bytes: &[u8]) {
        let path = self.bucket_file(bucket, key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }

    pub async fn post_process(&self, query: &str, body: &str) -> (u16, serde_json::Value) {
        let resp = self.http.post(self.url(&format!("/process{query}"))).body(body.to_owned()).send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("non-JSON body {text:?}")))
    }

    pub async fn job(&self, id: &str) -> JobRecord {
        self.stack.orchestrator.get(id).await.unwrap().unwrap_or_else(|| panic!("no job {id}"))
    }

    /// Waits for the job to end.
    pub async fn wait_job(&self, id: &str, within: Duration) -> JobRecord {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let record = self.job(id).await;
            if record.state.is_terminal() {
                return record;
            }
            assert!(tokio::time::Instant::now() < deadline, "job {id} still {:?} after {within:?}", record.state);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        self.handle.await.unwrap().unwrap();
    }
}

/// Polls `check` until it returns `Some`, or panics after `within`.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Width and height from a JPEG's start-of-frame marker; `None` if it is not a JPEG.
pub fn jpeg_dimensions(bytes: &[u8]) -> Option<(u32, u32)> {
    if bytes.get(..2)? != [0xFF, 0xD8] {
        return None;
    }
    let mut i = 2;
    while i + 9 < bytes.len() {
        if bytes[i] != 0xFF {
            return None;
        }
        let marker = bytes[i + 1];
        let len = usize::from(u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]));
        if matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC) {
            let h = u32::from(u16::from_be_bytes([bytes[i + 5], bytes[i + 6]]));
            let w = u32::from(u16::from_be_bytes([bytes[i + 7], bytes[i + 8]]));
            return Some((w, h));
        }
        i += 2 + len;
    }
    None
}

/// A PNG of the given size with a gradient, so it is a real photo-like image.
pub fn gradient_png(width: u32, height: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(width, height, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, 128]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// The `imgpipe` binary on `data_dir`, with extra environment.
pub fn imgpipe(data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_imgpipe"));
    cmd.arg("--data-dir").arg(data_dir).args(args).env("IMGPIPE_LOG", "info");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Runs `imgpipe` to completion: (exit success, stdout, stderr).
pub fn run_cli(data_dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = imgpipe(data_dir, args, &[]).stdin(Stdio::null()).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

/// Starts `imgpipe worker` on `data_dir` in the background.
pub fn spawn_worker(data_dir: &Path, env: &[(&str, &str)]) -> Child {
    imgpipe(data_dir, &["worker", "--workers", "1", "--visibility-timeout", "2s", "--heartbeat-interval", "500ms"], env)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The seed project's request for `key`.
pub fn seed_request(key: &str) -> String {
    serde_json::json!({ "sourceBucket": "original", "sourceKey": key, "destinationBucket": "resized" }).to_string()
}

/// [`seed_request`] asking for the metadata sidecar too.
pub fn sidecar_request(key: &str) -> String {
    serde_json::json!({ "sourceBucket": "original", "sourceKey": key, "destinationBucket": "resized", "sidecar": true })
        .to_string()
}
