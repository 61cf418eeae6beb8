//! `ferry events ingest`: for producers still writing a Redis Stream (the old path). A
//! [`StreamConsumer`] reads with `XREADGROUP`, saves through `EventStore`, and `XACK`s only
//! after the commit; entries another consumer read and never acknowledged are taken over with
//! `XAUTOCLAIM` once idle for `claim_idle`.
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

use ferry_connectors::postgres::events::EventLogError;
use ferry_core::jobs::events::NewEvent;
use redis::Value;
use redis::streams::StreamId;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::{EventsContext, EventsError};
use crate::jobs::events::metrics::EventsMetric;
use crate::streams::{
    BatchHandler, CommitError, ConsumerNames, ConsumerOptions, Counter, StreamConsumer, StreamEntry,
};

/// How the ingest's consumer names itself: its log lines, failpoint and counters.
const NAMES: ConsumerNames = ConsumerNames {
    job: "ingest",
    item: "an event",
    after_commit_failpoint: "events-ingest-after-commit",
    retries: Counter {
        metric: EventsMetric::RetriesTotal.name(),
        labels: &[("stage", "ingest")],
    },
    dead_letters: Counter {
        metric: EventsMetric::RejectedTotal.name(),
        labels: &[("source", "stream")],
    },
};

/// Options of one ingest run: the shared consumer's, named as the ingest.
pub type IngestOptions = ConsumerOptions;

/// The defaults of an ingest of `stream` by `group`: this host's consumer name
/// (`ferry-HOSTNAME`), the whole Stream, 500 entries a read, take-over after 60 s, dead letters
/// in `{stream}:dead`.
pub fn ingest_options(stream: &str, group: &str) -> IngestOptions {
    let consumer = format!("ferry-{}", crate::runtime::hostname());
    ConsumerOptions::new(stream, group, &consumer, NAMES)
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

/// The event of a Stream entry as read (field names and values as bytes), as
/// [`entry_to_event`] reads it; a field name that is not UTF-8 makes it a dead letter.
fn stream_entry_event(
    stream: &str,
    entry: &StreamEntry,
    allowed_types: &[String],
) -> Result<NewEvent, String> {
    let mut map = HashMap::with_capacity(entry.fields.len());
    for (name, value) in &entry.fields {
        let name = std::str::from_utf8(name).map_err(|_| {
            format!(
                "field name {:?} is not UTF-8",
                String::from_utf8_lossy(name)
            )
        })?;
        map.insert(name.to_string(), Value::BulkString(value.clone()));
    }
    let entry = StreamId {
        id: entry.id.clone(),
        map,
        ..StreamId::default()
    };
    entry_to_event(stream, &entry, allowed_types)
}

/// The events job's side of the consumer: entries become events, batches are stored in the
/// event log.
struct EventStore<'a> {
    ctx: &'a EventsContext,
    stream: &'a str,
    /// Events stored.
    stored: u64,
    /// Events already stored before (a redelivery after a crash).
    duplicates: u64,
}

impl BatchHandler for EventStore<'_> {
    type Item = NewEvent;
    type Error = EventsError;

    fn decode(&self, entry: &StreamEntry) -> Result<NewEvent, String> {
        stream_entry_event(self.stream, entry, &self.ctx.options.allowed_types)
    }

    /// Stores `events` in one transaction. An event that fails validation is named (taken out
    /// at once); a batch PostgreSQL refuses is refused whole (split by the consumer); only an
    /// error that retrying may cure fails the batch.
    async fn commit(&mut self, events: &[NewEvent]) -> Result<(), CommitError<EventsError>> {
        match self.ctx.log.save_batch(events).await {
            Ok(saved) => {
                let duplicates = saved.iter().filter(|s| s.duplicate).count() as u64;
                let stored = saved.len() as u64 - duplicates;
                self.stored += stored;
                self.duplicates += duplicates;
                metrics::counter!(EventsMetric::SavedTotal.name(), "source" => "stream")
                    .increment(stored);
                Ok(())
            }
            Err(EventLogError::Invalid { index, source }) => Err(CommitError::RefusedItem {
                index,
                reason: format!("{}: {}", source.field, source.message),
            }),
            Err(e @ EventLogError::Refused { .. }) => {
                // The consumer splits a refused batch of more than one event.
                if let EventLogError::Refused { message, .. } = &e
                    && events.len() > 1
                {
                    tracing::debug!(events = events.len(), %message, "PostgreSQL refused a batch; splitting it");
                }
                Err(CommitError::Refused(e.to_string()))
            }
            Err(e) => Err(CommitError::Failed(e.into())),
        }
    }

    fn redis_error(&self, error: redis::RedisError) -> EventsError {
        self.ctx.publisher.error(error)
    }
}

/// Runs the ingest until `stop` (or, with `once`, until the Stream has nothing left).
pub async fn ingest(
    ctx: &EventsContext,
    opts: &IngestOptions,
    stop: CancellationToken,
) -> Result<IngestSummary, EventsError> {
    let consumer = StreamConsumer::new(ctx.publisher.client().clone(), opts.clone());
    let mut store = EventStore {
        ctx,
        stream: &opts.stream,
        stored: 0,
        duplicates: 0,
    };
    let stats = consumer.run(&mut store, stop).await?;
    Ok(IngestSummary {
        read: stats.read,
        stored: store.stored,
        duplicates: store.duplicates,
        rejected: stats.dead_lettered,
        reclaimed: stats.reclaimed,
        deleted: stats.deleted,
        retries: stats.retries,
    })
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
    fn a_field_name_that_is_not_utf8_is_not_an_event() {
        let e = StreamEntry {
            id: "1-0".into(),
            fields: vec![(b"\xffname".to_vec(), b"v".to_vec())],
        };
        assert!(
            stream_entry_event("s", &e, &[])
                .unwrap_err()
                .contains("not UTF-8")
        );
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
