//! Choosing the durable event store by URL scheme.

use ferry_connectors::falkordb::FalkorDbEventStore;
use ferry_connectors::neo4j::Neo4jEventStore;
use ferry_connectors::postgres::PostgresEventStore;
use ferry_connectors::sqlite::SqliteEventStore;
use ferry_core::jobs::tier::store::{EventStoreResult, Fence};
use ferry_core::jobs::tier::{
    CameraState, EventStore, EventStoreError, RunRecord, StoreCounts, TierEvent,
};

/// An event store of any supported kind.
#[derive(Debug)]
pub enum AnyEventStore {
    /// `sqlite://PATH`.
    Sqlite(SqliteEventStore),
    /// `postgres://…`.
    Postgres(PostgresEventStore),
    /// `falkordb://…`.
    FalkorDb(FalkorDbEventStore),
    /// `neo4j://…` or `bolt://…`.
    Neo4j(Neo4jEventStore),
}

impl AnyEventStore {
    /// Opens the store named by `url` and creates or upgrades its schema.
    pub async fn open(url: &str) -> EventStoreResult<Self> {
        let store = if url.starts_with("sqlite:") {
            AnyEventStore::Sqlite(SqliteEventStore::open(url).await?)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            AnyEventStore::Postgres(PostgresEventStore::open(url).await?)
        } else if url.starts_with("falkordb://") {
            AnyEventStore::FalkorDb(FalkorDbEventStore::open(url).await?)
        } else if url.starts_with("neo4j://") || url.starts_with("bolt://") {
            AnyEventStore::Neo4j(Neo4jEventStore::open(url).await?)
        } else {
            return Err(EventStoreError::Config(format!(
                "store URL `{}` must start with sqlite://, postgres://, falkordb:// or neo4j://",
                ferry_connectors::schema::redact_url(url)
            )));
        };
        store.migrate().await?;
        Ok(store)
    }
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            AnyEventStore::Sqlite($s) => $e.await,
            AnyEventStore::Postgres($s) => $e.await,
            AnyEventStore::FalkorDb($s) => $e.await,
            AnyEventStore::Neo4j($s) => $e.await,
        }
    };
}

impl EventStore for AnyEventStore {
    fn backend(&self) -> &'static str {
        match self {
            AnyEventStore::Sqlite(s) => s.backend(),
            AnyEventStore::Postgres(s) => s.backend(),
            AnyEventStore::FalkorDb(s) => s.backend(),
            AnyEventStore::Neo4j(s) => s.backend(),
        }
    }
    async fn migrate(&self) -> EventStoreResult<()> {
        delegate!(self, s => s.migrate())
    }
    async fn healthcheck(&self) -> EventStoreResult<()> {
        delegate!(self, s => s.healthcheck())
    }
    async fn camera_state(&self, camera_id: &str) -> EventStoreResult<Option<CameraState>> {
        delegate!(self, s => s.camera_state(camera_id))
    }
    async fn commit(
        &self,
        events: &[TierEvent],
        state: &CameraState,
        fence: Option<&Fence>,
    ) -> EventStoreResult<()> {
        delegate!(self, s => s.commit(events, state, fence))
    }
    async fn raise_fence(&self, fence: &Fence) -> EventStoreResult<()> {
        delegate!(self, s => s.raise_fence(fence))
    }
    async fn record_run(&self, run: &RunRecord) -> EventStoreResult<()> {
        delegate!(self, s => s.record_run(run))
    }
    async fn history(&self, limit: usize) -> EventStoreResult<Vec<RunRecord>> {
        delegate!(self, s => s.history(limit))
    }
    async fn events(
        &self,
        camera_id: Option<&str>,
        limit: usize,
    ) -> EventStoreResult<Vec<TierEvent>> {
        delegate!(self, s => s.events(camera_id, limit))
    }
    async fn counts(&self) -> EventStoreResult<StoreCounts> {
        delegate!(self, s => s.counts())
    }
}
