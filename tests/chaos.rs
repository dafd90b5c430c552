//! The chaos run, on the embedded stack: real `imgpipe serve` (API, watcher, workflow) and two
//! `imgpipe worker` processes on one data dir, fed images by `POST /process` and by drop-in
//! (most both, as the original project's flow does: upload, then POST), some replaced while
//! in flight, some not images at all — while workers are SIGKILLed every two seconds, the
//! server is SIGKILLed and restarted twice, and a worker is SIGSTOPped past the heartbeat
//! timeout. Then everything runs healthy until every input has settled, and every input is
//! accounted for:
//!
//! - lost: an image whose last version has no successful job (or a non-image that did not
//!   end `NotAnImage`),
//! - duplicated: one version of an image processed by more than one job,
//! - stuck: a last version's job still running when the run ends,
//! - wrong version: outputs that are not of the image's last version.
//!
//! Every count must be 0. Each version of an image has its own size, so an output's
//! dimensions say which version it came from.
//!
//! `IMGPIPE_CHAOS_IMAGES` (default 500) and `IMGPIPE_CHAOS_SECS` (default 30) size the run;
//! `cargo test --test chaos -- --nocapture` prints the accounting. The same accounting runs on
//! S3 + SQS + Step Functions on the emulator, with the emulator itself paused (see the second
//! test).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{gradient_png, jpeg_dimensions};
use pipeline_core::blob::BlobStore;
use pipeline_core::blob::local::LocalBlobStore;
use protocol::job::{JobRecord, JobState};
use protocol::message::Job;
use protocol::metadata::MetadataPolicy;
use protocol::rendition::{Rendition, output_key};

const HEARTBEAT_TIMEOUT_SECS: u64 = 3;

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn signal(child: &Child, sig: libc::c_int) {
    let pid = libc::pid_t::try_from(child.id()).expect("pid");
    // SAFETY: sending a signal to our own child process by pid.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::kill(pid, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig})");
}

fn kill(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// The processes of the run, on one data dir.
struct Stack {
    data: PathBuf,
    port: u16,
    server: Option<Child>,
    workers: Vec<Child>,
}

impl Stack {
    fn imgpipe(&self, args: &[&str]) -> Child {
        Command::new(env!("CARGO_BIN_EXE_imgpipe"))
            .arg("--data-dir")
            .arg(&self.data)
            .args(args)
            // Generous: a job is never given up here for being killed under.
            .args(["--max-receive-count", "100", "--heartbeat-interval", "500ms", "--visibility-timeout", "3s"])
            .env("IMGPIPE_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("imgpipe")
    }

    async fn start_server(&mut self, http: &reqwest::Client) {
        let listen = format!("127.0.0.1:{}", self.port);
        let heartbeat = format!("{HEARTBEAT_TIMEOUT_SECS}s");
        let server = self.imgpipe(&[
            "serve",
            "--listen",
            &listen,
            "--workers",
            "0",
            "--max-attempts",
            "20",
            "--retry-interval",
            "200ms",
            "--retry-max-delay",
            "2s",
            "--heartbeat-timeout",
            &heartbeat,
            "--task-timeout",
            "60s",
            "--queue-timeout",
            "120s",
        ]);
        self.server = Some(server);
        for _ in 0..200 {
            if http.get(self.url("/healthz")).send().await.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("imgpipe serve did not come up");
    }

    fn start_worker(&mut self) {
        let worker = self.imgpipe(&["worker", "--workers", "2"]);
        self.workers.push(worker);
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            kill(server);
        }
        self.workers.drain(..).for_each(kill);
    }
}

/// Version `v` of image `i`: its own size, so outputs name the version they came from.
fn image(i: usize, v: usize) -> (Vec<u8>, (u32, u32)) {
    let (w, h) = (120 + (i % 50) as u32 + 60 * v as u32, 90 + (i % 40) as u32);
    (gradient_png(w, h), (w, h))
}

/// Input `i` of a run, arriving by `upload` (a drop-in, an S3 upload) and `post`: one in 25
/// is not an image; the others are uploaded, most then also POSTed (two intakes of one
/// upload), and one in ten is replaced while its job is on its way. Returns its key and its
/// last version's size (`None`: not an image).
async fn feed(i: usize, upload: impl AsyncFn(&str, Vec<u8>), post: impl AsyncFn(&str)) -> (String, Option<(u32, u32)>) {
    if i % 25 == 7 {
        let key = format!("notes/{i}.jpg");
        upload(&key, b"meeting notes, not a photo\n".to_vec()).await;
        return (key, None);
    }
    let key = format!("photos/{i}.png");
    let (bytes, mut last) = image(i, 0);
    upload(&key, bytes).await;
    if i % 3 != 0 {
        post(&key).await;
    }
    if i % 10 == 3 {
        tokio::time::sleep(Duration::from_millis((i % 7) as u64 * 40)).await;
        let (bytes, dims) = image(i, 1);
        upload(&key, bytes).await;
        last = dims;
        if i % 20 == 3 {
            post(&key).await;
        }
    }
    (key, Some(last))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// Posts the seed request for `key` until the API takes it: the client's part.
async fn post_until_taken(http: &reqwest::Client, url: &str, key: &str) {
    let body = serde_json::json!({ "sourceBucket": "original", "sourceKey": key, "destinationBucket": "resized" });
    post_json_until_taken(http, url, &body).await;
}

fn write_file(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("dir");
    // Written aside and renamed, as an uploader does: the watcher never sees half a file.
    let tmp = path.with_extension("part");
    std::fs::write(&tmp, bytes).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

#[derive(Default, Debug)]
struct Accounting {
    inputs: usize,
    succeeded: usize,
    rejected: usize,
    lost: Vec<String>,
    duplicated: Vec<String>,
    stuck: Vec<String>,
    wrong_version: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_kills_and_stops_every_input_ends_exactly_once_in_its_last_version() {
    let images = usize::try_from(knob("IMGPIPE_CHAOS_IMAGES", 500)).expect("size");
    let chaos = Duration::from_secs(knob("IMGPIPE_CHAOS_SECS", 30));
    let dir = tempfile::TempDir::new().expect("dir");
    let http = reqwest::Client::new();
    let mut stack = Stack { data: dir.path().to_owned(), port: free_port(), server: None, workers: Vec::new() };
    stack.start_server(&http).await;
    stack.start_worker();
    stack.start_worker();
    let originals = dir.path().join("buckets/original");

    // Inputs: keys, how each arrives, its versions' sizes (None: not an image).
    let mut expected: BTreeMap<String, Option<(u32, u32)>> = BTreeMap::new();
    let started = Instant::now();
    let (mut next, mut last_kill, mut server_kills, mut stopped) = (0usize, Instant::now(), 0, false);
    let per_input = chaos.mul_f64(0.8) / u32::try_from(images).expect("count");
    while started.elapsed() < chaos || next < images {
        if next < images {
            let i = next;
            next += 1;
            let url = stack.url("/process");
            let (key, last) = feed(
                i,
                async |key: &str, bytes: Vec<u8>| write_file(&originals.join(key), &bytes),
                async |key: &str| post_until_taken(&http, &url, key).await,
            )
            .await;
            expected.insert(key, last);
            tokio::time::sleep(per_input).await;
        } else {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let elapsed = started.elapsed();
        if elapsed < chaos && last_kill.elapsed() >= Duration::from_secs(2) {
            // SIGKILL a worker mid-whatever and start another.
            let victim = stack.workers.remove(next % stack.workers.len());
            kill(victim);
            stack.start_worker();
            last_kill = Instant::now();
        }
        if elapsed < chaos && server_kills < 2 && elapsed >= chaos.mul_f64(f64::from(server_kills + 1) / 3.0) {
            if let Some(server) = stack.server.take() {
                kill(server);
            }
            stack.start_server(&http).await;
            server_kills += 1;
        }
        if !stopped && elapsed >= chaos / 2 {
            // A worker frozen past the heartbeat timeout, then thawed: its jobs were retried
            // elsewhere; its late reports must not double anything.
            let frozen = &stack.workers[0];
            signal(frozen, libc::SIGSTOP);
            tokio::time::sleep(Duration::from_secs(HEARTBEAT_TIMEOUT_SECS + 2)).await;
            signal(frozen, libc::SIGCONT);
            stopped = true;
        }
    }
    println!("chaos over after {:.1?}: {} inputs, {server_kills} server kills", started.elapsed(), expected.len());

    // Healthy from here: every input settles, or it is stuck.
    let store = LocalBlobStore::new(dir.path());
    let ids: BTreeMap<String, String> = {
        let mut ids = BTreeMap::new();
        for key in expected.keys() {
            let version = store.head("original", key).await.expect("head").version.expect("a version");
            let job = Job::for_source(
                "original",
                key,
                &version,
                "resized",
                vec![Rendition::thumbnail()],
                false,
                MetadataPolicy::Strip,
            );
            ids.insert(key.clone(), job.job_id);
        }
        ids
    };
    let settle = Instant::now() + Duration::from_secs(120);
    let record = |id: String| {
        let (http, url) = (http.clone(), stack.url(&format!("/jobs/{id}")));
        async move {
            let r = http.get(url).send().await.ok()?;
            r.status().is_success().then_some(())?;
            r.json::<JobRecord>().await.ok()
        }
    };
    let mut finals: BTreeMap<String, Option<JobRecord>> = BTreeMap::new();
    loop {
        let mut pending = 0;
        for (key, id) in &ids {
            if finals.get(key).is_some_and(|r| r.as_ref().is_some_and(|r| r.state.is_terminal())) {
                continue;
            }
            let got = record(id.clone()).await;
            pending += usize::from(!got.as_ref().is_some_and(|r| r.state.is_terminal()));
            finals.insert(key.clone(), got);
        }
        if pending == 0 || Instant::now() >= settle {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    stack.stop();
    // Every job the store holds, to count how many processed each version.
    let deployment =
        wiring::Deployment::open(dir.path(), protocol::workflow::Policy::default(), 5).await.expect("open");
    let all = deployment.orchestrator.list(usize::MAX).await.expect("jobs");

    let mut thumbs = BTreeMap::new();
    for key in expected.keys() {
        let thumb = std::fs::read(dir.path().join("buckets/resized").join(output_key(key, &Rendition::thumbnail())));
        thumbs.insert(key.clone(), thumb.ok().and_then(|t| jpeg_dimensions(&t)));
    }
    account(&expected, &finals, &all, &thumbs).assert_all_zero();
}

/// Every input accounted for: `expected` (each key's last version's size, `None` for a
/// non-image), `finals` (the job of each key's last version, as it ended), `all` (every job
/// the orchestrator knows) and `thumbs` (each key's thumbnail's size, if there is one).
fn account(
    expected: &BTreeMap<String, Option<(u32, u32)>>,
    finals: &BTreeMap<String, Option<JobRecord>>,
    all: &[JobRecord],
    thumbs: &BTreeMap<String, Option<(u32, u32)>>,
) -> Accounting {
    let mut a = Accounting { inputs: expected.len(), ..Accounting::default() };
    for (key, want) in expected {
        let last = finals.get(key).and_then(Option::as_ref);
        match (want, last) {
            (_, None) => a.lost.push(format!("{key}: no job for its last version")),
            (_, Some(r)) if !r.state.is_terminal() => a.stuck.push(format!("{key}: {:?}", r.state)),
            (None, Some(r)) => {
                if r.error.as_ref().is_some_and(|e| e.code == "NotAnImage") {
                    a.rejected += 1;
                } else {
                    a.lost.push(format!("{key}: a non-image ended {:?} {:?}", r.state, r.error));
                }
            }
            (Some(_), Some(r)) if r.state != JobState::Success => {
                a.lost.push(format!("{key}: {:?} {:?}", r.state, r.error.as_ref().map(|e| &e.code)));
            }
            (Some(dims), Some(_)) => {
                a.succeeded += 1;
                if thumbs.get(key).copied().flatten() != Some(*dims) {
                    a.wrong_version.push(format!("{key}: outputs are not of its last version {dims:?}"));
                }
                let same_version = all.iter().filter(|j| {
                    j.source_key == *key
                        && j.state == JobState::Success
                        && j.outputs.first().is_some_and(|o| (o.width, o.height) == *dims)
                });
                if same_version.count() > 1 {
                    a.duplicated.push(format!("{key}: its last version was processed by more than one job"));
                }
            }
        }
    }
    a
}

impl Accounting {
    /// Prints the counts and fails unless lost, duplicated, stuck and wrong version are all 0.
    fn assert_all_zero(&self) {
        println!(
            "inputs {} (succeeded {}, rejected as not images {}): lost {}, duplicated {}, stuck {}, wrong version {}",
            self.inputs,
            self.succeeded,
            self.rejected,
            self.lost.len(),
            self.duplicated.len(),
            self.stuck.len(),
            self.wrong_version.len()
        );
        let clean = self.lost.is_empty() && self.duplicated.is_empty() && self.stuck.is_empty();
        assert!(clean && self.wrong_version.is_empty(), "{self:#?}");
        assert_eq!(self.succeeded + self.rejected, self.inputs);
    }
}

/// The emulator's process, paused for the AWS run. Thawed when dropped, whatever happens.
struct Emulator(libc::pid_t);

impl Emulator {
    fn from_env() -> Self {
        let pid = std::env::var("IMGPIPE_TEST_AWS_PID").ok().and_then(|p| p.parse().ok()).unwrap_or_else(|| {
            panic!("IMGPIPE_TEST_AWS_PID is not set: run scripts/test.sh, or eval \"$(scripts/moto.sh start)\"")
        });
        Self(pid)
    }

    fn send(&self, sig: libc::c_int) {
        // SAFETY: signalling the emulator process the test scripts started.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::kill(self.0, sig) };
        assert_eq!(rc, 0, "kill({}, {sig})", self.0);
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.send(libc::SIGCONT);
    }
}

/// The AWS form: S3 + SQS + Step Functions on the emulator, `imgpipe serve` (API and the S3
/// notifications) and two `imgpipe worker` processes. Images arrive by upload (the bucket's
/// notification starts the job) and most are also POSTed; some are replaced in flight; some
/// are not images. Workers are SIGKILLed every three seconds, the server once, a worker is
/// SIGSTOPped past the heartbeat timeout, and the emulator itself is SIGSTOPped for longer
/// than the clients' read timeout, so every call in flight fails and must be retried.
/// `IMGPIPE_CHAOS_AWS_IMAGES` (default 120) and `IMGPIPE_CHAOS_AWS_SECS` (default 30).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_s3_sqs_and_step_functions_with_the_emulator_paused_every_input_ends_exactly_once() {
    use common::aws::Rig;

    let images = usize::try_from(knob("IMGPIPE_CHAOS_AWS_IMAGES", 120)).expect("size");
    let chaos = Duration::from_secs(knob("IMGPIPE_CHAOS_AWS_SECS", 30));
    let emulator = Emulator::from_env();
    let mut rig = Rig::with_receives_and_step_functions(100).await;
    let events = rig.name("events");
    let serve_args = ["--workers", "0", "--s3-events-queue", events.as_str()];
    let mut url = rig.serve(&serve_args);
    let mut server = rig.children.len() - 1;
    let start_worker = |rig: &mut Rig| {
        let mut worker =
            rig.command(&["worker", "--workers", "2", "--visibility-timeout", "5s", "--heartbeat-interval", "1s"]);
        worker.env("IMGPIPE_MAX_RECEIVE_COUNT", "100");
        rig.start(worker)
    };
    let mut workers = vec![start_worker(&mut rig), start_worker(&mut rig)];
    let http = reqwest::Client::new();

    let mut expected: BTreeMap<String, Option<(u32, u32)>> = BTreeMap::new();
    let started = Instant::now();
    let (mut next, mut last_kill, mut server_killed, mut worker_stopped, mut paused) =
        (0usize, Instant::now(), false, false, false);
    let per_input = chaos.mul_f64(0.5) / u32::try_from(images).expect("count");
    while started.elapsed() < chaos || next < images {
        if next < images {
            let i = next;
            next += 1;
            let process = format!("{url}/process");
            let (key, last) = feed(
                i,
                async |key: &str, bytes: Vec<u8>| put(&rig, key.to_owned(), bytes).await,
                async |key: &str| {
                    let request = serde_json::json!({
                        "sourceBucket": rig.original(), "sourceKey": key, "destinationBucket": rig.resized() });
                    post_json_until_taken(&http, &process, &request).await;
                },
            )
            .await;
            expected.insert(key, last);
            tokio::time::sleep(per_input).await;
        } else {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let elapsed = started.elapsed();
        if elapsed < chaos && last_kill.elapsed() >= Duration::from_secs(3) {
            let victim = workers.remove(next % workers.len());
            let _ = rig.children[victim].kill();
            let _ = rig.children[victim].wait();
            workers.push(start_worker(&mut rig));
            last_kill = Instant::now();
        }
        if !server_killed && elapsed >= chaos / 4 {
            let _ = rig.children[server].kill();
            let _ = rig.children[server].wait();
            url = rig.serve(&serve_args);
            server = rig.children.len() - 1;
            server_killed = true;
        }
        if !worker_stopped && elapsed >= chaos / 2 {
            let frozen = &rig.children[workers[0]];
            signal(frozen, libc::SIGSTOP);
            // Past the state machine's heartbeat timeout (10 s): the task times out and is retried.
            tokio::time::sleep(Duration::from_secs(12)).await;
            signal(frozen, libc::SIGCONT);
            worker_stopped = true;
        }
        if !paused && elapsed >= chaos.mul_f64(0.75) {
            emulator.send(libc::SIGSTOP);
            tokio::time::sleep(pipeline_aws::config::READ_TIMEOUT + Duration::from_secs(5)).await;
            emulator.send(libc::SIGCONT);
            paused = true;
        }
    }
    println!("AWS chaos over after {:.1?}: {} inputs", started.elapsed(), expected.len());

    // Healthy from here: every last version's job ends, or it is stuck.
    let mut ids = BTreeMap::new();
    for key in expected.keys() {
        let version = rig.s3.head(&rig.original(), key).await.expect("head").version.expect("an ETag");
        let job = Job::for_source(
            rig.original(),
            key,
            &version,
            rig.resized(),
            vec![Rendition::thumbnail()],
            false,
            MetadataPolicy::Strip,
        );
        ids.insert(key.clone(), job.job_id);
    }
    let settle = Instant::now() + Duration::from_secs(240);
    let mut finals: BTreeMap<String, Option<JobRecord>> = BTreeMap::new();
    loop {
        let mut pending = 0;
        for (key, id) in &ids {
            if finals.get(key).is_some_and(|r| r.as_ref().is_some_and(|r| r.state.is_terminal())) {
                continue;
            }
            let got: Option<JobRecord> = async {
                let r = http.get(format!("{url}/jobs/{id}")).send().await.ok()?;
                r.status().is_success().then_some(())?;
                r.json().await.ok()
            }
            .await;
            pending += usize::from(!got.as_ref().is_some_and(|r| r.state.is_terminal()));
            finals.insert(key.clone(), got);
        }
        if pending == 0 || Instant::now() >= settle {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let all: serde_json::Value =
        http.get(format!("{url}/jobs?limit=1000")).send().await.expect("jobs").json().await.expect("json");
    let all: Vec<JobRecord> = serde_json::from_value(all["jobs"].clone()).expect("job records");
    let mut thumbs = BTreeMap::new();
    for key in expected.keys() {
        let thumb = rig.output(&output_key(key, &Rendition::thumbnail())).await;
        thumbs.insert(key.clone(), thumb.and_then(|t| jpeg_dimensions(&t)));
    }
    account(&expected, &finals, &all, &thumbs).assert_all_zero();
}

/// Posts `body` until the API takes it (the server may be down or restarting).
async fn post_json_until_taken(http: &reqwest::Client, url: &str, body: &serde_json::Value) {
    for _ in 0..600 {
        match http.post(url).json(body).timeout(Duration::from_secs(5)).send().await {
            Ok(r) if r.status().is_success() || r.status().is_client_error() => return,
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    panic!("POST to {url} never taken");
}

/// Uploads `bytes` as `key` into the rig's original bucket, trying again while the emulator fails.
async fn put(rig: &common::aws::Rig, key: String, bytes: Vec<u8>) {
    let body = bytes::Bytes::from(bytes);
    for _ in 0..100 {
        if rig.put_original_bytes(&key, body.clone()).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("upload of {key} never taken");
}
