//! The SQLite event store (`sqlite://PATH`): the embedded default of the tier job.
//!
//! rusqlite is synchronous, so every call runs on a blocking thread. WAL journaling lets
//! several processes (for example two `ferry serve` replicas) share the file; `synchronous=FULL`
//! makes every commit durable before it returns, since the tier job deletes the captions from
//! Redis right after (WAL's `NORMAL` can lose the last commits on power failure).

use std::sync::{Arc, Mutex};

use ferry_core::jobs::tier::store::{EventStoreResult, Fence};
use ferry_core::jobs::tier::{
    CameraState, EventStore, EventStoreError, RunRecord, StoreCounts, TierEvent,
};
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};

use crate::schema::{self, EventRow};

/// Schema migrations, applied in order; the schema version is their count.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE tier_events (
    id TEXT PRIMARY KEY,
    camera_id TEXT NOT NULL,
    caption TEXT NOT NULL,
    start_ms INTEGER NOT NULL,
    end_ms INTEGER NOT NULL,
    start_at TEXT NOT NULL,
    end_at TEXT NOT NULL,
    frame_count INTEGER NOT NULL,
    captions TEXT NOT NULL,
    centroid BLOB NOT NULL,
    previous_event_id TEXT,
    run_id TEXT NOT NULL,
    status TEXT NOT NULL,
    first_entry TEXT NOT NULL,
    last_entry TEXT NOT NULL,
    updated_ms INTEGER NOT NULL
);
CREATE INDEX tier_events_camera_start ON tier_events (camera_id, start_ms);
CREATE INDEX tier_events_start ON tier_events (start_ms);
CREATE TABLE tier_cameras (
    camera_id TEXT PRIMARY KEY,
    watermark TEXT,
    open_state TEXT,
    updated_ms INTEGER NOT NULL
);
CREATE TABLE tier_runs (
    run_id TEXT PRIMARY KEY,
    record TEXT NOT NULL,
    trigger_name TEXT NOT NULL,
    started_ms INTEGER NOT NULL,
    finished_ms INTEGER NOT NULL
);
CREATE INDEX tier_runs_started ON tier_runs (started_ms);
"#,
    r#"
CREATE TABLE IF NOT EXISTS ferry_fence (
    scope TEXT PRIMARY KEY,
    token INTEGER NOT NULL
);
"#,
];

const BACKEND: &str = "sqlite";

/// Events in an SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteEventStore {
    conn: Arc<Mutex<Connection>>,
}

fn backend(e: impl std::fmt::Display) -> EventStoreError {
    EventStoreError::Backend {
        store: BACKEND,
        message: e.to_string(),
    }
}

impl SqliteEventStore {
    /// Opens (creating) the database at `sqlite://PATH` (relative), `sqlite:///ABS/PATH`, or
    /// `sqlite::memory:`.
    pub async fn open(url: &str) -> EventStoreResult<Self> {
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .filter(|p| !p.is_empty())
            .ok_or_else(|| {
                EventStoreError::Config(format!(
                    "`{url}` is not an SQLite URL; use sqlite://PATH or sqlite:///ABSOLUTE/PATH"
                ))
            })?
            .to_string();
        let conn = tokio::task::spawn_blocking(move || -> EventStoreResult<Connection> {
            let conn = if path == ":memory:" {
                Connection::open_in_memory()
            } else {
                Connection::open(&path)
            }
            .map_err(|e| backend(format!("cannot open {path}: {e}")))?;
            conn.busy_timeout(std::time::Duration::from_secs(10))
                .map_err(backend)?;
            conn.pragma_update(None, "journal_mode", "WAL")
                .map_err(backend)?;
            conn.pragma_update(None, "synchronous", "FULL")
                .map_err(backend)?;
            Ok(conn)
        })
        .await
        .map_err(backend)??;
        Ok(SqliteEventStore {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> EventStoreResult<T> + Send + 'static,
    ) -> EventStoreResult<T> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(backend)?
    }
}

fn event_from_row(row: &Row<'_>) -> rusqlite::Result<EventRow> {
    Ok(EventRow {
        id: row.get(0)?,
        camera_id: row.get(1)?,
        caption: row.get(2)?,
        start_ms: row.get(3)?,
        end_ms: row.get(4)?,
        frame_count: row.get(5)?,
        captions: row.get(6)?,
        centroid: row.get(7)?,
        previous_event_id: row.get(8)?,
        run_id: row.get(9)?,
        status: row.get(10)?,
        first_entry: row.get(11)?,
        last_entry: row.get(12)?,
    })
}

const EVENT_COLUMNS: &str = "id, camera_id, caption, start_ms, end_ms, frame_count, captions, centroid, previous_event_id, run_id, status, first_entry, last_entry";

/// In `tx` (begun IMMEDIATE, so the token read stays current): refuses `fence` when a higher
/// token is recorded for its scope, else records it.
fn record_fence(tx: &rusqlite::Transaction<'_>, fence: &Fence, token: i64) -> EventStoreResult<()> {
    let current: Option<i64> = tx
        .query_row(
            "SELECT token FROM ferry_fence WHERE scope = ?1",
            [&fence.scope],
            |r| r.get(0),
        )
        .optional()
        .map_err(backend)?;
    if let Some(current) = current.filter(|c| *c > token) {
        return Err(EventStoreError::Fenced {
            store: BACKEND,
            scope: fence.scope.clone(),
            token: fence.token,
            current: current as u64,
        });
    }
    tx.execute(
        "INSERT INTO ferry_fence (scope, token) VALUES (?1, ?2)
         ON CONFLICT (scope) DO UPDATE SET token = excluded.token
         WHERE excluded.token >= ferry_fence.token",
        params![fence.scope, token],
    )
    .map_err(backend)?;
    Ok(())
}

impl EventStore for SqliteEventStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn migrate(&self) -> EventStoreResult<()> {
        self.with(|conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            tx.execute_batch(
                "CREATE TABLE IF NOT EXISTS ferry_schema (component TEXT PRIMARY KEY, version INTEGER NOT NULL)",
            )
            .map_err(backend)?;
            let version: i64 = tx
                .query_row(
                    "SELECT version FROM ferry_schema WHERE component = 'tier'",
                    [],
                    |r| r.get(0),
                )
                .optional()
                .map_err(backend)?
                .unwrap_or(0);
            let pending = schema::pending(BACKEND, version, MIGRATIONS.len())?;
            for sql in &MIGRATIONS[pending] {
                tx.execute_batch(sql).map_err(backend)?;
            }
            tx.execute(
                "INSERT INTO ferry_schema (component, version) VALUES ('tier', ?1)
                 ON CONFLICT (component) DO UPDATE SET version = excluded.version",
                [MIGRATIONS.len() as i64],
            )
            .map_err(backend)?;
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn healthcheck(&self) -> EventStoreResult<()> {
        self.with(|conn| conn.query_row("SELECT 1", [], |_| Ok(())).map_err(backend))
            .await
    }

    async fn camera_state(&self, camera_id: &str) -> EventStoreResult<Option<CameraState>> {
        let camera = camera_id.to_string();
        self.with(move |conn| {
            let row: Option<(Option<String>, Option<String>)> = conn
                .query_row(
                    "SELECT watermark, open_state FROM tier_cameras WHERE camera_id = ?1",
                    [&camera],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(backend)?;
            row.map(|(w, o)| schema::camera_state(BACKEND, &camera, w, o))
                .transpose()
        })
        .await
    }

    async fn commit(
        &self,
        events: &[TierEvent],
        state: &CameraState,
        fence: Option<&Fence>,
    ) -> EventStoreResult<()> {
        let rows: Vec<EventRow> = events.iter().map(EventRow::from).collect();
        let camera = schema::CameraRow::from(state)?;
        let fence = fence
            .map(|f| Ok::<_, EventStoreError>((f.clone(), f.stored_token()?)))
            .transpose()?;
        self.with(move |conn| {
            let now = schema::now_ms();
            // IMMEDIATE: the write lock is taken first, so the token read below stays current
            // until this transaction ends.
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            if let Some((fence, token)) = &fence {
                // On error, dropping the transaction rolls it back: nothing was written.
                record_fence(&tx, fence, *token)?;
            }
            {
                let mut upsert = tx
                    .prepare_cached(
                        "INSERT INTO tier_events (id, camera_id, caption, start_ms, end_ms, start_at, end_at,
                            frame_count, captions, centroid, previous_event_id, run_id, status,
                            first_entry, last_entry, updated_ms)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)
                         ON CONFLICT (id) DO UPDATE SET camera_id = excluded.camera_id,
                            caption = excluded.caption, start_ms = excluded.start_ms,
                            end_ms = excluded.end_ms, start_at = excluded.start_at,
                            end_at = excluded.end_at, frame_count = excluded.frame_count,
                            captions = excluded.captions, centroid = excluded.centroid,
                            previous_event_id = excluded.previous_event_id,
                            run_id = excluded.run_id, status = excluded.status,
                            first_entry = excluded.first_entry, last_entry = excluded.last_entry,
                            updated_ms = excluded.updated_ms",
                    )
                    .map_err(backend)?;
                for r in &rows {
                    upsert
                        .execute(params![
                            r.id,
                            r.camera_id,
                            r.caption,
                            r.start_ms,
                            r.end_ms,
                            schema::rfc3339(r.start_ms),
                            schema::rfc3339(r.end_ms),
                            r.frame_count,
                            r.captions,
                            r.centroid,
                            r.previous_event_id,
                            r.run_id,
                            r.status,
                            r.first_entry,
                            r.last_entry,
                            now
                        ])
                        .map_err(backend)?;
                }
            }
            tx.execute(
                "INSERT INTO tier_cameras (camera_id, watermark, open_state, updated_ms)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (camera_id) DO UPDATE SET watermark = excluded.watermark,
                    open_state = excluded.open_state, updated_ms = excluded.updated_ms",
                params![camera.camera_id, camera.watermark, camera.open_state, now],
            )
            .map_err(backend)?;
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn raise_fence(&self, fence: &Fence) -> EventStoreResult<()> {
        let (fence, token) = (fence.clone(), fence.stored_token()?);
        self.with(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            record_fence(&tx, &fence, token)?;
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn record_run(&self, run: &RunRecord) -> EventStoreResult<()> {
        let run = run.clone();
        let record = serde_json::to_string(&run).map_err(backend)?;
        self.with(move |conn| {
            conn.execute(
                "INSERT INTO tier_runs (run_id, record, trigger_name, started_ms, finished_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (run_id) DO UPDATE SET record = excluded.record,
                    trigger_name = excluded.trigger_name, started_ms = excluded.started_ms,
                    finished_ms = excluded.finished_ms",
                params![
                    run.run_id,
                    record,
                    run.trigger,
                    run.started_ms,
                    run.finished_ms
                ],
            )
            .map(|_| ())
            .map_err(backend)
        })
        .await
    }

    async fn history(&self, limit: usize) -> EventStoreResult<Vec<RunRecord>> {
        self.with(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT record FROM tier_runs ORDER BY started_ms DESC, run_id DESC LIMIT ?1",
                )
                .map_err(backend)?;
            let rows = stmt
                .query_map([limit as i64], |r| r.get::<_, String>(0))
                .map_err(backend)?;
            rows.map(|r| {
                let text = r.map_err(backend)?;
                schema::run_record(BACKEND, &text)
            })
            .collect()
        })
        .await
    }

    async fn events(
        &self,
        camera_id: Option<&str>,
        limit: usize,
    ) -> EventStoreResult<Vec<TierEvent>> {
        let camera = camera_id.map(str::to_string);
        self.with(move |conn| {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {EVENT_COLUMNS} FROM tier_events WHERE ?1 IS NULL OR camera_id = ?1 ORDER BY start_ms DESC LIMIT ?2"
                ))
                .map_err(backend)?;
            let rows: Vec<EventRow> = stmt
                .query_map(params![camera, limit as i64], event_from_row)
                .map_err(backend)?
                .collect::<rusqlite::Result<_>>()
                .map_err(backend)?;
            rows.into_iter().map(|r| r.into_event(BACKEND)).collect()
        })
        .await
    }

    async fn counts(&self) -> EventStoreResult<StoreCounts> {
        self.with(|conn| {
            conn.query_row(
                "SELECT (SELECT count(*) FROM tier_events), (SELECT count(*) FROM tier_cameras),
                        (SELECT coalesce(sum(frame_count), 0) FROM tier_events)",
                [],
                |r| {
                    Ok(StoreCounts {
                        events: r.get::<_, i64>(0)? as u64,
                        cameras: r.get::<_, i64>(1)? as u64,
                        frames: r.get::<_, i64>(2)? as u64,
                    })
                },
            )
            .map_err(backend)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tier job deletes captions from Redis once the commit returns: with WAL and
    /// `synchronous=NORMAL` a committed transaction can still be lost on power failure, so the
    /// store must sync every commit (`FULL` = 2).
    #[tokio::test]
    async fn commits_are_durable_before_returning() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("ferry.db").display());
        let store = SqliteEventStore::open(&url).await.unwrap();
        let (journal, synchronous) = store
            .with(|conn| {
                let journal: String = conn
                    .pragma_query_value(None, "journal_mode", |r| r.get(0))
                    .map_err(backend)?;
                let synchronous: i64 = conn
                    .pragma_query_value(None, "synchronous", |r| r.get(0))
                    .map_err(backend)?;
                Ok((journal, synchronous))
            })
            .await
            .unwrap();
        assert_eq!(journal.to_lowercase(), "wal");
        assert_eq!(synchronous, 2, "PRAGMA synchronous must be FULL");
    }
}
