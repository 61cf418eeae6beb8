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
use crate::server::card::{JobCard, JobState, StoreHealth};
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

/// A bridge's card: its state, totals, consumer lag per partition.
pub fn card(state: &AppState, bridge: &ServedBridge) -> JobCard {
    let v = bridge.status.view();
    let id = super::service::job_id(&v.name);
    let mut card = JobCard::new(
        id.clone(),
        "bridge",
        format!("{} ({})", v.name, v.direction),
    );
    card.throughput_unit = "messages";
    card.pausable = true;
    card.chart(
        "Messages written /s",
        "ferry_bridge_messages_out_total",
        "rate",
    )
    .chart(
        "Consumer lag (messages)",
        "ferry_bridge_consumer_lag_messages",
        "value",
    );
    card.state = match v.state.as_str() {
        "running" => JobState::Running,
        "failed" => JobState::Stopped,
        "retrying" => JobState::Failing,
        "paused" => JobState::Paused,
        _ => JobState::Idle,
    };
    if state.switches.is_paused(&id) {
        card.state = JobState::Paused;
    }
    card.reason = v.reason.clone();
    card.last_run = v.last_batch_at.clone();
    // A running bridge reads and writes; one retrying or failed says which store failed.
    let answer = match v.state.as_str() {
        "retrying" | "failed" => Err(v.reason.clone().unwrap_or_else(|| v.state.clone())),
        _ => Ok(()),
    };
    let (from, to) = if bridge.options.reverse {
        ("Redis Stream", "Kafka")
    } else {
        ("Kafka", "Redis Stream")
    };
    card.stores = vec![
        StoreHealth::new("source", from, answer.clone()),
        StoreHealth::new("destination", to, answer),
    ];
    let t = &v.totals;
    card.errors = t.dead_lettered;
    card.fact("retries", t.retries);
    card.fact("read", t.read).fact("written", t.written);
    let lag: i64 = v.lag.values().sum();
    card.fact("consumer lag", lag);
    for (partition, l) in &v.lag {
        card.fact(&format!("lag, partition {partition}"), l);
    }
    if v.compression_ratio > 0.0 {
        card.fact("frame compression", format!("{:.2}×", v.compression_ratio));
    }
    card
}

/// `GET /api/v1/bridges`: `{"bridges": [status, ...]}` (empty when none is configured).
#[utoipa::path(get, path = "/api/v1/bridges", tag = "bridge",
    responses((status = 200, description = "`{\"bridges\": [status, …]}`: state, totals, lag per partition", body = Object)))]
pub(crate) async fn list(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    let bridges: Vec<StatusView> = state.jobs.bridges.iter().map(|b| b.status.view()).collect();
    Json(json!({ "bridges": bridges }))
}
