//! The tier job's endpoints: status, history, stored events, a preview (a dry-run pass),
//! migrate and clear (`/api/v1/tier/*`).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use ferry_core::error::Classify;
use ferry_core::jobs::tier::EventStore;
use serde::Deserialize;
use serde_json::json;

use super::{PassRequest, TierContext, TierError};
use crate::server::error::{ApiError, ApiJson, class_status, parse_json};
use crate::server::params::{Params, check_limit, query_limit};
use crate::server::{AppState, Endpoint};

/// The tier job's endpoints.
pub fn endpoints() -> Vec<Endpoint> {
    vec![
        (Method::GET, "/api/v1/tier/status", get(status)),
        (Method::GET, "/api/v1/tier/history", get(history)),
        (Method::GET, "/api/v1/tier/events", get(events)),
        (Method::POST, "/api/v1/tier/preview", post(preview)),
        (Method::POST, "/api/v1/tier/migrate", post(migrate)),
        (Method::POST, "/api/v1/tier/clear", post(clear)),
    ]
}

/// The tier job's part of `/healthz`: its store and its Redis; `false` when either fails.
pub async fn health(ctx: &TierContext, body: &mut serde_json::Value) -> bool {
    let store = ctx.store.healthcheck().await;
    let mut ping = redis::cmd("PING");
    ping.arg("ferry");
    let redis = ctx.source.redis().query(b"ferry", ping).await;
    let redis_ok = matches!(redis, Ok(Ok(_)));
    let healthy = store.is_ok() && redis_ok;
    body["store"] = json!(
        store
            .map(|_| "ok".to_string())
            .unwrap_or_else(|e| e.to_string())
    );
    body["redis"] = json!(if redis_ok { "ok" } else { "unreachable" });
    healthy
}

/// The tier job, or a 404 saying it is not configured on this server.
fn context(state: &AppState) -> Result<&TierContext, ApiError> {
    state.jobs.tier.as_ref().ok_or_else(|| ApiError {
        status: StatusCode::NOT_FOUND,
        message: "the tier job is not configured on this server: set [tier] redis and \
                  store in the config (or --redis and --store) and restart it"
            .into(),
        field: None,
    })
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

async fn status(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    Ok(Json(super::status(context(&state)?).await?).into_response())
}

async fn history(
    State(state): State<Arc<AppState>>,
    Query(params): Params,
) -> Result<Response, ApiError> {
    let limit = query_limit(&params, &["limit"], 20)?;
    Ok(Json(super::history(context(&state)?, limit).await?).into_response())
}

async fn events(
    State(state): State<Arc<AppState>>,
    Query(params): Params,
) -> Result<Response, ApiError> {
    let limit = query_limit(&params, &["limit", "camera_id"], 50)?;
    let camera = params.get("camera_id");
    if let Some(c) = camera {
        super::check_camera(c)?;
    }
    Ok(
        Json(super::events(context(&state)?, camera.map(String::as_str), limit).await?)
            .into_response(),
    )
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
    super::check_camera(&body.camera_id)?;
    let limit = check_limit(body.limit.unwrap_or(100))?;
    let outcome = super::run_pass(
        context(&state)?,
        PassRequest {
            camera: Some(body.camera_id),
            all: true,
            dry_run: true,
            trigger: "api".into(),
        },
        state.stop_token().child_token(),
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
        super::check_camera(c)?;
    }
    let _pass = state.jobs.tier_passes.lock().await;
    let outcome = super::run_pass(
        context(&state)?,
        PassRequest {
            camera: body.camera_id,
            all: body.all,
            dry_run: false,
            trigger: "api".into(),
        },
        state.stop_token().child_token(),
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
    super::check_camera(&body.camera_id)?;
    if body.discard && !body.confirm {
        return Err(ApiError::bad_request(
            "discard drops captions without storing them; send \"confirm\": true to do it",
            Some("confirm"),
        ));
    }
    let _pass = state.jobs.tier_passes.lock().await;
    let outcome = super::clear(
        context(&state)?,
        &body.camera_id,
        body.discard,
        "api",
        state.stop_token().child_token(),
    )
    .await?;
    Ok(Json(outcome).into_response())
}
