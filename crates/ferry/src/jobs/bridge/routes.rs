//! The bridge job's endpoint: `GET /api/v1/bridges`, every configured bridge's status (for the
//! dashboard).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::Method;
use axum::routing::get;
use serde_json::json;

use super::service::ServedBridge;
use super::status::StatusView;
use crate::server::{AppState, Endpoint};

/// The bridge job's endpoints.
pub fn endpoints() -> Vec<Endpoint> {
    vec![(Method::GET, "/api/v1/bridges", get(list))]
}

/// The bridges' part of `/healthz`: each one's state; `false` when one has failed for good.
pub fn health(bridges: &[Arc<ServedBridge>], body: &mut serde_json::Value) -> bool {
    let mut healthy = true;
    let states: serde_json::Map<String, serde_json::Value> = bridges
        .iter()
        .map(|b| {
            let v = b.status.view();
            healthy &= v.state != "failed";
            (v.name, json!(v.state))
        })
        .collect();
    body["bridges"] = serde_json::Value::Object(states);
    healthy
}

/// `GET /api/v1/bridges`: `{"bridges": [status, ...]}` (empty when none is configured).
async fn list(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    let bridges: Vec<StatusView> = state.jobs.bridges.iter().map(|b| b.status.view()).collect();
    Json(json!({ "bridges": bridges }))
}
