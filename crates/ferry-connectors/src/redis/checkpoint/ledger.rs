//! A scope's ledgers: a hash per ledger (`…:ledger:<name>`, listed in `…:ledgers`), and the
//! journal of entries appended in bulk (`…:journal:<name>`), folded into the hash before every
//! ledger call so readers see one ledger.

use ferry_core::checkpoint::{LedgerPage, StoreError, StoreResult};

use super::RedisCheckpointStore;
use super::scripts::{FENCED_PUT, FENCED_REMOVE, FOLD, FOLD_RECORDS};

/// Moves the journal of `ledger` into its hash, oldest entries first.
async fn fold(store: &RedisCheckpointStore, scope: &str, ledger: &str) -> StoreResult<()> {
    let journal = RedisCheckpointStore::journal_key(scope, ledger);
    let hash = RedisCheckpointStore::ledger_key(scope, ledger);
    let max = FOLD_RECORDS.to_string();
    loop {
        let moved: u64 = store
            .script(&FOLD, &[&journal, &hash], &[max.as_bytes()])
            .await?;
        if moved < FOLD_RECORDS {
            return Ok(());
        }
    }
}

/// Writes `entries` into `ledger` and lists the ledger in the scope's registry (fenced while
/// a lease is held).
pub(super) async fn put(
    store: &RedisCheckpointStore,
    scope: &str,
    ledger: &str,
    entries: &[(Vec<u8>, Vec<u8>)],
) -> StoreResult<()> {
    if entries.is_empty() {
        return Ok(());
    }
    fold(store, scope, ledger).await?;
    let key = RedisCheckpointStore::ledger_key(scope, ledger);
    let registry = RedisCheckpointStore::registry_key(scope);
    if let Some(token) = store.tokens.get(scope) {
        let mut args: Vec<&[u8]> = Vec::with_capacity(1 + 2 * entries.len());
        args.push(ledger.as_bytes());
        for (k, v) in entries {
            args.push(k);
            args.push(v);
        }
        return store
            .fenced(&FENCED_PUT, scope, token, &[&registry, &key], &args)
            .await;
    }
    let mut hset = redis::cmd("HSET");
    hset.arg(&key);
    for (k, v) in entries {
        hset.arg(k).arg(v);
    }
    let replies = store
        .endpoint
        .run(vec![
            (
                registry.clone(),
                redis::cmd("SADD").arg(&registry).arg(ledger).clone(),
            ),
            (key, hset),
        ])
        .await
        .map_err(|e| StoreError::Backend(e.to_string()))?;
    for r in replies {
        r.map_err(|e| StoreError::Backend(e.to_string()))?;
    }
    Ok(())
}

/// The values of `keys` in `ledger`, in order (`None` where absent).
pub(super) async fn get(
    store: &RedisCheckpointStore,
    scope: &str,
    ledger: &str,
    keys: &[Vec<u8>],
) -> StoreResult<Vec<Option<Vec<u8>>>> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    fold(store, scope, ledger).await?;
    let key = RedisCheckpointStore::ledger_key(scope, ledger);
    store
        .q(&key, redis::cmd("HMGET").arg(&key).arg(keys).clone())
        .await
}

/// One `HSCAN` step over `ledger`: the next cursor (0 at the end) and the entries returned.
pub(super) async fn page(
    store: &RedisCheckpointStore,
    scope: &str,
    ledger: &str,
    cursor: u64,
    count: usize,
) -> StoreResult<LedgerPage> {
    fold(store, scope, ledger).await?;
    let key = RedisCheckpointStore::ledger_key(scope, ledger);
    let (next, flat): (u64, Vec<Vec<u8>>) = store
        .q(
            &key,
            redis::cmd("HSCAN")
                .arg(&key)
                .arg(cursor)
                .arg("COUNT")
                .arg(count)
                .clone(),
        )
        .await?;
    let mut entries = Vec::with_capacity(flat.len() / 2);
    let mut it = flat.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        entries.push((k, v));
    }
    Ok((next, entries))
}

/// The number of entries in `ledger`.
pub(super) async fn len(
    store: &RedisCheckpointStore,
    scope: &str,
    ledger: &str,
) -> StoreResult<u64> {
    fold(store, scope, ledger).await?;
    let key = RedisCheckpointStore::ledger_key(scope, ledger);
    store.q(&key, redis::cmd("HLEN").arg(&key).clone()).await
}

/// Deletes `keys` from `ledger` (fenced while a lease is held).
pub(super) async fn remove(
    store: &RedisCheckpointStore,
    scope: &str,
    ledger: &str,
    keys: &[Vec<u8>],
) -> StoreResult<()> {
    if keys.is_empty() {
        return Ok(());
    }
    fold(store, scope, ledger).await?;
    let key = RedisCheckpointStore::ledger_key(scope, ledger);
    if let Some(token) = store.tokens.get(scope) {
        let args: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
        return store
            .fenced(&FENCED_REMOVE, scope, token, &[&key], &args)
            .await;
    }
    store
        .q::<i64>(&key, redis::cmd("HDEL").arg(&key).arg(keys).clone())
        .await
        .map(drop)
}
