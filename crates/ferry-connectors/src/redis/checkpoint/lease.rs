//! The run lease of a scope (`…:lease`) and its fencing token (`…:fence`): acquiring, taking
//! over, checking, renewing and releasing, for [`CheckpointStore`].
//!
//! [`CheckpointStore`]: ferry_core::checkpoint::CheckpointStore

use std::time::Duration;

use ferry_core::checkpoint::{Lease, StoreError, StoreResult};
use redis::Value;

use super::RedisCheckpointStore;
use super::scripts::{ACQUIRE, RELEASE, RENEW, TAKE_OVER};

/// The lease key of `scope`.
fn lease_key(scope: &str) -> Vec<u8> {
    RedisCheckpointStore::key(scope, "lease")
}

/// Who holds the lease of `scope` (the key expires with the lease).
pub(super) async fn holder(
    store: &RedisCheckpointStore,
    scope: &str,
) -> StoreResult<Option<String>> {
    let key = lease_key(scope);
    store.q(&key, redis::cmd("GET").arg(&key).clone()).await
}

/// Takes the lease of `scope` for `owner` unless someone else holds it.
pub(super) async fn acquire(
    store: &RedisCheckpointStore,
    scope: &str,
    owner: &str,
    ttl: Duration,
) -> StoreResult<Lease> {
    let ms = ttl.as_millis().max(1).to_string();
    let reply = store
        .script(
            &ACQUIRE,
            &[&lease_key(scope), &RedisCheckpointStore::fence_key(scope)],
            &[owner.as_bytes(), ms.as_bytes()],
        )
        .await?;
    granted(store, scope, owner, reply)
}

/// Takes the lease of `scope` for `owner`, also when it still names `expected_holder`.
pub(super) async fn take_over(
    store: &RedisCheckpointStore,
    scope: &str,
    expected_holder: &str,
    owner: &str,
    ttl: Duration,
) -> StoreResult<Lease> {
    let ms = ttl.as_millis().max(1).to_string();
    let reply = store
        .script(
            &TAKE_OVER,
            &[&lease_key(scope), &RedisCheckpointStore::fence_key(scope)],
            &[expected_holder.as_bytes(), owner.as_bytes(), ms.as_bytes()],
        )
        .await?;
    granted(store, scope, owner, reply)
}

/// Reads the reply of [`ACQUIRE`] or [`TAKE_OVER`], and holds the token when it was granted.
fn granted(
    store: &RedisCheckpointStore,
    scope: &str,
    owner: &str,
    reply: (i64, Value),
) -> StoreResult<Lease> {
    let (ok, v) = reply;
    if ok != 1 {
        let holder: Option<String> =
            redis::from_redis_value(v).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        return Err(StoreError::LeaseHeld {
            scope: scope.to_string(),
            holder: holder.unwrap_or_else(|| "a concurrent run".to_string()),
        });
    }
    let token: u64 = redis::from_redis_value(v).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let lease = Lease {
        scope: scope.to_string(),
        owner: owner.to_string(),
        token,
    };
    store.tokens.hold(&lease);
    Ok(lease)
}

/// Whether the fence of `scope` still holds the token this store holds (`Ok` without a lease).
pub(super) async fn check(store: &RedisCheckpointStore, scope: &str) -> StoreResult<()> {
    let Some(token) = store.tokens.get(scope) else {
        return Ok(());
    };
    let key = RedisCheckpointStore::fence_key(scope);
    let current: Option<u64> = store.q(&key, redis::cmd("GET").arg(&key).clone()).await?;
    if current == Some(token) {
        return Ok(());
    }
    Err(StoreError::Fenced {
        scope: scope.to_string(),
        token,
        current: current.unwrap_or(0),
    })
}

/// Extends `lease` by `ttl` if its owner still holds it.
pub(super) async fn renew(
    store: &RedisCheckpointStore,
    lease: &Lease,
    ttl: Duration,
) -> StoreResult<()> {
    let key = lease_key(&lease.scope);
    let ok: i64 = store
        .q(
            &key,
            redis::cmd("EVAL")
                .arg(RENEW)
                .arg(1)
                .arg(&key)
                .arg(&lease.owner)
                .arg(ttl.as_millis().max(1) as u64)
                .clone(),
        )
        .await?;
    if ok == 1 {
        Ok(())
    } else {
        Err(StoreError::LeaseLost {
            scope: lease.scope.clone(),
        })
    }
}

/// Forgets the token of `lease` and deletes the lease if its owner still holds it.
pub(super) async fn release(store: &RedisCheckpointStore, lease: &Lease) -> StoreResult<()> {
    store.tokens.forget(lease);
    let key = lease_key(&lease.scope);
    store
        .q::<i64>(
            &key,
            redis::cmd("EVAL")
                .arg(RELEASE)
                .arg(1)
                .arg(&key)
                .arg(&lease.owner)
                .clone(),
        )
        .await
        .map(drop)
}
