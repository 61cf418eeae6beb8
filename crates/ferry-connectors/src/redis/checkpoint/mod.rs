//! The default checkpoint store, [`RedisCheckpointStore`]: its keys and the [`CheckpointStore`]
//! implementation, each part in its own file:
//!
//! - `state.rs`: the saved position, and clearing a scope;
//! - `lease.rs`: the run lease and its fencing token;
//! - `ledger.rs`: the ledgers and their journals;
//! - `commands.rs`: commands, scripts and fenced writes on the endpoint;
//! - `scripts.rs`: the Lua scripts.

mod commands;
mod lease;
mod ledger;
mod scripts;
mod state;

use std::time::Duration;

use ferry_core::checkpoint::{CheckpointStore, HeldTokens, Lease, LedgerPage, StoreResult};

use super::RedisEndpoint;

/// The default checkpoint store: keys under `ferry:{<scope>}:` on a Redis server or Cluster
/// (the braces keep one scope's keys in one cluster slot).
///
/// - `…:state` — the job's saved position (a string);
/// - `…:lease` — the run lease (`SET NX PX`, renewed and released only by its owner);
/// - `…:fence` — the fencing token of the newest lease acquisition (an integer, incremented in
///   the same script that sets the lease; a missing fence starts at the server's clock in
///   microseconds, so tokens keep growing after `clear` removed it with the rest). While this store
///   holds a lease on a scope, its state writes run in scripts that refuse them once the fence
///   has moved past the lease's token (see [`CheckpointStore`]);
/// - `…:ledger:<name>` — a hash per ledger; `…:ledgers` lists them;
/// - `…:journal:<name>` — entries a script appended in bulk (see [`copy_with_ledger`]), each
///   record a MessagePack array: a value prefix, then key, value suffix, key, value suffix…
///   (the entry's value is the prefix followed by the suffix); every ledger call first folds
///   the records into the hash (atomically, oldest first), so readers see one ledger.
///
/// [`copy_with_ledger`]: super::copy_with_ledger
#[derive(Debug)]
pub struct RedisCheckpointStore {
    endpoint: RedisEndpoint,
    tokens: HeldTokens,
}

impl RedisCheckpointStore {
    /// A store on `endpoint`.
    pub fn new(endpoint: RedisEndpoint) -> Self {
        Self {
            endpoint,
            tokens: HeldTokens::default(),
        }
    }

    /// The endpoint the store lives on.
    pub fn endpoint(&self) -> &RedisEndpoint {
        &self.endpoint
    }

    /// The key prefix used for `scope`; a job scanning the same server skips these keys.
    pub fn prefix(scope: &str) -> Vec<u8> {
        format!("ferry:{{{scope}}}:").into_bytes()
    }

    /// The hash holding ledger `ledger` of `scope`, for jobs that update a ledger atomically
    /// with their own writes (in a script on the same server).
    pub fn ledger_key(scope: &str, ledger: &str) -> Vec<u8> {
        Self::key(scope, &format!("ledger:{ledger}"))
    }

    /// The list of entries appended in bulk to ledger `ledger` of `scope`, not yet folded into
    /// its hash.
    pub fn journal_key(scope: &str, ledger: &str) -> Vec<u8> {
        Self::key(scope, &format!("journal:{ledger}"))
    }

    /// The fence of `scope`: a string integer, the token of the newest lease acquisition. A
    /// job's own script writing under a lease checks `GET fence == token` (the token in
    /// decimal, from [`Lease::token`] or [`CheckpointStore::fence`]) before it writes.
    pub fn fence_key(scope: &str) -> Vec<u8> {
        Self::key(scope, "fence")
    }

    /// The set listing the ledgers of `scope`.
    pub fn registry_key(scope: &str) -> Vec<u8> {
        Self::key(scope, "ledgers")
    }

    /// The key `suffix` of `scope`: its prefix followed by `suffix`.
    fn key(scope: &str, suffix: &str) -> Vec<u8> {
        let mut k = Self::prefix(scope);
        k.extend_from_slice(suffix.as_bytes());
        k
    }
}

impl CheckpointStore for RedisCheckpointStore {
    async fn load(&self, scope: &str) -> StoreResult<Option<Vec<u8>>> {
        state::load(self, scope).await
    }

    async fn save(&self, scope: &str, state: &[u8]) -> StoreResult<()> {
        state::save(self, scope, state).await
    }

    async fn scopes(&self, prefix: &str) -> StoreResult<Vec<String>> {
        state::scopes(self, prefix).await
    }

    async fn lease_holder(&self, scope: &str) -> StoreResult<Option<String>> {
        lease::holder(self, scope).await
    }

    async fn acquire_lease(&self, scope: &str, owner: &str, ttl: Duration) -> StoreResult<Lease> {
        lease::acquire(self, scope, owner, ttl).await
    }

    async fn take_over_lease(
        &self,
        scope: &str,
        expected_holder: &str,
        owner: &str,
        ttl: Duration,
    ) -> StoreResult<Lease> {
        lease::take_over(self, scope, expected_holder, owner, ttl).await
    }

    fn fence(&self, scope: &str) -> Option<u64> {
        self.tokens.get(scope)
    }

    async fn check_lease(&self, scope: &str) -> StoreResult<()> {
        lease::check(self, scope).await
    }

    async fn renew_lease(&self, lease: &Lease, ttl: Duration) -> StoreResult<()> {
        lease::renew(self, lease, ttl).await
    }

    async fn release_lease(&self, lease: &Lease) -> StoreResult<()> {
        lease::release(self, lease).await
    }

    async fn ledger_put(
        &self,
        scope: &str,
        ledger: &str,
        entries: &[(Vec<u8>, Vec<u8>)],
    ) -> StoreResult<()> {
        ledger::put(self, scope, ledger, entries).await
    }

    async fn ledger_get(
        &self,
        scope: &str,
        ledger: &str,
        keys: &[Vec<u8>],
    ) -> StoreResult<Vec<Option<Vec<u8>>>> {
        ledger::get(self, scope, ledger, keys).await
    }

    async fn ledger_page(
        &self,
        scope: &str,
        ledger: &str,
        cursor: u64,
        count: usize,
    ) -> StoreResult<LedgerPage> {
        ledger::page(self, scope, ledger, cursor, count).await
    }

    async fn ledger_len(&self, scope: &str, ledger: &str) -> StoreResult<u64> {
        ledger::len(self, scope, ledger).await
    }

    async fn ledger_remove(&self, scope: &str, ledger: &str, keys: &[Vec<u8>]) -> StoreResult<()> {
        ledger::remove(self, scope, ledger, keys).await
    }

    async fn clear(&self, scope: &str) -> StoreResult<()> {
        state::clear(self, scope).await
    }
}
