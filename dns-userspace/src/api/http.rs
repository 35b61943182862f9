//! The API's routes, on axum:
//!
//! * `GET /metrics` (and `GET /`): Prometheus text exposition ([`crate::api::metrics`]);
//! * `GET /api/status`: every pool's answer, its reason and its endpoints as JSON
//!   ([`crate::api::status`]);
//!
//!   both are encoded on a blocking thread and streamed in chunks ([`crate::api::stream`]);
//! * `POST /api/pools/{pool}/endpoints/{endpoint}/{up|down|follow}`: pin an endpoint up or
//!   down at runtime, or make it follow its probes again (Constellix `always_on`,
//!   `always_off`, `follow_sonar`). Pins are kept across restarts in the state file; put
//!   lasting ones in the config (`state = ...`);
//! * `POST /api/rum`: a batch of real-user latency and availability samples per (region,
//!   endpoint) for `geo` pools ([`crate::steering::rum`]);
//! * `POST /api/reload` (a route the daemon adds, see its `reload` module): re-read the
//!   config and the zones and apply them, as SIGHUP does.
//!
//! Every request first passes [`crate::api::guard`] (Host, Origin, token). Errors are JSON
//! (`{"error": "..."}`) with the fitting status: 404 for an unknown path, pool or endpoint
//! (with the names that do exist), 405 with `Allow` for a wrong method, 400 for bad input,
//! 401/403 from the guard, 413 for a body over `max_body_bytes`, 503 when a request takes
//! longer than `request_timeout`.
//!
//! Other parts of the daemon add routes through [`router`]'s `extra` argument (a plain
//! `Router` with its own state, e.g. `POST /api/reload`); they get the same checks, limits
//! and error bodies, and a write method there needs the token like the pins do.

use std::{
    sync::Arc,
    time::{Instant, SystemTime},
};

use axum::{
    Json, Router,
    body::Body,
    extract::{
        Path, Request, State,
        rejection::{JsonRejection, PathRejection},
    },
    http::{HeaderValue, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::json;
use tower_http::{limit::RequestBodyLimitLayer, timeout::TimeoutLayer};
use tracing::debug;

use crate::{
    api::{
        guard::{Guard, Via},
        metrics,
        settings::ApiSettings,
        state::{ApiState, DaemonInfo},
        status, stream,
    },
    steering::{
        health::parse_admin,
        rum::{Rejected, RumBatch, RumError},
        steer::SetAdminError,
    },
};

/// At most this many names are listed in a 404 for an unknown pool or endpoint.
const MAX_LISTED: usize = 20;

/// An error answer: `{"error": message, ...}` with `status`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// Further fields of the body (e.g. the names that do exist).
    pub fields: serde_json::Map<String, serde_json::Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl ToString) -> Self {
        Self {
            status,
            message: message.to_string(),
            fields: serde_json::Map::new(),
        }
    }

    pub fn bad_request(message: impl ToString) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl ToString) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// Adds a field to the body.
    pub fn with(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.fields.insert(key.to_string(), value.into());
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = serde_json::Map::new();
        body.insert("error".into(), self.message.into());
        body.extend(self.fields);
        (self.status, Json(serde_json::Value::Object(body))).into_response()
    }
}

/// The API: the routes above plus `extra`, behind the guard, the limits and the JSON error
/// bodies.
pub fn router(state: ApiState, settings: &ApiSettings, extra: Router) -> Router {
    let guard = Arc::new(Guard::new(settings));
    let daemon = state.daemon.clone();
    Router::new()
        .route("/", get(get_metrics))
        .route("/metrics", get(get_metrics))
        .route("/api/status", get(get_status))
        .route(
            "/api/pools/{pool}/endpoints/{endpoint}/{state}",
            post(set_endpoint),
        )
        .route("/api/rum", post(post_rum))
        .with_state(state)
        .merge(extra)
        .fallback(not_found)
        .layer(middleware::from_fn_with_state((guard, daemon), check))
        .layer(RequestBodyLimitLayer::new(settings.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            settings.request_timeout,
        ))
        .layer(middleware::from_fn(json_errors))
}

/// The guard as middleware.
async fn check(
    State((guard, daemon)): State<(Arc<Guard>, Arc<DaemonInfo>)>,
    request: Request,
    next: Next,
) -> Response {
    let Some(via) = request.extensions().get::<Via>().copied() else {
        return ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "no connection details")
            .into_response();
    };
    match guard.check(via, request.method(), request.uri(), request.headers()) {
        Ok(()) => next.run(request).await,
        Err(refusal) => {
            debug!(
                method = %request.method(),
                path = %request.uri().path(),
                reason = %refusal,
                "API request refused"
            );
            daemon.count_refusal(&refusal);
            let mut response = ApiError::new(refusal.status(), &refusal).into_response();
            if let Some(challenge) = refusal.challenge() {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(challenge),
                );
            }
            response
        }
    }
}

/// Gives the errors produced outside the handlers (405 from the router, 413 from the body
/// limit, 503 from the timeout, 400 from extractors) a JSON body like the handlers' own.
async fn json_errors(request: Request, next: Next) -> Response {
    let (method, path) = (request.method().clone(), request.uri().path().to_string());
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let message = match status {
        // The router adds `Allow` after the layers have run.
        StatusCode::METHOD_NOT_ALLOWED => {
            format!("{method} is not allowed on {path}; see the Allow header")
        }
        StatusCode::PAYLOAD_TOO_LARGE => "request body too large".to_string(),
        StatusCode::SERVICE_UNAVAILABLE if text.is_empty() => {
            "the request took too long (api.request_timeout)".to_string()
        }
        _ if text.is_empty() => status.canonical_reason().unwrap_or("error").to_lowercase(),
        _ => text,
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let body = format!("{}\n", json!({ "error": message }));
    Response::from_parts(parts, Body::from(body))
}

async fn not_found() -> ApiError {
    ApiError::not_found(
        "no such path; try GET /metrics, GET /api/status or \
         POST /api/pools/<pool>/endpoints/<endpoint>/<up|down|follow> or POST /api/rum",
    )
}

/// The page is collected under the locks, then encoded on a blocking thread and streamed
/// ([`stream`]): 40 000 endpoints make 134 MB of text.
async fn get_metrics(State(state): State<ApiState>) -> impl IntoResponse {
    let snapshot = metrics::Snapshot::collect(&state);
    let body = stream::body(move |out| {
        // An error: the client went away.
        let _ = snapshot.render_into(out);
    })
    .await;
    (
        [(
            header::CONTENT_TYPE,
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        )],
        body,
    )
}

/// As `Json` would answer it, but serialized on a blocking thread and streamed.
async fn get_status(State(state): State<ApiState>) -> impl IntoResponse {
    let doc = status::StatusDoc::collect(&state, SystemTime::now());
    let body = stream::body(move |out| {
        // An error: the client went away.
        let _ = serde_json::to_writer(out, &doc);
    })
    .await;
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
}

async fn set_endpoint(
    State(state): State<ApiState>,
    path: Result<Path<(String, String, String)>, PathRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Path((pool, endpoint, admin)) = path.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let admin = parse_admin(&admin).map_err(ApiError::bad_request)?;
    let mut steering = state.steering.lock().unwrap_or_else(|p| p.into_inner());
    match steering.set_admin(&pool, &endpoint, admin) {
        Ok(message) => Ok(Json(json!({ "ok": message }))),
        Err(e @ SetAdminError::NoSuchPool(_)) => {
            let pools: Vec<String> = steering.status().into_iter().map(|p| p.pool).collect();
            Err(listing(ApiError::not_found(&e), "pools", pools))
        }
        Err(e @ SetAdminError::NoSuchEndpoint { .. }) => {
            let want = pool.trim_end_matches('.');
            let endpoints: Vec<String> = steering
                .status()
                .into_iter()
                .find(|p| p.pool.trim_end_matches('.').eq_ignore_ascii_case(want))
                .map(|p| p.endpoints.into_iter().map(|e| e.endpoint).collect())
                .unwrap_or_default();
            Err(listing(ApiError::not_found(&e), "endpoints", endpoints))
        }
        Err(e) => Err(ApiError::bad_request(e)),
    }
}

/// `POST /api/rum`: a batch of RUM samples (see [`crate::steering::rum`]), applied whole
/// or refused whole (400, with every refused sample and the regions that take samples).
async fn post_rum(
    State(state): State<ApiState>,
    body: Result<Json<RumBatch>, JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Json(batch) = body.map_err(|e| {
        ApiError::bad_request(format!(
            "{}; expected {{\"ttl\": \"5m\", \"samples\": [{{\"region\": ..., \"endpoint\": ..., \"latency_ms\": ..., \"available\": ...}}]}}",
            e.body_text()
        ))
    })?;
    let mut steering = state.steering.lock().unwrap_or_else(|p| p.into_inner());
    match steering.add_rum(&batch, Instant::now()) {
        Ok(accepted) => {
            let ttl = batch.ttl().unwrap_or_default();
            Ok(Json(json!({
                "accepted": accepted,
                "ttl": humantime::format_duration(ttl).to_string(),
                "held": steering.rum_stats().held,
            })))
        }
        Err(e @ RumError::Batch(_)) => Err(ApiError::bad_request(e)),
        Err(
            ref e @ RumError::Samples {
                ref rejected,
                ref accepted_keys,
            },
        ) => {
            let listed: Vec<&Rejected> = rejected.iter().take(MAX_LISTED).collect();
            let regions: serde_json::Map<String, serde_json::Value> = accepted_keys
                .iter()
                .take(MAX_LISTED)
                .map(|(r, names)| (r.clone(), json!(names)))
                .collect();
            Err(ApiError::bad_request(e)
                .with("rejected", json!(listed))
                .with("rejected_total", rejected.len())
                .with("regions", serde_json::Value::Object(regions)))
        }
    }
}

/// Adds `key`: the first [`MAX_LISTED`] of `names`, and `key_total`: how many there are.
fn listing(error: ApiError, key: &str, names: Vec<String>) -> ApiError {
    let total = names.len();
    let listed: Vec<String> = names.into_iter().take(MAX_LISTED).collect();
    error.with(key, listed).with(&format!("{key}_total"), total)
}

#[cfg(test)]
mod tests;
