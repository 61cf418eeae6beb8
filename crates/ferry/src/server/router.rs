//! The router: every endpoint of the API in one list, built from the jobs' own lists, behind
//! one authentication layer; `/healthz` and `/metrics`.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::auth::auth_layer;
use super::error::ApiError;
use super::state::{AppState, Endpoint};
use crate::jobs;

/// Every endpoint of the API, in one list that [`app`] builds the router from and [`routes`]
/// lists (so the authentication tests cover every route, including future ones).
fn endpoints() -> Vec<Endpoint> {
    let mut all: Vec<Endpoint> = vec![
        (Method::GET, "/healthz", get(healthz)),
        (Method::GET, "/metrics", get(metrics)),
        (
            Method::GET,
            "/api/v1/openapi.json",
            get(super::openapi::openapi_json),
        ),
    ];
    all.extend(super::dashboard::endpoints());
    all.extend(jobs::endpoints());
    all
}

/// The method and path of every route the router serves (`GET` routes also answer `HEAD`).
pub fn routes() -> Vec<(Method, &'static str)> {
    endpoints()
        .into_iter()
        .map(|(method, path, _)| (method, path))
        .collect()
}

/// The router: health, metrics, the tier and events APIs, behind one authentication layer
/// (see `server::auth`).
pub fn app(state: Arc<AppState>) -> Router {
    let limit = state.max_body_bytes;
    let auth = auth_layer(&state.options);
    let mut router = Router::new();
    for (_, path, handler) in endpoints() {
        router = router.route(path, handler);
    }
    router
        .fallback(unknown_path)
        .method_not_allowed_fallback(wrong_method)
        .layer(DefaultBodyLimit::max(limit))
        .layer(auth)
        .with_state(state)
}

/// A path no route serves: 404 in the API's JSON error shape.
async fn unknown_path(uri: axum::http::Uri) -> Response {
    ApiError {
        status: StatusCode::NOT_FOUND,
        message: format!("no endpoint {} (see GET /api/v1/openapi.json)", uri.path()),
        field: None,
    }
    .into_response()
}

/// A route called with a method it does not take: 405 in the API's JSON error shape.
async fn wrong_method(method: Method, uri: axum::http::Uri) -> Response {
    ApiError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        message: format!(
            "{} does not take {method} (see GET /api/v1/openapi.json)",
            uri.path()
        ),
        field: None,
    }
    .into_response()
}

/// `GET /healthz`: 200 `{"status": "ok", …}` when every configured job's services answer, 503
/// `degraded` otherwise; always open.
#[utoipa::path(get, path = "/healthz", tag = "service", security(()),
    responses((status = 200, description = "`{\"status\": \"ok\", …}`: every job's stores answer", body = Object), (status = 503, description = "`degraded`: a store does not answer", body = Object)))]
pub(crate) async fn healthz(State(state): State<Arc<AppState>>) -> Response {
    let mut body = json!({});
    let healthy = jobs::health(&state, &mut body).await;
    body["status"] = json!(if healthy { "ok" } else { "degraded" });
    let code = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

/// `GET /metrics`: the Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "service",
    responses((status = 200, description = "the Prometheus text format", content_type = "text/plain", body = String)))]
pub(crate) async fn metrics(State(state): State<Arc<AppState>>) -> Response {
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
