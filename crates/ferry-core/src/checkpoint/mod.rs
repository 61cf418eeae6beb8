//! Checkpoints, run leases and write ledgers.
//!
//! A long job saves its position (an opaque blob it serialises itself) after every batch whose
//! writes are committed, holds a lease so that two runs of one job never overlap, and records in
//! a *ledger* what it wrote so that a rollback can undo exactly that. Ledgers map a binary key to
//! a binary value. Redis backs the default store (see `ferry-connectors`); [`FileCheckpointStore`]
//! serves offline runs.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::future::Future;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{Classify, ErrorClass};

mod file;

pub use file::FileCheckpointStore;

/// A held run lease: proof that this process owns `scope` until the lease expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The job scope the lease covers, e.g. `keys/default`.
    pub scope: String,
    /// The holder's unique token (host, pid and start time).
    pub owner: String,
    /// The fencing token: grows with every acquisition of `scope`, so that stores can refuse
    /// the writes of a holder whose lease was taken over (0 = the store does not fence).
    pub token: u64,
}

/// Errors of a checkpoint store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another run holds the lease.
    #[error(
        "another run of `{scope}` is in progress (lease held by {holder}); wait for it to finish, or if it died, wait for its lease to expire"
    )]
    LeaseHeld {
        /// The job scope.
        scope: String,
        /// Who holds the lease.
        holder: String,
    },
    /// The lease expired or was taken over while this run held it.
    #[error(
        "the lease on `{scope}` was lost (expired or taken over); stopping so that two runs never overlap"
    )]
    LeaseLost {
        /// The job scope.
        scope: String,
    },
    /// A newer run took the lease over: the write was refused.
    #[error(
        "the lease on `{scope}` was taken over by a newer run (token {current} > {token}); this run stops without writing"
    )]
    Fenced {
        /// The job scope.
        scope: String,
        /// The fencing token of the lease this run holds.
        token: u64,
        /// The scope's fence: the token of the newest acquisition.
        current: u64,
    },
    /// A file of the store could not be read or written.
    #[error("checkpoint file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The store's backend failed.
    #[error("checkpoint store: {0}")]
    Backend(String),
    /// Saved data could not be decoded.
    #[error("checkpoint store holds corrupt data at {0}; remove it or run rollback first")]
    Corrupt(String),
}

impl Classify for StoreError {
    fn class(&self) -> ErrorClass {
        match self {
            StoreError::LeaseHeld { .. } => ErrorClass::User,
            StoreError::Corrupt(_) => ErrorClass::User,
            StoreError::LeaseLost { .. }
            | StoreError::Fenced { .. }
            | StoreError::Io { .. }
            | StoreError::Backend(_) => ErrorClass::External,
        }
    }
}

/// A result of a store operation.
pub type StoreResult<T> = Result<T, StoreError>;

/// One page of a ledger: the cursor to continue from (0 when done) and its entries.
pub type LedgerPage = (u64, Vec<(Vec<u8>, Vec<u8>)>);

/// Where jobs keep checkpoints, leases and ledgers.
///
/// **Fencing.** Every acquisition of a scope's lease (including a take-over) gets a token one
/// higher than the one before ([`Lease::token`]). A store instance remembers the tokens of the
/// leases it acquired until it releases them, and refuses its state writes for such a scope
/// (`save`, `ledger_put`, `ledger_remove`, `clear`) with [`StoreError::Fenced`] once another
/// acquisition has moved the scope's fence past its token: a run that was paused past its lease
/// cannot overwrite what the run that took over wrote. Writes to a scope whose lease the
/// instance does not hold (verify, status, plan) are not fenced.
pub trait CheckpointStore: Send + Sync {
    /// The saved state of `scope`, if any.
    fn load(&self, scope: &str) -> impl Future<Output = StoreResult<Option<Vec<u8>>>> + Send;
    /// Replaces the saved state of `scope`.
    fn save(&self, scope: &str, state: &[u8]) -> impl Future<Output = StoreResult<()>> + Send;
    /// The scopes starting with `prefix` that hold a saved state, sorted (a dashboard lists a
    /// job's runs with it).
    fn scopes(&self, prefix: &str) -> impl Future<Output = StoreResult<Vec<String>>> + Send;
    /// Who holds the lease on `scope` now, if anyone (a lease that expired is nobody's): a run
    /// whose state says `running` while nobody holds its lease has died.
    fn lease_holder(&self, scope: &str)
    -> impl Future<Output = StoreResult<Option<String>>> + Send;
    /// Takes the lease on `scope` for `ttl`, or fails with [`StoreError::LeaseHeld`].
    fn acquire_lease(
        &self,
        scope: &str,
        owner: &str,
        ttl: Duration,
    ) -> impl Future<Output = StoreResult<Lease>> + Send;
    /// Extends a held lease, or fails with [`StoreError::LeaseLost`].
    fn renew_lease(
        &self,
        lease: &Lease,
        ttl: Duration,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Gives a held lease up (a no-op when it was lost).
    fn release_lease(&self, lease: &Lease) -> impl Future<Output = StoreResult<()>> + Send;
    /// Takes the lease on `scope` over from `expected_holder` (whose process is known to be
    /// gone), as a compare-and-swap: only while the lease still names exactly that holder (or
    /// nobody). Fails with [`StoreError::LeaseHeld`] when someone else holds it meanwhile.
    ///
    /// The default refuses, for stores that cannot swap atomically.
    fn take_over_lease(
        &self,
        scope: &str,
        expected_holder: &str,
        owner: &str,
        ttl: Duration,
    ) -> impl Future<Output = StoreResult<Lease>> + Send {
        let _ = (owner, ttl);
        let refused = StoreError::LeaseHeld {
            scope: scope.to_string(),
            holder: expected_holder.to_string(),
        };
        async move { Err(refused) }
    }
    /// The fencing token of the lease this store instance holds on `scope`, if any: jobs pass
    /// it to their own scripts, which refuse to write once the scope's fence has moved past it.
    fn fence(&self, scope: &str) -> Option<u64> {
        let _ = scope;
        None
    }
    /// Fails with [`StoreError::Fenced`] when the lease this store instance holds on `scope` is
    /// no longer the newest (another run took it over), so that a job checks before a write the
    /// store cannot fence itself (a key on another server). Not atomic with that write: it
    /// narrows the window to one round trip. The default (no fencing) succeeds.
    fn check_lease(&self, scope: &str) -> impl Future<Output = StoreResult<()>> + Send {
        let _ = scope;
        async { Ok(()) }
    }
    /// Inserts or replaces entries of a ledger.
    fn ledger_put(
        &self,
        scope: &str,
        ledger: &str,
        entries: &[(Vec<u8>, Vec<u8>)],
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Looks entries up; one result per key, in order.
    fn ledger_get(
        &self,
        scope: &str,
        ledger: &str,
        keys: &[Vec<u8>],
    ) -> impl Future<Output = StoreResult<Vec<Option<Vec<u8>>>>> + Send;
    /// Reads a page of about `count` entries from `cursor` (start with 0; 0 comes back at the
    /// end). An entry may be returned twice across pages; never skipped.
    fn ledger_page(
        &self,
        scope: &str,
        ledger: &str,
        cursor: u64,
        count: usize,
    ) -> impl Future<Output = StoreResult<LedgerPage>> + Send;
    /// Number of entries in a ledger.
    fn ledger_len(
        &self,
        scope: &str,
        ledger: &str,
    ) -> impl Future<Output = StoreResult<u64>> + Send;
    /// Removes entries from a ledger.
    fn ledger_remove(
        &self,
        scope: &str,
        ledger: &str,
        keys: &[Vec<u8>],
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Deletes the saved state and every ledger of `scope` (not the lease).
    fn clear(&self, scope: &str) -> impl Future<Output = StoreResult<()>> + Send;
}

/// The fencing tokens of the leases a store instance holds, by scope.
#[derive(Debug, Default)]
pub struct HeldTokens(Mutex<HashMap<String, u64>>);

impl HeldTokens {
    /// Remembers `lease` as held (replacing an older lease on the same scope).
    pub fn hold(&self, lease: &Lease) {
        self.lock().insert(lease.scope.clone(), lease.token);
    }

    /// The token held on `scope`.
    pub fn get(&self, scope: &str) -> Option<u64> {
        self.lock().get(scope).copied()
    }

    /// Forgets `lease` (unless a newer lease on its scope replaced it).
    pub fn forget(&self, lease: &Lease) {
        let mut held = self.lock();
        if held.get(&lease.scope) == Some(&lease.token) {
            held.remove(&lease.scope);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
