//! The relay: publishes what the outbox holds below the horizon (ids no transaction in flight
//! can still precede), in id order per camera, and marks it published only after Redis
//! accepted it. Wakes on `NOTIFY`, rescans every `rescan_interval` (so a
//! missed notification or a restart loses nothing), and retries failures with backoff.
//!
//! One relay runs `relay_workers` loops; like separate relays they take different cameras
//! (per-camera locks), so a batch being published does not hold up the next camera's events.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use ferry_connectors::postgres::events::{EventLog, PublishError, Published};
use ferry_core::retry::Backoff;
use serde::Serialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{EventsContext, EventsError};
use crate::jobs::events::metrics::EventsMetric;
use crate::runtime::failpoint;

/// First pause before looking again at events held back by a transaction in flight.
const MIN_HELD_POLL: Duration = Duration::from_millis(2);
/// Longest such pause (never longer than `rescan_interval`).
const MAX_HELD_POLL: Duration = Duration::from_millis(10);
/// How long `--once` waits for a transaction in flight before it stops with events queued.
const ONCE_HELD_LIMIT: Duration = Duration::from_secs(5);

/// What a relay run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RelaySummary {
    /// Events published.
    pub published: u64,
    /// Failed attempts (each retried).
    pub retries: u64,
}

/// Runs the relay until `stop` is cancelled; with `once`, until the outbox is empty (a
/// failure then ends the run with an error instead of a retry).
pub async fn relay(
    ctx: &EventsContext,
    once: bool,
    stop: CancellationToken,
) -> Result<RelaySummary, EventsError> {
    let workers = if once {
        1
    } else {
        ctx.options.relay_workers.max(1)
    };
    let wakes: Vec<Arc<Notify>> = (0..workers).map(|_| Arc::new(Notify::new())).collect();
    let listener =
        (!once).then(|| tokio::spawn(keep_listening(ctx.log.clone(), wakes.clone(), stop.clone())));
    let results =
        futures::future::join_all(wakes.iter().map(|w| worker(ctx, once, w, &stop))).await;
    if let Some(l) = listener {
        l.abort();
    }
    let mut summary = RelaySummary::default();
    for r in results {
        let r = r?;
        summary.published += r.published;
        summary.retries += r.retries;
    }
    Ok(summary)
}

/// Keeps a `LISTEN` connection open, reopening it (after a pause) when it is lost.
async fn keep_listening(log: EventLog, wakes: Vec<Arc<Notify>>, stop: CancellationToken) {
    while !stop.is_cancelled() {
        match log.listen(wakes.clone()).await {
            Ok(listener) => listener.lost().await,
            Err(e) => tracing::warn!(error = %e, "cannot LISTEN for new events; rescanning"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

async fn worker(
    ctx: &EventsContext,
    once: bool,
    wake: &Notify,
    stop: &CancellationToken,
) -> Result<RelaySummary, EventsError> {
    let mut summary = RelaySummary::default();
    let mut backoff = Backoff::for_services();
    let mut held_since: Option<Instant> = None;
    let mut held_poll = MIN_HELD_POLL;
    while !stop.is_cancelled() {
        let publisher = &ctx.publisher;
        let attempt = ctx
            .log
            .publish_pending(ctx.options.relay_batch, |batch| async move {
                failpoint("events-relay-before-publish");
                publisher.publish(&batch.events).await?;
                failpoint("events-relay-after-publish");
                let now = Utc::now();
                let lag = metrics::histogram!(EventsMetric::PublishLagSeconds.name());
                for e in &batch.events {
                    let us = (now - e.created_at).num_microseconds().unwrap_or(0);
                    lag.record(us.max(0) as f64 / 1e6);
                }
                Ok::<(), redis::RedisError>(())
            })
            .await;
        match attempt {
            Ok(Published {
                events: 0,
                held_back,
            }) => {
                backoff.reset();
                if !held_back {
                    held_since = None;
                    held_poll = MIN_HELD_POLL;
                    if once {
                        break;
                    }
                }
                let waited = held_since.get_or_insert_with(Instant::now).elapsed();
                if held_back && once && waited >= ONCE_HELD_LIMIT {
                    tracing::warn!(
                        waited_s = waited.as_secs(),
                        "stopping with events still queued: a transaction that inserted events is still open (see `ferry events stats`)"
                    );
                    break;
                }
                // Events held back by a transaction in flight are ready as soon as it ends,
                // which a rollback does without a notification: look again soon.
                let pause = if held_back {
                    held_poll = (held_poll * 2).min(MAX_HELD_POLL);
                    held_poll.min(ctx.options.rescan_interval)
                } else {
                    ctx.options.rescan_interval
                };
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(pause) => {}
                }
            }
            Ok(Published { events: n, .. }) => {
                backoff.reset();
                held_since = None;
                held_poll = MIN_HELD_POLL;
                summary.published += n as u64;
                metrics::counter!(EventsMetric::PublishedTotal.name()).increment(n as u64);
            }
            Err(e) => {
                summary.retries += 1;
                let (stage, error) = match e {
                    PublishError::Log(e) => ("postgres", EventsError::Log(e)),
                    PublishError::Publisher(e) => ("redis", ctx.publisher.error(e)),
                };
                metrics::counter!(EventsMetric::RetriesTotal.name(), "stage" => stage).increment(1);
                if once {
                    return Err(error);
                }
                let delay = backoff.next();
                tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "relay failed; events stay queued");
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
    Ok(summary)
}
