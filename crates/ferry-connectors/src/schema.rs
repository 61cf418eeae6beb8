//! What the event stores share: rows as stored (JSON captions, little-endian f32 centroid) and
//! schema version checks.

use ferry_core::jobs::tier::store::EventStoreResult;
use ferry_core::jobs::tier::{
    CameraState, EntryId, EventStatus, EventStoreError, RunRecord, TierEvent,
};

/// An event as the stores keep it.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    /// Id.
    pub id: String,
    /// Camera.
    pub camera_id: String,
    /// Representative caption.
    pub caption: String,
    /// Start, Unix ms.
    pub start_ms: i64,
    /// End, Unix ms.
    pub end_ms: i64,
    /// Frames merged.
    pub frame_count: i64,
    /// Distinct captions with counts, JSON.
    pub captions: String,
    /// Centroid, little-endian f32 bytes.
    pub centroid: Vec<u8>,
    /// Continued event.
    pub previous_event_id: Option<String>,
    /// Run that wrote it.
    pub run_id: String,
    /// `open` / `closed`.
    pub status: String,
    /// First entry id.
    pub first_entry: String,
    /// Last entry id.
    pub last_entry: String,
}

impl From<&TierEvent> for EventRow {
    fn from(e: &TierEvent) -> Self {
        EventRow {
            id: e.id.clone(),
            camera_id: e.camera_id.clone(),
            caption: e.caption.clone(),
            start_ms: e.start_ms,
            end_ms: e.end_ms,
            frame_count: e.frame_count as i64,
            captions: serde_json::to_string(&e.captions).unwrap_or_else(|_| "[]".into()),
            centroid: e.centroid.iter().flat_map(|x| x.to_le_bytes()).collect(),
            previous_event_id: e.previous_event_id.clone(),
            run_id: e.run_id.clone(),
            status: e.status.as_str().to_string(),
            first_entry: e.first_entry.to_string(),
            last_entry: e.last_entry.to_string(),
        }
    }
}

fn corrupt(store: &'static str, what: String) -> EventStoreError {
    EventStoreError::Schema {
        store,
        message: format!("{what}; the store holds data this Ferry cannot read"),
    }
}

impl EventRow {
    /// Back to an event.
    pub fn into_event(self, store: &'static str) -> EventStoreResult<TierEvent> {
        let entry = |s: &str| {
            s.parse::<EntryId>()
                .map_err(|e| corrupt(store, format!("event {}: {e}", self.id)))
        };
        if !self.centroid.len().is_multiple_of(4) {
            return Err(corrupt(
                store,
                format!("event {}: centroid length", self.id),
            ));
        }
        Ok(TierEvent {
            captions: serde_json::from_str(&self.captions)
                .map_err(|e| corrupt(store, format!("event {} captions: {e}", self.id)))?,
            centroid: self
                .centroid
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            status: EventStatus::parse(&self.status).ok_or_else(|| {
                corrupt(store, format!("event {} status {}", self.id, self.status))
            })?,
            first_entry: entry(&self.first_entry)?,
            last_entry: entry(&self.last_entry)?,
            frame_count: self.frame_count.max(0) as u64,
            id: self.id,
            camera_id: self.camera_id,
            caption: self.caption,
            start_ms: self.start_ms,
            end_ms: self.end_ms,
            previous_event_id: self.previous_event_id,
            run_id: self.run_id,
        })
    }
}

/// A camera's state as stored: watermark text and open state JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct CameraRow {
    /// Camera.
    pub camera_id: String,
    /// Watermark entry id.
    pub watermark: Option<String>,
    /// Open event state, JSON.
    pub open_state: Option<String>,
}

impl CameraRow {
    /// The stored form of `state`.
    pub fn from(state: &CameraState) -> EventStoreResult<Self> {
        Ok(CameraRow {
            camera_id: state.camera_id.clone(),
            watermark: state.watermark.map(|w| w.to_string()),
            open_state: state
                .open
                .as_ref()
                .map(serde_json::to_string)
                .transpose()
                .map_err(|e| EventStoreError::Config(format!("open event state: {e}")))?,
        })
    }
}

/// A camera state from its stored form.
pub fn camera_state(
    store: &'static str,
    camera: &str,
    watermark: Option<String>,
    open_state: Option<String>,
) -> EventStoreResult<CameraState> {
    Ok(CameraState {
        camera_id: camera.to_string(),
        watermark: watermark
            .map(|w| w.parse())
            .transpose()
            .map_err(|e| corrupt(store, format!("camera {camera} watermark: {e}")))?,
        open: open_state
            .map(|o| serde_json::from_str(&o))
            .transpose()
            .map_err(|e| corrupt(store, format!("camera {camera} open state: {e}")))?,
    })
}

/// A run record from its stored JSON.
pub fn run_record(store: &'static str, json: &str) -> EventStoreResult<RunRecord> {
    serde_json::from_str(json).map_err(|e| corrupt(store, format!("run record: {e}")))
}

/// The range of migrations still to apply to a schema at `version`, or an error when the
/// schema is newer than this Ferry.
pub fn pending(
    store: &'static str,
    version: i64,
    latest: usize,
) -> EventStoreResult<std::ops::Range<usize>> {
    if version < 0 || version as usize > latest {
        return Err(EventStoreError::Schema {
            store,
            message: format!(
                "the tier schema is at version {version} but this Ferry knows versions up to {latest}; upgrade Ferry (an older one must not write to it)"
            ),
        });
    }
    Ok(version as usize..latest)
}

/// The commit of the graph stores (FalkorDB, Neo4j), the seed's model: one query, so one
/// transaction. Start it with [`CYPHER_FENCE`] or [`CYPHER_NO_FENCE`], which bind `ok` (write or
/// not) and `current` (the fence token recorded before this commit). Parameters: `camera`,
/// `watermark`, `open_state`, `now`, `events` (maps with the [`EventRow`] fields, `centroid` as
/// a float list and `centroid_json` as text). Returns one row: `ok`, `current`.
///
/// Every write sits inside `FOREACH (go IN CASE WHEN ok THEN [1] ELSE [] END | …)`, so a fenced
/// commit writes nothing while the query still returns its row.
pub const CYPHER_COMMIT: &str = "FOREACH (go IN CASE WHEN ok THEN [1] ELSE [] END | \
     MERGE (c:Camera {id: $camera}) \
     SET c.watermark = $watermark, c.open_state = $open_state, c.state_ms = $now \
     FOREACH (e IN $events | \
       MERGE (ev:Event {id: e.id}) \
       SET ev.camera_id = e.camera_id, ev.caption = e.caption, ev.start_ms = e.start_ms, \
           ev.end_ms = e.end_ms, ev.frame_count = e.frame_count, ev.captions = e.captions, \
           ev.centroid = e.centroid, ev.centroid_json = e.centroid_json, \
           ev.previous_event_id = e.previous_event_id, \
           ev.run_id = e.run_id, ev.status = e.status, ev.first_entry = e.first_entry, \
           ev.last_entry = e.last_entry, ev.updated_ms = $now \
       MERGE (c)-[:RECORDED]->(ev) \
       FOREACH (p IN CASE WHEN e.previous_event_id IS NULL THEN [] ELSE [e.previous_event_id] END | \
         MERGE (pe:Event {id: p}) \
         MERGE (ev)-[:CONTINUES]->(pe)))) \
     RETURN ok, current";

/// The fence check that starts a fenced [`CYPHER_COMMIT`] (parameters `scope`, `token`): the
/// `(:FerryFence {scope})` node keeps the highest token seen; `ok` is whether this commit's
/// token is at least that, and only then is the token recorded. Setting and removing `locked`
/// first takes the node's write lock (Neo4j reads committed data: without the lock, two
/// concurrent commits could both read the old token); FalkorDB runs each write query alone.
pub const CYPHER_FENCE: &str = "MERGE (f:FerryFence {scope: $scope}) \
     SET f.locked = true \
     WITH f, f.token AS current \
     REMOVE f.locked \
     WITH f, current, (current IS NULL OR current <= $token) AS ok \
     FOREACH (go IN CASE WHEN ok THEN [1] ELSE [] END | SET f.token = $token) \
     WITH ok, current ";

/// The start of an unfenced [`CYPHER_COMMIT`] (no lease token: a store used without fencing).
pub const CYPHER_NO_FENCE: &str = "WITH true AS ok, null AS current ";

/// The commit query of the graph stores, fenced or not.
pub fn cypher_commit(fenced: bool) -> String {
    let head = if fenced {
        CYPHER_FENCE
    } else {
        CYPHER_NO_FENCE
    };
    format!("{head}{CYPHER_COMMIT}")
}

/// The fence check alone (the tier stores' `raise_fence`): parameters `scope`, `token`; returns
/// one row: `ok`, `current`.
pub fn cypher_raise_fence() -> String {
    format!("{CYPHER_FENCE}RETURN ok, current")
}

/// The event columns the graph stores return, in [`EventRow`] order.
pub const CYPHER_EVENT_RETURN: &str = "e.id AS id, e.camera_id AS camera_id, e.caption AS caption, e.start_ms AS start_ms, e.end_ms AS end_ms, e.frame_count AS frame_count, e.captions AS captions, e.centroid_json AS centroid_json, e.previous_event_id AS previous_event_id, e.run_id AS run_id, e.status AS status, e.first_entry AS first_entry, e.last_entry AS last_entry";

/// A store URL (or PostgreSQL `key=value` string) with its passwords replaced by `***`, for
/// messages and logs; never the raw string, even when it does not parse as a URL (see
/// [`ferry_core::secret::redact`]).
pub fn redact_url(url: &str) -> String {
    ferry_core::secret::redact(url)
}

/// Unix time in ms.
pub fn now_ms() -> i64 {
    ferry_core::checkpoint::now_ms()
}

/// RFC 3339 (UTC, milliseconds) of a Unix ms time.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_matches_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn newer_schemas_are_refused() {
        assert_eq!(pending("x", 0, 2).unwrap(), 0..2);
        assert_eq!(pending("x", 2, 2).unwrap(), 2..2);
        let e = pending("x", 3, 2).unwrap_err().to_string();
        assert!(e.contains("upgrade Ferry"), "{e}");
    }
}
