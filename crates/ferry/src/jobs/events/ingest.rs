//! `ferry events ingest`: for producers still writing a Redis Stream (the old path). Reads with
//! `XREADGROUP`, saves, and `XACK`s only after the commit; entries another consumer read and
//! never acknowledged are taken over with `XAUTOCLAIM` once idle for `claim_idle`.
//!
//! Every entry is stored once however often it is delivered: its idempotency key is the
//! producer's own `idempotency_key`, else `{stream}/{entry id}`. An entry that is not an event
//! — it does not parse, fails [`NewEvent::validate`], or PostgreSQL refuses it — is copied to
//! the dead-letter Stream with the reason, then acknowledged: kept, never lost, and it does not
//! block the ones behind it.
//!
//! A batch PostgreSQL refuses ([`EventLogError::Refused`]: a data exception, a constraint
//! violation, a value over a limit) is split in halves until each refused entry is alone; the
//! good entries are stored once, in Stream order, and the refused ones dead-lettered. The dead
//! letters and the acknowledgement of the whole batch go to Redis in one `MULTI`/`EXEC`, after
//! the commit. Only an unavailable store or Redis is retried (with backoff).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ferry_connectors::postgres::events::EventLogError;
use ferry_core::error::Classify;
use ferry_core::events::NewEvent;
use ferry_core::telemetry::Metric;
use redis::aio::MultiplexedConnection;
use redis::streams::StreamId;
use redis::{AsyncConnectionConfig, ErrorKind, RedisError, RedisResult, Value};
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
    /// Pending entries deleted from the Stream before they were handled (acknowledged).
    pub deleted: u64,
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

/// A Stream entry as read: field names and values as bytes, whatever a producer wrote (a
/// field name that is not UTF-8 must become a dead letter, not a reply that fails to parse).
#[derive(Debug, Clone, Default)]
struct Entry {
    id: String,
    /// Empty for an entry deleted from the Stream while pending (read back as its id and nil).
    fields: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Entry {
    /// Its event, as [`entry_to_event`] reads it.
    fn event(&self, stream: &str, allowed_types: &[String]) -> Result<NewEvent, String> {
        let mut map = HashMap::with_capacity(self.fields.len());
        for (name, value) in &self.fields {
            let name = std::str::from_utf8(name).map_err(|_| {
                format!(
                    "field name {:?} is not UTF-8",
                    String::from_utf8_lossy(name)
                )
            })?;
            map.insert(name.to_string(), Value::BulkString(value.clone()));
        }
        let entry = StreamId {
            id: self.id.clone(),
            map,
            ..StreamId::default()
        };
        entry_to_event(stream, &entry, allowed_types)
    }
}

fn bad_reply(what: &'static str, v: &Value) -> RedisError {
    RedisError::from((ErrorKind::UnexpectedReturnType, what, format!("{v:?}")))
}

fn reply_bytes(v: Value) -> Result<Vec<u8>, Value> {
    match v {
        Value::BulkString(b) => Ok(b),
        Value::SimpleString(s) => Ok(s.into_bytes()),
        Value::VerbatimString { text, .. } => Ok(text.into_bytes()),
        other => Err(other),
    }
}

fn reply_text(v: Value) -> RedisResult<String> {
    let b = reply_bytes(v).map_err(|v| bad_reply("a Stream id or name is not a string", &v))?;
    String::from_utf8(b).map_err(|e| {
        RedisError::from((
            ErrorKind::UnexpectedReturnType,
            "a Stream id is not UTF-8",
            e.to_string(),
        ))
    })
}

/// Pairs of a flat `[k, v, k, v, …]` array or a map; nil is no pairs.
fn reply_pairs(v: Value) -> RedisResult<Vec<(Value, Value)>> {
    match v {
        Value::Nil => Ok(Vec::new()),
        Value::Map(pairs) => Ok(pairs),
        Value::Array(items) if items.len() % 2 == 0 => {
            let mut out = Vec::with_capacity(items.len() / 2);
            let mut it = items.into_iter();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                out.push((k, v));
            }
            Ok(out)
        }
        other => Err(bad_reply("not a list of pairs", &other)),
    }
}

/// Entries of an `XREADGROUP`/`XAUTOCLAIM` reply: `[[id, fields | nil], …]`; a nil entry
/// (Redis 6's `XAUTOCLAIM` of a deleted one) is skipped and counted.
fn reply_entries(v: Value) -> RedisResult<(Vec<Entry>, usize)> {
    let items = match v {
        Value::Nil => return Ok((Vec::new(), 0)),
        Value::Array(items) => items,
        other => return Err(bad_reply("not a list of Stream entries", &other)),
    };
    let mut out = Vec::with_capacity(items.len());
    let mut nil = 0;
    for item in items {
        let mut parts = match item {
            Value::Nil => {
                nil += 1;
                continue;
            }
            Value::Array(parts) if parts.len() == 2 => parts.into_iter(),
            other => return Err(bad_reply("not a Stream entry", &other)),
        };
        let id = reply_text(parts.next().unwrap_or(Value::Nil))?;
        let mut fields = Vec::new();
        for (k, v) in reply_pairs(parts.next().unwrap_or(Value::Nil))? {
            let k = reply_bytes(k).map_err(|v| bad_reply("a field name is not a string", &v))?;
            let v = reply_bytes(v).map_err(|v| bad_reply("a value is not a string", &v))?;
            fields.push((k, v));
        }
        out.push(Entry { id, fields });
    }
    Ok((out, nil))
}

/// What `XAUTOCLAIM` answered.
struct Claimed {
    next: String,
    entries: Vec<Entry>,
    /// Ids no longer in the Stream (Redis 7).
    deleted: Vec<String>,
    /// Redis 6 claimed deleted entries as nil.
    nil: usize,
}

fn reply_claimed(v: Value) -> RedisResult<Claimed> {
    let Value::Array(items) = v else {
        return Err(bad_reply("not an XAUTOCLAIM reply", &v));
    };
    if !(2..=3).contains(&items.len()) {
        return Err(bad_reply("not an XAUTOCLAIM reply", &Value::Array(items)));
    }
    let mut it = items.into_iter();
    let next = reply_text(it.next().unwrap_or(Value::Nil))?;
    let (entries, nil) = reply_entries(it.next().unwrap_or(Value::Nil))?;
    let deleted = match it.next() {
        Some(Value::Array(ids)) => ids
            .into_iter()
            .map(reply_text)
            .collect::<RedisResult<_>>()?,
        Some(Value::Nil) | None => Vec::new(),
        Some(other) => return Err(bad_reply("not a list of deleted ids", &other)),
    };
    Ok(Claimed {
        next,
        entries,
        deleted,
        nil,
    })
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
            // Retrying cannot help (refused data never escapes `process`; this is a bug or a
            // bad option): stop rather than loop.
            Err(e) if !e.retryable() => return Err(e),
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
            let reply: Value = redis::cmd("XAUTOCLAIM")
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
            let reply = reply_claimed(reply).map_err(redis_error)?;
            if !reply.deleted.is_empty() {
                // Redis 7 drops them from the PEL itself; acknowledge anyway, so that no
                // server version leaves them pending.
                let mut ack = redis::cmd("XACK");
                ack.arg(&opts.stream).arg(&opts.group).arg(&reply.deleted);
                let _: u64 = ack.query_async(conn).await.map_err(redis_error)?;
                summary.deleted += reply.deleted.len() as u64;
                tracing::info!(
                    entries = reply.deleted.len(),
                    "entries left pending were deleted from the stream; acknowledged"
                );
            }
            if reply.nil > 0 {
                // Redis 6 claims deleted entries as nil: they are ours now; the read of our own
                // pending entries acknowledges them.
                *own_pending = true;
            }
            if !reply.entries.is_empty() {
                summary.reclaimed += reply.entries.len() as u64;
                tracing::info!(
                    entries = reply.entries.len(),
                    "took over entries left pending by another consumer"
                );
                handled += process(ctx, opts, conn, reply.entries, summary).await?;
            }
            cursor = reply.next;
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
) -> RedisResult<Vec<Entry>> {
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
    let reply: Value = cmd.query_async(conn).await?;
    // `[[stream, entries]]` (RESP2) or `{stream: entries}` (RESP3); nil when nothing came.
    let streams = match reply {
        Value::Nil => return Ok(Vec::new()),
        Value::Map(pairs) => pairs,
        Value::Array(items) => items
            .into_iter()
            .map(|item| match item {
                Value::Array(kv) if kv.len() == 2 => {
                    let mut kv = kv.into_iter();
                    Ok((
                        kv.next().unwrap_or(Value::Nil),
                        kv.next().unwrap_or(Value::Nil),
                    ))
                }
                other => Err(bad_reply("not an XREADGROUP reply", &other)),
            })
            .collect::<RedisResult<_>>()?,
        other => return Err(bad_reply("not an XREADGROUP reply", &other)),
    };
    let mut out = Vec::new();
    for (_, entries) in streams {
        out.extend(reply_entries(entries)?.0);
    }
    Ok(out)
}

/// Saves the entries' events, dead-letters the bad ones, then acknowledges all of them.
async fn process(
    ctx: &EventsContext,
    opts: &IngestOptions,
    conn: &mut MultiplexedConnection,
    entries: Vec<Entry>,
    summary: &mut IngestSummary,
) -> Result<usize, EventsError> {
    if entries.is_empty() {
        return Ok(0);
    }
    summary.read += entries.len() as u64;
    // (entry, reason) of each dead letter, and the good events with their entries.
    let mut dead: Vec<(&Entry, String)> = Vec::new();
    let mut good: Vec<&Entry> = Vec::with_capacity(entries.len());
    let mut events: Vec<NewEvent> = Vec::with_capacity(entries.len());
    let mut deleted = 0u64;
    for entry in &entries {
        // A Stream entry has at least one field: none means it was deleted while pending (an
        // own pending entry is read back as its id and nil).
        if entry.fields.is_empty() {
            deleted += 1;
            continue;
        }
        match entry.event(&opts.stream, &ctx.options.allowed_types) {
            Ok(e) => {
                good.push(entry);
                events.push(e);
            }
            Err(reason) => dead.push((entry, reason)),
        }
    }
    let refused = store(ctx, &events, summary).await?;
    dead.extend(refused.into_iter().map(|(i, reason)| (good[i], reason)));
    failpoint("events-ingest-after-commit");
    // The dead letters and the acknowledgement together: a crash or a lost connection before
    // EXEC leaves every entry pending and writes no dead letter, so each is written once.
    let mut pipe = redis::pipe();
    pipe.atomic();
    for (entry, reason) in &dead {
        tracing::warn!(entry = %entry.id, %reason, dead_letter = %opts.dead_letter, "not an event; moved to the dead-letter stream");
        let x = pipe.cmd("XADD").arg(&opts.dead_letter).arg("*");
        x.arg("ferry_source_id")
            .arg(&entry.id)
            .arg("ferry_error")
            .arg(reason);
        for (k, v) in &entry.fields {
            if k == b"ferry_source_id" || k == b"ferry_error" {
                continue;
            }
            x.arg(k).arg(v);
        }
        pipe.ignore();
    }
    pipe.cmd("XACK").arg(&opts.stream).arg(&opts.group);
    for e in &entries {
        pipe.arg(&e.id);
    }
    pipe.ignore();
    let () = pipe
        .query_async(conn)
        .await
        .map_err(|e| ctx.publisher.error(e))?;
    let rejected = dead.len() as u64;
    summary.rejected += rejected;
    summary.deleted += deleted;
    metrics::counter!(Metric::EventsRejectedTotal.name(), "source" => "stream").increment(rejected);
    if deleted > 0 {
        tracing::info!(
            entries = deleted,
            "pending entries were deleted from the stream; acknowledged"
        );
    }
    Ok(entries.len())
}

/// Stores `events` in Stream order; returns the position and reason of each one PostgreSQL
/// refused. A refused batch is split in halves until each refused event is alone (an event
/// that fails validation is taken out at once), so `k` bad events among `n` cost about
/// `k · log2 n` extra statements. Only an error that retrying may cure is returned.
async fn store(
    ctx: &EventsContext,
    events: &[NewEvent],
    summary: &mut IngestSummary,
) -> Result<Vec<(usize, String)>, EventsError> {
    let mut refused = Vec::new();
    // Ranges still to store, the next one last.
    let mut todo = Vec::new();
    todo.push(0..events.len());
    while let Some(range) = todo.pop() {
        if range.is_empty() {
            continue;
        }
        match ctx.log.save_batch(&events[range.clone()]).await {
            Ok(saved) => {
                let duplicates = saved.iter().filter(|s| s.duplicate).count() as u64;
                let stored = saved.len() as u64 - duplicates;
                summary.stored += stored;
                summary.duplicates += duplicates;
                metrics::counter!(Metric::EventsSavedTotal.name(), "source" => "stream")
                    .increment(stored);
            }
            Err(EventLogError::Invalid { index, source }) => {
                let at = range.start + index;
                refused.push((at, format!("{}: {}", source.field, source.message)));
                todo.push(at + 1..range.end);
                todo.push(range.start..at);
            }
            Err(e @ EventLogError::Refused { .. }) if range.len() == 1 => {
                refused.push((range.start, e.to_string()));
            }
            Err(EventLogError::Refused { message, .. }) => {
                tracing::debug!(events = range.len(), %message, "PostgreSQL refused a batch; splitting it");
                let mid = range.start + range.len() / 2;
                todo.push(mid..range.end);
                todo.push(range.start..mid);
            }
            Err(e) => return Err(e.into()),
        }
    }
    refused.sort_unstable_by_key(|(i, _)| *i);
    Ok(refused)
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
    fn replies_keep_raw_fields_and_deleted_entries() {
        let bulk = |b: &[u8]| Value::BulkString(b.to_vec());
        let reply = Value::Array(vec![
            bulk(b"0-0"),
            Value::Array(vec![
                Value::Array(vec![
                    bulk(b"1-0"),
                    Value::Array(vec![bulk(b"\xffname"), bulk(b"v")]),
                ]),
                Value::Array(vec![bulk(b"2-0"), Value::Nil]),
                Value::Nil,
            ]),
            Value::Array(vec![bulk(b"3-0")]),
        ]);
        let c = reply_claimed(reply).unwrap();
        assert_eq!((c.next.as_str(), c.nil), ("0-0", 1));
        assert_eq!(c.deleted, vec!["3-0".to_string()]);
        assert_eq!(
            c.entries[0].fields,
            vec![(b"\xffname".to_vec(), b"v".to_vec())]
        );
        assert!(
            c.entries[0]
                .event("s", &[])
                .unwrap_err()
                .contains("not UTF-8")
        );
        assert!(c.entries[1].fields.is_empty(), "deleted while pending");
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
