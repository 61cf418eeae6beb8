//! The dashboard: the page at `/` (its assets are compiled into the binary, see `assets.rs`)
//! and the endpoints it reads besides the jobs' own: the overview of every job, the metric
//! history and the pause switches.

mod assets;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;

use super::card::JobCard;
use super::error::ApiError;
use super::history::Series;
use super::params::{Params, check_params};
use super::{AppState, Endpoint};

pub(crate) use assets::{asset, favicon, index};

/// The dashboard's endpoints.
pub fn endpoints() -> Vec<Endpoint> {
    vec![
        (Method::GET, "/", get(index)),
        (Method::GET, "/favicon.svg", get(favicon)),
        (Method::GET, "/assets/{file}", get(asset)),
        (Method::GET, "/api/v1/overview", get(overview)),
        (Method::GET, "/api/v1/metrics/history", get(history)),
        (Method::POST, "/api/v1/jobs/{job}/pause", post(pause)),
        (Method::POST, "/api/v1/jobs/{job}/resume", post(resume)),
    ]
}

/// `GET /api/v1/overview`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Overview {
    /// Ferry's version.
    pub version: &'static str,
    /// Seconds between metric history samples.
    pub history_interval_s: f64,
    /// Whether `GET` requests answer without a token.
    pub public_read: bool,
    /// Every job this server runs or watches, one card each.
    #[schema(value_type = Vec<Object>)]
    pub jobs: Vec<JobCard>,
}

/// Every configured job with its state, last and next run, throughput, errors and the health of
/// the stores it uses.
#[utoipa::path(get, path = "/api/v1/overview", tag = "dashboard",
    responses((status = 200, description = "every job's card", body = Overview)))]
pub(crate) async fn overview(State(state): State<Arc<AppState>>) -> Json<Overview> {
    Json(Overview {
        version: env!("CARGO_PKG_VERSION"),
        history_interval_s: state.history.interval().as_secs_f64(),
        public_read: state.options.public_read,
        jobs: crate::jobs::cards(&state).await,
    })
}

/// `GET /api/v1/metrics/history`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct History {
    /// Seconds between samples.
    pub interval_s: f64,
    /// The series asked for: metric, labels and `[unix ms, value]` points, oldest first.
    #[schema(value_type = Vec<Object>)]
    pub series: Vec<Series>,
}

/// The longest window the history endpoint answers for.
const MAX_MINUTES: u64 = 24 * 60;

/// Samples of the service's own metrics (an in-memory ring; no Prometheus server needed):
/// every series of the metrics named in `metrics` (comma-separated) over the last `minutes`
/// (default 15).
#[utoipa::path(get, path = "/api/v1/metrics/history", tag = "dashboard",
    params(
        ("metrics" = String, Query, description = "metric names, comma-separated"),
        ("minutes" = Option<u64>, Query, minimum = 1, maximum = 1440, description = "window in minutes (default 15); the ring keeps about an hour"),
    ),
    responses((status = 200, description = "the series", body = History),
        (status = 400, description = "a missing or unknown parameter")))]
pub(crate) async fn history(
    State(state): State<Arc<AppState>>,
    Query(params): Params,
) -> Result<Json<History>, ApiError> {
    check_params(&params, &["metrics", "minutes"])?;
    let names = metric_names(&params)?;
    let minutes = match params.get("minutes") {
        None => 15,
        Some(m) => m
            .parse::<u64>()
            .ok()
            .filter(|m| (1..=MAX_MINUTES).contains(m))
            .ok_or_else(|| {
                ApiError::bad_request(
                    format!("minutes `{m}` is not a number from 1 to {MAX_MINUTES}"),
                    Some("minutes"),
                )
            })?,
    };
    let since = chrono::Utc::now().timestamp_millis()
        - Duration::from_secs(minutes * 60).as_millis() as i64;
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    Ok(Json(History {
        interval_s: state.history.interval().as_secs_f64(),
        series: state.history.series(&names, since),
    }))
}

/// The `metrics` parameter: names Ferry exports, at most 20.
fn metric_names(params: &HashMap<String, String>) -> Result<Vec<String>, ApiError> {
    let Some(list) = params.get("metrics") else {
        return Err(ApiError::bad_request(
            "name the metrics to return: ?metrics=ferry_events_published_total,…",
            Some("metrics"),
        ));
    };
    let names: Vec<String> = list
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect();
    if names.is_empty() || names.len() > 20 {
        return Err(ApiError::bad_request(
            "metrics must name 1 to 20 metrics, comma-separated",
            Some("metrics"),
        ));
    }
    let known = super::exported_metric_names();
    if let Some(unknown) = names
        .iter()
        .find(|n| !known.iter().any(|k| metric_family(n) == *k))
    {
        return Err(ApiError::bad_request(
            format!("`{unknown}` is not a metric Ferry exports (see GET /metrics)"),
            Some("metrics"),
        ));
    }
    Ok(names)
}

/// The metric a name belongs to (`x_seconds_sum` and `x_seconds_count` belong to `x_seconds`).
fn metric_family(name: &str) -> &str {
    name.strip_suffix("_sum")
        .or_else(|| name.strip_suffix("_count"))
        .filter(|base| base.ends_with("_seconds"))
        .unwrap_or(name)
}

/// `POST /api/v1/jobs/{job}/pause|resume`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Switched {
    /// The job.
    pub job: String,
    /// Whether it is paused now.
    pub paused: bool,
    /// For a pause: whether its run has ended (a tier pass that runs finishes first; the
    /// answer waits up to 30 s). Once true, the job does nothing until resumed.
    pub stopped: bool,
}

/// Pauses a job this server runs (`tier`, `events`, `bridge:NAME`): it stops at its next safe
/// point — a tier pass that runs finishes, the relay and the bridges commit what they did — and
/// does nothing until resumed. The answer comes once the run going on ended (`stopped`, up to
/// 30 s). Admin token.
#[utoipa::path(post, path = "/api/v1/jobs/{job}/pause", tag = "dashboard",
    params(("job" = String, Path, description = "tier, events or bridge:NAME")),
    responses((status = 200, description = "paused", body = Switched),
        (status = 404, description = "no such job runs on this server")))]
pub(crate) async fn pause(
    State(state): State<Arc<AppState>>,
    Path(job): Path<String>,
    Query(params): Params,
    body: axum::body::Bytes,
) -> Result<Json<Switched>, ApiError> {
    switch(&state, job, (&params, &body), true).await
}

/// Resumes a paused job. Admin token.
#[utoipa::path(post, path = "/api/v1/jobs/{job}/resume", tag = "dashboard",
    params(("job" = String, Path, description = "tier, events or bridge:NAME")),
    responses((status = 200, description = "running", body = Switched),
        (status = 404, description = "no such job runs on this server")))]
pub(crate) async fn resume(
    State(state): State<Arc<AppState>>,
    Path(job): Path<String>,
    Query(params): Params,
    body: axum::body::Bytes,
) -> Result<Json<Switched>, ApiError> {
    switch(&state, job, (&params, &body), false).await
}

/// Refuses a body where none is taken (an empty one, or `{}`, is fine).
fn check_no_body(body: &[u8]) -> Result<(), ApiError> {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() || text == "{}" {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "this endpoint takes no body: name the job in the path",
            None,
        ))
    }
}

/// How long a pause waits for the job's run going on to end.
const PAUSE_PATIENCE: Duration = Duration::from_secs(30);

/// Pauses or resumes `job`; the request must carry no parameter and no body.
async fn switch(
    state: &AppState,
    job: String,
    (params, body): (&HashMap<String, String>, &[u8]),
    paused: bool,
) -> Result<Json<Switched>, ApiError> {
    check_params(params, &[])?;
    check_no_body(body)?;
    match state
        .switches
        .set_and_wait(&job, paused, PAUSE_PATIENCE)
        .await
    {
        Some((paused, stopped)) => {
            tracing::info!(job, paused, stopped, "job switched through the API");
            Ok(Json(Switched {
                job,
                paused,
                stopped,
            }))
        }
        None => Err(ApiError {
            status: StatusCode::NOT_FOUND,
            message: format!(
                "no job `{job}` runs on this server (these do: {})",
                state.switches.jobs().join(", ")
            ),
            field: Some("job".into()),
        }),
    }
}

/// A response for a path the dashboard does not have.
pub(crate) fn not_found(what: &str) -> Response {
    ApiError {
        status: StatusCode::NOT_FOUND,
        message: format!("no {what} here"),
        field: None,
    }
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_refuses_unknown_and_too_many_metrics() {
        let p = |v: &str| HashMap::from([("metrics".to_string(), v.to_string())]);
        assert!(metric_names(&p("ferry_events_published_total")).is_ok());
        assert!(metric_names(&p("ferry_events_publish_lag_seconds_count")).is_ok());
        assert!(metric_names(&p("ferry_nope_total")).is_err());
        assert!(metric_names(&p(" , ")).is_err());
        assert!(metric_names(&HashMap::new()).is_err());
        let many = vec!["ferry_events_published_total"; 21].join(",");
        assert!(metric_names(&p(&many)).is_err());
    }
}
