//! The durable event store: where the `tier` job puts the events it made.
//!
//! Implementations (SQLite, PostgreSQL, FalkorDB, Neo4j) live in `ferry-connectors`. Every write
//! is an idempotent upsert by id, so a pass re-run after a crash rewrites the same rows.
//!
//! Commits are *fenced*: a pass writes under a per-camera run lease whose fencing token grows
//! with every acquisition ([`crate::checkpoint::Lease::token`]). The store keeps the highest
//! token it has seen per lease scope, in the same transaction as the events, and refuses a
//! commit carrying a lower one ([`EventStoreError::Fenced`]): a pass that lost its lease (paused
//! past its TTL while another replica took the camera over) cannot overwrite the newer run's
//! events and watermark.

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

/// The run lease a commit is made under: its scope (`tier/<camera>`) and fencing token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fence {
    /// The lease scope, e.g. `tier/cam1`.
    pub scope: String,
    /// The lease's fencing token (never 0: a lease without fencing commits without a fence).
    pub token: u64,
}

impl Fence {
    /// The fence of a lease on `scope` with `token`; `None` for token 0 (the lease store does
    /// not fence, or a dry run holds no lease).
    pub fn of(scope: impl Into<String>, token: u64) -> Option<Self> {
        (token > 0).then(|| Fence {
            scope: scope.into(),
            token,
        })
    }

    /// The token as the stores keep it (a signed 64-bit integer).
    pub fn stored_token(&self) -> EventStoreResult<i64> {
        i64::try_from(self.token).map_err(|_| {
            EventStoreError::Config(format!(
                "fencing token {} of `{}` is beyond the stores' 64-bit signed range",
                self.token, self.scope
            ))
        })
    }
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
    /// A newer run took the lease over: the store has seen a higher fencing token for this
    /// scope, so the commit was rolled back and nothing was written.
    #[error(
        "event store {store}: `{scope}` was taken over by a newer run (fencing token {current} > this run's {token}); this pass stops without writing"
    )]
    Fenced {
        /// Which store.
        store: &'static str,
        /// The lease scope (`tier/<camera>`).
        scope: String,
        /// This run's token.
        token: u64,
        /// The highest token the store has seen for the scope.
        current: u64,
    },
}

impl Classify for EventStoreError {
    fn class(&self) -> ErrorClass {
        match self {
            EventStoreError::Config(_) | EventStoreError::Schema { .. } => ErrorClass::User,
            EventStoreError::Backend { .. } | EventStoreError::Fenced { .. } => {
                ErrorClass::External
            }
        }
    }

    fn retryable(&self) -> bool {
        // A fenced pass must not retry: its lease belongs to a newer run now.
        matches!(self, EventStoreError::Backend { .. })
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

    /// In one transaction: checks `fence` (when given) against the highest token the store has
    /// seen for its scope and records it, upserts `events` by id (replacing every field), and
    /// upserts the camera's `state`. A fence lower than the recorded one writes nothing and
    /// fails with [`EventStoreError::Fenced`]; an equal one (the same run committing again) is
    /// accepted.
    fn commit(
        &self,
        events: &[TierEvent],
        state: &CameraState,
        fence: Option<&Fence>,
    ) -> impl Future<Output = EventStoreResult<()>> + Send;

    /// Records `fence` for its scope as [`EventStore::commit`] does, without writing anything
    /// else: from then on, commits under a lower token are refused. Fails with
    /// [`EventStoreError::Fenced`] when a higher token is recorded already.
    fn raise_fence(&self, fence: &Fence) -> impl Future<Output = EventStoreResult<()>> + Send;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_zero_means_no_fence() {
        assert_eq!(Fence::of("tier/c", 0), None);
        let f = Fence::of("tier/c", 3).unwrap();
        assert_eq!(
            (f.scope.as_str(), f.token, f.stored_token().unwrap()),
            ("tier/c", 3, 3)
        );
        assert!(
            Fence::of("tier/c", u64::MAX)
                .unwrap()
                .stored_token()
                .is_err()
        );
    }

    #[test]
    fn a_fenced_commit_says_what_happened_and_is_not_retried() {
        let e = EventStoreError::Fenced {
            store: "sqlite",
            scope: "tier/cam1".into(),
            token: 4,
            current: 5,
        };
        assert_eq!(
            e.to_string(),
            "event store sqlite: `tier/cam1` was taken over by a newer run (fencing token 5 > this run's 4); this pass stops without writing"
        );
        assert_eq!(e.class(), ErrorClass::External);
        assert!(!e.retryable());
        let backend = EventStoreError::Backend {
            store: "sqlite",
            message: "busy".into(),
        };
        assert!(backend.retryable());
    }
}
