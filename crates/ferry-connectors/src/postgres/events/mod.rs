//! The events job's log in PostgreSQL: the `events` table, its outbox and the triggers that
//! keep both right for every producer, Ferry or plain SQL.
//!
//! - A `BEFORE INSERT` row trigger hands out the row's id from `events_id_seq`. The first time
//!   in a transaction it first announces the transaction as *in flight*: it reads the next id
//!   the sequence will hand out and takes a shared transaction-level advisory lock whose key is
//!   that id. Shared locks never wait for each other, so producers (Ferry's or any program's,
//!   with transactions over as many cameras as they like) never wait on Ferry and cannot
//!   deadlock on it.
//! - An `AFTER INSERT` statement trigger copies the new rows into `events_pending` (the outbox;
//!   `events_outbox` before version 2, renamed so that older relays stop) in the same
//!   transaction and sends `NOTIFY ferry_events`: whatever commits is queued for publishing,
//!   whoever inserted it.
//! - The relay publishes only ids below the *horizon* ([`EventLog::publish_pending`]): the
//!   lowest id that a transaction still in flight may commit (the lowest key of those locks) or
//!   that the sequence has yet to hand out. Every id below it is either committed and visible
//!   or never will be, so publishing in id order never publishes a camera's event 11 and later
//!   finds its event 10, and nothing rolled back is ever published.
//! - [`EventLog::publish_pending`] takes a batch of queued events below the horizon of cameras
//!   no other relay is publishing (per-camera advisory locks, tried without waiting), hands it
//!   to the publisher and deletes it from the outbox only once the publisher returned `Ok`, in
//!   the transaction that holds the locks.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use ferry_core::error::{Classify, ErrorClass};
use ferry_core::jobs::events::{InvalidEvent, NewEvent, StoredEvent};
use serde::Serialize;
use tokio::sync::Notify;
use tokio_postgres::types::ToSql;
use tokio_postgres::{AsyncMessage, Row, SimpleQueryMessage};

use super::{MigrateError, db_message};
use crate::schema;

mod sql;
use sql::{COLUMNS, INSERT_BATCH, MIGRATIONS, SCHEMA, claim_sql, in_flight_transactions_sql};
#[cfg(test)]
use sql::{IN_FLIGHT_LOCK, RELAY_LOCK};

/// The channel of `NOTIFY` sent by the outbox trigger.
pub const NOTIFY_CHANNEL: &str = "ferry_events";
/// How long one attempt of [`EventLog::migrate`] waits for a lock.
const MIGRATE_LOCK_TIMEOUT: Duration = Duration::from_millis(500);
/// How long [`EventLog::migrate`] keeps trying.
const MIGRATE_PATIENCE: Duration = Duration::from_secs(120);

/// What went wrong with the event log.
#[derive(Debug, thiserror::Error)]
pub enum EventLogError {
    /// PostgreSQL cannot be reached or the connection broke.
    #[error(
        "PostgreSQL at {url} is unavailable: {message}; is it running (`make test-setup` starts a local one)?"
    )]
    Unavailable {
        /// The server, password redacted.
        url: String,
        /// The cause.
        message: String,
    },
    /// A statement failed.
    #[error("PostgreSQL: {0}")]
    Backend(String),
    /// PostgreSQL refused the data itself (SQLSTATE classes 22 data exception, 23 integrity
    /// constraint violation, 54 program limit exceeded, P0 a PL/pgSQL `RAISE`, e.g. an
    /// application's validation trigger): the same data fails again, so it is
    /// never retried as if the server were unavailable.
    #[error("PostgreSQL refused the data: {message}")]
    Refused {
        /// The SQLSTATE code (`22021`, `23514`, …).
        sqlstate: String,
        /// The server's message (with the code and detail).
        message: String,
    },
    /// The schema is newer than this Ferry, or not Ferry's.
    #[error("{0}")]
    Schema(String),
    /// An event was refused; nothing of its batch was stored.
    #[error("event {index}: {source}")]
    Invalid {
        /// Position in the batch.
        index: usize,
        /// What is wrong.
        source: InvalidEvent,
    },
    /// The URL is not a PostgreSQL URL.
    #[error(
        "invalid PostgreSQL URL {url}: {message} (expected postgres://user[:password]@host:port/db)"
    )]
    Url {
        /// The URL, password redacted.
        url: String,
        /// What is wrong.
        message: String,
    },
}

impl Classify for EventLogError {
    fn class(&self) -> ErrorClass {
        match self {
            EventLogError::Unavailable { .. } | EventLogError::Backend(_) => ErrorClass::External,
            EventLogError::Schema(_)
            | EventLogError::Invalid { .. }
            | EventLogError::Refused { .. }
            | EventLogError::Url { .. } => ErrorClass::User,
        }
    }
}

/// Result of the event log.
pub type EventLogResult<T> = Result<T, EventLogError>;

/// One saved event: its id, and whether its idempotency key was already stored (then the id is
/// the earlier event's and nothing new was written).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Saved {
    /// The event's id.
    pub id: i64,
    /// The key was stored before: this is the first event's id.
    pub duplicate: bool,
}

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

/// A batch handed to the publisher by [`EventLog::publish_pending`].
#[derive(Debug, Clone)]
pub struct OutboxBatch {
    /// The events in id order (so in id order for each camera).
    pub events: Vec<StoredEvent>,
}

/// What one [`EventLog::publish_pending`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Published {
    /// Events published (0: nothing was ready, or every ready camera is being published by
    /// another relay).
    pub events: usize,
    /// Queued events wait for a transaction in flight that may still commit a lower id:
    /// worth asking again soon, since that transaction may end without a notification (a
    /// rollback).
    pub held_back: bool,
}

/// Why [`EventLog::publish_pending`] failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError<E> {
    /// The log failed; nothing was marked published.
    #[error(transparent)]
    Log(#[from] EventLogError),
    /// The publisher failed; nothing was marked published.
    #[error("publishing failed: {0}")]
    Publisher(E),
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

/// A pooled connection inside a transaction opened with a plain `BEGIN`: [`finish`] ends it;
/// dropped unfinished (an error, a cancelled future), the connection is closed instead of
/// going back to the pool, so the server rolls the transaction back and releases its locks.
///
/// [`finish`]: OpenTransaction::finish
struct OpenTransaction {
    client: Option<deadpool_postgres::Object>,
}

impl OpenTransaction {
    fn new(client: deadpool_postgres::Object) -> Self {
        OpenTransaction {
            client: Some(client),
        }
    }

    fn client(&self) -> &deadpool_postgres::Object {
        self.client
            .as_ref()
            .expect("an open transaction has its client")
    }

    /// Runs `sql` (ending with `COMMIT` or `ROLLBACK`) and returns the connection to the pool.
    async fn finish(mut self, sql: &str) -> Result<(), tokio_postgres::Error> {
        let client = self.client.take().expect("finished once");
        match client.batch_execute(sql).await {
            Ok(()) => Ok(()),
            Err(e) => {
                drop(deadpool_postgres::Object::take(client));
                Err(e)
            }
        }
    }
}

impl Drop for OpenTransaction {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            drop(deadpool_postgres::Object::take(client));
        }
    }
}

/// A `LISTEN` connection opened by [`EventLog::listen`]; dropping it closes the connection.
pub struct Listener {
    task: tokio::task::JoinHandle<()>,
    /// Kept so the connection stays open.
    _client: tokio_postgres::Client,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener").finish_non_exhaustive()
    }
}

impl Listener {
    /// Returns when the connection is lost.
    pub async fn lost(self) {
        let Listener { task, _client } = self;
        let _ = task.await;
    }
}

/// The event log: a pool of PostgreSQL connections.
#[derive(Debug, Clone)]
pub struct EventLog {
    pool: Pool,
    config: tokio_postgres::Config,
    /// TLS by the URL's `sslmode` (see [`super::connect_config`]).
    tls: super::PgTls,
    shown: String,
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
    /// A pool of up to `connections` connections to `url` (none is opened yet: see
    /// [`EventLog::open`]).
    pub fn connect(url: &str, connections: usize) -> EventLogResult<Self> {
        let shown = schema::redact_url(url);
        let (mut config, tls) = super::connect_config(url).map_err(|e| EventLogError::Url {
            url: shown.clone(),
            message: e.message,
        })?;
        config.connect_timeout(Duration::from_secs(5));
        config.application_name("ferry");
        // The enqueue trigger leaves notifying to Ferry's connections (see `notify_after`).
        let options = match config.get_options() {
            Some(o) if !o.is_empty() => format!("{o} -c ferry.notify=off"),
            _ => "-c ferry.notify=off".to_string(),
        };
        config.options(&options);
        let manager = Manager::from_config(
            config.clone(),
            tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(connections.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(10)))
            .create_timeout(Some(Duration::from_secs(5)))
            .build()
            .map_err(|e| EventLogError::Backend(e.to_string()))?;
        Ok(EventLog {
            pool,
            config,
            tls,
            shown,
        })
    }

    /// Connects and creates or upgrades the schema.
    pub async fn open(url: &str, connections: usize) -> EventLogResult<Self> {
        let log = Self::connect(url, connections)?;
        log.migrate().await?;
        Ok(log)
    }

    /// The server, password redacted.
    pub fn url(&self) -> &str {
        &self.shown
    }

    fn unavailable(&self, message: impl std::fmt::Display) -> EventLogError {
        EventLogError::Unavailable {
            url: self.shown.clone(),
            message: message.to_string(),
        }
    }

    fn error(&self, e: tokio_postgres::Error) -> EventLogError {
        if let Some(db) = e.as_db_error() {
            let sqlstate = db.code().code();
            // Data exceptions, integrity, program limits, and PL/pgSQL `RAISE` (an
            // application's own validation trigger refusing a row).
            if ["22", "23", "54", "P0"]
                .iter()
                .any(|class| sqlstate.starts_with(class))
            {
                return EventLogError::Refused {
                    sqlstate: sqlstate.to_string(),
                    message: db_message(&e),
                };
            }
            EventLogError::Backend(db_message(&e))
        } else {
            self.unavailable(e)
        }
    }

    async fn client(&self) -> EventLogResult<deadpool_postgres::Object> {
        self.pool.get().await.map_err(|e| match e {
            deadpool_postgres::PoolError::Backend(e) => self.error(e),
            other => self.unavailable(other),
        })
    }

    /// Creates or upgrades the schema (under an advisory lock; a newer schema is refused).
    ///
    /// The upgrade to version 2 renames the outbox, which waits for every transaction that
    /// wrote to it; an application transaction that writes again meanwhile would queue behind
    /// that wait and deadlock with it. So each attempt gives up after [`MIGRATE_LOCK_TIMEOUT`]
    /// (shorter than PostgreSQL's default `deadlock_timeout`, so the application never is the
    /// one aborted) and is retried for up to [`MIGRATE_PATIENCE`].
    pub async fn migrate(&self) -> EventLogResult<()> {
        let started = std::time::Instant::now();
        loop {
            match self.migrate_once().await {
                Err(EventLogError::Backend(m))
                    if m.starts_with("55P03") && started.elapsed() < MIGRATE_PATIENCE =>
                {
                    tracing::info!(
                        "the events schema upgrade waits for transactions writing events to end"
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                other => return other,
            }
        }
    }

    async fn migrate_once(&self) -> EventLogResult<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.error(e))?;
        tx.batch_execute(&format!(
            "SET LOCAL lock_timeout = {}",
            MIGRATE_LOCK_TIMEOUT.as_millis()
        ))
        .await
        .map_err(|e| self.error(e))?;
        match SCHEMA.apply(&tx).await {
            Ok(()) => {}
            Err(MigrateError::Db(e)) => return Err(self.error(e)),
            Err(MigrateError::UnknownVersion(v)) => {
                return Err(EventLogError::Schema(format!(
                    "the events schema of {} is at version {v} but this Ferry knows versions up to {}; upgrade Ferry (an older one must not write to it)",
                    self.shown,
                    MIGRATIONS.len()
                )));
            }
            Err(MigrateError::ForeignTable(t)) => {
                return Err(EventLogError::Schema(format!(
                    "{} already has an `{t}` table that Ferry did not create; use another database or schema (options=-csearch_path=… in the URL)",
                    self.shown
                )));
            }
        }
        tx.commit().await.map_err(|e| self.error(e))
    }

    /// Whether PostgreSQL answers.
    pub async fn healthcheck(&self) -> EventLogResult<()> {
        let client = self.client().await?;
        client
            .simple_query("SELECT 1")
            .await
            .map_err(|e| self.error(e))?;
        Ok(())
    }

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
        let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
        let cameras: Vec<&str> = events.iter().map(|e| e.camera_id.as_str()).collect();
        let timestamps: Vec<Option<DateTime<Utc>>> = events.iter().map(|e| e.timestamp).collect();
        let frames: Vec<Option<i64>> = events.iter().map(|e| e.frame_number).collect();
        let snapshots: Vec<Option<&str>> =
            events.iter().map(|e| e.snapshot_path.as_deref()).collect();
        let data: Vec<&serde_json::Value> = events.iter().map(|e| &e.event_data).collect();
        let keys: Vec<Option<&str>> = events
            .iter()
            .map(|e| e.idempotency_key.as_deref())
            .collect();

        let params: [&(dyn ToSql + Sync); 7] = [
            &types,
            &cameras,
            &timestamps,
            &frames,
            &snapshots,
            &data,
            &keys,
        ];
        // One statement is one transaction: one round trip, and no lock that a concurrent
        // producer could wait on (see the module's notes on the in-flight locks).
        let client = self.client().await?;
        let err = |e| self.error(e);
        let insert = client.prepare_cached(INSERT_BATCH).await.map_err(err)?;
        let rows = client.query(&insert, &params).await.map_err(err)?;
        let mut inserted: Vec<(i64, Option<String>)> =
            rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        // Rows are inserted in input order and get increasing ids, so sorting by id restores
        // the input order of what was inserted.
        inserted.sort_unstable_by_key(|(id, _)| *id);
        // Each key's id, and whether this call stored it (true until its first use below).
        let mut by_key: HashMap<String, (i64, bool)> = inserted
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
        if !inserted.is_empty() {
            notify_after(client);
        }
        let mut fresh = inserted
            .iter()
            .filter(|(_, k)| k.is_none())
            .map(|(id, _)| *id);
        let mut out = Vec::with_capacity(events.len());
        for key in &keys {
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

    /// Publishes up to `limit` queued events: takes those below the horizon (in id order,
    /// skipping cameras another relay is publishing), awaits `publish`, and marks them
    /// published only if it returned `Ok`, in the same transaction.
    pub async fn publish_pending<F, Fut, E>(
        &self,
        limit: usize,
        publish: F,
    ) -> Result<Published, PublishError<E>>
    where
        F: FnOnce(OutboxBatch) -> Fut,
        Fut: Future<Output = Result<(), E>>,
    {
        let limit = limit.max(1) as i64;
        let err = |e| self.error(e);
        // One round trip: open the transaction, compute the horizon, take the cameras of the
        // oldest queued events below it and lock those no other relay holds (never waiting for
        // one), read their events (see `claim_sql`).
        let tx = OpenTransaction::new(self.client().await?);
        let messages = tx
            .client()
            .simple_query(&claim_sql(limit))
            .await
            .map_err(err)?;
        let mut ids: Vec<String> = Vec::new();
        let mut events: Vec<StoredEvent> = Vec::new();
        let mut held_back = false;
        for m in &messages {
            let SimpleQueryMessage::Row(row) = m else {
                continue;
            };
            if row.len() == 3 && row.get(0) == Some("held") {
                held_back = row.get(1) != Some("0");
                continue;
            }
            if row.len() != 2 {
                continue; // the horizon's and the lock statement's rows
            }
            ids.push(row.get(0).unwrap_or_default().to_string());
            // An outbox row whose event was deleted meanwhile is dropped unpublished.
            if let Some(json) = row.get(1) {
                let event = serde_json::from_str(json).map_err(|e| {
                    EventLogError::Backend(format!("an outbox event did not decode: {e}"))
                })?;
                events.push(event);
            }
        }
        if ids.is_empty() {
            tx.finish("COMMIT").await.map_err(err)?;
            return Ok(Published {
                events: 0,
                held_back,
            });
        }
        let n = events.len();
        if !events.is_empty()
            && let Err(e) = publish(OutboxBatch { events }).await
        {
            let _ = tx.finish("ROLLBACK").await;
            return Err(PublishError::Publisher(e));
        }
        // One round trip: mark them published and commit.
        tx.finish(&format!(
            "DELETE FROM events_pending WHERE event_id = ANY('{{{}}}'::bigint[]); COMMIT",
            ids.join(",")
        ))
        .await
        .map_err(err)?;
        Ok(Published {
            events: n,
            held_back,
        })
    }

    /// Opens a dedicated connection that `LISTEN`s for new events and calls `notify_one()` on
    /// each of `wake` per notification, until the connection is lost ([`Listener::lost`];
    /// listen again then: the relay's periodic rescan covers the gap).
    pub async fn listen(&self, wake: Vec<Arc<Notify>>) -> EventLogResult<Listener> {
        let (client, mut connection) = self
            .config
            .connect(self.tls.clone())
            .await
            .map_err(|e| self.error(e))?;
        let task = tokio::spawn(async move {
            let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(message) = futures::StreamExt::next(&mut messages).await {
                match message {
                    Ok(AsyncMessage::Notification(_)) => wake.iter().for_each(|w| w.notify_one()),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "PostgreSQL LISTEN connection lost");
                        break;
                    }
                }
            }
        });
        client
            .batch_execute(&format!("LISTEN {NOTIFY_CHANNEL}"))
            .await
            .map_err(|e| self.error(e))?;
        Ok(Listener {
            task,
            _client: client,
        })
    }

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

#[cfg(test)]
mod tests;
