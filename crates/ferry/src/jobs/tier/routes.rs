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
use crate::server::card::{JobCard, JobState};
use crate::server::error::{ApiError, ApiJson, class_status, parse_json};
use crate::server::params::{Params, check_limit, query_limit};
use crate::server::{AppState, Endpoint};

/// The tier job's endpoints.
pub fn endpoints() -> Vec<Endpoint> {
    vec![
        (Method::GET, "/api/v1/tier/status", get(status)),
        (Method::GET, "/api/v1/tier/history", get(history)),
        (Method::GET, "/api/v1/tier/events", get(events)),
        (Method::GET, "/api/v1/tier/hot", get(hot)),
        (Method::POST, "/api/v1/tier/preview", post(preview)),
        (Method::POST, "/api/v1/tier/migrate", post(migrate)),
        (Method::POST, "/api/v1/tier/clear", post(clear)),
    ]
}

/// The tier job's part of `/healthz`: its store and its Redis; `false` when either fails.
pub async fn health(ctx: &TierContext, body: &mut serde_json::Value) -> bool {
    let store = ctx.store.healthcheck().await;
    let redis_ok = ctx.source.redis().ping().await.is_ok();
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

/// The tier job's state: its store's counts, every camera with captions in Redis and the last pass.
#[utoipa::path(get, path = "/api/v1/tier/status", tag = "tier",
    responses((status = 200, description = "store, layout, counts, cameras with captions in Redis (entries, oldest age, due), pending captions, last run", body = Object), (status = 404, description = "the tier job is not configured")))]
pub(crate) async fn status(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    Ok(Json(super::status(context(&state)?).await?).into_response())
}

/// The newest passes, newest first.
#[utoipa::path(get, path = "/api/v1/tier/history", tag = "tier",
    params(("limit" = Option<usize>, Query, minimum = 1, maximum = 1000, description = "default 20")),
    responses((status = 200, description = "the newest passes: trigger, times, counts, error", body = Object), (status = 404, description = "the tier job is not configured")))]
pub(crate) async fn history(
    State(state): State<Arc<AppState>>,
    Query(params): Params,
) -> Result<Response, ApiError> {
    let limit = query_limit(&params, &["limit"], 20)?;
    Ok(Json(super::history(context(&state)?, limit).await?).into_response())
}

/// The newest stored events (time ranges of similar captions), of one camera or all.
#[utoipa::path(get, path = "/api/v1/tier/events", tag = "tier",
    params(("camera_id" = Option<String>, Query, description = "one camera"), ("limit" = Option<usize>, Query, minimum = 1, maximum = 1000, description = "default 50"),
        ("centroid" = Option<bool>, Query, description = "false leaves the centroids out (default true)")),
    responses((status = 200, description = "stored events: start and end, representative caption, frame count, the event continued", body = Object), (status = 404, description = "the tier job is not configured")))]
pub(crate) async fn events(
    State(state): State<Arc<AppState>>,
    Query(params): Params,
) -> Result<Response, ApiError> {
    let limit = query_limit(&params, &["limit", "camera_id", "centroid"], 50)?;
    let camera = params.get("camera_id");
    if let Some(c) = camera {
        super::check_camera(c)?;
    }
    let centroid = match params.get("centroid").map(String::as_str) {
        None | Some("true") => true,
        Some("false") => false,
        Some(other) => {
            return Err(ApiError::bad_request(
                format!("centroid `{other}` is neither true nor false"),
                Some("centroid"),
            ));
        }
    };
    let mut events = super::events(context(&state)?, camera.map(String::as_str), limit).await?;
    if !centroid {
        for e in &mut events {
            e.centroid = Vec::new();
        }
    }
    Ok(Json(events).into_response())
}

/// `GET /api/v1/tier/hot`: the captions of one camera still in Redis, oldest first.
#[utoipa::path(get, path = "/api/v1/tier/hot", tag = "tier",
    params(("camera_id" = String, Query, description = "the camera"),
        ("limit" = Option<usize>, Query, minimum = 1, maximum = 1000, description = "default 200")),
    responses((status = 200, description = "`{\"camera_id\", \"entries\", \"captions\": [{\"ts_ms\", \"caption\"|\"error\"}]}`", body = Object),
        (status = 400, description = "a bad camera id or limit"),
        (status = 404, description = "the tier job is not configured"),
        (status = 503, description = "Redis unreachable, or the camera's key is not a Stream")))]
pub(crate) async fn hot(
    State(state): State<Arc<AppState>>,
    Query(params): Params,
) -> Result<Response, ApiError> {
    let limit = query_limit(&params, &["limit", "camera_id"], 200)?;
    let Some(camera) = params.get("camera_id") else {
        return Err(ApiError::bad_request(
            "name the camera: ?camera_id=…",
            Some("camera_id"),
        ));
    };
    super::check_camera(camera)?;
    Ok(Json(super::hot(context(&state)?, camera, limit).await?).into_response())
}

/// The tier job's card before its stores answered: identity, charts, actions, pause state.
pub fn skeleton(state: &AppState) -> JobCard {
    let mut card = JobCard::new(super::service::JOB, "tier", "Drain the caption cache");
    card.throughput_unit = "captions migrated";
    card.pausable = true;
    card.chart(
        "Captions migrated /s",
        "ferry_tier_captions_migrated_total",
        "rate",
    )
    .chart(
        "Captions waiting in Redis",
        "ferry_tier_captions_pending",
        "value",
    )
    .action("Run a pass now", "/api/v1/tier/migrate");
    if state.switches.is_paused(super::service::JOB) {
        card.state = JobState::Paused;
    }
    card
}

/// The tier job's card: its stores, the last pass, the next one, pending and due captions.
pub async fn card(state: &AppState, ctx: &TierContext) -> JobCard {
    use crate::server::card::StoreHealth;
    let mut card = skeleton(state);
    let store = ctx.store.healthcheck().await.map_err(|e| e.to_string());
    let redis = ctx.source.redis().ping().await;
    card.stores = vec![
        StoreHealth::new("redis", "Redis", redis),
        StoreHealth::new("store", ctx.store.backend(), store),
    ];
    let paused = state.switches.is_paused(super::service::JOB);
    card.next_run = state
        .switches
        .next_run(super::service::JOB)
        .filter(|_| !paused)
        .map(|t| t.to_rfc3339());
    match super::status(ctx).await {
        Ok(s) => {
            let due = s.cameras.iter().filter(|c| c.due).count();
            // The card has just counted them: the chart follows as often as someone looks.
            super::service::record_pending(&s);
            card.fact("cameras in Redis", s.cameras.len())
                .fact("captions pending", s.pending_captions)
                .fact("cameras due", due)
                .fact("events stored", s.counts.events);
            if let Some(run) = &s.last_run {
                card.last_run = chrono::DateTime::from_timestamp_millis(run.finished_ms)
                    .map(|t| t.to_rfc3339());
                card.errors = run.failed;
                if run.failed > 0 || run.error.is_some() {
                    card.state = JobState::Failing;
                    card.reason = run.error.clone();
                }
            }
        }
        Err(e) => {
            card.state = JobState::Failing;
            card.reason = Some(e.to_string());
        }
    }
    if state.jobs.tier_passes.try_lock().is_err() {
        card.state = JobState::Running;
    }
    if state.switches.is_paused(super::service::JOB) {
        card.state = JobState::Paused;
    }
    card.fail_on_stores();
    card
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PreviewBody {
    camera_id: String,
    #[serde(default)]
    limit: Option<usize>,
}

/// A dry-run pass over one camera: the events it would write. Admin token.
#[utoipa::path(post, path = "/api/v1/tier/preview", tag = "tier",
    request_body(content = Object, description = "`{\"camera_id\": …, \"limit\": N}`"),
    responses((status = 200, description = "the events a pass would write, nothing written", body = Object), (status = 400, description = "a bad body"), (status = 422, description = "a body that is not JSON of the expected shape"), (status = 404, description = "the tier job is not configured")))]
pub(crate) async fn preview(
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

/// Runs a tier pass now (due captions of every camera, or of one; `all` takes captions not due yet). Admin token.
#[utoipa::path(post, path = "/api/v1/tier/migrate", tag = "tier",
    request_body(content = Object, description = "optional: `{\"camera_id\": …, \"all\": true}`"),
    responses((status = 200, description = "the pass's outcome", body = Object), (status = 400, description = "a bad body"), (status = 422, description = "a body that is not JSON of the expected shape"), (status = 404, description = "the tier job is not configured")))]
pub(crate) async fn migrate(
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
pub(crate) struct ClearBody {
    camera_id: String,
    #[serde(default)]
    discard: bool,
    #[serde(default)]
    confirm: bool,
}

/// Empties one camera's captions from Redis, migrating them first unless `discard`. Admin token.
#[utoipa::path(post, path = "/api/v1/tier/clear", tag = "tier",
    request_body(content = Object, description = "`{\"camera_id\": …, \"discard\": false, \"confirm\": true}`"),
    responses((status = 200, description = "what was migrated or discarded", body = Object), (status = 400, description = "a bad body or no confirm"), (status = 422, description = "a body that is not JSON of the expected shape"), (status = 404, description = "the tier job is not configured")))]
pub(crate) async fn clear(
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
