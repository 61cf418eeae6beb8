//! The FalkorDB event store (`falkordb://[user:password@]host:port[/graph]`, graph `ferry` by
//! default): a graph database over RESP, holding the seed's model
//! `(:Camera {id})-[:RECORDED]->(:Event {...})` and `(:Event)-[:CONTINUES]->(:Event)`.
//!
//! Every write is one parameterised `GRAPH.QUERY`, which FalkorDB runs atomically (one writer
//! at a time per graph): the fence check of a commit (`(:FerryFence {scope, token})`) and its
//! writes are one query, so a commit with a lower token than the recorded one writes nothing.
//!
//! [`FalkorDbVectorSource`] reads the vectors job's items from the nodes of one label.

mod compact;
mod conn;
mod cypher;
mod vectors;

use ferry_core::jobs::tier::store::{EventStoreResult, Fence};
use ferry_core::jobs::tier::{
    CameraState, EventStore, EventStoreError, RunRecord, StoreCounts, TierEvent,
};
use redis::Value;
use redis::aio::MultiplexedConnection;

pub use cypher::Literal;
pub use vectors::FalkorDbVectorSource;

use conn::FalkorUrl;

use crate::schema::{self, EventRow};

const BACKEND: &str = "falkordb";
/// Schema version: 1 — indexes on `:Event(id)`, `:Event(camera_id)`, `:Camera(id)`,
/// `:TierRun(run_id)`; 2 — an index on `:FerryFence(scope)` (commit fencing).
const VERSION: usize = 2;

/// Events in a FalkorDB graph.
#[derive(Debug, Clone)]
pub struct FalkorDbEventStore {
    conn: MultiplexedConnection,
    graph: String,
    shown: String,
}

fn backend(e: impl std::fmt::Display) -> EventStoreError {
    EventStoreError::Backend {
        store: BACKEND,
        message: e.to_string(),
    }
}

impl FalkorDbEventStore {
    /// Connects to the FalkorDB server named by `url`.
    pub async fn open(url: &str) -> EventStoreResult<Self> {
        let parsed = FalkorUrl::parse(url).map_err(EventStoreError::Config)?;
        let conn = parsed.connect().await.map_err(backend)?;
        let graph = parsed.graph.unwrap_or_else(|| "ferry".into());
        Ok(FalkorDbEventStore {
            conn,
            graph,
            shown: parsed.shown,
        })
    }

    /// Runs one query with parameters; returns the result rows.
    async fn query(
        &self,
        query: &str,
        params: &[(&str, Literal)],
    ) -> EventStoreResult<Vec<Vec<Value>>> {
        let mut text = String::new();
        if !params.is_empty() {
            text.push_str("CYPHER ");
            for (name, value) in params {
                text.push_str(name);
                text.push('=');
                value.write(&mut text);
                text.push(' ');
            }
        }
        text.push_str(query);
        let reply: Value = redis::cmd("GRAPH.QUERY")
            .arg(&self.graph)
            .arg(text)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(|e| EventStoreError::Backend {
                store: BACKEND,
                message: format!("{}: {e}", self.shown),
            })?;
        // Reply: [header, rows, statistics] for queries that return rows, [statistics] otherwise.
        match reply {
            Value::Array(mut parts) if parts.len() == 3 => match parts.swap_remove(1) {
                Value::Array(rows) => Ok(rows
                    .into_iter()
                    .map(|r| match r {
                        Value::Array(cols) => cols,
                        other => vec![other],
                    })
                    .collect()),
                _ => Ok(Vec::new()),
            },
            _ => Ok(Vec::new()),
        }
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(n) => Some(n.to_string()),
        _ => None,
    }
}

fn int(v: &Value) -> i64 {
    match v {
        Value::Int(n) => *n,
        other => text(other).and_then(|t| t.parse().ok()).unwrap_or(0),
    }
}

fn truth(v: &Value) -> bool {
    match v {
        Value::Boolean(b) => *b,
        Value::Int(n) => *n != 0,
        other => text(other).is_some_and(|t| t == "true"),
    }
}

fn event_literal(r: &EventRow, centroid: &[f32]) -> Literal {
    Literal::map([
        ("id", Literal::from(r.id.as_str())),
        ("camera_id", r.camera_id.as_str().into()),
        ("caption", r.caption.as_str().into()),
        ("start_ms", r.start_ms.into()),
        ("end_ms", r.end_ms.into()),
        ("frame_count", r.frame_count.into()),
        ("captions", r.captions.as_str().into()),
        (
            "centroid",
            Literal::List(centroid.iter().map(|&x| Literal::Float(x as f64)).collect()),
        ),
        // Replies print floats with 6 decimals; the exact vector is read back from JSON.
        (
            "centroid_json",
            serde_json::to_string(centroid)
                .unwrap_or_default()
                .as_str()
                .into(),
        ),
        (
            "previous_event_id",
            r.previous_event_id
                .as_deref()
                .map_or(Literal::Null, Literal::from),
        ),
        ("run_id", r.run_id.as_str().into()),
        ("status", r.status.as_str().into()),
        ("first_entry", r.first_entry.as_str().into()),
        ("last_entry", r.last_entry.as_str().into()),
    ])
}

use schema::CYPHER_EVENT_RETURN as EVENT_RETURN;

impl FalkorDbEventStore {
    /// The `ok, current` row of a fenced query: [`EventStoreError::Fenced`] when not `ok`.
    fn fence_outcome(&self, rows: &[Vec<Value>], fence: Option<&Fence>) -> EventStoreResult<()> {
        let row = rows
            .first()
            .ok_or_else(|| backend(format!("{}: the commit returned no row", self.shown)))?;
        match fence {
            Some(f) if !row.first().is_some_and(truth) => Err(EventStoreError::Fenced {
                store: BACKEND,
                scope: f.scope.clone(),
                token: f.token,
                current: row.get(1).map_or(0, int).max(0) as u64,
            }),
            _ => Ok(()),
        }
    }
}

impl EventStore for FalkorDbEventStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn migrate(&self) -> EventStoreResult<()> {
        let rows = self
            .query(
                "MATCH (s:FerrySchema {component: 'tier'}) RETURN s.version",
                &[],
            )
            .await?;
        let version = rows.first().and_then(|r| r.first()).map_or(0, int);
        if schema::pending(BACKEND, version, VERSION)?.is_empty() {
            return Ok(());
        }
        for (label, property) in [
            ("Event", "id"),
            ("Event", "camera_id"),
            ("Camera", "id"),
            ("TierRun", "run_id"),
            ("FerryFence", "scope"),
        ] {
            let q = format!("CREATE INDEX FOR (n:{label}) ON (n.{property})");
            if let Err(e) = self.query(&q, &[]).await
                && !e.to_string().contains("already indexed")
            {
                return Err(e);
            }
        }
        self.query(
            "MERGE (s:FerrySchema {component: 'tier'}) SET s.version = $version",
            &[("version", (VERSION as i64).into())],
        )
        .await?;
        Ok(())
    }

    async fn healthcheck(&self) -> EventStoreResult<()> {
        self.query("RETURN 1", &[]).await.map(|_| ())
    }

    async fn camera_state(&self, camera_id: &str) -> EventStoreResult<Option<CameraState>> {
        let rows = self
            .query(
                "MATCH (c:Camera {id: $id}) WHERE c.state_ms IS NOT NULL RETURN c.watermark, c.open_state",
                &[("id", camera_id.into())],
            )
            .await?;
        rows.first()
            .map(|r| {
                schema::camera_state(
                    BACKEND,
                    camera_id,
                    r.first().and_then(text),
                    r.get(1).and_then(text),
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
        let list = Literal::List(
            events
                .iter()
                .map(|e| event_literal(&EventRow::from(e), &e.centroid))
                .collect(),
        );
        let opt = |v: &Option<String>| v.as_deref().map_or(Literal::Null, Literal::from);
        let mut params = vec![
            ("camera", camera.camera_id.as_str().into()),
            ("watermark", opt(&camera.watermark)),
            ("open_state", opt(&camera.open_state)),
            ("now", schema::now_ms().into()),
            ("events", list),
        ];
        if let Some(f) = fence {
            params.push(("scope", f.scope.as_str().into()));
            params.push(("token", f.stored_token()?.into()));
        }
        let rows = self
            .query(&schema::cypher_commit(fence.is_some()), &params)
            .await?;
        self.fence_outcome(&rows, fence)
    }

    async fn raise_fence(&self, fence: &Fence) -> EventStoreResult<()> {
        let params = vec![
            ("scope", fence.scope.as_str().into()),
            ("token", fence.stored_token()?.into()),
        ];
        let rows = self.query(&schema::cypher_raise_fence(), &params).await?;
        self.fence_outcome(&rows, Some(fence))
    }

    async fn record_run(&self, run: &RunRecord) -> EventStoreResult<()> {
        let record = serde_json::to_string(run).map_err(backend)?;
        self.query(
            "MERGE (r:TierRun {run_id: $id}) SET r.record = $record, r.started_ms = $started",
            &[
                ("id", run.run_id.as_str().into()),
                ("record", record.as_str().into()),
                ("started", run.started_ms.into()),
            ],
        )
        .await?;
        Ok(())
    }

    async fn history(&self, limit: usize) -> EventStoreResult<Vec<RunRecord>> {
        let rows = self
            .query(
                "MATCH (r:TierRun) RETURN r.record ORDER BY r.started_ms DESC, r.run_id DESC LIMIT $limit",
                &[("limit", (limit as i64).into())],
            )
            .await?;
        rows.iter()
            .filter_map(|r| r.first().and_then(text))
            .map(|t| schema::run_record(BACKEND, &t))
            .collect()
    }

    async fn events(
        &self,
        camera_id: Option<&str>,
        limit: usize,
    ) -> EventStoreResult<Vec<TierEvent>> {
        let limit = ("limit", Literal::from(limit as i64));
        let rows = match camera_id {
            Some(c) => {
                self.query(
                    &format!("MATCH (e:Event {{camera_id: $camera}}) WHERE e.run_id IS NOT NULL RETURN {EVENT_RETURN} ORDER BY e.start_ms DESC LIMIT $limit"),
                    &[("camera", c.into()), limit],
                )
                .await?
            }
            None => {
                self.query(
                    &format!("MATCH (e:Event) WHERE e.run_id IS NOT NULL RETURN {EVENT_RETURN} ORDER BY e.start_ms DESC LIMIT $limit"),
                    &[limit],
                )
                .await?
            }
        };
        rows.iter()
            .map(|r| {
                let s = |i: usize| r.get(i).and_then(text).unwrap_or_default();
                let centroid: Vec<f32> = r
                    .get(7)
                    .and_then(text)
                    .and_then(|t| serde_json::from_str(&t).ok())
                    .unwrap_or_default();
                EventRow {
                    id: s(0),
                    camera_id: s(1),
                    caption: s(2),
                    start_ms: r.get(3).map_or(0, int),
                    end_ms: r.get(4).map_or(0, int),
                    frame_count: r.get(5).map_or(0, int),
                    captions: s(6),
                    centroid: centroid.iter().flat_map(|x| x.to_le_bytes()).collect(),
                    previous_event_id: r.get(8).and_then(text),
                    run_id: s(9),
                    status: s(10),
                    first_entry: s(11),
                    last_entry: s(12),
                }
                .into_event(BACKEND)
            })
            .collect()
    }

    async fn counts(&self) -> EventStoreResult<StoreCounts> {
        let events = self
            .query(
                "MATCH (e:Event) WHERE e.run_id IS NOT NULL RETURN count(e), sum(e.frame_count)",
                &[],
            )
            .await?;
        let cameras = self
            .query(
                "MATCH (c:Camera) WHERE c.state_ms IS NOT NULL RETURN count(c)",
                &[],
            )
            .await?;
        let first =
            |rows: &Vec<Vec<Value>>, i: usize| rows.first().and_then(|r| r.get(i)).map_or(0, int);
        Ok(StoreCounts {
            events: first(&events, 0) as u64,
            cameras: first(&cameras, 0) as u64,
            frames: first(&events, 1) as u64,
        })
    }
}
