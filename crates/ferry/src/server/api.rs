//! The HTTP API: built in [`app`] so tests can drive it without a socket.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Query, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use axum::{Json, Router};
use ferry_core::error::{Classify, ErrorClass};
use ferry_core::tier::EventStore;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Deserialize;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::auth::auth_layer;
use super::{ServeOptions, events_api};
use crate::jobs::events::EventsContext;
use crate::jobs::tier::{self, PassRequest, TierContext, TierError};

/// What every handler shares.
#[derive(Debug)]
pub struct AppState {
    /// The tier job, when configured.
    pub tier: Option<TierContext>,
    options: ServeOptions,
    max_body_bytes: usize,
    metrics: Option<PrometheusHandle>,
    stop: CancellationToken,
    /// Serialises passes of this process (the scheduler's and the API's).
    pub pass_lock: tokio::sync::Mutex<()>,
    /// The events job, when configured.
    pub events: Option<Arc<EventsContext>>,
}

impl AppState {
    /// The tier job, or a 404 saying it is not configured on this server.
    pub(super) fn tier(&self) -> Result<&TierContext, ApiError> {
        self.tier.as_ref().ok_or_else(|| ApiError {
            status: StatusCode::NOT_FOUND,
            message: "the tier job is not configured on this server: set [tier] redis and \
                      store in the config (or --redis and --store) and restart it"
                .into(),
            field: None,
        })
    }

    /// State for [`app`].
    pub fn new(
        tier: Option<TierContext>,
        options: ServeOptions,
        metrics: Option<PrometheusHandle>,
        stop: CancellationToken,
    ) -> Self {
        AppState {
            tier,
            max_body_bytes: options.max_body_bytes,
            options,
            metrics,
            stop,
            pass_lock: tokio::sync::Mutex::new(()),
            events: None,
        }
    }

    /// Cancelled when the server stops (ends long-lived responses such as the live view).
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Adds the events job's endpoints.
    pub fn with_events(mut self, events: Arc<EventsContext>) -> Self {
        self.events = Some(events);
        self
    }
}

/// One endpoint: its method, its path and its handler.
type Endpoint = (Method, &'static str, MethodRouter<Arc<AppState>>);

/// Every endpoint of the API, in one list that [`app`] builds the router from and [`routes`]
/// lists (so the authentication tests cover every route, including future ones).
fn endpoints() -> Vec<Endpoint> {
    vec![
        (Method::GET, "/healthz", get(healthz)),
        (Method::GET, "/metrics", get(metrics)),
        (Method::GET, "/api/v1/tier/status", get(status)),
        (Method::GET, "/api/v1/tier/history", get(history)),
        (Method::GET, "/api/v1/tier/events", get(events)),
        (Method::POST, "/api/v1/tier/preview", post(preview)),
        (Method::POST, "/api/v1/tier/migrate", post(migrate)),
        (Method::POST, "/api/v1/tier/clear", post(clear)),
        (Method::POST, "/api/v1/events", post(events_api::save)),
        (Method::GET, "/api/v1/events", get(events_api::query)),
        (Method::GET, "/api/v1/events/live", get(events_api::live)),
        (Method::GET, "/api/v1/events/stats", get(events_api::stats)),
    ]
}

/// The method and path of every route the router serves (`GET` routes also answer `HEAD`).
pub fn routes() -> Vec<(Method, &'static str)> {
    endpoints()
        .into_iter()
        .map(|(method, path, _)| (method, path))
        .collect()
}

/// The router: health, metrics, the tier and events APIs, behind one authentication layer
/// (see [`super::auth`]).
pub fn app(state: Arc<AppState>) -> Router {
    let limit = state.max_body_bytes;
    let auth = auth_layer(&state.options);
    let mut router = Router::new();
    for (_, path, handler) in endpoints() {
        router = router.route(path, handler);
    }
    router
        .layer(DefaultBodyLimit::max(limit))
        .layer(auth)
        .with_state(state)
}

/// An API error: a status and a JSON body `{"error": …, "field": …}`.
#[derive(Debug)]
pub struct ApiError {
    pub(super) status: StatusCode,
    pub(super) message: String,
    pub(super) field: Option<String>,
}

impl ApiError {
    pub(super) fn bad_request(message: impl Into<String>, field: Option<&str>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            field: field.map(str::to_string),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = match self.field {
            Some(f) => json!({"error": self.message, "field": f}),
            None => json!({"error": self.message}),
        };
        (self.status, Json(body)).into_response()
    }
}

/// The status of an error of `class`: `user` for the caller's mistakes, 503 when a service
/// Ferry needs is unavailable, 500 otherwise.
pub(super) fn class_status(class: ErrorClass, user: StatusCode) -> StatusCode {
    match class {
        ErrorClass::User => user,
        ErrorClass::External => StatusCode::SERVICE_UNAVAILABLE,
        ErrorClass::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<TierError> for ApiError {
    fn from(e: TierError) -> Self {
        let status = class_status(e.class(), StatusCode::BAD_REQUEST);
        let field = matches!(e, TierError::Camera(_)).then(|| "camera_id".to_string());
        ApiError {
            status,
            message: e.to_string(),
            field,
        }
    }
}

/// Field named in a serde message such as "missing field `camera_id`" or "unknown field `x`".
fn field_of(message: &str) -> Option<&str> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(&message[start..start + len])
}

/// `Json<T>` whose rejections are JSON errors naming the field.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|r| ApiError {
                status: r.status(),
                message: r.body_text(),
                field: None,
            })?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Parses a JSON body; errors name the offending field (by path, or from serde's message).
pub(super) fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let message = format!("invalid JSON body: {}", e.inner());
        let field = if path == "." {
            field_of(&message).map(str::to_string)
        } else {
            Some(path)
        };
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            message,
            field,
        }
    })
}

async fn healthz(State(state): State<Arc<AppState>>) -> Response {
    let mut healthy = true;
    let mut body = json!({});
    if let Some(tier) = &state.tier {
        let store = tier.store.healthcheck().await;
        let mut ping = redis::cmd("PING");
        ping.arg("ferry");
        let redis = tier.source.redis().query(b"ferry", ping).await;
        let redis_ok = matches!(redis, Ok(Ok(_)));
        healthy = store.is_ok() && redis_ok;
        body["store"] = json!(
            store
                .map(|_| "ok".to_string())
                .unwrap_or_else(|e| e.to_string())
        );
        body["redis"] = json!(if redis_ok { "ok" } else { "unreachable" });
    }
    if let Some(events) = &state.events {
        let log = events.log.healthcheck().await;
        healthy &= log.is_ok();
        body["events_postgres"] = json!(
            log.map(|_| "ok".to_string())
                .unwrap_or_else(|e| e.to_string())
        );
    }
    body["status"] = json!(if healthy { "ok" } else { "degraded" });
    let code = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    match &state.metrics {
        Some(h) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            h.render(),
        )
            .into_response(),
        None => ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: "no metrics recorder installed in this process".into(),
            field: None,
        }
        .into_response(),
    }
}

async fn status(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    Ok(Json(tier::status(state.tier()?).await?).into_response())
}

pub(super) type Params = Query<HashMap<String, String>>;

/// Refuses query parameters not in `allowed`, naming the first unknown one.
pub(super) fn check_params(
    params: &HashMap<String, String>,
    allowed: &[&str],
) -> Result<(), ApiError> {
    if let Some(unknown) = params.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(ApiError::bad_request(
            format!(
                "unknown query parameter `{unknown}` (allowed: {})",
                allowed.join(", ")
            ),
            Some(unknown),
        ));
    }
    // No stored value holds a control character (PostgreSQL refuses NUL outright).
    match params.iter().find(|(_, v)| v.chars().any(char::is_control)) {
        Some((name, _)) => Err(ApiError::bad_request(
            format!("query parameter `{name}` holds a control character (such as NUL)"),
            Some(name),
        )),
        None => Ok(()),
    }
}

/// Checks query parameters: only `allowed` names, `limit` a number in range.
pub(super) fn query_limit(
    params: &HashMap<String, String>,
    allowed: &[&str],
    default: usize,
) -> Result<usize, ApiError> {
    check_params(params, allowed)?;
    match params.get("limit") {
        None => Ok(default),
        Some(l) => l
            .parse()
            .map_err(|_| {
                ApiError::bad_request(format!("limit `{l}` is not a number"), Some("limit"))
            })
            .and_then(check_limit),
    }
}

async fn history(
    State(state): State<Arc<AppState>>,
    Query(params): Params,
) -> Result<Response, ApiError> {
    let limit = query_limit(&params, &["limit"], 20)?;
    Ok(Json(tier::history(state.tier()?, limit).await?).into_response())
}

async fn events(
    State(state): State<Arc<AppState>>,
    Query(params): Params,
) -> Result<Response, ApiError> {
    let limit = query_limit(&params, &["limit", "camera_id"], 50)?;
    let camera = params.get("camera_id");
    if let Some(c) = camera {
        tier::check_camera(c)?;
    }
    Ok(Json(tier::events(state.tier()?, camera.map(String::as_str), limit).await?).into_response())
}

fn check_limit(limit: usize) -> Result<usize, ApiError> {
    if (1..=1000).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::bad_request(
            "limit must be between 1 and 1000",
            Some("limit"),
        ))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PreviewBody {
    camera_id: String,
    #[serde(default)]
    limit: Option<usize>,
}

async fn preview(
    State(state): State<Arc<AppState>>,
    ApiJson(body): ApiJson<PreviewBody>,
) -> Result<Response, ApiError> {
    tier::check_camera(&body.camera_id)?;
    let limit = check_limit(body.limit.unwrap_or(100))?;
    let outcome = tier::run_pass(
        state.tier()?,
        PassRequest {
            camera: Some(body.camera_id),
            all: true,
            dry_run: true,
            trigger: "api".into(),
        },
        state.stop.child_token(),
    )
    .await?;
    let events: Vec<_> = outcome
        .cameras
        .into_iter()
        .flat_map(|c| c.events)
        .take(limit)
        .collect();
    Ok(Json(json!({"events": events})).into_response())
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct MigrateBody {
    #[serde(default)]
    camera_id: Option<String>,
    #[serde(default)]
    all: bool,
}

async fn migrate(
    State(state): State<Arc<AppState>>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    // The body is optional: no body migrates every camera.
    let body: MigrateBody = if body.iter().all(u8::is_ascii_whitespace) {
        MigrateBody::default()
    } else {
        parse_json(&body)?
    };
    if let Some(c) = &body.camera_id {
        tier::check_camera(c)?;
    }
    let _pass = state.pass_lock.lock().await;
    let outcome = tier::run_pass(
        state.tier()?,
        PassRequest {
            camera: body.camera_id,
            all: body.all,
            dry_run: false,
            trigger: "api".into(),
        },
        state.stop.child_token(),
    )
    .await?;
    Ok(Json(outcome).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClearBody {
    camera_id: String,
    #[serde(default)]
    discard: bool,
    #[serde(default)]
    confirm: bool,
}

async fn clear(
    State(state): State<Arc<AppState>>,
    ApiJson(body): ApiJson<ClearBody>,
) -> Result<Response, ApiError> {
    tier::check_camera(&body.camera_id)?;
    if body.discard && !body.confirm {
        return Err(ApiError::bad_request(
            "discard drops captions without storing them; send \"confirm\": true to do it",
            Some("confirm"),
        ));
    }
    let _pass = state.pass_lock.lock().await;
    let outcome = tier::clear(
        state.tier()?,
        &body.camera_id,
        body.discard,
        "api",
        state.stop.child_token(),
    )
    .await?;
    Ok(Json(outcome).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_messages_name_their_field() {
        assert_eq!(
            field_of("missing field `camera_id` at line 1"),
            Some("camera_id")
        );
        assert_eq!(field_of("no field"), None);
    }
}
