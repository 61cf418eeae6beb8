//! The durable event store: where the `tier` job puts the events it made.
//!
//! Implementations (SQLite, PostgreSQL, FalkorDB, Neo4j) live in `ferry-connectors`. Every write
//! is an idempotent upsert by id, so a pass re-run after a crash rewrites the same rows.

use std::future::Future;

use serde::{Deserialize, Serialize};

use super::grouping::OpenEventState;
use super::{EntryId, TierEvent};
use crate::error::{Classify, ErrorClass};

/// What the store keeps per camera, written in the same transaction as the camera's events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct CameraState {
    /// The camera.
    pub camera_id: String,
    /// The last entry already stored in an event: entries at or before it are migrated and
    /// only need deleting from Redis.
    pub watermark: Option<EntryId>,
    /// The state of the camera's open event, when one was written early and may still grow.
    pub open: Option<OpenEventState>,
}

/// One pass of the job, as recorded in the history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct RunRecord {
    /// Unique run id.
    pub run_id: String,
    /// What started it: `cli`, `serve`, `api`.
    pub trigger: String,
    /// Start, Unix ms.
    pub started_ms: i64,
    /// End, Unix ms.
    pub finished_ms: i64,
    /// Cameras processed.
    pub cameras: u64,
    /// Captions read from Redis.
    pub captions_read: u64,
    /// Captions merged into written events.
    pub captions_migrated: u64,
    /// Events written (inserted or extended).
    pub events_written: u64,
    /// Entries deleted from Redis.
    pub entries_deleted: u64,
    /// Cameras that failed.
    pub failed: u64,
    /// The first error, if any.
    pub error: Option<String>,
}

/// Row counts of a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct StoreCounts {
    /// Events stored.
    pub events: u64,
    /// Cameras known.
    pub cameras: u64,
    /// Captions merged into the stored events (sum of frame counts).
    pub frames: u64,
}

/// Errors of an event store.
#[derive(Debug, thiserror::Error)]
pub enum EventStoreError {
    /// The store URL or its options are wrong.
    #[error("event store: {0}")]
    Config(String),
    /// The store could not be reached or failed a statement.
    #[error("event store {store}: {message}")]
    Backend {
        /// Which store (`sqlite`, `postgres`, `falkordb`, `neo4j`).
        store: &'static str,
        /// What failed.
        message: String,
    },
    /// The store holds data Ferry cannot read, or a schema newer than this Ferry.
    #[error("event store {store}: {message}")]
    Schema {
        /// Which store.
        store: &'static str,
        /// What is wrong and what to do.
        message: String,
    },
}

impl Classify for EventStoreError {
    fn class(&self) -> ErrorClass {
        match self {
            EventStoreError::Config(_) | EventStoreError::Schema { .. } => ErrorClass::User,
            EventStoreError::Backend { .. } => ErrorClass::External,
        }
    }
}

/// A result of an event store operation.
pub type EventStoreResult<T> = Result<T, EventStoreError>;

/// A durable store of tier events.
pub trait EventStore: Send + Sync {
    /// Short backend name: `sqlite`, `postgres`, `falkordb`, `neo4j`.
    fn backend(&self) -> &'static str;

    /// Creates the schema, or upgrades an older one; refuses a newer one.
    fn migrate(&self) -> impl Future<Output = EventStoreResult<()>> + Send;

    /// Checks that the store answers.
    fn healthcheck(&self) -> impl Future<Output = EventStoreResult<()>> + Send;

    /// The stored state of one camera, if the store knows it.
    fn camera_state(
        &self,
        camera_id: &str,
    ) -> impl Future<Output = EventStoreResult<Option<CameraState>>> + Send;

    /// In one transaction: upserts `events` by id (replacing every field), and upserts the
    /// camera's `state`.
    fn commit(
        &self,
        events: &[TierEvent],
        state: &CameraState,
    ) -> impl Future<Output = EventStoreResult<()>> + Send;

    /// Upserts a run record by `run_id`.
    fn record_run(&self, run: &RunRecord) -> impl Future<Output = EventStoreResult<()>> + Send;

    /// The newest `limit` run records, newest first.
    fn history(
        &self,
        limit: usize,
    ) -> impl Future<Output = EventStoreResult<Vec<RunRecord>>> + Send;

    /// The newest `limit` events (by start time), of one camera or of all, newest first.
    fn events(
        &self,
        camera_id: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = EventStoreResult<Vec<TierEvent>>> + Send;

    /// Row counts.
    fn counts(&self) -> impl Future<Output = EventStoreResult<StoreCounts>> + Send;
}
