//! The container image and the compose fleet, run for real: `scripts/image.sh` packages the
//! binary under test into the image (FROM scratch, no registry), and `compose.yaml` runs the API
//! and orchestrator in one container and the workers in others, on one shared data folder.
//! Workers are killed, stopped and scaled to zero with jobs in flight; the same backlog is
//! drained by 1, 2 and 4 worker containers. Needs Docker Engine and a compose tool
//! (`docker compose` or `docker-compose`); the test command installs neither and checks both.
#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

const PHOTO: &[u8] = include_bytes!("fixtures/myphoto.jpg");
const IMAGE: &str = "imgpipe:test";
const KEY: &str = "test-submit-key";

/// One fleet at a time: the scaling figures need the machine to themselves.
static SERIAL: Mutex<()> = Mutex::new(());

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The image, built once per run from the `imgpipe` binary this test suite built, or an image
/// built beforehand when `IMGPIPE_TEST_IMAGE` names one (e.g. the release `imgpipe:latest`).
fn image() -> &'static str {
    static BUILT: OnceLock<String> = OnceLock::new();
    BUILT.get_or_init(|| {
        if let Ok(given) = std::env::var("IMGPIPE_TEST_IMAGE") {
            return given;
        }
        let root = env!("CARGO_MANIFEST_DIR");
        let script = format!("{root}/scripts/image.sh");
        run(Command::new(script).args(["--binary", env!("CARGO_BIN_EXE_imgpipe"), "--tag", IMAGE]));
        IMAGE.to_owned()
    })
}

/// `docker compose` when the plugin is there, else Debian's `docker-compose`.
fn compose_tool() -> &'static [&'static str] {
    static TOOL: OnceLock<&'static [&'static str]> = OnceLock::new();
    TOOL.get_or_init(|| {
        let plugin = Command::new("docker").args(["compose", "version"]).output();
        if plugin.is_ok_and(|o| o.status.success()) { &["docker", "compose"] } else { &["docker-compose"] }
    })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// One compose project on its own data folder and port, taken down when dropped.
struct Fleet {
    project: String,
    data: TempDir,
    port: u16,
    env: Vec<(String, String)>,
    http: reqwest::Client,
}

impl Fleet {
    /// The API container up (no workers yet) and answering; `env` overrides compose.yaml's knobs.
    async fn up(env: &[(&str, &str)]) -> Fleet {
        let data = tempfile::tempdir().expect("tempdir");
        // The containers run as user 10001; the folder is the test's.
        std::fs::set_permissions(data.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let port = free_port();
        let mut vars: Vec<(String, String)> = vec![
            ("IMGPIPE_IMAGE".into(), image().into()),
            ("IMGPIPE_DATA".into(), data.path().display().to_string()),
            ("IMGPIPE_PORT".into(), port.to_string()),
            ("IMGPIPE_API_KEYS".into(), format!("submit:{KEY}")),
            // Every job writes the sidecar, as before it was opt-in: "one set of outputs" counts
            // both objects, and the README's backlog table was measured with it. The server's
            // default, not the request's: an upload's own job and its request stay one job.
            ("IMGPIPE_SIDECAR".into(), "true".into()),
        ];
        vars.extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let project = format!("imgpipe-test-{}-{port}", std::process::id());
        let fleet = Fleet { project, data, port, env: vars, http: reqwest::Client::new() };
        fleet.compose(&["up", "-d", "--scale", "worker=0"]);
        let ok = fleet.eventually(Duration::from_secs(30), "the API to answer", || async {
            let r = fleet.http.get(fleet.url("/healthz")).send().await.ok()?;
            r.status().is_success().then_some(())
        });
        ok.await;
        fleet
    }

    fn compose_command(&self, args: &[&str]) -> Command {
        let tool = compose_tool();
        let file = concat!(env!("CARGO_MANIFEST_DIR"), "/compose.yaml");
        let mut cmd = Command::new(tool[0]);
        cmd.args(&tool[1..]).args(["-p", &self.project, "-f", file]).args(args);
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    fn compose(&self, args: &[&str]) -> Output {
        run(&mut self.compose_command(args))
    }

    /// Worker containers to `n` (compose stops the extra ones with their grace period).
    fn scale(&self, n: usize) {
        self.compose(&["up", "-d", "--no-recreate", "--scale", &format!("worker={n}")]);
    }

    /// Ids of the worker containers, running or not.
    fn workers(&self) -> Vec<String> {
        stdout(&self.compose(&["ps", "-q", "worker"])).lines().map(str::to_owned).collect()
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn bucket(&self, bucket: &str, key: &str) -> PathBuf {
        self.data.path().join("buckets").join(bucket).join(key)
    }

    /// Puts the photo into the original bucket under `key` and starts a job for it.
    async fn submit(&self, key: &str) -> String {
        self.submit_bytes(key, PHOTO).await
    }

    /// Puts `bytes` into the original bucket under `key` and starts a job for it.
    async fn submit_bytes(&self, key: &str, bytes: &[u8]) -> String {
        let path = self.bucket("original", key);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, bytes).expect("write original");
        let body = serde_json::json!({ "sourceBucket": "original", "sourceKey": key, "destinationBucket": "resized" });
        let r = self.http.post(self.url("/process")).bearer_auth(KEY).json(&body).send().await.expect("POST");
        let status = r.status();
        let body: Value = r.json().await.expect("json");
        assert_eq!(status, 202, "{body}");
        body["jobId"].as_str().expect("jobId").to_owned()
    }

    async fn job(&self, id: &str) -> Value {
        let r = self.http.get(self.url(&format!("/jobs/{id}"))).bearer_auth(KEY).send().await.expect("GET job");
        r.json().await.expect("json")
    }

    async fn wait_success(&self, ids: &[String], within: Duration) {
        for id in ids {
            let job = self
                .eventually(within, "every job to end", || async {
                    let job = self.job(id).await;
                    matches!(job["state"].as_str(), Some("Success" | "Fail")).then_some(job)
                })
                .await;
            assert_eq!(job["state"], "Success", "{job}");
            assert_eq!(job["attempts"], 1, "the workflow never retried: {job}");
        }
    }

    /// A queue gauge from `/metrics`.
    async fn queue(&self, queue: &str, state: &str) -> u64 {
        let r = self.http.get(self.url("/metrics")).bearer_auth(KEY).send().await.expect("metrics");
        let text = r.text().await.expect("text");
        let series = format!("imgpipe_queue_messages{{queue=\"{queue}\",state=\"{state}\"}} ");
        text.lines().find_map(|l| l.strip_prefix(&series)?.parse().ok()).unwrap_or_else(|| panic!("no {series}"))
    }

    /// Waits until the workers hold at least `n` jobs between them (each worker holds up to two
    /// per render slot, so a backlog may be held whole).
    async fn wait_held(&self, n: u64) {
        self.eventually(Duration::from_secs(30), "the workers to hold their jobs", || async {
            (self.queue("jobs", "in_flight").await >= n).then_some(())
        })
        .await;
    }

    /// How often each job was received, over every worker container's log (killed ones too).
    fn received(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for id in self.workers() {
            for line in container_log(&id).lines().filter(|l| l.contains("job received")) {
                if let Some(job) = line.split("job_id=").nth(1).and_then(|r| r.split([' ', '}']).next()) {
                    *counts.entry(job.to_owned()).or_default() += 1;
                }
            }
        }
        counts
    }

    /// The worker container holding `job` right now (the last to receive it).
    fn holder_of(&self, job: &str) -> Option<String> {
        self.workers()
            .into_iter()
            .rfind(|c| container_log(c).lines().any(|l| l.contains("job received") && l.contains(job)))
    }

    /// Output files under `resized/<prefix>`, sorted.
    fn outputs(&self, prefix: &str) -> Vec<String> {
        let dir = self.bucket("resized", &format!("resized/{prefix}"));
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map(|d| d.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect())
            .unwrap_or_default();
        names.sort();
        names
    }

    async fn eventually<T, F, Fut>(&self, within: Duration, what: &str, mut probe: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + within;
        loop {
            if let Some(v) = probe().await {
                return v;
            }
            assert!(Instant::now() < deadline, "timed out after {within:?} waiting for {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        // Best effort, and never a second panic while a failed test unwinds.
        let _ = self.compose_command(&["down", "--volumes", "--timeout", "1"]).output();
    }
}

fn container_log(id: &str) -> String {
    let out = run(Command::new("docker").args(["logs", id]));
    String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout)
}

fn inspect(id: &str, format: &str) -> String {
    stdout(&run(Command::new("docker").args(["inspect", "--format", format, id])))
}

fn expected_outputs(stems: &[String]) -> Vec<String> {
    let mut names: Vec<String> =
        stems.iter().flat_map(|s| [format!("{s}_metadata.json"), format!("{s}_thumbnail.jpg")]).collect();
    names.sort();
    names
}

/// Runs an async test body on its own runtime, one fleet at a time.
fn serial(body: impl std::future::Future<Output = ()>) {
    let _one_at_a_time = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime").block_on(body);
}

/// The README's fleet answers the seed request end to end (with the sidecar, the stack's
/// `IMGPIPE_SIDECAR=true`), as non-root, and reports healthy.
#[test]
fn the_fleet_answers_the_seed_request() {
    serial(async {
        let fleet = Fleet::up(&[]).await;
        fleet.scale(1);
        std::fs::write(fleet.bucket("original", "myphoto.jpg"), PHOTO).expect("write original");
        let body = serde_json::json!({ "sourceBucket": "original", "sourceKey": "myphoto.jpg", "destinationBucket": "resized" });
        let r = fleet.http.post(fleet.url("/process?wait=60")).bearer_auth(KEY).json(&body).send().await.expect("POST");
        assert_eq!(r.status(), 200);
        let answer: Value = r.json().await.expect("json");
        assert_eq!(answer["destinationKey"], "resized/myphoto_thumbnail.jpg", "{answer}");
        let thumb = &answer["outputs"][0];
        assert_eq!((thumb["width"].as_u64(), thumb["height"].as_u64()), (Some(512), Some(512)), "{answer}");
        let path = fleet.bucket("resized", "resized/myphoto_thumbnail.jpg");
        let bytes = std::fs::read(&path).expect("thumbnail written to the shared folder");
        assert_eq!((bytes.len() as u64, &bytes[..2]), (thumb["size"].as_u64().expect("size"), &[0xFF, 0xD8][..]));
        assert_eq!(std::fs::metadata(&path).expect("meta").uid(), 10001, "written by the image's non-root user");
        assert_eq!(fleet.outputs(""), ["myphoto_metadata.json", "myphoto_thumbnail.jpg"]);

        // Without a key the published port refuses work.
        let r = fleet.http.post(fleet.url("/process")).json(&body).send().await.expect("POST");
        assert_eq!(r.status(), 401);

        // Both services pass the image's HEALTHCHECK (`imgpipe health` on the heartbeat file).
        let api = stdout(&fleet.compose(&["ps", "-q", "api"]));
        for id in [api, fleet.workers()[0].clone()] {
            fleet
                .eventually(Duration::from_secs(40), "the health check to pass", || async {
                    (inspect(&id, "{{.State.Health.Status}}") == "healthy").then_some(())
                })
                .await;
        }
        let size: u64 = inspect(image(), "{{.Size}}").parse().expect("size");
        println!("image {}: {} MB", image(), size / 1_000_000);
    });
}

/// SIGKILL mid-job: the job comes back after the visibility timeout and ends once.
#[test]
fn a_worker_container_killed_mid_job_is_redelivered() {
    serial(async {
        let env = [
            ("IMGPIPE_FAULTS", "delay-ms=3000"),
            ("IMGPIPE_VISIBILITY_TIMEOUT", "5s"),
            ("IMGPIPE_HEARTBEAT_INTERVAL", "1s"),
            ("IMGPIPE_STOP_GRACE", "1s"),
        ];
        let fleet = Fleet::up(&env).await;
        fleet.scale(2);
        let stems: Vec<String> = (0..4).map(|i| format!("p{i}")).collect();
        let mut ids = Vec::new();
        for stem in &stems {
            ids.push(fleet.submit(&format!("kill/{stem}.jpg")).await);
        }
        fleet.wait_held(2).await;
        let victim_job = fleet.eventually(Duration::from_secs(10), "a received job", || async {
            let received = fleet.received();
            ids.iter().find(|id| received.contains_key(*id)).cloned()
        });
        let victim_job = victim_job.await;
        let victim = fleet.holder_of(&victim_job).expect("a holder");
        run(Command::new("docker").args(["kill", "--signal", "KILL", &victim]));
        let killed = Instant::now();
        fleet
            .eventually(Duration::from_secs(60), "the killed job to be received again", || async {
                (fleet.received().get(&victim_job).copied().unwrap_or(0) >= 2).then_some(())
            })
            .await;
        let redelivered_after = killed.elapsed();
        fleet.wait_success(&ids, Duration::from_secs(60)).await;
        assert!(
            redelivered_after >= Duration::from_secs(3),
            "redelivered only when the 5 s visibility ran out, not at once: {redelivered_after:?}"
        );
        assert_eq!(fleet.outputs("kill"), expected_outputs(&stems), "exactly one set of outputs per image");
        assert_eq!(inspect(&victim, "{{.State.ExitCode}}"), "137", "the victim died by SIGKILL");
    });
}

/// `docker stop` mid-job: the worker drains within the stop timeout; nothing is redelivered.
#[test]
fn a_stopped_worker_container_drains_and_nothing_is_redelivered() {
    serial(async {
        let env =
            [("IMGPIPE_FAULTS", "delay-ms=3000"), ("IMGPIPE_DRAIN_TIMEOUT", "20s"), ("IMGPIPE_STOP_GRACE", "30s")];
        let fleet = Fleet::up(&env).await;
        fleet.scale(2);
        let stems: Vec<String> = (0..2).map(|i| format!("p{i}")).collect();
        let mut ids = Vec::new();
        for stem in &stems {
            ids.push(fleet.submit(&format!("stop/{stem}.jpg")).await);
        }
        fleet.wait_held(2).await;
        let victim = fleet.workers()[0].clone();
        let stopping = Instant::now();
        run(Command::new("docker").args(["stop", "--time", "30", &victim]));
        let took = stopping.elapsed();
        assert_eq!(inspect(&victim, "{{.State.ExitCode}}"), "0", "exited by itself after draining, not killed");
        assert!(took < Duration::from_secs(25), "drained well inside the stop timeout: {took:?}");
        fleet.wait_success(&ids, Duration::from_secs(30)).await;
        let received = fleet.received();
        for id in &ids {
            assert_eq!(received.get(id), Some(&1), "{id} delivered once: {received:?}");
        }
        assert_eq!(fleet.outputs("stop"), expected_outputs(&stems));
    });
}

/// `--scale worker=0` with jobs in flight and queued: none lost; they finish when workers return.
#[test]
fn scaling_to_zero_with_jobs_in_flight_loses_none() {
    serial(async {
        let fleet = Fleet::up(&[("IMGPIPE_FAULTS", "delay-ms=2000")]).await;
        fleet.scale(2);
        let stems: Vec<String> = (0..6).map(|i| format!("p{i}")).collect();
        let mut ids = Vec::new();
        for stem in &stems {
            ids.push(fleet.submit(&format!("zero/{stem}.jpg")).await);
        }
        fleet.wait_held(2).await;
        fleet.scale(0);
        assert_eq!(fleet.queue("jobs", "in_flight").await, 0, "nothing is held by a stopped fleet");
        let mut ended = 0;
        for id in &ids {
            ended += usize::from(fleet.job(id).await["state"] == "Success");
        }
        assert!(ended >= 2, "the jobs in hand finished during the drain ({ended} ended)");
        assert_eq!(fleet.queue("jobs", "visible").await, (ids.len() - ended) as u64, "the rest wait on the queue");

        fleet.scale(2);
        fleet.wait_success(&ids, Duration::from_secs(60)).await;
        assert!(fleet.received().values().all(|&n| n == 1), "each job delivered once: {:?}", fleet.received());
        assert_eq!(fleet.outputs("zero"), expected_outputs(&stems));
    });
}

/// The same backlog drained by 1, 2 and 4 worker containers (one render at a time each): a table.
#[test]
fn one_backlog_drained_by_one_two_and_four_workers() {
    const BACKLOG: usize = 200;
    // A phone-sized upload, made by the engine itself: the sample photo enlarged to 2400×2400.
    let made = tempfile::tempdir().expect("tempdir");
    run(Command::new(env!("CARGO_BIN_EXE_imgpipe"))
        .args(["process", concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/myphoto.jpg")])
        .args([
            "--width",
            "2400",
            "--height",
            "2400",
            "--enlarge",
            "--quality",
            "90",
            "--out",
            &made.path().display().to_string(),
        ]));
    let upload = std::fs::read(made.path().join("myphoto_thumbnail.jpg")).expect("the enlarged photo");
    serial(async {
        let fleet = Fleet::up(&[]).await;
        let mut table = Vec::new();
        for workers in [1usize, 2, 4] {
            let prefix = format!("scale{workers}");
            let stems: Vec<String> = (0..BACKLOG).map(|i| format!("p{i:03}")).collect();
            let mut ids = Vec::new();
            for stem in &stems {
                ids.push(fleet.submit_bytes(&format!("{prefix}/{stem}.jpg"), &upload).await);
            }
            assert_eq!(fleet.queue("jobs", "visible").await, BACKLOG as u64, "the whole backlog waits");
            fleet.scale(workers);
            // Timed from the first finished job, so container start-up is not counted.
            fleet
                .eventually(Duration::from_secs(60), "the first job to finish", || async {
                    (!fleet.outputs(&prefix).is_empty()).then_some(())
                })
                .await;
            let start = Instant::now();
            fleet
                .eventually(Duration::from_secs(300), "the backlog to drain", || async {
                    (fleet.outputs(&prefix).len() == 2 * BACKLOG).then_some(())
                })
                .await;
            let secs = start.elapsed().as_secs_f64();
            fleet.scale(0);
            fleet.wait_success(&ids, Duration::from_secs(30)).await;
            assert_eq!(fleet.outputs(&prefix), expected_outputs(&stems));
            table.push((workers, secs));
        }
        // The first job is not in the timed span.
        let timed = (BACKLOG - 1) as f64;
        let base = timed / table[0].1;
        println!(
            "\n{BACKLOG} jobs (2400×2400 JPEG → 512×512 thumbnail + metadata), one render at a time per container:"
        );
        println!("{:>8}  {:>8}  {:>7}  {:>8}", "workers", "seconds", "jobs/s", "speed-up");
        for (workers, secs) in &table {
            let rate = timed / secs;
            println!("{workers:>8}  {secs:>8.1}  {rate:>7.1}  {:>7.2}×", rate / base);
        }
    });
}
