//! What a million images cost on AWS, per deployment shape, from requests counted while real
//! jobs run on the AWS emulator: every process's `imgpipe_aws_requests_total` (each SDK
//! request, retries and idle long polls included), Step Functions transitions counted from the
//! executions' histories, compute from the engine benchmark (`bench/cost/workload.json`), all
//! priced by `bench/cost/prices.json`. `bench/cost.sh` runs it with more jobs; the suite runs it
//! small and holds the counts to what the design promises.

mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use common::aws::Rig;
use common::{MYPHOTO, eventually};
use serde_json::Value;

/// Requests by (service, operation).
type Requests = BTreeMap<(String, String), f64>;

fn jobs_per_run() -> usize {
    std::env::var("IMGPIPE_COST_JOBS").ok().and_then(|n| n.parse().ok()).unwrap_or(20)
}

fn data(name: &str) -> Value {
    let path = format!("{}/bench/cost/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("JSON")
}

fn num(v: &Value, path: &str) -> f64 {
    path.split('.').fold(v, |v, k| &v[k]).as_f64().unwrap_or_else(|| panic!("{path} is not a number"))
}

/// The labels and value of each sample of `metric` in a Prometheus text exposition.
fn samples<'a>(text: &'a str, metric: &str) -> Vec<(BTreeMap<&'a str, &'a str>, f64)> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else { continue };
        let (name, labels) = series.split_once('{').unwrap_or((series, "}"));
        if name != metric {
            continue;
        }
        let labels = labels.trim_end_matches('}').split(',').filter_map(|kv| kv.split_once('='));
        let labels = labels.map(|(k, v)| (k, v.trim_matches('"'))).collect();
        out.push((labels, value.parse().expect("a number")));
    }
    out
}

/// What one process has sent so far.
#[derive(Default, Clone)]
struct Counts {
    requests: Requests,
    empty_receives: f64,
    /// DynamoDB capacity units by (kind, operation).
    units: Requests,
}

impl Counts {
    async fn scrape(url: &str) -> Self {
        let text = reqwest::get(format!("{url}/metrics")).await.expect("metrics").text().await.expect("text");
        let mut counts = Self::default();
        for (labels, value) in samples(&text, "imgpipe_aws_requests_total") {
            let key = (labels["service"].to_ascii_lowercase(), labels["operation"].to_owned());
            *counts.requests.entry(key).or_default() += value;
        }
        counts.empty_receives = samples(&text, "imgpipe_aws_empty_receives_total").iter().map(|(_, v)| v).sum();
        for (labels, value) in samples(&text, "imgpipe_dynamodb_units_total") {
            *counts.units.entry((labels["kind"].to_owned(), labels["operation"].to_owned())).or_default() += value;
        }
        counts
    }

    /// What was sent between `earlier` and `self`, added to `total`.
    fn add_since(&self, earlier: &Self, total: &mut Self) {
        for (key, n) in &self.requests {
            *total.requests.entry(key.clone()).or_default() += n - earlier.requests.get(key).copied().unwrap_or(0.0);
        }
        total.empty_receives += self.empty_receives - earlier.empty_receives;
        for (key, n) in &self.units {
            *total.units.entry(key.clone()).or_default() += n - earlier.units.get(key).copied().unwrap_or(0.0);
        }
    }
}

/// One run of `jobs` jobs: requests by process role, per job.
struct Measured {
    jobs: f64,
    counts: Counts,
    /// Step Functions state transitions (states entered), all executions.
    transitions: f64,
    /// Objects each job wrote (its renditions; no sidecar unless asked), from the jobs' records.
    outputs_per_job: f64,
    /// How long the jobs took, first request to last delete.
    seconds: f64,
    /// Engine replicas.
    engines: f64,
}

impl Measured {
    fn per_job(&self, service: &str, operation: &str) -> f64 {
        self.counts.requests.get(&(service.to_owned(), operation.to_owned())).copied().unwrap_or(0.0) / self.jobs
    }

    /// DynamoDB units of `kind` per job, the timers' queries left out (they run whatever the volume).
    fn units_per_job(&self, kind: &str) -> f64 {
        let units = self.counts.units.iter().filter(|((k, op), _)| k == kind && op != "Query");
        units.map(|(_, n)| n).sum::<f64>() / self.jobs
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// Who runs the workflow in a measured run.
#[derive(Clone, Copy, PartialEq)]
enum Orchestration {
    StepFunctions,
    /// One engine with its jobs in the SQLite file.
    EngineOnSqlite,
    /// Two engine replicas sharing a DynamoDB table.
    EnginesOnDynamoDb,
}

/// Runs `jobs` uploads + `POST /process` through `serve --workers 0` (the API, and the engine
/// when there is no state machine; two replicas on DynamoDB, taking requests in turn) and one
/// `imgpipe worker` with two slots, at the defaults a deployment runs with, and counts what
/// they sent to AWS while the jobs ran.
async fn measure(orchestration: Orchestration, jobs: usize) -> Measured {
    let mut rig = match orchestration {
        Orchestration::StepFunctions => Rig::with_step_functions().await,
        Orchestration::EngineOnSqlite => Rig::new().await,
        Orchestration::EnginesOnDynamoDb => Rig::with_dynamodb().await,
    };
    let step_functions = orchestration == Orchestration::StepFunctions;
    let mut apis = vec![rig.serve(&["--workers", "0"])];
    if orchestration == Orchestration::EnginesOnDynamoDb {
        apis.push(rig.serve(&["--workers", "0"]));
    }
    let worker = format!("http://127.0.0.1:{}", free_port());
    rig.start(rig.command(&["worker", "--workers", "2", "--metrics-listen", worker.trim_start_matches("http://")]));
    let keys: Vec<String> = (0..jobs).map(|i| format!("cost/photo-{i}.jpg")).collect();
    for key in &keys {
        rig.put_original(key, MYPHOTO).await;
    }
    let mut apis_before = Vec::new();
    for api in &apis {
        apis_before.push(Counts::scrape(api).await);
    }
    let worker_before = eventually(Duration::from_secs(30), "the worker's metrics", || async {
        reqwest::get(format!("{worker}/metrics")).await.ok()?;
        Some(Counts::scrape(&worker).await)
    })
    .await;

    let started = std::time::Instant::now();
    let mut ids = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let body = rig.post(&apis[i % apis.len()], key, "").await;
        ids.push(body["jobId"].as_str().unwrap_or_else(|| panic!("accepted: {body}")).to_owned());
    }
    // With Step Functions, reading a job calls the service: what the API sent for the jobs
    // is all sent by now.
    let mut apis_after_posts = Vec::new();
    for api in &apis {
        apis_after_posts.push(Counts::scrape(api).await);
    }
    let mut outputs = 0.0;
    for id in &ids {
        let record = rig.wait_job(&apis[0], id).await;
        assert_eq!(record["state"], "Success", "{record}");
        outputs += record["outputs"].as_array().map_or(0, Vec::len) as f64;
    }
    // The worker deletes a message after its report: wait for the queue to be empty.
    eventually(Duration::from_secs(30), "the jobs queue to drain", || async {
        let stats = rig.aws.queue(&rig.name("jobs")).await.ok()?.stats().await.ok()?;
        (stats.visible == 0 && stats.in_flight == 0).then_some(())
    })
    .await;
    let seconds = started.elapsed().as_secs_f64();

    let mut counts = Counts::default();
    for (i, api) in apis.iter().enumerate() {
        let after = if step_functions { apis_after_posts[i].clone() } else { Counts::scrape(api).await };
        after.add_since(&apis_before[i], &mut counts);
    }
    Counts::scrape(&worker).await.add_since(&worker_before, &mut counts);

    let mut transitions = 0.0;
    if let Some(arn) = &rig.state_machine {
        let sfn = rig.aws.sfn();
        let executions = sfn.list_executions().state_machine_arn(arn).max_results(1000).send().await.expect("list");
        assert_eq!(executions.executions().len(), jobs, "one execution per job");
        for execution in executions.executions() {
            let history =
                sfn.get_execution_history().execution_arn(execution.execution_arn()).send().await.expect("history");
            let events = history.events();
            transitions += events.iter().filter(|e| e.r#type().as_str().ends_with("StateEntered")).count() as f64;
            // Each task the service runs here is an SQS send (the job, or the dead letter),
            // billed to the account like the processes' own.
            let sends = events.iter().filter(|e| e.r#type().as_str() == "TaskScheduled").count() as f64;
            *counts.requests.entry(("sqs".into(), "SendMessage (by Step Functions)".into())).or_default() += sends;
        }
    }
    let engines = if step_functions { 0.0 } else { apis.len() as f64 };
    Measured { jobs: jobs as f64, counts, transitions, outputs_per_job: outputs / jobs as f64, seconds, engines }
}

/// What the shapes are billed for, per job.
struct Bill {
    lines: Vec<(String, f64, f64)>,
    fixed_per_month: f64,
}

impl Bill {
    fn new() -> Self {
        Self { lines: Vec::new(), fixed_per_month: 0.0 }
    }

    fn add(&mut self, what: impl Into<String>, per_job: f64, price: f64) {
        self.lines.push((what.into(), per_job, per_job * price * 1e6));
    }

    fn per_million(&self) -> f64 {
        self.lines.iter().map(|l| l.2).sum()
    }
}

/// Each request counted, priced: S3 by class, SQS per request; Step Functions API calls are
/// free on Standard (its transitions are billed instead).
fn price_requests(bill: &mut Bill, measured: &Measured, prices: &Value) {
    for ((service, operation), n) in &measured.counts.requests {
        // Sent by the measurement itself: each scrape of the API's /metrics reads the depths.
        if operation == "GetQueueAttributes" {
            continue;
        }
        let per_job = n / measured.jobs;
        let price = match (service.as_str(), operation.as_str()) {
            ("s3", "PutObject" | "CopyObject" | "ListObjects" | "ListObjectsV2" | "CreateMultipartUpload") => {
                num(prices, "s3.put")
            }
            ("s3", _) => num(prices, "s3.get"),
            ("sqs", _) => num(prices, "sqs.request"),
            ("sfn", _) => 0.0,
            // Billed by the capacity units counted below, not by request.
            ("dynamodb", _) => continue,
            other => panic!("no price for {other:?}"),
        };
        bill.add(format!("{service} {operation}"), per_job, price);
    }
    if !measured.counts.units.is_empty() {
        bill.add("dynamodb write units", measured.units_per_job("write"), num(prices, "dynamodb.writeUnit"));
        bill.add("dynamodb read units", measured.units_per_job("read"), num(prices, "dynamodb.readUnit"));
        // The timers' queries: a rate per engine, whatever the volume.
        let queries: f64 =
            measured.counts.units.iter().filter(|((k, op), _)| k == "read" && op == "Query").map(|(_, n)| n).sum();
        bill.fixed_per_month += queries / measured.seconds * SECONDS_PER_MONTH * num(prices, "dynamodb.readUnit");
    }
}

const SECONDS_PER_MONTH: f64 = 730.0 * 3600.0;

/// A month of the engine's own Fargate tasks (0.25 vCPU, 0.5 GB each).
fn engine_tasks_per_month(prices: &Value, engines: f64) -> f64 {
    engines * 730.0 * (0.25 * num(prices, "fargate.arm64VcpuHour") + 0.5 * num(prices, "fargate.arm64GbHour"))
}

fn lambda_seconds(workload: &Value, megapixels_per_second: f64, vcpus: f64) -> f64 {
    num(workload, "imageMegapixels") / megapixels_per_second / vcpus + num(workload, "ioSecondsPerJob")
}

fn gb_second_price(prices: &Value, architecture: &str) -> f64 {
    num(prices, if architecture == "arm64" { "lambda.arm64GbSecond" } else { "lambda.x86GbSecond" })
}

fn engine_rate(workload: &Value, tool: &str) -> f64 {
    let px = workload["renditionPx"].as_u64().expect("renditionPx").to_string();
    workload[tool][&px].as_f64().expect("a rate for the rendition size")
}

/// The original design, priced the same way from what it is made of.
fn original(prices: &Value, workload: &Value) -> Bill {
    let o = &workload["original"];
    let mut bill = Bill::new();
    bill.add("HTTP API request", 1.0, num(prices, "httpApi.request"));
    bill.add(
        "Step Functions Standard transitions",
        num(o, "transitions"),
        num(prices, "stepFunctions.standardTransition"),
    );
    bill.add("Lambda requests", num(o, "lambdaInvocations"), num(prices, "lambda.request"));
    bill.add("s3 GetObject", num(o, "s3Gets"), num(prices, "s3.get"));
    bill.add("s3 PutObject", num(o, "s3Puts"), num(prices, "s3.put"));
    let x86 = gb_second_price(prices, "x86");
    bill.add("API Lambda GB-s", num(o, "apiLambda.memoryGb") * num(o, "apiLambda.seconds"), x86);
    let seconds = lambda_seconds(workload, engine_rate(workload, "pillowMpPerCoreSecond"), num(o, "workerVcpus"));
    bill.add("worker Lambda GB-s (Python, Pillow)", num(o, "workerMemoryGb") * seconds, x86);
    bill
}

/// Where the API runs: the API Lambda, or the engine's own container.
#[derive(PartialEq)]
enum Api {
    Lambda,
    InTheEngine,
}

/// Where the workers run.
#[derive(PartialEq)]
enum Workers {
    Lambda,
    Fargate,
}

/// Ours: the counted requests, an HTTP API in front, the API and the workers where named.
fn ours(prices: &Value, workload: &Value, measured: &Measured, api: Api, workers: Workers) -> Bill {
    let mut bill = Bill::new();
    bill.add("HTTP API request", 1.0, num(prices, "httpApi.request"));
    price_requests(&mut bill, measured, prices);
    if measured.transitions > 0.0 {
        bill.add(
            "Step Functions Standard transitions",
            measured.transitions / measured.jobs,
            num(prices, "stepFunctions.standardTransition"),
        );
    }
    if api == Api::Lambda {
        let api = &workload["apiLambda"];
        bill.add("API Lambda request", 1.0, num(prices, "lambda.request"));
        let api_gb_s = num(api, "memoryGb") * num(api, "seconds");
        bill.add("API Lambda GB-s", api_gb_s, gb_second_price(prices, api["architecture"].as_str().unwrap_or("x86")));
    }
    let rate = engine_rate(workload, "imgpipeMpPerCoreSecond");
    if workers == Workers::Fargate {
        let task = &workload["fargateTask"];
        let seconds = lambda_seconds(workload, rate, num(task, "vcpus")) / num(task, "utilisation");
        let per_hour = num(task, "vcpus") * num(prices, "fargate.arm64VcpuHour")
            + num(task, "memoryGb") * num(prices, "fargate.arm64GbHour");
        bill.add("Fargate task-seconds (arm64)", seconds, per_hour / 3600.0);
    } else {
        let w = &workload["workerLambda"];
        bill.add("worker Lambda requests (batches)", 1.0 / num(w, "batchSize"), num(prices, "lambda.request"));
        let seconds = lambda_seconds(workload, rate, num(w, "vcpus"));
        let price = gb_second_price(prices, w["architecture"].as_str().unwrap_or("x86"));
        bill.add("worker Lambda GB-s", num(w, "memoryGb") * seconds, price);
    }
    bill
}

fn table(out: &mut String, name: &str, bill: &Bill, reference: f64) {
    let total = bill.per_million();
    let _ = writeln!(out, "\n{name}: ${total:.2} per million images ({:.2} of the original)", total / reference);
    let _ = writeln!(out, "  {:<44} {:>10} {:>12}", "billed item", "per job", "$ per M");
    for (what, per_job, dollars) in &bill.lines {
        let _ = writeln!(out, "  {what:<44} {per_job:>10.3} {dollars:>12.2}");
    }
    if bill.fixed_per_month > 0.0 {
        let _ = writeln!(out, "  plus ${:.2} a month whatever the volume", bill.fixed_per_month);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cost_per_million_images_from_counted_requests() {
    let prices = data("prices.json");
    let workload = data("workload.json");
    let jobs = jobs_per_run();
    let sfn = measure(Orchestration::StepFunctions, jobs).await;
    let embedded = measure(Orchestration::EngineOnSqlite, jobs).await;
    let dynamodb = measure(Orchestration::EnginesOnDynamoDb, jobs).await;

    let reference = original(&prices, &workload).per_million();
    let mut out = format!(
        "cost per million {} MP images at {} px, prices of {} ({}), {jobs} jobs per shape on the emulator",
        workload["imageMegapixels"], workload["renditionPx"], prices["asOf"], prices["region"]
    );
    table(
        &mut out,
        "original design (3 Standard transitions, Python + Pillow Lambda)",
        &original(&prices, &workload),
        reference,
    );
    table(
        &mut out,
        "ours: Step Functions Standard, Lambda workers",
        &ours(&prices, &workload, &sfn, Api::Lambda, Workers::Lambda),
        reference,
    );
    table(
        &mut out,
        "ours: Step Functions Standard, Fargate workers",
        &ours(&prices, &workload, &sfn, Api::Lambda, Workers::Fargate),
        reference,
    );
    let mut engine = ours(&prices, &workload, &embedded, Api::InTheEngine, Workers::Fargate);
    engine.fixed_per_month += engine_tasks_per_month(&prices, embedded.engines);
    table(&mut out, "ours: workflow engine in one container (SQLite), Fargate workers", &engine, reference);
    // As the template deploys it (Orchestrator=engine): the API function starts the jobs on
    // the table, two engine tasks apply the reports and run the timers.
    let mut replicas = ours(&prices, &workload, &dynamodb, Api::Lambda, Workers::Fargate);
    replicas.fixed_per_month += engine_tasks_per_month(&prices, dynamodb.engines);
    let name = "ours: workflow engine on DynamoDB (2 tasks), API function, Fargate workers";
    table(&mut out, name, &replicas, reference);
    let _ = writeln!(
        out,
        "\nempty receives (idle long polls) per job: Step Functions run {:.2}, engine runs {:.2} and {:.2}",
        sfn.counts.empty_receives / sfn.jobs,
        embedded.counts.empty_receives / embedded.jobs,
        dynamodb.counts.empty_receives / dynamodb.jobs
    );
    println!("{out}");

    for (shape, m) in [("Step Functions", &sfn), ("engine on SQLite", &embedded), ("engines on DynamoDB", &dynamodb)] {
        // The source is read once, and each output written once; no sidecar unless asked.
        assert_eq!(m.per_job("s3", "GetObject"), 1.0, "{shape}: one read of the source per job");
        assert_eq!(m.outputs_per_job, 1.0, "{shape}: the thumbnail");
        assert_eq!(m.per_job("s3", "PutObject"), m.outputs_per_job, "{shape}: one PUT per output");
        // The intake's, and the worker's check that the source was not replaced before it writes.
        assert_eq!(m.per_job("s3", "HeadObject"), 2.0, "{shape}");
        let delivered = m.per_job("sqs", "ReceiveMessage") - m.counts.empty_receives / m.jobs;
        let deletes = m.per_job("sqs", "DeleteMessage") + m.per_job("sqs", "DeleteMessageBatch");
        assert!(delivered <= 2.0 && deletes <= 2.0, "{shape}: a receive and a delete per message at most");
    }
    // Step Functions sends the job; the worker deletes it and reports to the service.
    assert_eq!(sfn.per_job("sqs", "SendMessage (by Step Functions)"), 1.0);
    assert_eq!(sfn.per_job("sqs", "SendMessage"), 0.0);
    assert_eq!(sfn.per_job("sqs", "DeleteMessage"), 1.0);
    assert_eq!(sfn.per_job("sfn", "SendTaskSuccess"), 1.0);
    for (shape, m) in [("SQLite", &embedded), ("DynamoDB", &dynamodb)] {
        // The engine sends the job and the worker its report; the worker deletes the job, the
        // engine the reports it read, in batches.
        assert_eq!(m.per_job("sqs", "SendMessage"), 2.0, "{shape}");
        assert_eq!(m.per_job("sqs", "DeleteMessage"), 1.0, "{shape}");
        assert!(m.per_job("sqs", "DeleteMessageBatch") <= 1.0, "{shape}");
        assert_eq!(m.transitions, 0.0);
    }
    // ProcessImage → CheckResult → Success.
    assert_eq!(sfn.transitions / sfn.jobs, 3.0, "state transitions per job");
    // On DynamoDB: the new job, its success (a put each, decided from a consistent read), and
    // the mark that its attempt is in the queue; a put that lost a race to the other replica
    // would be decided again.
    assert!(dynamodb.per_job("dynamodb", "PutItem") >= 2.0, "a put per step");
    assert_eq!(dynamodb.per_job("dynamodb", "UpdateItem"), 1.0, "the outbox mark, once");
    assert!(dynamodb.units_per_job("write") <= 12.0, "{} write units a job", dynamodb.units_per_job("write"));

    // What the Step Functions shapes pay is the transitions, as the original did; the engine's
    // shapes leave them out.
    assert!(ours(&prices, &workload, &sfn, Api::Lambda, Workers::Lambda).per_million() > 0.8 * reference);
    assert!(engine.per_million() <= 0.2 * reference, "the engine's shape: {:.2} $/M", engine.per_million());
    assert!(replicas.per_million() <= 0.2 * reference, "on DynamoDB: {:.2} $/M", replicas.per_million());
}
