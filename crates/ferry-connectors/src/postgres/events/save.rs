//! Storing events ([`EventLog::save`], [`EventLog::save_batch`]): validated, inserted in one
//! statement (the triggers queue them in the outbox), idempotency keys answered with the id
//! already stored, and the relays woken once the insert has committed.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use ferry_core::jobs::events::NewEvent;
use serde::Serialize;
use tokio_postgres::types::ToSql;

use super::sql::INSERT_BATCH;
use super::{EventLog, EventLogError, EventLogResult};

/// One saved event: its id, and whether its idempotency key was already stored (then the id is
/// the earlier event's and nothing new was written).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Saved {
    /// The event's id.
    pub id: i64,
    /// The key was stored before: this is the first event's id.
    pub duplicate: bool,
}

/// Wakes the relays once a save has committed: `NOTIFY` in its own transaction, which writes
/// nothing and so holds the notification lock only for an instant. Sent in the background;
/// a lost notification only delays publishing until the relays' next rescan.
fn notify_after(client: deadpool_postgres::Object) {
    tokio::spawn(async move {
        if let Err(e) = client.batch_execute("NOTIFY ferry_events").await {
            tracing::debug!(error = %e, "NOTIFY after save failed; the relays' rescan covers it");
        }
    });
}

/// Rows inserted by one batch: `(id, idempotency key)`, in id order.
type Inserted = Vec<(i64, Option<String>)>;

/// Each idempotency key's id, and whether this call stored it (true until its first use).
type IdsByKey = HashMap<String, (i64, bool)>;

impl EventLog {
    /// Stores one event (queued for publishing in the same transaction); returns its id.
    pub async fn save(&self, event: &NewEvent) -> EventLogResult<Saved> {
        let saved = self.save_batch(std::slice::from_ref(event)).await?;
        Ok(saved[0])
    }

    /// Stores events in one transaction, in order; returns their ids in the same order. Every
    /// event is validated first: one invalid event stores nothing.
    pub async fn save_batch(&self, events: &[NewEvent]) -> EventLogResult<Vec<Saved>> {
        self.save_batch_checked(events, &[]).await
    }

    /// [`EventLog::save_batch`] that also refuses types not in `allowed_types` (empty: any).
    pub async fn save_batch_checked(
        &self,
        events: &[NewEvent],
        allowed_types: &[String],
    ) -> EventLogResult<Vec<Saved>> {
        for (index, e) in events.iter().enumerate() {
            e.validate(allowed_types)
                .map_err(|source| EventLogError::Invalid { index, source })?;
        }
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<Option<&str>> = events
            .iter()
            .map(|e| e.idempotency_key.as_deref())
            .collect();
        // One statement is one transaction: one round trip, and no lock that a concurrent
        // producer could wait on (see the module's notes on the in-flight locks).
        let client = self.client().await?;
        let inserted = self.insert_batch(&client, events, &keys).await?;
        let by_key = self.ids_by_key(&client, &inserted, &keys).await?;
        if !inserted.is_empty() {
            notify_after(client);
        }
        in_input_order(&keys, &inserted, by_key)
    }

    /// Inserts `events` in one statement (rows whose idempotency key is already stored are
    /// skipped); returns the rows inserted, in input order.
    async fn insert_batch(
        &self,
        client: &deadpool_postgres::Object,
        events: &[NewEvent],
        keys: &[Option<&str>],
    ) -> EventLogResult<Inserted> {
        let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
        let cameras: Vec<&str> = events.iter().map(|e| e.camera_id.as_str()).collect();
        let timestamps: Vec<Option<DateTime<Utc>>> = events.iter().map(|e| e.timestamp).collect();
        let frames: Vec<Option<i64>> = events.iter().map(|e| e.frame_number).collect();
        let snapshots: Vec<Option<&str>> =
            events.iter().map(|e| e.snapshot_path.as_deref()).collect();
        let data: Vec<&serde_json::Value> = events.iter().map(|e| &e.event_data).collect();

        let params: [&(dyn ToSql + Sync); 7] = [
            &types,
            &cameras,
            &timestamps,
            &frames,
            &snapshots,
            &data,
            &keys,
        ];
        let err = |e| self.error(e);
        let insert = client.prepare_cached(INSERT_BATCH).await.map_err(err)?;
        let rows = client.query(&insert, &params).await.map_err(err)?;
        let mut inserted: Inserted = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        // Rows are inserted in input order and get increasing ids, so sorting by id restores
        // the input order of what was inserted.
        inserted.sort_unstable_by_key(|(id, _)| *id);
        Ok(inserted)
    }

    /// The id of every idempotency key in `keys`: those `inserted` now, and those stored
    /// before (read back).
    async fn ids_by_key(
        &self,
        client: &deadpool_postgres::Object,
        inserted: &Inserted,
        keys: &[Option<&str>],
    ) -> EventLogResult<IdsByKey> {
        let mut by_key: IdsByKey = inserted
            .iter()
            .filter_map(|(id, k)| k.clone().map(|k| (k, (*id, true))))
            .collect();
        let known: Vec<&str> = keys
            .iter()
            .flatten()
            .copied()
            .filter(|k| !by_key.contains_key(*k))
            .collect();
        if !known.is_empty() {
            let rows = client
                .query(
                    "SELECT source_key, id FROM events WHERE source_key = ANY($1)",
                    &[&known],
                )
                .await
                .map_err(|e| self.error(e))?;
            by_key.extend(rows.iter().map(|r| (r.get(0), (r.get(1), false))));
        }
        Ok(by_key)
    }
}

/// What was saved for each event, in input order: events without a key take the ids of the
/// rows inserted without one, in order; an event with a key takes its key's id, a duplicate
/// unless it is the key's first use in a row this call inserted.
fn in_input_order(
    keys: &[Option<&str>],
    inserted: &Inserted,
    mut by_key: IdsByKey,
) -> EventLogResult<Vec<Saved>> {
    let mut fresh = inserted
        .iter()
        .filter(|(_, k)| k.is_none())
        .map(|(id, _)| *id);
    let mut out = Vec::with_capacity(keys.len());
    for key in keys {
        let saved = match key {
            None => Saved {
                id: fresh.next().ok_or_else(|| {
                    EventLogError::Backend("fewer rows inserted than events sent".into())
                })?,
                duplicate: false,
            },
            Some(k) => {
                let (id, new) = by_key.get_mut(*k).ok_or_else(|| {
                    EventLogError::Backend(format!("event with key {k} not found"))
                })?;
                let saved = Saved {
                    id: *id,
                    duplicate: !*new,
                };
                *new = false;
                saved
            }
        };
        out.push(saved);
    }
    Ok(out)
}
