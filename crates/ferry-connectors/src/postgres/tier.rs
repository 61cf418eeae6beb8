//! The tier job's PostgreSQL event store (`postgres://user[:password]@host:port/db`, TLS by
//! its `sslmode`: see [`super::connect_config`]).

use ferry_core::jobs::tier::store::{EventStoreResult, Fence};
use ferry_core::jobs::tier::{
    CameraState, EventStore, EventStoreError, RunRecord, StoreCounts, TierEvent,
};
use tokio::sync::Mutex;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row};

use super::{MigrateError, VersionedSchema, db_message};
use crate::schema::{self, EventRow};

const BACKEND: &str = "postgres";

/// Schema migrations, applied in order; the schema version is their count.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE tier_events (
    id text PRIMARY KEY,
    camera_id text NOT NULL,
    caption text NOT NULL,
    start_ms bigint NOT NULL,
    end_ms bigint NOT NULL,
    start_at timestamptz NOT NULL,
    end_at timestamptz NOT NULL,
    frame_count bigint NOT NULL,
    captions jsonb NOT NULL,
    centroid bytea NOT NULL,
    previous_event_id text,
    run_id text NOT NULL,
    status text NOT NULL CHECK (status IN ('open', 'closed')),
    first_entry text NOT NULL,
    last_entry text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tier_events_camera_start ON tier_events (camera_id, start_ms);
CREATE INDEX tier_events_start_at ON tier_events (start_at);
CREATE TABLE tier_cameras (
    camera_id text PRIMARY KEY,
    watermark text,
    open_state jsonb,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE tier_runs (
    run_id text PRIMARY KEY,
    record jsonb NOT NULL,
    trigger_name text NOT NULL,
    started_ms bigint NOT NULL,
    finished_ms bigint NOT NULL
);
CREATE INDEX tier_runs_started ON tier_runs (started_ms);
"#,
    r#"
CREATE TABLE IF NOT EXISTS ferry_fence (
    scope text PRIMARY KEY,
    token bigint NOT NULL
);
"#,
];

/// The tier schema; an arbitrary constant is the advisory lock that serialises migrations.
const SCHEMA: VersionedSchema = VersionedSchema {
    component: "tier",
    lock: 0x6665_7272_7974_6965,
    migrations: MIGRATIONS,
    first_table: None,
};

const UPSERT_EVENT: &str = "INSERT INTO tier_events (id, camera_id, caption, start_ms, end_ms, start_at, end_at,
        frame_count, captions, centroid, previous_event_id, run_id, status, first_entry, last_entry, updated_at)
    VALUES ($1, $2, $3, $4, $5, to_timestamp($4::bigint / 1000.0), to_timestamp($5::bigint / 1000.0),
        $6, CAST($7::text AS jsonb), $8, $9, $10, $11, $12, $13, now())
    ON CONFLICT (id) DO UPDATE SET camera_id = EXCLUDED.camera_id, caption = EXCLUDED.caption,
        start_ms = EXCLUDED.start_ms, end_ms = EXCLUDED.end_ms, start_at = EXCLUDED.start_at,
        end_at = EXCLUDED.end_at, frame_count = EXCLUDED.frame_count, captions = EXCLUDED.captions,
        centroid = EXCLUDED.centroid, previous_event_id = EXCLUDED.previous_event_id,
        run_id = EXCLUDED.run_id, status = EXCLUDED.status, first_entry = EXCLUDED.first_entry,
        last_entry = EXCLUDED.last_entry, updated_at = now()";

/// Records a commit's fencing token for its scope unless a higher one is recorded; returns a
/// row only when the token was recorded (equal or higher).
const FENCE: &str = "INSERT INTO ferry_fence (scope, token) VALUES ($1, $2)
    ON CONFLICT (scope) DO UPDATE SET token = EXCLUDED.token
    WHERE ferry_fence.token <= EXCLUDED.token
    RETURNING token";

const EVENT_COLUMNS: &str = "id, camera_id, caption, start_ms, end_ms, frame_count, captions::text, centroid, previous_event_id, run_id, status, first_entry, last_entry";

/// First statement of a transaction: records `fence` unless a higher token is recorded (then
/// [`EventStoreError::Fenced`]). The upsert locks the scope's row until the transaction ends, so
/// a concurrent commit of the same scope waits and then sees this token.
async fn record_fence(tx: &tokio_postgres::Transaction<'_>, fence: &Fence) -> EventStoreResult<()> {
    let token = fence.stored_token()?;
    let raised = tx
        .query_opt(FENCE, &[&fence.scope, &token])
        .await
        .map_err(backend)?;
    if raised.is_some() {
        return Ok(());
    }
    let current: i64 = tx
        .query_one(
            "SELECT token FROM ferry_fence WHERE scope = $1",
            &[&fence.scope],
        )
        .await
        .map_err(backend)?
        .get(0);
    Err(EventStoreError::Fenced {
        store: BACKEND,
        scope: fence.scope.clone(),
        token: fence.token,
        current: current.max(0) as u64,
    })
}

/// Events in PostgreSQL, on one connection that is opened again when it closed (the server
/// restarted, the network dropped it): the call that finds it closed reconnects first.
pub struct PostgresEventStore {
    client: Mutex<Client>,
    config: Box<tokio_postgres::Config>,
    tls: super::PgTls,
    shown: String,
}

impl std::fmt::Debug for PostgresEventStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresEventStore")
            .field("url", &self.shown)
            .finish()
    }
}

/// Opens a connection, its driver on a background task.
async fn connect(
    config: &tokio_postgres::Config,
    tls: super::PgTls,
    shown: &str,
) -> EventStoreResult<Client> {
    let (client, connection) = config.connect(tls).await.map_err(|e| {
        let detail = db_message(&e);
        let hint = super::tls_hint(&detail);
        EventStoreError::Backend {
            store: BACKEND,
            message: format!(
                "cannot connect to PostgreSQL at {shown}: {detail}{hint}; is it running and are the user, password and database right?"
            ),
        }
    })?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "PostgreSQL connection closed");
        }
    });
    Ok(client)
}

fn backend(e: tokio_postgres::Error) -> EventStoreError {
    EventStoreError::Backend {
        store: BACKEND,
        message: db_message(&e),
    }
}

fn event_from_row(row: &Row) -> EventRow {
    EventRow {
        id: row.get(0),
        camera_id: row.get(1),
        caption: row.get(2),
        start_ms: row.get(3),
        end_ms: row.get(4),
        frame_count: row.get(5),
        captions: row.get(6),
        centroid: row.get(7),
        previous_event_id: row.get(8),
        run_id: row.get(9),
        status: row.get(10),
        first_entry: row.get(11),
        last_entry: row.get(12),
    }
}

impl PostgresEventStore {
    /// Connects to `postgres://…` or `postgresql://…` (libpq-style URL).
    pub async fn open(url: &str) -> EventStoreResult<Self> {
        let shown = schema::redact_url(url);
        let (config, tls) =
            super::connect_config(url).map_err(|e| EventStoreError::Config(e.to_string()))?;
        let client = connect(&config, tls.clone(), &shown).await?;
        Ok(PostgresEventStore {
            client: Mutex::new(client),
            config: Box::new(config),
            tls,
            shown,
        })
    }

    /// The connection, opened again first when it closed.
    async fn client(&self) -> EventStoreResult<tokio::sync::MutexGuard<'_, Client>> {
        let mut client = self.client.lock().await;
        if client.is_closed() {
            tracing::info!(url = %self.shown, "PostgreSQL connection closed; reconnecting");
            *client = connect(&self.config, self.tls.clone(), &self.shown).await?;
        }
        Ok(client)
    }
}

impl EventStore for PostgresEventStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn migrate(&self) -> EventStoreResult<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(backend)?;
        match SCHEMA.apply(&tx).await {
            Ok(()) => {}
            Err(MigrateError::Db(e)) => return Err(backend(e)),
            Err(MigrateError::UnknownVersion(v)) => {
                schema::pending(BACKEND, v, MIGRATIONS.len())?;
            }
            Err(MigrateError::ForeignTable(t)) => {
                return Err(EventStoreError::Schema {
                    store: BACKEND,
                    message: format!("a table {t} exists that Ferry did not create"),
                });
            }
        }
        tx.commit().await.map_err(backend)
    }

    async fn healthcheck(&self) -> EventStoreResult<()> {
        let client = self.client().await?;
        client.simple_query("SELECT 1").await.map_err(backend)?;
        Ok(())
    }

    async fn camera_state(&self, camera_id: &str) -> EventStoreResult<Option<CameraState>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT watermark, open_state::text FROM tier_cameras WHERE camera_id = $1",
                &[&camera_id],
            )
            .await
            .map_err(backend)?;
        row.map(|r| schema::camera_state(BACKEND, camera_id, r.get(0), r.get(1)))
            .transpose()
    }

    async fn commit(
        &self,
        events: &[TierEvent],
        state: &CameraState,
        fence: Option<&Fence>,
    ) -> EventStoreResult<()> {
        let rows: Vec<EventRow> = events.iter().map(EventRow::from).collect();
        let camera = schema::CameraRow::from(state)?;
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(backend)?;
        if let Some(fence) = fence {
            // On error, dropping the transaction rolls it back: nothing was written.
            record_fence(&tx, fence).await?;
        }
        let upsert = tx.prepare(UPSERT_EVENT).await.map_err(backend)?;
        // Issued together, the upserts are pipelined on the connection.
        let params: Vec<[&(dyn ToSql + Sync); 13]> = rows
            .iter()
            .map(|r| -> [&(dyn ToSql + Sync); 13] {
                [
                    &r.id,
                    &r.camera_id,
                    &r.caption,
                    &r.start_ms,
                    &r.end_ms,
                    &r.frame_count,
                    &r.captions,
                    &r.centroid,
                    &r.previous_event_id,
                    &r.run_id,
                    &r.status,
                    &r.first_entry,
                    &r.last_entry,
                ]
            })
            .collect();
        let writes = params.iter().map(|p| tx.execute(&upsert, p));
        futures::future::try_join_all(writes)
            .await
            .map_err(backend)?;
        tx.execute(
            "INSERT INTO tier_cameras (camera_id, watermark, open_state, updated_at)
             VALUES ($1, $2, CAST($3::text AS jsonb), now())
             ON CONFLICT (camera_id) DO UPDATE SET watermark = EXCLUDED.watermark,
                open_state = EXCLUDED.open_state, updated_at = now()",
            &[&camera.camera_id, &camera.watermark, &camera.open_state],
        )
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)
    }

    async fn raise_fence(&self, fence: &Fence) -> EventStoreResult<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(backend)?;
        record_fence(&tx, fence).await?;
        tx.commit().await.map_err(backend)
    }

    async fn record_run(&self, run: &RunRecord) -> EventStoreResult<()> {
        let record = serde_json::to_string(run)
            .map_err(|e| EventStoreError::Config(format!("run record: {e}")))?;
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO tier_runs (run_id, record, trigger_name, started_ms, finished_ms)
                 VALUES ($1, CAST($2::text AS jsonb), $3, $4, $5)
                 ON CONFLICT (run_id) DO UPDATE SET record = EXCLUDED.record,
                    trigger_name = EXCLUDED.trigger_name, started_ms = EXCLUDED.started_ms,
                    finished_ms = EXCLUDED.finished_ms",
                &[
                    &run.run_id,
                    &record,
                    &run.trigger,
                    &run.started_ms,
                    &run.finished_ms,
                ],
            )
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn history(&self, limit: usize) -> EventStoreResult<Vec<RunRecord>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT record::text FROM tier_runs ORDER BY started_ms DESC, run_id DESC LIMIT $1",
                &[&(limit as i64)],
            )
            .await
            .map_err(backend)?;
        rows.iter()
            .map(|r| schema::run_record(BACKEND, r.get(0)))
            .collect()
    }

    async fn events(
        &self,
        camera_id: Option<&str>,
        limit: usize,
    ) -> EventStoreResult<Vec<TierEvent>> {
        let client = self.client().await?;
        let rows = match camera_id {
            Some(c) => {
                client
                    .query(
                        &format!("SELECT {EVENT_COLUMNS} FROM tier_events WHERE camera_id = $1 ORDER BY start_ms DESC LIMIT $2"),
                        &[&c, &(limit as i64)],
                    )
                    .await
            }
            None => {
                client
                    .query(
                        &format!("SELECT {EVENT_COLUMNS} FROM tier_events ORDER BY start_ms DESC LIMIT $1"),
                        &[&(limit as i64)],
                    )
                    .await
            }
        }
        .map_err(backend)?;
        rows.iter()
            .map(|r| event_from_row(r).into_event(BACKEND))
            .collect()
    }

    async fn counts(&self) -> EventStoreResult<StoreCounts> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT (SELECT count(*) FROM tier_events), (SELECT count(*) FROM tier_cameras),
                        (SELECT coalesce(sum(frame_count), 0)::bigint FROM tier_events)",
                &[],
            )
            .await
            .map_err(backend)?;
        Ok(StoreCounts {
            events: row.get::<_, i64>(0) as u64,
            cameras: row.get::<_, i64>(1) as u64,
            frames: row.get::<_, i64>(2) as u64,
        })
    }
}
