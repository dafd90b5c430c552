//! The API function fed API Gateway HTTP API (payload v2) events in-process, through the
//! same adapter `lambda_http::run` wraps the router in, against the emulator with Step
//! Functions execution on: 202 with a job id whose execution runs, and JSON 4xx errors.

use test_support::sfn_harness;

use imgpipe_lambda::api;
use lambda_http::request::LambdaRequest;
use lambda_http::{Adapter, Context, LambdaEvent, Service};
use pipeline_core::job_store::JobStore;
use pipeline_core::orchestration::Orchestrator;
use pipeline_core::queue::Queue;
use protocol::job::JobState;
use serde_json::{Value, json};
use sfn_harness::Rig;
use test_support::emulator;
use wiring::functions::{self, ProducerFunction};

const PHOTO: &[u8] = include_bytes!("../../tests/fixtures/myphoto.jpg");
const FIXTURE: &str = include_str!("fixtures/apigw_v2_post_process.json");

/// The fixture for `rig`'s buckets, with `body` (when given) as the request body.
fn event(rig: &Rig, body: Option<&str>) -> LambdaEvent<LambdaRequest> {
    let mut raw: Value =
        serde_json::from_str(&FIXTURE.replace("ORIGINALS", &rig.originals).replace("RESIZED", &rig.resized))
            .expect("fixture JSON");
    if let Some(body) = body {
        raw["body"] = Value::String(body.to_owned());
    }
    let request: LambdaRequest = serde_json::from_value(raw).expect("an API Gateway v2 request");
    assert!(matches!(request, LambdaRequest::ApiGatewayV2(_)), "read as payload v2");
    LambdaEvent::new(request, Context::default())
}

/// Calls the function as the runtime would; the response as API Gateway receives it.
async fn invoke(rig: &Rig, body: Option<&str>) -> (u16, Value) {
    let settings = rig.producer_settings(rig.orchestrator.state_machine_arn());
    call(&settings, rig, event(rig, body)).await
}

/// Calls the function built from `settings` with `request`.
async fn call(settings: &ProducerFunction, rig: &Rig, request: LambdaEvent<LambdaRequest>) -> (u16, Value) {
    // `Adapter` is what `lambda_http::run` serves: event → http::Request → router → API Gateway response.
    let mut function = Adapter::from(api::app(settings, &rig.aws).await.expect("valid settings"));
    std::future::poll_fn(|cx| function.poll_ready(cx)).await.expect("ready");
    let response = function.call(request).await.expect("the router never errs");
    let wire = serde_json::to_value(&response).expect("serializes");
    let status = wire["statusCode"].as_u64().and_then(|s| u16::try_from(s).ok()).expect("statusCode");
    assert_eq!(wire["isBase64Encoded"], json!(false), "{wire}");
    let body = serde_json::from_str(wire["body"].as_str().expect("a text body")).expect("a JSON body");
    (status, body)
}

#[tokio::test]
async fn post_process_answers_202_and_starts_the_execution() {
    let rig = Rig::new("lambda-api").await;
    rig.put("photos/myphoto.jpg", PHOTO).await;
    let (status, body) = invoke(&rig, None).await;
    assert_eq!(status, 202, "{body}");
    let job_id = body["jobId"].as_str().expect("a job id");
    assert_eq!(body["status"], "queued");
    assert_eq!(body["statusUrl"], format!("/jobs/{job_id}"));

    let record = rig.orchestrator.get(job_id).await.expect("get").expect("an execution per job");
    assert_eq!((record.state, record.source_key.as_str()), (JobState::ProcessImage, "photos/myphoto.jpg"));
    assert_eq!(record.destination_bucket, rig.resized);
}

#[tokio::test]
async fn bad_requests_get_json_4xx_errors() {
    let rig = Rig::new("lambda-api-bad").await;
    let (status, body) = invoke(&rig, Some("{\"sourceBucket\":")).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("MalformedJson")), "{body}");

    let missing_field = json!({ "sourceBucket": rig.originals, "destinationBucket": rig.resized }).to_string();
    let (status, body) = invoke(&rig, Some(&missing_field)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("InvalidRequest")), "{body}");

    let elsewhere =
        json!({ "sourceBucket": "someone-elses", "sourceKey": "a.jpg", "destinationBucket": rig.resized }).to_string();
    let (status, body) = invoke(&rig, Some(&elsewhere)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("BucketNotAllowed")), "{body}");

    // The fixture names photos/myphoto.jpg, which this rig never uploaded.
    let (status, body) = invoke(&rig, None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("SourceNotFound")), "{body}");
    assert!(rig.orchestrator.list(10).await.expect("list").is_empty(), "no execution was started");
}

/// `GET path` as API Gateway sends it.
fn get(rig: &Rig, path: &str) -> LambdaEvent<LambdaRequest> {
    let mut raw: Value = serde_json::from_str(&FIXTURE.replace("ORIGINALS", &rig.originals)).expect("fixture JSON");
    raw["routeKey"] = json!(format!("GET {path}"));
    raw["rawPath"] = json!(path);
    raw["requestContext"]["routeKey"] = json!(format!("GET {path}"));
    raw["requestContext"]["http"]["method"] = json!("GET");
    raw["requestContext"]["http"]["path"] = json!(path);
    raw.as_object_mut().expect("an object").remove("body");
    LambdaEvent::new(serde_json::from_value(raw).expect("a request"), Context::default())
}

#[tokio::test]
async fn with_the_engine_a_job_is_recorded_in_dynamodb_and_sent_and_the_dlq_is_served() {
    let rig = Rig::new("lambda-api-engine").await;
    let aws = emulator::aws().await;
    let table = emulator::jobs_table(&aws).await;
    let reports = emulator::queue(&aws, "reports").await;
    let vars = [
        ("IMGPIPE_ORCHESTRATOR", "embedded".to_owned()),
        ("IMGPIPE_JOBS_TABLE", table.table().to_owned()),
        ("IMGPIPE_JOBS_QUEUE", rig.jobs.url().to_owned()),
        ("IMGPIPE_REPORTS_QUEUE", reports.url().to_owned()),
        ("IMGPIPE_DEAD_LETTER_QUEUE", rig.dlq.url().to_owned()),
        ("IMGPIPE_READ_BUCKETS", rig.originals.clone()),
        ("IMGPIPE_WRITE_BUCKETS", rig.resized.clone()),
    ];
    let settings: ProducerFunction =
        functions::read(|name| vars.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone())).expect("settings");
    rig.put("photos/myphoto.jpg", PHOTO).await;

    let (status, body) = call(&settings, &rig, event(&rig, None)).await;
    assert_eq!(status, 202, "{body}");
    let job_id = body["jobId"].as_str().expect("a job id");
    let record = table.get(job_id).await.expect("get").expect("recorded in the table");
    assert_eq!((record.state, record.source_key.as_str()), (JobState::ProcessImage, "photos/myphoto.jpg"));
    let sent = rig.jobs.receive(1, std::time::Duration::from_secs(5), std::time::Duration::from_secs(30)).await;
    let sent =
        protocol::Job::from_json(&sent.expect("receive").pop().expect("the attempt is queued").body).expect("job");
    assert_eq!((sent.job_id.as_str(), sent.attempt), (job_id, 1));

    let (status, body) = call(&settings, &rig, get(&rig, &format!("/jobs/{job_id}"))).await;
    assert_eq!((status, body["state"].as_str()), (200, Some("ProcessImage")), "{body}");
    let (status, body) = call(&settings, &rig, get(&rig, "/dlq")).await;
    assert_eq!(status, 200, "the engine serves the DLQ: {body}");
    assert_eq!(body["entries"], json!([]), "{body}");
}
