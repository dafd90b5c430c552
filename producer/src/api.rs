//! The HTTP API: `POST /process`, `GET /jobs/{id}`, `GET /jobs`, `GET /healthz`,
//! `GET /metrics`, the dead-letter queue (`GET /dlq`; `POST /dlq/redrive` and `DELETE /dlq`
//! for operators), and its OpenAPI description at `GET /openapi.json`, generated from these
//! handlers and the types they answer with ([`ApiDoc`]). Every error is JSON
//! `{"error":{"code","message"}}`. With API keys configured, every route but `/healthz` and
//! `/openapi.json` needs a key of the route's scope ([`crate::auth`]).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use bytes::Bytes;
use orchestrator::dead_letter::{DeadLetters, DlqItem, Redriven};
use pipeline_core::queue::Queue;
use pipeline_core::telemetry;
use protocol::job::{JobRecord, JobState};
use protocol::message::Output;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{OpenApi, ToSchema};

use crate::auth::{self, ApiKeys, Scope};
use crate::error::{ApiError, ErrorBody, ErrorDetail};
use crate::intake::{Intake, ProcessRequest};
use crate::limits::{self, ApiLimits, Load};

/// The largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// The longest `?wait=` honoured, in seconds.
pub const MAX_WAIT_SECS: u64 = 300;
/// The most jobs `GET /jobs` lists.
pub const MAX_LIST: usize = 1000;

/// What the handlers share.
#[derive(Clone, Debug)]
pub struct ApiState {
    /// Validation and job start.
    pub intake: Intake,
    /// Queues whose depth `/metrics` reports.
    pub queues: Vec<Arc<dyn Queue>>,
    /// Cancelled when the server stops: `?wait` answers at once rather than hold shutdown up.
    pub shutdown: CancellationToken,
    /// The keys requests must carry; `None` turns authentication off (a loopback listener
    /// without keys, or behind API Gateway's own authorisation on Lambda).
    pub keys: Option<Arc<ApiKeys>>,
    /// The caps on requests in flight and waiting, and their permits.
    pub load: Arc<Load>,
    /// The dead-letter queue the `/dlq` routes operate, if this API has one.
    pub dead_letters: Option<DeadLetters>,
}

impl ApiState {
    /// State for `intake`, reporting the depth of `queues`.
    pub fn new(intake: Intake, queues: Vec<Arc<dyn Queue>>) -> Self {
        Self {
            intake,
            queues,
            shutdown: CancellationToken::new(),
            keys: None,
            load: Arc::new(Load::new(ApiLimits::default())),
            dead_letters: None,
        }
    }

    /// Serves `/dlq` on `dead_letters`.
    #[must_use]
    pub fn with_dead_letters(mut self, dead_letters: DeadLetters) -> Self {
        self.dead_letters = Some(dead_letters);
        self
    }

    /// Serves within `limits` rather than the defaults.
    #[must_use]
    pub fn with_limits(mut self, limits: ApiLimits) -> Self {
        self.load = Arc::new(Load::new(limits));
        self
    }

    /// Requires one of `keys` on every route but `/healthz`; no keys turns authentication off.
    #[must_use]
    pub fn with_keys(mut self, keys: ApiKeys) -> Self {
        self.keys = (!keys.is_empty()).then(|| Arc::new(keys));
        self
    }

    /// Ends `?wait` early when `shutdown` is cancelled.
    #[must_use]
    pub fn with_shutdown(mut self, shutdown: CancellationToken) -> Self {
        self.shutdown = shutdown;
        self
    }
}

/// The API's routes, each behind the scope it needs.
pub fn router(state: ApiState) -> Router {
    let needs = |scope: Scope| middleware::from_fn_with_state((state.keys.clone(), scope), require);
    let read = Router::new()
        .route("/jobs", get(list_jobs))
        .route("/jobs/{id}", get(get_job))
        .route("/jobs/{id}/outputs/{rendition}", get(get_output))
        .route("/metrics", get(metrics))
        .route("/dlq", get(list_dead_letters))
        .route_layer(needs(Scope::Read));
    let submit = Router::new().route("/process", post(process)).route_layer(needs(Scope::Submit));
    let operate = Router::new()
        .route("/dlq/redrive", post(redrive_dead_letters))
        .route("/dlq", delete(purge_dead_letters))
        .route_layer(needs(Scope::Operator));
    read.merge(submit)
        .merge(operate)
        .fallback(|| async { ApiError::not_found("NotFound", "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", "method not allowed on this route")
        })
        .layer(middleware::from_fn_with_state(Arc::clone(&state.load), limits::shed_and_time))
        .layer(middleware::from_fn(count_requests))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        // Health checks pass whatever the load: they ask whether the process lives.
        .route("/healthz", get(healthz))
        // The dashboard's page holds no data: what it shows comes from the routes above,
        // with the key the page asks for when they answer 401.
        .route("/", get(|| async { axum::response::Html(DASHBOARD) }))
        .route("/openapi.json", get(|| async { Json(ApiDoc::openapi()) }))
        .with_state(state)
}

/// The API's OpenAPI 3.1 description, served at `/openapi.json`.
#[derive(OpenApi)]
#[openapi(
    info(title = "imgpipe", description = "Resizes, orients and strips images: one job per source image."),
    paths(process, get_job, get_output, list_jobs, list_dead_letters, redrive_dead_letters, purge_dead_letters, metrics, healthz),
    modifiers(&KeySchemes),
    tags(
        (name = "jobs", description = "Start jobs and follow them"),
        (name = "dead letters", description = "Failed jobs: list them; redrive or purge them (operator keys)"),
        (name = "operations", description = "Health and metrics"),
    )
)]
pub struct ApiDoc;

/// The two ways to send an API key (see [`crate::auth`]).
struct KeySchemes;

impl utoipa::Modify for KeySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme("apiKey", SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-Api-Key"))));
    }
}

/// `GET /healthz`'s body.
#[derive(Serialize, ToSchema)]
struct Health {
    /// Always `ok`: an answer means the process serves.
    #[schema(example = "ok")]
    status: &'static str,
}

/// Whether the process serves; open, and answered whatever the load.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "The process serves", body = Health)))]
async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

async fn require(
    State((keys, needed)): State<(Option<Arc<ApiKeys>>, Scope)>,
    request: Request,
    next: Next,
) -> Response {
    match auth::authorize(keys.as_deref(), request.headers(), needed) {
        Ok(()) => next.run(request).await,
        Err(refused) => refused.into_response(),
    }
}

#[derive(Deserialize)]
struct WaitQuery {
    wait: Option<String>,
}

/// `202 Accepted`: the job is queued; follow `statusUrl`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Queued {
    /// The job's id: one per source version, destination, renditions and sidecar choice.
    pub job_id: String,
    /// Always `queued`.
    #[schema(example = "queued")]
    pub status: String,
    /// Where the job's record is read: `/jobs/{jobId}`.
    pub status_url: String,
}

/// The original project's result body, for a job that succeeded (its first output), with
/// the job id and every output added.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SeedResult {
    /// Always 200.
    pub status_code: u16,
    /// `Image processing completed successfully`.
    pub message: String,
    /// Bucket of the original.
    pub source_bucket: String,
    /// Key of the original.
    pub source_key: String,
    /// Bucket of the first output.
    pub destination_bucket: String,
    /// Key of the first output.
    pub destination_key: String,
    /// Size of the first output in bytes.
    pub file_size: u64,
    /// MIME type of the first output.
    pub content_type: String,
    /// The job's id.
    pub job_id: String,
    /// Every output written.
    pub outputs: Vec<Output>,
}

/// `422`: the job waited for ended without its outputs.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailedJob {
    /// Why it failed.
    pub error: ErrorDetail,
    /// The job's id.
    pub job_id: String,
    /// Where the job's record and history are read.
    pub status_url: String,
}

/// `GET /jobs`'s body.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct JobList {
    /// The most recent jobs, newest first.
    pub jobs: Vec<JobRecord>,
}

/// Starts a job for one source image, or names the job already started for the same version
/// of it. With `?wait=N` the answer waits up to N seconds for the job to end.
#[utoipa::path(
    post, path = "/process", tag = "jobs",
    params(("wait" = Option<u64>, Query, minimum = 0, maximum = 300, example = 5,
        description = "Seconds to wait for the job to end (0-300); without it the job is queued and answered at once")),
    request_body = ProcessRequest,
    responses(
        (status = 200, description = "With `?wait`: the job succeeded within the wait", body = SeedResult),
        (status = 202, description = "The job is queued (or the wait ran out)", body = Queued,
            headers(("location" = String, description = "The job's status URL"))),
        (status = 400, description = "Malformed JSON, a missing field, a bad key, rendition or `wait`, or a source that is a rendition", body = ErrorBody),
        (status = 401, description = "No API key, or an unknown one", body = ErrorBody),
        (status = 403, description = "A key without the `submit` scope, or a bucket outside its allow-list", body = ErrorBody),
        (status = 404, description = "The source does not exist", body = ErrorBody),
        (status = 409, description = "A job with this id exists for another request", body = ErrorBody),
        (status = 413, description = "The body is over 64 KiB", body = ErrorBody),
        (status = 422, description = "With `?wait`: the job failed", body = FailedJob),
        (status = 503, description = "A cap is reached or storage failed; try again later", body = ErrorBody),
    ),
    security(("bearer" = []), ("apiKey" = []))
)]
async fn process(
    State(state): State<ApiState>,
    query: Result<Query<WaitQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request("InvalidQuery", e.body_text()))?;
    let wait = match query.wait.as_deref() {
        None => None,
        Some(w) => match w.parse::<u64>() {
            Ok(secs) if secs <= MAX_WAIT_SECS => Some(Duration::from_secs(secs)),
            _ => {
                return Err(ApiError::bad_request(
                    "InvalidWait",
                    format!("wait must be a whole number of seconds from 0 to {MAX_WAIT_SECS}"),
                ));
            }
        },
    };
    // Taken before the job starts: a request turned away has started nothing.
    let _waiting = wait.map(|_| state.load.start_waiting()).transpose()?;
    let body = body.map_err(body_error)?;
    let request: ProcessRequest = serde_json::from_slice(&body).map_err(|e| {
        let code = if e.is_data() { "InvalidRequest" } else { "MalformedJson" };
        ApiError::bad_request(code, e.to_string())
    })?;
    let job = state.intake.submit(request).await?;
    metrics::counter!(telemetry::JOBS_ACCEPTED).increment(1);
    let status_url = format!("/jobs/{}", job.job_id);
    if let Some(wait) = wait {
        if let Some(record) = wait_for_end(&state, &job.job_id, wait).await? {
            return Ok(finished_response(&record));
        }
    }
    let body = Queued { job_id: job.job_id, status: "queued".to_owned(), status_url: status_url.clone() };
    Ok((StatusCode::ACCEPTED, [("location", status_url)], Json(body)).into_response())
}

/// A body that could not be read: over [`MAX_BODY_BYTES`], or cut short.
fn body_error(e: BytesRejection) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(e.status(), "PayloadTooLarge", format!("request body exceeds {MAX_BODY_BYTES} bytes"))
    } else {
        ApiError::bad_request("InvalidBody", e.body_text())
    }
}

/// How `?wait` looks at its job. With an orchestrator that announces ends, a waiter
/// sleeps until its job's end is announced and reads the store only then, and once a
/// second or less often (up to every [`WAIT_FALLBACK_POLL`]) for jobs another process
/// ended. Without announcements it polls, often at first (most thumbnails take well under
/// a second), then once a second. Either way [`crate::limits::ApiLimits::max_waiting`]
/// bounds how many wait.
async fn wait_for_end(state: &ApiState, job_id: &str, wait: Duration) -> Result<Option<JobRecord>, ApiError> {
    let deadline = tokio::time::Instant::now() + wait;
    // Subscribed before the first read, so an end between the read and the wait is seen.
    let mut ended = state.intake.orchestrator.ended();
    let (mut pause, longest) = if ended.is_some() {
        (Duration::from_secs(1), WAIT_FALLBACK_POLL)
    } else {
        (Duration::from_millis(25), Duration::from_secs(1))
    };
    loop {
        let record = state.intake.orchestrator.get(job_id).await.map_err(|e| ApiError::unavailable(e.to_string()))?;
        if let Some(record) = record.filter(|r| r.state.is_terminal()) {
            return Ok(Some(record));
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        tokio::select! {
            () = state.shutdown.cancelled() => return Ok(None),
            () = tokio::time::sleep(pause.min(deadline - now)) => pause = (pause * 2).min(longest),
            () = announced(&mut ended, job_id) => {}
        }
    }
}

/// The longest a waiter whose orchestrator announces ends goes without reading the store.
pub const WAIT_FALLBACK_POLL: Duration = Duration::from_secs(5);

/// Resolves when `job_id`'s end is announced, or announcements were missed; never when
/// there are none.
async fn announced(ended: &mut Option<tokio::sync::broadcast::Receiver<String>>, job_id: &str) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        let Some(receiver) = ended.as_mut() else { return std::future::pending().await };
        match receiver.recv().await {
            Ok(id) if id == job_id => return,
            Ok(_) => {}
            Err(RecvError::Lagged(_)) => return,
            Err(RecvError::Closed) => *ended = None,
        }
    }
}

/// The original project's result body for a job that succeeded; `None` unless it did.
pub fn seed_result(record: &JobRecord) -> Option<SeedResult> {
    let first = record.outputs.first().filter(|_| record.state == JobState::Success)?;
    Some(SeedResult {
        status_code: 200,
        message: "Image processing completed successfully".to_owned(),
        source_bucket: record.source_bucket.clone(),
        source_key: record.source_key.clone(),
        destination_bucket: first.bucket.clone(),
        destination_key: first.key.clone(),
        file_size: first.size,
        content_type: first.content_type.clone(),
        job_id: record.job_id.clone(),
        outputs: record.outputs.clone(),
    })
}

/// The seed result body for a successful job; an error body otherwise.
fn finished_response(record: &JobRecord) -> Response {
    match seed_result(record) {
        Some(body) => Json(body).into_response(),
        None => {
            let (code, message) = record
                .error
                .as_ref()
                .map_or(("Failed".to_owned(), "the job failed".to_owned()), |e| (e.code.clone(), e.message.clone()));
            let body = FailedJob {
                error: ErrorDetail { code, message },
                job_id: record.job_id.clone(),
                status_url: format!("/jobs/{}", record.job_id),
            };
            (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response()
        }
    }
}

/// `record` as the API shows it: its source metadata without the camera facts (see
/// [`SourceMetadata::public`](protocol::message::SourceMetadata::public)); the sidecar in the
/// destination bucket, for jobs that ask for it, is the place for them.
pub fn public_record(mut record: JobRecord) -> JobRecord {
    record.metadata = record.metadata.as_ref().map(protocol::message::SourceMetadata::public);
    record
}

/// A job's record: its state, outputs and every step of its history (camera facts left out).
#[utoipa::path(
    get, path = "/jobs/{id}", tag = "jobs",
    params(("id" = String, Path, description = "The job's id")),
    responses(
        (status = 200, description = "The job", body = JobRecord),
        (status = 401, description = "No API key, or an unknown one", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 503, description = "A cap is reached or storage failed; try again later", body = ErrorBody),
    ),
    security(("bearer" = []), ("apiKey" = []))
)]
async fn get_job(State(state): State<ApiState>, Path(id): Path<String>) -> Result<Json<JobRecord>, ApiError> {
    match state.intake.orchestrator.get(&id).await {
        Ok(Some(record)) => Ok(Json(public_record(record))),
        Ok(None) => Err(ApiError::not_found("JobNotFound", format!("no job {id:?}"))),
        Err(e) => Err(ApiError::unavailable(e.to_string())),
    }
}

/// The operators' dashboard: one page, no build step (`producer/src/dashboard.html`).
const DASHBOARD: &str = include_str!("dashboard.html");

/// An image file's bytes, for the description.
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)]
struct ImageBytes(Vec<u8>);

/// The largest output the dashboard's thumbnails fetch.
const MAX_OUTPUT_BYTES: u64 = 64 << 20;

#[utoipa::path(
    get, path = "/jobs/{id}/outputs/{rendition}", tag = "jobs",
    params(("id" = String, Path, description = "The job's id"), ("rendition" = String, Path, description = "The rendition's name")),
    responses(
        (status = 200, description = "The rendition's bytes, in its format", content(
            (ImageBytes = "image/jpeg"), (ImageBytes = "image/png"), (ImageBytes = "image/webp"), (ImageBytes = "image/avif"),
        )),
        (status = 401, description = "No API key, or an unknown one", body = ErrorBody),
        (status = 404, description = "No such job, or it has no such output", body = ErrorBody),
        (status = 503, description = "A cap is reached or storage failed; try again later", body = ErrorBody),
    ),
    security(("bearer" = []), ("apiKey" = []))
)]
async fn get_output(
    State(state): State<ApiState>,
    Path((id, rendition)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let record = state.intake.orchestrator.get(&id).await.map_err(|e| ApiError::unavailable(e.to_string()))?;
    let output = record
        .and_then(|r| r.outputs.into_iter().find(|o| o.rendition == rendition))
        .ok_or_else(|| ApiError::not_found("OutputNotFound", format!("job {id:?} has no output {rendition:?}")))?;
    match state.intake.blobs.get(&output.bucket, &output.key, MAX_OUTPUT_BYTES).await {
        Ok(blob) => Ok(([("content-type", output.content_type)], blob.body).into_response()),
        Err(pipeline_core::blob::BlobError::NotFound { .. }) => {
            Err(ApiError::not_found("OutputNotFound", format!("the output of job {id:?} is gone")))
        }
        Err(e) => Err(ApiError::unavailable(e.to_string())),
    }
}

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<String>,
}

/// The most recent jobs, newest first.
#[utoipa::path(
    get, path = "/jobs", tag = "jobs",
    params(("limit" = Option<u64>, Query, minimum = 0, maximum = 1000, description = "How many jobs (default 50)")),
    responses(
        (status = 200, description = "The jobs", body = JobList),
        (status = 400, description = "`limit` is not a whole number from 0 to 1000", body = ErrorBody),
        (status = 401, description = "No API key, or an unknown one", body = ErrorBody),
        (status = 503, description = "A cap is reached or storage failed; try again later", body = ErrorBody),
    ),
    security(("bearer" = []), ("apiKey" = []))
)]
async fn list_jobs(
    State(state): State<ApiState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request("InvalidQuery", e.body_text()))?;
    let limit = match q.limit.as_deref().map(str::parse::<usize>) {
        None => 50,
        Some(Ok(n)) if n <= MAX_LIST => n,
        _ => {
            return Err(ApiError::bad_request(
                "InvalidQuery",
                format!("limit must be a whole number from 0 to {MAX_LIST}"),
            ));
        }
    };
    let jobs = state.intake.orchestrator.list(limit).await.map_err(|e| ApiError::unavailable(e.to_string()))?;
    Ok(Json(JobList { jobs: jobs.into_iter().map(public_record).collect() }).into_response())
}

/// `GET /dlq`'s body.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DlqListing {
    /// Each entry: `messageId`, `receiveCount`, and its `deadLetter` (the job, its error, its
    /// history) or, for a body that cannot be read, `unreadable` and the `body`. Task tokens
    /// are redacted.
    #[schema(value_type = Vec<Object>)]
    pub entries: Vec<serde_json::Value>,
    /// Entries being read or redriven elsewhere when the listing ended: not listed, not lost.
    pub in_flight_elsewhere: u64,
}

/// `POST /dlq/redrive`'s body: the jobs to start again, or all of them.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedriveRequest {
    /// Job ids or message ids.
    #[serde(default)]
    pub ids: Vec<String>,
    /// Every readable entry (and no `ids`).
    #[serde(default)]
    pub all: bool,
}

/// `POST /dlq/redrive`'s answer.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct RedriveResult {
    /// The jobs started again and taken off the queue.
    pub redriven: Vec<Redriven>,
    /// Ids asked for that are not on the queue (or not readable).
    pub missing: Vec<String>,
}

/// `DELETE /dlq`'s answer.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Purged {
    /// Entries deleted.
    pub purged: u64,
}

fn dead_letters(state: &ApiState) -> Result<&DeadLetters, ApiError> {
    state
        .dead_letters
        .as_ref()
        .ok_or_else(|| ApiError::not_found("NoDeadLetterQueue", "this API operates no dead-letter queue"))
}

/// The dead-letter queue: every failed job with its reason, untouched.
#[utoipa::path(
    get, path = "/dlq", tag = "dead letters",
    responses(
        (status = 200, description = "The entries", body = DlqListing),
        (status = 401, description = "No API key, or an unknown one", body = ErrorBody),
        (status = 404, description = "This API operates no dead-letter queue", body = ErrorBody),
        (status = 503, description = "A cap is reached or the queue failed; try again later", body = ErrorBody),
    ),
    security(("bearer" = []), ("apiKey" = []))
)]
async fn list_dead_letters(State(state): State<ApiState>) -> Result<Json<DlqListing>, ApiError> {
    let survey = dead_letters(&state)?.survey().await.map_err(|e| ApiError::unavailable(e.to_string()))?;
    Ok(Json(DlqListing {
        entries: survey.items.iter().map(DlqItem::to_json).collect(),
        in_flight_elsewhere: survey.in_flight_elsewhere,
    }))
}

/// Starts failed jobs again from their first attempt (history kept) and takes them off the queue.
#[utoipa::path(
    post, path = "/dlq/redrive", tag = "dead letters",
    request_body = RedriveRequest,
    responses(
        (status = 200, description = "What was redriven, and which ids were not found", body = RedriveResult),
        (status = 400, description = "Neither `ids` nor `all`, or both, or a malformed body", body = ErrorBody),
        (status = 401, description = "No API key, or an unknown one", body = ErrorBody),
        (status = 403, description = "A key without the `operator` scope", body = ErrorBody),
        (status = 404, description = "This API operates no dead-letter queue", body = ErrorBody),
        (status = 413, description = "The body is over 64 KiB", body = ErrorBody),
        (status = 503, description = "A cap is reached or the queue failed; try again later", body = ErrorBody),
    ),
    security(("bearer" = []), ("apiKey" = []))
)]
async fn redrive_dead_letters(
    State(state): State<ApiState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<RedriveResult>, ApiError> {
    let body = body.map_err(body_error)?;
    let request: RedriveRequest =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request("InvalidRequest", e.to_string()))?;
    if request.ids.is_empty() != request.all {
        return Err(ApiError::bad_request("InvalidRequest", "name the jobs to redrive in `ids`, or send `all: true`"));
    }
    let redriven =
        dead_letters(&state)?.redrive(&request.ids).await.map_err(|e| ApiError::unavailable(e.to_string()))?;
    let missing = request.ids.into_iter().filter(|id| !redriven.iter().any(|r| &r.job_id == id)).collect();
    Ok(Json(RedriveResult { redriven, missing }))
}

/// Deletes every entry of the dead-letter queue.
#[utoipa::path(
    delete, path = "/dlq", tag = "dead letters",
    responses(
        (status = 200, description = "How many entries were deleted", body = Purged),
        (status = 401, description = "No API key, or an unknown one", body = ErrorBody),
        (status = 403, description = "A key without the `operator` scope", body = ErrorBody),
        (status = 404, description = "This API operates no dead-letter queue", body = ErrorBody),
        (status = 503, description = "A cap is reached or the queue failed; try again later", body = ErrorBody),
    ),
    security(("bearer" = []), ("apiKey" = []))
)]
async fn purge_dead_letters(State(state): State<ApiState>) -> Result<Json<Purged>, ApiError> {
    let purged = dead_letters(&state)?.purge().await.map_err(|e| ApiError::unavailable(e.to_string()))?;
    Ok(Json(Purged { purged }))
}

/// Prometheus metrics of this process (see `pipeline_core::telemetry`), with the queues'
/// depths and their oldest message's age read at the scrape.
#[utoipa::path(
    get, path = "/metrics", tag = "operations",
    responses(
        (status = 200, description = "The Prometheus text format", body = String, content_type = "text/plain"),
        (status = 401, description = "No API key, or an unknown one", body = ErrorBody),
        (status = 503, description = "A cap is reached; try again later", body = ErrorBody),
    ),
    security(("bearer" = []), ("apiKey" = []))
)]
async fn metrics(State(state): State<ApiState>) -> Response {
    for q in &state.queues {
        match q.stats().await {
            Ok(s) => {
                for (label, n) in [("visible", s.visible), ("in_flight", s.in_flight), ("delayed", s.delayed)] {
                    let queue = q.name().to_owned();
                    metrics::gauge!(telemetry::QUEUE_MESSAGES, "queue" => queue, "state" => label).set(n as f64);
                }
                if let Some(age) = s.oldest_age {
                    metrics::gauge!(telemetry::QUEUE_OLDEST_AGE, "queue" => q.name().to_owned()).set(age.as_secs_f64());
                }
            }
            Err(e) => tracing::warn!(queue = q.name(), error = %e, "queue stats unavailable"),
        }
    }
    ([("content-type", "text/plain; version=0.0.4")], telemetry::render()).into_response()
}

/// Counts every answer by route (the matched pattern, so ids do not make series) and status.
async fn count_requests(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!(telemetry::HTTP_REQUESTS, "route" => route, "status" => status).increment(1);
    response
}
