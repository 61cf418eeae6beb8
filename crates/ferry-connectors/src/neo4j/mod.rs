//! The Neo4j event store over Bolt (`neo4j://user:password@host:7687[/database]`, also
//! `bolt://`): the seed's own graph database. It runs the same Cypher as the FalkorDB store,
//! `(:Camera)-[:RECORDED]->(:Event)` and `(:Event)-[:CONTINUES]->(:Event)`, with Bolt
//! parameters. No Neo4j server can be installed on Ferry's build machines: its wire test runs
//! only where `FERRY_TEST_NEO4J_URI` is set.
//!
//! A commit is one auto-commit query, so one transaction: its fence check (the
//! `(:FerryFence {scope, token})` node, write-locked before its token is read, and unique by
//! `scope` through a constraint) and its writes commit or roll back together.

mod vectors;

use std::collections::HashMap;

use ferry_core::jobs::tier::store::{EventStoreResult, Fence};
use ferry_core::jobs::tier::{
    CameraState, EventStore, EventStoreError, RunRecord, StoreCounts, TierEvent,
};
use neo4rs::{BoltType, ConfigBuilder, Graph, Query, Row, query};

use crate::schema::{self, CYPHER_EVENT_RETURN, EventRow};

pub use vectors::Neo4jVectorSource;

const BACKEND: &str = "neo4j";
/// Schema version: 1 — indexes on `:Event(id)`, `:Event(camera_id)`, `:Camera(id)`,
/// `:TierRun(run_id)`; 2 — a uniqueness constraint on `:FerryFence(scope)` (commit fencing; it
/// makes concurrent `MERGE`s of one fence node safe).
const VERSION: usize = 2;
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Events in a Neo4j database.
pub struct Neo4jEventStore {
    graph: Graph,
    shown: String,
}

impl std::fmt::Debug for Neo4jEventStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Neo4jEventStore")
            .field("url", &self.shown)
            .finish()
    }
}

fn backend(e: impl std::fmt::Display) -> EventStoreError {
    EventStoreError::Backend {
        store: BACKEND,
        message: e.to_string(),
    }
}

fn text(s: &str) -> BoltType {
    BoltType::from(s.to_string())
}

fn opt(s: &Option<String>) -> BoltType {
    s.as_deref().map_or(BoltType::Null(neo4rs::BoltNull), text)
}

impl Neo4jEventStore {
    /// Connects to `neo4j://` or `bolt://` `[user:password@]host:port[/database]`.
    pub async fn open(url: &str) -> EventStoreResult<Self> {
        let shown = schema::redact_url(url);
        let parsed = url::Url::parse(url)
            .ok()
            .filter(|u| matches!(u.scheme(), "neo4j" | "bolt") && u.host_str().is_some())
            .ok_or_else(|| {
                EventStoreError::Config(
                    "a Neo4j URL is neo4j://[user:password@]host:port[/database]".into(),
                )
            })?;
        let host = parsed.host_str().unwrap_or("127.0.0.1");
        let port = parsed.port().unwrap_or(7687);
        let user = if parsed.username().is_empty() {
            "neo4j"
        } else {
            parsed.username()
        };
        let password = parsed.password().unwrap_or("");
        let mut config = ConfigBuilder::default()
            .uri(format!("{host}:{port}"))
            .user(user)
            .password(password);
        let db = parsed.path().trim_start_matches('/');
        if !db.is_empty() {
            config = config.db(db);
        }
        let config = config
            .build()
            .map_err(|e| EventStoreError::Config(format!("{shown}: {e}")))?;
        let graph = Graph::connect(config)
            .await
            .map_err(|e| EventStoreError::Backend {
                store: BACKEND,
                message: format!("cannot connect to Neo4j at {shown}: {e}"),
            })?;
        let store = Neo4jEventStore { graph, shown };
        // The driver connects lazily and retries for a long time: fail fast instead.
        match tokio::time::timeout(CONNECT_TIMEOUT, store.run(query("RETURN 1"))).await {
            Ok(Ok(())) => Ok(store),
            Ok(Err(e)) => Err(EventStoreError::Backend {
                store: BACKEND,
                message: format!("cannot connect to Neo4j: {e}"),
            }),
            Err(_) => Err(EventStoreError::Backend {
                store: BACKEND,
                message: format!(
                    "cannot connect to Neo4j at {}: no answer within {} s; is it running and is the URL right?",
                    store.shown,
                    CONNECT_TIMEOUT.as_secs()
                ),
            }),
        }
    }

    /// The `ok, current` row of a fenced query: [`EventStoreError::Fenced`] when not `ok`.
    fn fence_outcome(&self, rows: &[Row], fence: Option<&Fence>) -> EventStoreResult<()> {
        let row = rows
            .first()
            .ok_or_else(|| backend(format!("{}: the commit returned no row", self.shown)))?;
        if let Some(f) = fence
            && !get::<bool>(row, "ok")?
        {
            return Err(EventStoreError::Fenced {
                store: BACKEND,
                scope: f.scope.clone(),
                token: f.token,
                current: get::<Option<i64>>(row, "current")?.unwrap_or(0).max(0) as u64,
            });
        }
        Ok(())
    }

    async fn rows(&self, q: Query) -> EventStoreResult<Vec<Row>> {
        let mut stream = self
            .graph
            .execute(q)
            .await
            .map_err(|e| backend(format!("{}: {e}", self.shown)))?;
        let mut rows = Vec::new();
        while let Some(row) = stream.next().await.map_err(backend)? {
            rows.push(row);
        }
        Ok(rows)
    }

    async fn run(&self, q: Query) -> EventStoreResult<()> {
        self.graph
            .run(q)
            .await
            .map_err(|e| backend(format!("{}: {e}", self.shown)))
    }
}

fn get<T: serde::de::DeserializeOwned>(row: &Row, key: &str) -> EventStoreResult<T> {
    row.get::<T>(key)
        .map_err(|e| backend(format!("column {key}: {e}")))
}

impl EventStore for Neo4jEventStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn migrate(&self) -> EventStoreResult<()> {
        let rows = self
            .rows(query(
                "MATCH (s:FerrySchema {component: 'tier'}) RETURN s.version AS version",
            ))
            .await?;
        let version: i64 = rows
            .first()
            .map(|r| get(r, "version"))
            .transpose()?
            .unwrap_or(0);
        if schema::pending(BACKEND, version, VERSION)?.is_empty() {
            return Ok(());
        }
        for (name, label, property) in [
            ("ferry_event_id", "Event", "id"),
            ("ferry_event_camera", "Event", "camera_id"),
            ("ferry_camera_id", "Camera", "id"),
            ("ferry_run_id", "TierRun", "run_id"),
        ] {
            self.run(query(&format!(
                "CREATE INDEX {name} IF NOT EXISTS FOR (n:{label}) ON (n.{property})"
            )))
            .await?;
        }
        self.run(query(
            "CREATE CONSTRAINT ferry_fence_scope IF NOT EXISTS FOR (f:FerryFence) REQUIRE f.scope IS UNIQUE",
        ))
        .await?;
        self.run(
            query("MERGE (s:FerrySchema {component: 'tier'}) SET s.version = $version")
                .param("version", VERSION as i64),
        )
        .await
    }

    async fn healthcheck(&self) -> EventStoreResult<()> {
        self.run(query("RETURN 1")).await
    }

    async fn camera_state(&self, camera_id: &str) -> EventStoreResult<Option<CameraState>> {
        let rows = self
            .rows(
                query("MATCH (c:Camera {id: $id}) WHERE c.state_ms IS NOT NULL RETURN c.watermark AS watermark, c.open_state AS open_state")
                    .param("id", camera_id),
            )
            .await?;
        rows.first()
            .map(|r| {
                schema::camera_state(
                    BACKEND,
                    camera_id,
                    get(r, "watermark")?,
                    get(r, "open_state")?,
                )
            })
            .transpose()
    }

    async fn commit(
        &self,
        events: &[TierEvent],
        state: &CameraState,
        fence: Option<&Fence>,
    ) -> EventStoreResult<()> {
        let camera = schema::CameraRow::from(state)?;
        let list: Vec<BoltType> = events
            .iter()
            .map(|e| {
                let r = EventRow::from(e);
                let mut m: HashMap<String, BoltType> = HashMap::new();
                m.insert("id".into(), text(&r.id));
                m.insert("camera_id".into(), text(&r.camera_id));
                m.insert("caption".into(), text(&r.caption));
                m.insert("start_ms".into(), r.start_ms.into());
                m.insert("end_ms".into(), r.end_ms.into());
                m.insert("frame_count".into(), r.frame_count.into());
                m.insert("captions".into(), text(&r.captions));
                let centroid: Vec<f64> = e.centroid.iter().map(|&x| x as f64).collect();
                m.insert("centroid".into(), centroid.into());
                m.insert(
                    "centroid_json".into(),
                    text(&serde_json::to_string(&e.centroid).unwrap_or_default()),
                );
                m.insert("previous_event_id".into(), opt(&r.previous_event_id));
                m.insert("run_id".into(), text(&r.run_id));
                m.insert("status".into(), text(&r.status));
                m.insert("first_entry".into(), text(&r.first_entry));
                m.insert("last_entry".into(), text(&r.last_entry));
                BoltType::from(m)
            })
            .collect();
        let mut q = query(&schema::cypher_commit(fence.is_some()))
            .param("camera", camera.camera_id.as_str())
            .param("watermark", opt(&camera.watermark))
            .param("open_state", opt(&camera.open_state))
            .param("now", schema::now_ms())
            .param("events", list);
        if let Some(f) = fence {
            q = q
                .param("scope", f.scope.as_str())
                .param("token", f.stored_token()?);
        }
        let rows = self.rows(q).await?;
        self.fence_outcome(&rows, fence)
    }

    async fn raise_fence(&self, fence: &Fence) -> EventStoreResult<()> {
        let q = query(&schema::cypher_raise_fence())
            .param("scope", fence.scope.as_str())
            .param("token", fence.stored_token()?);
        let rows = self.rows(q).await?;
        self.fence_outcome(&rows, Some(fence))
    }

    async fn record_run(&self, run: &RunRecord) -> EventStoreResult<()> {
        let record = serde_json::to_string(run).map_err(backend)?;
        self.run(
            query(
                "MERGE (r:TierRun {run_id: $id}) SET r.record = $record, r.started_ms = $started",
            )
            .param("id", run.run_id.as_str())
            .param("record", record)
            .param("started", run.started_ms),
        )
        .await
    }

    async fn history(&self, limit: usize) -> EventStoreResult<Vec<RunRecord>> {
        let rows = self
            .rows(
                query("MATCH (r:TierRun) RETURN r.record AS record ORDER BY r.started_ms DESC, r.run_id DESC LIMIT $limit")
                    .param("limit", limit as i64),
            )
            .await?;
        rows.iter()
            .map(|r| schema::run_record(BACKEND, &get::<String>(r, "record")?))
            .collect()
    }

    async fn events(
        &self,
        camera_id: Option<&str>,
        limit: usize,
    ) -> EventStoreResult<Vec<TierEvent>> {
        let q = query(&format!(
            "MATCH (e:Event) WHERE e.run_id IS NOT NULL AND ($camera IS NULL OR e.camera_id = $camera) RETURN {CYPHER_EVENT_RETURN} ORDER BY e.start_ms DESC LIMIT $limit"
        ))
        .param("camera", opt(&camera_id.map(str::to_string)))
        .param("limit", limit as i64);
        self.rows(q)
            .await?
            .iter()
            .map(|r| {
                let centroid: Vec<f32> =
                    serde_json::from_str(&get::<String>(r, "centroid_json")?).unwrap_or_default();
                EventRow {
                    id: get(r, "id")?,
                    camera_id: get(r, "camera_id")?,
                    caption: get(r, "caption")?,
                    start_ms: get(r, "start_ms")?,
                    end_ms: get(r, "end_ms")?,
                    frame_count: get(r, "frame_count")?,
                    captions: get(r, "captions")?,
                    centroid: centroid.iter().flat_map(|x| x.to_le_bytes()).collect(),
                    previous_event_id: get(r, "previous_event_id")?,
                    run_id: get(r, "run_id")?,
                    status: get(r, "status")?,
                    first_entry: get(r, "first_entry")?,
                    last_entry: get(r, "last_entry")?,
                }
                .into_event(BACKEND)
            })
            .collect()
    }

    async fn counts(&self) -> EventStoreResult<StoreCounts> {
        let rows = self
            .rows(query(
                "OPTIONAL MATCH (e:Event) WHERE e.run_id IS NOT NULL \
                 WITH count(e) AS events, coalesce(sum(e.frame_count), 0) AS frames \
                 OPTIONAL MATCH (c:Camera) WHERE c.state_ms IS NOT NULL \
                 RETURN events, frames, count(c) AS cameras",
            ))
            .await?;
        let row = rows
            .first()
            .ok_or_else(|| backend("counts returned no row"))?;
        Ok(StoreCounts {
            events: get::<i64>(row, "events")? as u64,
            cameras: get::<i64>(row, "cameras")? as u64,
            frames: get::<i64>(row, "frames")? as u64,
        })
    }
}
