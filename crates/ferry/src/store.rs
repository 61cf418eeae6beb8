//! Choosing the checkpoint store: Redis (the default) or a directory (`file://DIR`).

use std::time::Duration;

use ferry_connectors::redis::{ConnError, RedisCheckpointStore, RedisEndpoint};
use ferry_core::checkpoint::{
    CheckpointStore, FileCheckpointStore, Lease, LedgerPage, StoreError, StoreResult,
};

/// A checkpoint store of either kind.
#[derive(Debug)]
pub enum AnyStore {
    /// Keys under `ferry:{scope}:` on a Redis server or cluster.
    Redis(Box<RedisCheckpointStore>),
    /// Files in a directory.
    File(FileCheckpointStore),
}

/// Why a store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenStoreError {
    /// The Redis store could not connect.
    #[error("checkpoint store: {0}")]
    Redis(#[from] ConnError),
    /// The file store could not be created.
    #[error(transparent)]
    File(#[from] StoreError),
    /// The URL is neither.
    #[error("checkpoint store URL `{0}` must be redis://, redis+cluster:// or file://DIR")]
    Url(String),
}

impl AnyStore {
    /// Opens the store at `url`; `None` means a Redis store on `default` (connected anew).
    pub async fn open(
        url: Option<&str>,
        default_url: &str,
        password: Option<&str>,
    ) -> Result<Self, OpenStoreError> {
        match url {
            Some(u) if u.starts_with("file://") => Ok(AnyStore::File(FileCheckpointStore::open(
                u.trim_start_matches("file://"),
            )?)),
            Some(u) if u.starts_with("redis") => Ok(AnyStore::Redis(Box::new(
                RedisCheckpointStore::new(RedisEndpoint::connect(u, None).await?),
            ))),
            Some(u) => Err(OpenStoreError::Url(u.to_string())),
            None => Ok(AnyStore::Redis(Box::new(RedisCheckpointStore::new(
                RedisEndpoint::connect(default_url, password).await?,
            )))),
        }
    }

    /// The Redis endpoint holding the store, if it is one.
    pub fn redis_endpoint(&self) -> Option<&RedisEndpoint> {
        match self {
            AnyStore::Redis(s) => Some(s.endpoint()),
            AnyStore::File(_) => None,
        }
    }
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            AnyStore::Redis($s) => $e.await,
            AnyStore::File($s) => $e.await,
        }
    };
}

impl CheckpointStore for AnyStore {
    async fn load(&self, scope: &str) -> StoreResult<Option<Vec<u8>>> {
        delegate!(self, s => s.load(scope))
    }
    async fn save(&self, scope: &str, state: &[u8]) -> StoreResult<()> {
        delegate!(self, s => s.save(scope, state))
    }
    async fn scopes(&self, prefix: &str) -> StoreResult<Vec<String>> {
        delegate!(self, s => s.scopes(prefix))
    }
    async fn lease_holder(&self, scope: &str) -> StoreResult<Option<String>> {
        delegate!(self, s => s.lease_holder(scope))
    }
    async fn acquire_lease(&self, scope: &str, owner: &str, ttl: Duration) -> StoreResult<Lease> {
        delegate!(self, s => s.acquire_lease(scope, owner, ttl))
    }
    async fn renew_lease(&self, lease: &Lease, ttl: Duration) -> StoreResult<()> {
        delegate!(self, s => s.renew_lease(lease, ttl))
    }
    async fn release_lease(&self, lease: &Lease) -> StoreResult<()> {
        delegate!(self, s => s.release_lease(lease))
    }
    async fn take_over_lease(
        &self,
        scope: &str,
        expected_holder: &str,
        owner: &str,
        ttl: Duration,
    ) -> StoreResult<Lease> {
        delegate!(self, s => s.take_over_lease(scope, expected_holder, owner, ttl))
    }
    fn fence(&self, scope: &str) -> Option<u64> {
        match self {
            AnyStore::Redis(s) => s.fence(scope),
            AnyStore::File(s) => s.fence(scope),
        }
    }
    async fn check_lease(&self, scope: &str) -> StoreResult<()> {
        delegate!(self, s => s.check_lease(scope))
    }
    async fn ledger_put(
        &self,
        scope: &str,
        ledger: &str,
        entries: &[(Vec<u8>, Vec<u8>)],
    ) -> StoreResult<()> {
        delegate!(self, s => s.ledger_put(scope, ledger, entries))
    }
    async fn ledger_get(
        &self,
        scope: &str,
        ledger: &str,
        keys: &[Vec<u8>],
    ) -> StoreResult<Vec<Option<Vec<u8>>>> {
        delegate!(self, s => s.ledger_get(scope, ledger, keys))
    }
    async fn ledger_page(
        &self,
        scope: &str,
        ledger: &str,
        cursor: u64,
        count: usize,
    ) -> StoreResult<LedgerPage> {
        delegate!(self, s => s.ledger_page(scope, ledger, cursor, count))
    }
    async fn ledger_len(&self, scope: &str, ledger: &str) -> StoreResult<u64> {
        delegate!(self, s => s.ledger_len(scope, ledger))
    }
    async fn ledger_remove(&self, scope: &str, ledger: &str, keys: &[Vec<u8>]) -> StoreResult<()> {
        delegate!(self, s => s.ledger_remove(scope, ledger, keys))
    }
    async fn clear(&self, scope: &str) -> StoreResult<()> {
        delegate!(self, s => s.clear(scope))
    }
}
