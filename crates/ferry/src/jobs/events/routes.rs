//! The events job's endpoints: save (`POST /api/v1/events`), query (`GET /api/v1/events`), a
//! live view as Server-Sent Events (`GET /api/v1/events/live`) and statistics.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Query, State};
use axum::http::{Method, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use ferry_connectors::postgres::events::EventLogError;
use ferry_core::error::Classify;
use ferry_core::jobs::events::{NewEvent, parse_timestamp};
use futures::{Stream, StreamExt};
use serde_json::json;

use super::{EventQuery, EventsContext};
use crate::jobs::events::metrics::EventsMetric;
use crate::server::card::{JobCard, JobState, StoreHealth};
use crate::server::error::{ApiError, class_status, parse_json};
use crate::server::params::{Params, check_params, query_limit};
use crate::server::{AppState, Endpoint};

/// The events job's endpoints.
pub fn endpoints() -> Vec<Endpoint> {
    vec![
        (Method::POST, "/api/v1/events", post(save)),
        (Method::GET, "/api/v1/events", get(query)),
        (Method::GET, "/api/v1/events/live", get(live)),
        (Method::GET, "/api/v1/events/stats", get(stats)),
    ]
}

/// The events job's part of `/healthz`: its PostgreSQL; `false` when it fails.
pub async fn health(ctx: &EventsContext, body: &mut serde_json::Value) -> bool {
    let log = ctx.log.healthcheck().await;
    let redis = redis_ping(ctx).await;
    let healthy = log.is_ok() && redis.is_ok();
    body["events_postgres"] = json!(
        log.map(|_| "ok".to_string())
            .unwrap_or_else(|e| e.to_string())
    );
    body["events_redis"] = json!(redis.map(|_| "ok".to_string()).unwrap_or_else(|e| e));
    healthy
}

/// A `PING` to the Redis events are published on, within 2 s.
async fn redis_ping(ctx: &EventsContext) -> Result<(), String> {
    // A connection broken by a Redis restart fails once, then reconnects: ask twice.
    let ping = async {
        match ctx.publisher.ping().await {
            Ok(()) => Ok(()),
            Err(_) => ctx.publisher.ping().await,
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(2), ping)
        .await
        .map_err(|_| "no answer in 2 s".to_string())
        .and_then(|r| r.map_err(|e| e.to_string()))
}

/// The events job's card before its stores answered: identity, charts, pause state.
pub fn skeleton(state: &AppState) -> JobCard {
    let mut card = JobCard::new(
        super::service::JOB,
        "events",
        "Save events, then publish them",
    );
    card.throughput_unit = "events published";
    card.pausable = true;
    card.chart(
        "Events published /s",
        "ferry_events_published_total",
        "rate",
    )
    .chart(
        "Publish lag (s), p50 / p99",
        "ferry_events_publish_lag_seconds",
        "value",
    )
    .chart("Outbox backlog", "ferry_events_outbox_backlog", "value");
    if state.switches.is_paused(super::service::JOB) {
        card.state = JobState::Paused;
    }
    card
}

/// The events job's card: its PostgreSQL and Redis, the outbox, publish rate and lag.
pub async fn card(state: &AppState, ctx: &EventsContext) -> JobCard {
    let mut card = skeleton(state);
    let pg = ctx.log.healthcheck().await.map_err(|e| e.to_string());
    let redis = redis_ping(ctx).await;
    card.stores = vec![
        StoreHealth::new("log", "PostgreSQL", pg),
        StoreHealth::new("publish", "Redis", redis),
    ];
    card.state = JobState::Running;
    match ctx.log.backlog().await {
        Ok((count, oldest)) => {
            card.fact("outbox backlog", count);
            if let Some(ms) = oldest {
                card.fact("oldest unpublished", format!("{:.1} s", ms as f64 / 1000.0));
            }
        }
        Err(e) => card.reason = Some(e.to_string()),
    }
    let h = &state.history;
    card.last_run = h
        .last_change(EventsMetric::PublishedTotal.name())
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| t.to_rfc3339());
    let rejected = h.latest(EventsMetric::RejectedTotal.name()).unwrap_or(0.0);
    card.errors = rejected as u64;
    if let Some(saved) = h.latest(EventsMetric::SavedTotal.name()) {
        card.fact("saved by this server", saved);
    }
    card.fact("channel", ctx.publisher.channel());
    if state.switches.is_paused(super::service::JOB) {
        card.state = JobState::Paused;
    }
    card.fail_on_stores();
    card
}

impl From<EventLogError> for ApiError {
    fn from(e: EventLogError) -> Self {
        ApiError {
            status: class_status(e.class(), StatusCode::UNPROCESSABLE_ENTITY),
            message: e.to_string(),
            field: None,
        }
    }
}

fn context(state: &AppState) -> Result<&Arc<EventsContext>, ApiError> {
    state.jobs.events.as_ref().ok_or_else(|| ApiError {
        status: StatusCode::NOT_FOUND,
        message: "the events job is not enabled: set [events] postgres (or --events-postgres) for ferry serve".into(),
        field: None,
    })
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        message: format!("{what}: {e}"),
        field: None,
    }
}

/// `POST /api/v1/events`: one event (an object) or a batch (an array), stored in one
/// transaction; `201 {"ids": [...], "duplicates": N}` in the order sent.
#[utoipa::path(post, path = "/api/v1/events", tag = "events",
    request_body(content = Object, description = "one event or an array of events"),
    responses((status = 201, description = "`{\"ids\": […], \"duplicates\": N}`", body = Object), (status = 400, description = "bad input, nothing stored"),
        (status = 413, description = "a body over [serve] max_body_bytes"), (status = 422, description = "PostgreSQL refused the events, nothing stored"),
        (status = 503, description = "PostgreSQL unreachable"), (status = 404, description = "the events job is not configured")))]
pub(crate) async fn save(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let ctx = context(&state)?;
    let body = body.map_err(|r| ApiError {
        status: r.status(),
        message: if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            "the request body is larger than [serve] max_body_bytes; send smaller batches".into()
        } else {
            r.body_text()
        },
        field: None,
    })?;
    let reject = |e: ApiError| {
        metrics::counter!(EventsMetric::RejectedTotal.name(), "source" => "api").increment(1);
        e
    };
    let batch = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
    let events: Vec<NewEvent> = if batch {
        parse_json(&body).map_err(reject)?
    } else if body.iter().all(u8::is_ascii_whitespace) {
        return Err(reject(ApiError::bad_request(
            "the body must be an event (a JSON object) or an array of events",
            None,
        )));
    } else {
        vec![parse_json(&body).map_err(reject)?]
    };
    let max = ctx.options.max_batch;
    if events.len() > max {
        return Err(reject(ApiError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            message: format!(
                "{} events in one request; at most {max} ([events] max_batch)",
                events.len()
            ),
            field: None,
        }));
    }
    let saved = match ctx
        .log
        .save_batch_checked(&events, &ctx.options.allowed_types)
        .await
    {
        Ok(s) => s,
        Err(EventLogError::Invalid { index, source }) => {
            let field = if batch {
                format!("[{index}].{}", source.field)
            } else {
                source.field.to_string()
            };
            return Err(reject(ApiError {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                message: source.message,
                field: Some(field),
            }));
        }
        Err(e) => return Err(e.into()),
    };
    let duplicates = saved.iter().filter(|s| s.duplicate).count();
    metrics::counter!(EventsMetric::SavedTotal.name(), "source" => "api")
        .increment((saved.len() - duplicates) as u64);
    let ids: Vec<i64> = saved.iter().map(|s| s.id).collect();
    Ok((
        StatusCode::CREATED,
        Json(json!({"ids": ids, "duplicates": duplicates})),
    )
        .into_response())
}

fn time_param(
    params: &HashMap<String, String>,
    name: &str,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, ApiError> {
    params
        .get(name)
        .map(|v| {
            parse_timestamp(v).ok_or_else(|| {
                ApiError::bad_request(
                    format!("{name} `{v}` is not an RFC 3339 time (e.g. 2026-11-22T10:00:00Z)"),
                    Some(name),
                )
            })
        })
        .transpose()
}

/// `GET /api/v1/events?camera_id=&event_type=&since=&until=&limit=&cursor=`: newest first,
/// `{"events": [...], "next_cursor": ID|null}`.
#[utoipa::path(get, path = "/api/v1/events", tag = "events",
    params(("camera_id" = Option<String>, Query, description = "one camera"), ("event_type" = Option<String>, Query, description = "one type"), ("since" = Option<String>, Query, description = "RFC 3339"), ("until" = Option<String>, Query, description = "RFC 3339"), ("limit" = Option<usize>, Query, minimum = 1, maximum = 1000, description = "page size"), ("cursor" = Option<i64>, Query, description = "the next_cursor of the page before")),
    responses((status = 200, description = "`{\"events\": […], \"next_cursor\": ID|null}`", body = Object), (status = 400, description = "a bad parameter"), (status = 404, description = "the events job is not configured")))]
pub(crate) async fn query(
    State(state): State<Arc<AppState>>,
    Query(params): Params,
) -> Result<Response, ApiError> {
    let ctx = context(&state)?;
    let limit = query_limit(
        &params,
        &[
            "camera_id",
            "event_type",
            "since",
            "until",
            "limit",
            "cursor",
        ],
        100,
    )?;
    let before_id = params
        .get("cursor")
        .map(|c| {
            c.parse::<i64>().map_err(|_| {
                ApiError::bad_request(
                    format!("cursor `{c}` is not a cursor from a previous page"),
                    Some("cursor"),
                )
            })
        })
        .transpose()?;
    let q = EventQuery {
        camera_id: params.get("camera_id").cloned(),
        event_type: params.get("event_type").cloned(),
        since: time_param(&params, "since")?,
        until: time_param(&params, "until")?,
        before_id,
        limit,
    };
    Ok(Json(ctx.log.query(&q).await?).into_response())
}

/// `GET /api/v1/events/stats`.
#[utoipa::path(get, path = "/api/v1/events/stats", tag = "events",
    responses((status = 200, description = "counts by type and camera, outbox backlog, held back events, transactions in flight", body = Object), (status = 404, description = "the events job is not configured")))]
pub(crate) async fn stats(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let ctx = context(&state)?;
    Ok(Json(ctx.log.stats().await?).into_response())
}

/// `GET /api/v1/events/live?camera_id=&event_type=`: the published events as they are
/// published (Server-Sent Events; `id` is the event id, `data` its JSON).
#[utoipa::path(get, path = "/api/v1/events/live", tag = "events",
    params(("camera_id" = Option<String>, Query, description = "one camera"), ("event_type" = Option<String>, Query, description = "one type")),
    responses((status = 200, description = "`text/event-stream`: one message per published event; `event: status` with `data: gap` when the server's subscription dropped (events published until `data: back` are not sent; GET /api/v1/events has them)", content_type = "text/event-stream", body = String), (status = 404, description = "the events job is not configured"),
        (status = 503, description = "Redis unreachable, or 256 viewers already (one Redis subscription serves them all)")))]
pub(crate) async fn live(
    State(state): State<Arc<AppState>>,
    Query(params): Params,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let ctx = context(&state)?;
    check_params(&params, &["camera_id", "event_type"])?;
    let stop = state.stop_token();
    let client = ctx.publisher.client();
    let viewer = match ctx.live.watch(client, ctx.publisher.channel(), &stop).await {
        Ok(v) => v,
        Err(super::live::LiveError::TooMany) => {
            return Err(ApiError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                message: format!(
                    "{} viewers watch the live view already: close one, or query GET /api/v1/events",
                    super::live::MAX_VIEWERS
                ),
                field: None,
            });
        }
        Err(super::live::LiveError::Unavailable(why)) => {
            return Err(unavailable("cannot subscribe on Redis", why));
        }
    };
    let camera = params.get("camera_id").cloned();
    let event_type = params.get("event_type").cloned();
    let stream = super::live::messages(viewer)
        .filter_map(move |payload| {
            // The subscription's own news: `event: status`, `data: gap` or `back`.
            if let Some(status) = payload.strip_prefix('\0') {
                let event = SseEvent::default().event("status").data(status);
                return std::future::ready(Some(Ok(event)));
            }
            let out = serde_json::from_str::<serde_json::Value>(&payload)
                .ok()
                .and_then(|v| {
                    let keep = camera.as_deref().is_none_or(|c| v["camera_id"] == c)
                        && event_type.as_deref().is_none_or(|t| v["event_type"] == t);
                    keep.then(|| Ok(SseEvent::default().id(v["id"].to_string()).data(&*payload)))
                });
            std::future::ready(out)
        })
        .take_until(stop.cancelled_owned());
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
