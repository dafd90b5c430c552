//! The API function fed API Gateway HTTP API (payload v2) events in-process, through the
//! same adapter `lambda_http::run` wraps the router in, against the emulator with Step
//! Functions execution on: 202 with a job id whose execution runs, and JSON 4xx errors.

use test_support::sfn_harness;

use imgpipe_lambda::api;
use lambda_http::request::LambdaRequest;
use lambda_http::{Adapter, Context, LambdaEvent, Service};
use pipeline_core::orchestration::Orchestrator;
use protocol::job::JobState;
use serde_json::{Value, json};
use sfn_harness::Rig;

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
    // `Adapter` is what `lambda_http::run` serves: event → http::Request → router → API Gateway response.
    let mut function = Adapter::from(api::app(&settings, &rig.aws).expect("valid settings"));
    std::future::poll_fn(|cx| function.poll_ready(cx)).await.expect("ready");
    let response = function.call(event(rig, body)).await.expect("the router never errs");
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
