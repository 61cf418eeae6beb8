//! `ferry events ingest`: for producers still writing a Redis Stream (the old path). Reads with
//! `XREADGROUP`, saves, and `XACK`s only after the commit; entries another consumer read and
//! never acknowledged are taken over with `XAUTOCLAIM` once idle for `claim_idle`.
//!
//! Every entry is stored once however often it is delivered: its idempotency key is the
//! producer's own `idempotency_key`, else `{stream}/{entry id}`. An entry that is not an event
//! is copied to the dead-letter Stream with the reason, then acknowledged: kept, never lost,
//! and it does not block the ones behind it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ferry_core::events::NewEvent;
use ferry_core::telemetry::Metric;
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};
use redis::{AsyncConnectionConfig, RedisResult, Value};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::{EventsContext, EventsError};
use crate::runtime::failpoint;

/// Options of one ingest run.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// The Stream the producers write (`stream:events`).
    pub stream: String,
    /// The consumer group.
    pub group: String,
    /// This consumer's name; keep it stable across restarts so its own pending entries are
    /// picked up again first.
    pub consumer: String,
    /// Where the group starts when it is created (`0`: the whole Stream, `$`: new entries).
    pub start_id: String,
    /// Entries per read.
    pub batch: usize,
    /// Entries pending this long with another consumer are taken over.
    pub claim_idle: Duration,
    /// Longest blocking read.
    pub block: Duration,
    /// Stop when nothing is left instead of waiting for more.
    pub once: bool,
    /// The dead-letter Stream (default `{stream}:dead`).
    pub dead_letter: String,
}

impl IngestOptions {
    /// Defaults for `stream` and `group`.
    pub fn new(stream: &str, group: &str) -> Self {
        IngestOptions {
            stream: stream.to_string(),
            group: group.to_string(),
            consumer: format!("ferry-{}", crate::runtime::hostname()),
            start_id: "0".into(),
            batch: 500,
            claim_idle: Duration::from_secs(60),
            block: Duration::from_secs(1),
            once: false,
            dead_letter: format!("{stream}:dead"),
        }
    }
}

/// What an ingest run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct IngestSummary {
    /// Entries read (including redeliveries).
    pub read: u64,
    /// Events stored.
    pub stored: u64,
    /// Entries whose event was already stored (a redelivery after a crash).
    pub duplicates: u64,
    /// Entries that are not events, moved to the dead-letter Stream.
    pub rejected: u64,
    /// Entries taken over from other consumers.
    pub reclaimed: u64,
    /// Failed attempts (each retried).
    pub retries: u64,
}

/// Turns a Stream entry into an event: a `data` field holding the event's JSON (the old
/// producers' format), or the event's fields as Stream fields (`event_data` as JSON text);
/// validated against `allowed_types` (empty: any).
pub fn entry_to_event(
    stream: &str,
    entry: &StreamId,
    allowed_types: &[String],
) -> Result<NewEvent, String> {
    let text = |v: &Value| -> Result<String, String> {
        redis::from_redis_value::<String>(v.clone()).map_err(|e| format!("not text: {e}"))
    };
    let mut event: NewEvent = if let Some(data) = entry.map.get("data") {
        let data = text(data).map_err(|e| format!("field data: {e}"))?;
        let mut de = serde_json::Deserializer::from_str(&data);
        serde_path_to_error::deserialize(&mut de)
            .map_err(|e| format!("field data: {} (at {})", e.inner(), e.path()))?
    } else {
        let mut object = serde_json::Map::new();
        for (field, value) in &entry.map {
            let value = text(value).map_err(|e| format!("field {field}: {e}"))?;
            let json = match field.as_str() {
                "event_data" => serde_json::from_str(&value)
                    .map_err(|e| format!("field event_data is not JSON: {e}"))?,
                "frame_number" => serde_json::Value::from(
                    value
                        .parse::<i64>()
                        .map_err(|_| format!("field frame_number `{value}` is not an integer"))?,
                ),
                _ => serde_json::Value::String(value),
            };
            object.insert(field.clone(), json);
        }
        serde_path_to_error::deserialize(serde_json::Value::Object(object))
            .map_err(|e| format!("{} (at {})", e.inner(), e.path()))?
    };
    event.validate(allowed_types).map_err(|e| e.to_string())?;
    if event.idempotency_key.is_none() {
        event.idempotency_key = Some(format!("{stream}/{}", entry.id));
    }
    Ok(event)
}

async fn connect(ctx: &EventsContext, opts: &IngestOptions) -> RedisResult<MultiplexedConnection> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(opts.block + Duration::from_secs(5)));
    ctx.publisher
        .client()
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

async fn ensure_group(conn: &mut MultiplexedConnection, opts: &IngestOptions) -> RedisResult<()> {
    let created: RedisResult<()> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&opts.stream)
        .arg(&opts.group)
        .arg(&opts.start_id)
        .arg("MKSTREAM")
        .query_async(conn)
        .await;
    match created {
        Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
        other => other,
    }
}

/// Runs the ingest until `stop` (or, with `once`, until the Stream has nothing left).
pub async fn ingest(
    ctx: &EventsContext,
    opts: &IngestOptions,
    stop: CancellationToken,
) -> Result<IngestSummary, EventsError> {
    let redis_error = |e| ctx.publisher.error(e);
    let mut conn = connect(ctx, opts).await.map_err(redis_error)?;
    ensure_group(&mut conn, opts).await.map_err(redis_error)?;
    let mut summary = IngestSummary::default();
    let mut own_pending = true;
    let mut last_claim: Option<Instant> = None;
    let mut backoff = Duration::from_millis(100);
    while !stop.is_cancelled() {
        let step = step(
            ctx,
            opts,
            &mut conn,
            &mut summary,
            &mut own_pending,
            &mut last_claim,
        )
        .await;
        match step {
            Ok(0) if opts.once => break,
            Ok(_) => backoff = Duration::from_millis(100),
            Err(e) => {
                summary.retries += 1;
                metrics::counter!(Metric::EventsRetriesTotal.name(), "stage" => "ingest")
                    .increment(1);
                if opts.once {
                    return Err(e);
                }
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "ingest failed; entries stay pending");
                own_pending = true;
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                if let Ok(c) = connect(ctx, opts).await {
                    conn = c;
                }
            }
        }
    }
    Ok(summary)
}

/// One read (own pending entries first, then other consumers' idle ones, then new ones) and
/// its processing; returns the entries handled.
async fn step(
    ctx: &EventsContext,
    opts: &IngestOptions,
    conn: &mut MultiplexedConnection,
    summary: &mut IngestSummary,
    own_pending: &mut bool,
    last_claim: &mut Option<Instant>,
) -> Result<usize, EventsError> {
    let redis_error = |e| ctx.publisher.error(e);
    if *own_pending {
        let entries = read_group(conn, opts, "0", None)
            .await
            .map_err(redis_error)?;
        if !entries.is_empty() {
            return process(ctx, opts, conn, entries, summary).await;
        }
        *own_pending = false;
    }
    let claim_every = opts.claim_idle.min(Duration::from_secs(5));
    if last_claim.is_none_or(|t| t.elapsed() >= claim_every) {
        let mut cursor = "0-0".to_string();
        let mut handled = 0;
        loop {
            let reply: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
                .arg(&opts.stream)
                .arg(&opts.group)
                .arg(&opts.consumer)
                .arg(opts.claim_idle.as_millis() as u64)
                .arg(&cursor)
                .arg("COUNT")
                .arg(opts.batch)
                .query_async(conn)
                .await
                .map_err(redis_error)?;
            if !reply.claimed.is_empty() {
                summary.reclaimed += reply.claimed.len() as u64;
                tracing::info!(
                    entries = reply.claimed.len(),
                    "took over entries left pending by another consumer"
                );
                handled += process(ctx, opts, conn, reply.claimed, summary).await?;
            }
            cursor = reply.next_stream_id;
            if cursor == "0-0" {
                break;
            }
        }
        *last_claim = Some(Instant::now());
        if handled > 0 {
            return Ok(handled);
        }
    }
    let block = if opts.once { None } else { Some(opts.block) };
    let entries = read_group(conn, opts, ">", block)
        .await
        .map_err(redis_error)?;
    process(ctx, opts, conn, entries, summary).await
}

async fn read_group(
    conn: &mut MultiplexedConnection,
    opts: &IngestOptions,
    id: &str,
    block: Option<Duration>,
) -> RedisResult<Vec<StreamId>> {
    let mut cmd = redis::cmd("XREADGROUP");
    cmd.arg("GROUP")
        .arg(&opts.group)
        .arg(&opts.consumer)
        .arg("COUNT")
        .arg(opts.batch);
    if let Some(b) = block {
        cmd.arg("BLOCK").arg(b.as_millis().max(1) as u64);
    }
    cmd.arg("STREAMS").arg(&opts.stream).arg(id);
    let reply: Option<StreamReadReply> = cmd.query_async(conn).await?;
    Ok(reply
        .map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect())
        .unwrap_or_default())
}

/// Saves the entries' events, dead-letters the bad ones, then acknowledges all of them.
async fn process(
    ctx: &EventsContext,
    opts: &IngestOptions,
    conn: &mut MultiplexedConnection,
    entries: Vec<StreamId>,
    summary: &mut IngestSummary,
) -> Result<usize, EventsError> {
    if entries.is_empty() {
        return Ok(0);
    }
    summary.read += entries.len() as u64;
    let mut events = Vec::with_capacity(entries.len());
    let mut dead = redis::pipe();
    let mut rejected = 0u64;
    for entry in &entries {
        match entry_to_event(&opts.stream, entry, &ctx.options.allowed_types) {
            Ok(e) => events.push(e),
            Err(reason) => {
                rejected += 1;
                tracing::warn!(entry = %entry.id, %reason, dead_letter = %opts.dead_letter, "not an event; moved to the dead-letter stream");
                let mut fields: HashMap<&str, Vec<u8>> = entry
                    .map
                    .iter()
                    .map(|(k, v)| {
                        let bytes = redis::from_redis_value::<Vec<u8>>(v.clone())
                            .unwrap_or_else(|_| format!("{v:?}").into_bytes());
                        (k.as_str(), bytes)
                    })
                    .collect();
                fields.remove("ferry_source_id");
                fields.remove("ferry_error");
                let x = dead.cmd("XADD").arg(&opts.dead_letter).arg("*");
                x.arg("ferry_source_id")
                    .arg(&entry.id)
                    .arg("ferry_error")
                    .arg(&reason);
                for (k, v) in fields {
                    x.arg(k).arg(v);
                }
                dead.ignore();
            }
        }
    }
    let saved = ctx.log.save_batch(&events).await?;
    let duplicates = saved.iter().filter(|s| s.duplicate).count() as u64;
    summary.stored += saved.len() as u64 - duplicates;
    summary.duplicates += duplicates;
    summary.rejected += rejected;
    metrics::counter!(Metric::EventsSavedTotal.name(), "source" => "stream")
        .increment(saved.len() as u64 - duplicates);
    metrics::counter!(Metric::EventsRejectedTotal.name(), "source" => "stream").increment(rejected);
    failpoint("events-ingest-after-commit");
    let redis_error = |e| ctx.publisher.error(e);
    if rejected > 0 {
        let () = dead.query_async(conn).await.map_err(redis_error)?;
    }
    let mut ack = redis::cmd("XACK");
    ack.arg(&opts.stream).arg(&opts.group);
    for e in &entries {
        ack.arg(&e.id);
    }
    let _: u64 = ack.query_async(conn).await.map_err(redis_error)?;
    Ok(entries.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, fields: &[(&str, &str)]) -> StreamId {
        StreamId {
            id: id.into(),
            map: fields
                .iter()
                .map(|(k, v)| (k.to_string(), Value::BulkString(v.as_bytes().to_vec())))
                .collect(),
            ..StreamId::default()
        }
    }

    #[test]
    fn the_old_producers_data_field_is_an_event() {
        let e = entry(
            "1-0",
            &[(
                "data",
                r#"{"event_type":"anpr","camera_id":"cam-1","timestamp":"2024-10-11T12:00:00.123456","event_data":{"plate":"X"}}"#,
            )],
        );
        let ev = entry_to_event("stream:events", &e, &[]).unwrap();
        assert_eq!(ev.idempotency_key.as_deref(), Some("stream:events/1-0"));
        assert_eq!(ev.event_data["plate"], "X");
        assert!(ev.timestamp.is_some());
    }

    #[test]
    fn flat_fields_are_an_event_too() {
        let e = entry(
            "2-0",
            &[
                ("event_type", "motion"),
                ("camera_id", "cam-2"),
                ("frame_number", "42"),
                ("event_data", r#"{"area": 0.3}"#),
            ],
        );
        let ev = entry_to_event("s", &e, &[]).unwrap();
        assert_eq!(ev.frame_number, Some(42));
        assert_eq!(ev.event_data["area"], 0.3);
    }

    #[test]
    fn bad_entries_say_what_is_wrong() {
        let missing = entry("3-0", &[("data", r#"{"camera_id":"cam-1"}"#)]);
        assert!(
            entry_to_event("s", &missing, &[])
                .unwrap_err()
                .contains("event_type")
        );
        let wrong = entry("4-0", &[("data", r#"{"event_type":"m","camera_id":7}"#)]);
        assert!(
            entry_to_event("s", &wrong, &[])
                .unwrap_err()
                .contains("camera_id")
        );
        let frame = entry(
            "5-0",
            &[
                ("event_type", "m"),
                ("camera_id", "c"),
                ("frame_number", "x"),
            ],
        );
        assert!(
            entry_to_event("s", &frame, &[])
                .unwrap_err()
                .contains("frame_number")
        );
    }
}
