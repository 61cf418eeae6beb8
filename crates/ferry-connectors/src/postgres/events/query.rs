//! Reading the log: keyset-paginated queries ([`EventLog::query`]) and the counts of the log,
//! its outbox and the transactions in flight ([`EventLog::stats`]).

use chrono::{DateTime, Utc};
use ferry_core::jobs::events::StoredEvent;
use serde::Serialize;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::sql::{COLUMNS, in_flight_transactions_sql};
use super::{EventLog, EventLogResult};

/// Filters of [`EventLog::query`]: newest first, keyset-paginated by id.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    /// Only this camera.
    pub camera_id: Option<String>,
    /// Only this type.
    pub event_type: Option<String>,
    /// `timestamp >= since`.
    pub since: Option<DateTime<Utc>>,
    /// `timestamp < until`.
    pub until: Option<DateTime<Utc>>,
    /// Only ids below this (the previous page's `next_cursor`).
    pub before_id: Option<i64>,
    /// Page size.
    pub limit: usize,
}

/// A page of [`EventLog::query`].
#[derive(Debug, Clone, Serialize)]
pub struct EventPage {
    /// The events, newest first.
    pub events: Vec<StoredEvent>,
    /// Pass as `before_id` for the next page; `None` on the last page.
    pub next_cursor: Option<i64>,
}

/// Counts of the log and its outbox.
#[derive(Debug, Clone, Serialize)]
pub struct EventStats {
    /// Events stored.
    pub events: i64,
    /// Highest id.
    pub last_id: Option<i64>,
    /// Events by type.
    pub by_type: Vec<(String, i64)>,
    /// Events by camera (the 100 busiest).
    pub by_camera: Vec<(String, i64)>,
    /// Events stored but not yet published.
    pub unpublished: i64,
    /// Age of the oldest unpublished event, milliseconds.
    pub oldest_unpublished_ms: Option<i64>,
    /// Unpublished events held back by a transaction in flight that may still commit a lower
    /// id (they are published once it ends).
    pub held_back: i64,
    /// Transactions that inserted events and have not ended yet.
    pub in_flight_transactions: i64,
    /// How long the oldest of them has been open, milliseconds (`None` when there is none, or
    /// when this role may not see its start).
    pub oldest_in_flight_ms: Option<i64>,
}

/// The event of a row of [`COLUMNS`].
fn event_from_row(row: &Row) -> StoredEvent {
    StoredEvent {
        id: row.get(0),
        event_type: row.get(1),
        camera_id: row.get(2),
        timestamp: row.get(3),
        frame_number: row.get(4),
        snapshot_path: row.get(5),
        event_data: row.get(6),
        created_at: row.get(7),
    }
}

impl EventLog {
    /// Events matching `q`, newest first.
    pub async fn query(&self, q: &EventQuery) -> EventLogResult<EventPage> {
        let mut sql = format!("SELECT {COLUMNS} FROM events WHERE true");
        let mut params: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
        let mut add = |sql: &mut String, clause: &str, p: Box<dyn ToSql + Sync + Send>| {
            params.push(p);
            sql.push_str(&clause.replace('?', &format!("${}", params.len())));
        };
        if let Some(c) = &q.camera_id {
            add(&mut sql, " AND camera_id = ?", Box::new(c.clone()));
        }
        if let Some(t) = &q.event_type {
            add(&mut sql, " AND event_type = ?", Box::new(t.clone()));
        }
        if let Some(s) = q.since {
            add(&mut sql, r#" AND "timestamp" >= ?"#, Box::new(s));
        }
        if let Some(u) = q.until {
            add(&mut sql, r#" AND "timestamp" < ?"#, Box::new(u));
        }
        if let Some(b) = q.before_id {
            add(&mut sql, " AND id < ?", Box::new(b));
        }
        let limit = q.limit.max(1) as i64;
        add(&mut sql, " ORDER BY id DESC LIMIT ?", Box::new(limit));
        let client = self.client().await?;
        let refs: Vec<&(dyn ToSql + Sync)> = params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect();
        let rows = client.query(&sql, &refs).await.map_err(|e| self.error(e))?;
        let events: Vec<StoredEvent> = rows.iter().map(event_from_row).collect();
        let next_cursor = (events.len() as i64 == limit)
            .then(|| events.last().map(|e| e.id))
            .flatten();
        Ok(EventPage {
            events,
            next_cursor,
        })
    }

    /// Counts by type and camera, and the unpublished backlog.
    /// The outbox alone, cheap enough to sample often: events stored but not yet published,
    /// and the age of the oldest of them in milliseconds.
    pub async fn backlog(&self) -> EventLogResult<(i64, Option<i64>)> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT count(*), (extract(epoch FROM now() - min(enqueued_at)) * 1000)::bigint
                 FROM events_pending",
                &[],
            )
            .await
            .map_err(|e| self.error(e))?;
        Ok((row.get(0), row.get(1)))
    }

    pub async fn stats(&self) -> EventLogResult<EventStats> {
        let client = self.client().await?;
        let err = |e| self.error(e);
        let total = client
            .query_one("SELECT count(*), max(id) FROM events", &[])
            .await
            .map_err(err)?;
        let by_type = client
            .query(
                "SELECT event_type, count(*) FROM events GROUP BY 1 ORDER BY 2 DESC, 1",
                &[],
            )
            .await
            .map_err(err)?;
        let by_camera = client
            .query(
                "SELECT camera_id, count(*) FROM events GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 100",
                &[],
            )
            .await
            .map_err(err)?;
        let outbox = client
            .query_one(
                "SELECT count(*), (extract(epoch FROM now() - min(o.enqueued_at)) * 1000)::bigint,
                        count(*) FILTER (WHERE o.event_id >= h.horizon)
                 FROM events_pending AS o, (SELECT ferry_events_horizon() AS horizon) AS h",
                &[],
            )
            .await
            .map_err(err)?;
        let in_flight = client
            .query_one(&in_flight_transactions_sql(), &[])
            .await
            .map_err(err)?;
        let pairs = |rows: Vec<Row>| rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        Ok(EventStats {
            events: total.get(0),
            last_id: total.get(1),
            by_type: pairs(by_type),
            by_camera: pairs(by_camera),
            unpublished: outbox.get(0),
            oldest_unpublished_ms: outbox.get(1),
            held_back: outbox.get(2),
            in_flight_transactions: in_flight.get(0),
            oldest_in_flight_ms: in_flight.get(1),
        })
    }
}
