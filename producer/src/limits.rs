//! What the API takes on at once: requests in flight, requests waiting on `?wait`, and
//! how long one request may take. Past a cap the API answers 503 with `Retry-After` at
//! once rather than queue: a queue would only hold the overload longer.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;

/// What `Retry-After` tells a client turned away by a cap, in seconds.
pub const RETRY_AFTER_SECS: u32 = 1;

/// The API's caps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApiLimits {
    /// `POST /process?wait=` requests waiting at once; 0 turns `?wait` away.
    pub max_waiting: usize,
    /// Requests being served at once (`/healthz` aside).
    pub max_in_flight: usize,
    /// The longest a request may take; a `?wait` request may take its wait on top.
    pub request_timeout: Duration,
}

impl Default for ApiLimits {
    fn default() -> Self {
        Self { max_waiting: 64, max_in_flight: 512, request_timeout: Duration::from_secs(30) }
    }
}

/// The caps and the permits they hand out, shared by every clone of the API's state.
#[derive(Debug)]
pub struct Load {
    /// The caps.
    pub limits: ApiLimits,
    waiting: Arc<Semaphore>,
    in_flight: Arc<Semaphore>,
}

impl Load {
    /// Permits for `limits`.
    pub fn new(limits: ApiLimits) -> Self {
        Self {
            limits,
            waiting: Arc::new(Semaphore::new(limits.max_waiting)),
            in_flight: Arc::new(Semaphore::new(limits.max_in_flight)),
        }
    }

    /// A place among the waiting requests, held until the permit drops.
    ///
    /// # Errors
    /// 503 with `Retry-After` when `max_waiting` requests already wait.
    pub fn start_waiting(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        Arc::clone(&self.waiting).try_acquire_owned().map_err(|_| {
            ApiError::busy(
                "TooManyWaiting",
                format!(
                    "{} requests are already waiting; retry later, or submit without ?wait and poll statusUrl",
                    self.limits.max_waiting
                ),
            )
        })
    }
}

#[derive(Deserialize)]
struct WaitOnly {
    wait: Option<String>,
}

/// Middleware: turns a request away past `max_in_flight`, and ends one that runs past its
/// time (the request timeout, plus its `?wait`) with a 503.
pub async fn shed_and_time(State(load): State<Arc<Load>>, request: Request, next: Next) -> Response {
    let Ok(_permit) = Arc::clone(&load.in_flight).try_acquire_owned() else {
        let message = format!("{} requests are already being served; retry later", load.limits.max_in_flight);
        return ApiError::busy("Overloaded", message).into_response();
    };
    // The handler checks `wait` itself; a wait it refuses adds nothing here.
    let wait = Query::<WaitOnly>::try_from_uri(request.uri())
        .ok()
        .and_then(|q| q.0.wait?.parse::<u64>().ok())
        .map_or(Duration::ZERO, |secs| Duration::from_secs(secs.min(crate::api::MAX_WAIT_SECS)));
    let budget = load.limits.request_timeout + wait;
    match tokio::time::timeout(budget, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "RequestTimeout",
            format!("the request took longer than {budget:?}"),
        )
        .into_response(),
    }
}
