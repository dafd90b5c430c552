//! The AWS rig the emulator tests share: one deployment on the emulator (its own buckets and
//! queues, made by `imgpipe setup`), the real `imgpipe` binary configured by `IMGPIPE_*`
//! and the standard `AWS_*` variables, as a container fleet would run it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use pipeline_aws::{AwsBackends, AwsConfig, S3BlobStore};
use pipeline_core::blob::{BlobError, BlobStore, PutOptions};
use tempfile::TempDir;

use super::{MYPHOTO, eventually, jpeg_dimensions};

pub fn endpoint() -> String {
    std::env::var("IMGPIPE_TEST_AWS_ENDPOINT").ok().filter(|e| !e.is_empty()).unwrap_or_else(|| {
        panic!(
            "IMGPIPE_TEST_AWS_ENDPOINT is not set: these tests need the AWS emulator.\n\
             Run scripts/test.sh, or: eval \"$(scripts/moto.sh start)\" && cargo test --test aws_pipeline"
        )
    })
}

/// One deployment on the emulator: its own buckets and queues, a data dir for the job store.
pub struct Rig {
    pub dir: TempDir,
    pub id: String,
    pub s3: S3BlobStore,
    pub aws: AwsBackends,
    pub children: Vec<Child>,
    pub state_machine: Option<String>,
    /// The DynamoDB table of the engine's jobs, when they are not in the data dir's SQLite file.
    pub jobs_table: Option<String>,
}

impl Rig {
    /// A deployment whose jobs are given up after two receives.
    pub async fn new() -> Self {
        Self::with_receives(2).await
    }

    /// A deployment whose queues move a job to the DLQ after `max_receive_count` receives.
    pub async fn with_receives(max_receive_count: u32) -> Self {
        let aws = AwsBackends::new(AwsConfig::for_endpoint(&endpoint()).await);
        let id = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
        let rig = Self {
            dir: TempDir::new().expect("tempdir"),
            id,
            s3: aws.s3(),
            aws,
            children: Vec::new(),
            state_machine: None,
            jobs_table: None,
        };
        let (ok, out, err) = rig.run(&[
            "setup",
            "--max-receive-count",
            &max_receive_count.to_string(),
            "--visibility-timeout",
            "5s",
            "--s3-events-queue",
            &rig.name("events"),
        ]);
        assert!(ok, "setup failed: {err}\n{out}");
        rig
    }

    /// A deployment whose workflow engine keeps its jobs in a DynamoDB table (the one
    /// `imgpipe setup` makes), as several engine replicas on AWS do.
    pub async fn with_dynamodb() -> Self {
        let mut rig = Self::new().await;
        rig.jobs_table = Some(rig.name("jobs-table"));
        let (ok, out, err) = rig.run(&["setup"]);
        assert!(ok, "setup failed: {err}\n{out}");
        assert!(out.contains("table "), "setup makes the table: {out}");
        rig
    }

    /// A deployment whose workflow runs in Step Functions (the state machine `imgpipe setup` makes).
    pub async fn with_step_functions() -> Self {
        Self::with_receives_and_step_functions(2).await
    }

    /// [`Rig::with_step_functions`], giving jobs up after `max_receive_count` receives.
    pub async fn with_receives_and_step_functions(max_receive_count: u32) -> Self {
        let mut rig = Self::with_receives(max_receive_count).await;
        let sm = rig.name("workflow");
        let (ok, out, err) = rig.run(&[
            "setup",
            "--orchestrator",
            "stepfunctions",
            "--role-arn",
            pipeline_aws::sfn::setup::EMULATOR_ROLE_ARN,
            "--state-machine-name",
            &sm,
            "--retry-interval",
            "1s",
            "--heartbeat-timeout",
            "10s",
            "--task-timeout",
            "60s",
        ]);
        assert!(ok, "setup failed: {err}\n{out}");
        let arn = out.lines().find_map(|l| l.strip_prefix("state machine ")).expect("setup prints the ARN");
        rig.state_machine = Some(arn.trim().to_owned());
        rig
    }

    pub fn name(&self, what: &str) -> String {
        format!("{what}-{}", self.id)
    }

    pub fn original(&self) -> String {
        self.name("original")
    }

    pub fn resized(&self) -> String {
        self.name("resized")
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_imgpipe"));
        cmd.args(args)
            .env("IMGPIPE_DATA_DIR", self.dir.path())
            .env("IMGPIPE_BLOB_STORE", "s3")
            .env("IMGPIPE_QUEUE_BACKEND", "sqs")
            .env("IMGPIPE_JOBS_QUEUE", self.name("jobs"))
            .env("IMGPIPE_REPORTS_QUEUE", self.name("reports"))
            .env("IMGPIPE_DEAD_LETTER_QUEUE", self.name("dlq"))
            .env("IMGPIPE_SOURCE_BUCKET", self.original())
            .env("IMGPIPE_DESTINATION_BUCKET", self.resized())
            .env("IMGPIPE_RETRY_INTERVAL", "1s")
            .env("IMGPIPE_LOG", "info")
            .env("AWS_ENDPOINT_URL", endpoint())
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .stdin(Stdio::null());
        if let Some(arn) = &self.state_machine {
            cmd.env("IMGPIPE_ORCHESTRATOR", "stepfunctions").env("IMGPIPE_STATE_MACHINE_ARN", arn);
        }
        if let Some(table) = &self.jobs_table {
            cmd.env("IMGPIPE_JOB_STORE", "dynamodb").env("IMGPIPE_JOBS_TABLE", table);
        }
        cmd
    }

    pub fn run(&self, args: &[&str]) -> (bool, String, String) {
        let out = self.command(args).output().expect("run imgpipe");
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
    }

    /// Starts `imgpipe serve` and returns its base URL.
    pub fn serve(&mut self, extra: &[&str]) -> String {
        self.serve_with_faults(extra, "")
    }

    /// Starts `imgpipe serve` with `IMGPIPE_FAULTS` set to `faults`.
    pub fn serve_with_faults(&mut self, extra: &[&str], faults: &str) -> String {
        let mut args =
            vec!["serve", "--listen", "127.0.0.1:0", "--heartbeat-interval", "1s", "--visibility-timeout", "5s"];
        args.extend_from_slice(extra);
        let mut child = self
            .command(&args)
            .env("IMGPIPE_FAULTS", faults)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("serve prints its address");
        let url = line.split_whitespace().find(|w| w.starts_with("http://")).expect("address line").to_owned();
        self.children.push(child);
        url
    }

    pub fn worker(&mut self, faults: &str) -> usize {
        let mut worker =
            self.command(&["worker", "--workers", "1", "--visibility-timeout", "2s", "--heartbeat-interval", "500ms"]);
        worker.env("IMGPIPE_FAULTS", faults);
        self.start(worker)
    }

    /// Starts `command` (quiet) as one of the rig's children, killed when the rig is dropped:
    /// its index in `children`.
    pub fn start(&mut self, mut command: Command) -> usize {
        let child = command.stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("start imgpipe");
        self.children.push(child);
        self.children.len() - 1
    }

    pub async fn put_original(&self, key: &str, body: &'static [u8]) {
        self.put_original_bytes(key, Bytes::from_static(body)).await.expect("put");
    }

    /// Uploads `body` as `key` into the original bucket.
    pub async fn put_original_bytes(&self, key: &str, body: Bytes) -> Result<(), BlobError> {
        let options = PutOptions { content_type: Some("image/jpeg".into()), cache_control: None };
        self.s3.put(&self.original(), key, body, &options).await.map(|_| ())
    }

    pub async fn output(&self, key: &str) -> Option<Vec<u8>> {
        match self.s3.get(&self.resized(), key, 10 << 20).await {
            Ok(blob) => Some(blob.body.to_vec()),
            Err(BlobError::NotFound { .. }) => None,
            Err(e) => panic!("{e}"),
        }
    }

    pub async fn wait_job(&self, url: &str, id: &str) -> serde_json::Value {
        let http = reqwest::Client::new();
        eventually(Duration::from_secs(60), "the job to end", || async {
            let r: serde_json::Value = http.get(format!("{url}/jobs/{id}")).send().await.ok()?.json().await.ok()?;
            matches!(r["state"].as_str(), Some("Success" | "Fail")).then_some(r)
        })
        .await
    }

    pub async fn post(&self, url: &str, key: &str, query: &str) -> serde_json::Value {
        let body = serde_json::json!({ "sourceBucket": self.original(), "sourceKey": key, "destinationBucket": self.resized() });
        let resp = reqwest::Client::new().post(format!("{url}/process{query}")).json(&body).send().await.expect("post");
        resp.json().await.expect("json")
    }

    /// The seed project's request for its photo, answered with its result body once the
    /// job ends: a 512×512 JPEG thumbnail whose size the body tells.
    pub async fn seed_request_succeeds(&self, url: &str) -> serde_json::Value {
        self.put_original("myphoto.jpg", MYPHOTO).await;
        let body = self.post(url, "myphoto.jpg", "?wait=60").await;
        assert_eq!(body["statusCode"], 200, "{body}");
        assert_eq!(body["destinationKey"], "resized/myphoto_thumbnail.jpg");
        let out = self.output("resized/myphoto_thumbnail.jpg").await.expect("written");
        assert_eq!(body["fileSize"], out.len());
        assert_eq!(jpeg_dimensions(&out), Some((512, 512)));
        body
    }

    /// Starts a worker with `faults`, submits the seed photo, and waits until the worker
    /// holds the job: (the worker's index in `children`, the job id).
    pub async fn job_held_by_a_worker(&mut self, url: &str, faults: &str) -> (usize, String) {
        let worker = self.worker(faults);
        self.put_original("myphoto.jpg", MYPHOTO).await;
        let id = self.post(url, "myphoto.jpg", "").await["jobId"].as_str().expect("id").to_owned();
        eventually(Duration::from_secs(30), "the worker to take the job", || async {
            (self.jobs_in_flight().await == 1).then_some(())
        })
        .await;
        (worker, id)
    }

    /// Waits for the child at `index` to exit, and says whether it crashed.
    pub fn crashed(&mut self, index: usize) -> bool {
        !self.children[index].wait().expect("wait").success()
    }

    pub async fn dlq(&self, url: &str) -> serde_json::Value {
        reqwest::get(format!("{url}/dlq")).await.expect("dlq").json().await.expect("json")
    }

    pub async fn redrive(&self, url: &str, id: &str) -> reqwest::Result<serde_json::Value> {
        let body = serde_json::json!({ "ids": [id] });
        reqwest::Client::new().post(format!("{url}/dlq/redrive")).json(&body).send().await?.json().await
    }

    pub async fn jobs_in_flight(&self) -> u64 {
        let q = self.aws.queue(&self.name("jobs")).await.expect("queue");
        q.stats().await.expect("stats").in_flight
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
