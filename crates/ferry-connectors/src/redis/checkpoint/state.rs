//! A scope's saved position (`…:state`), and clearing everything the scope holds.

use ferry_core::checkpoint::{StoreError, StoreResult};
use redis::Value;

use super::RedisCheckpointStore;
use super::scripts::{FENCED_DEL, FENCED_SAVE};

/// The state key of `scope`.
fn state_key(scope: &str) -> Vec<u8> {
    RedisCheckpointStore::key(scope, "state")
}

/// The saved position of `scope`, if any.
pub(super) async fn load(
    store: &RedisCheckpointStore,
    scope: &str,
) -> StoreResult<Option<Vec<u8>>> {
    let key = state_key(scope);
    store.q(&key, redis::cmd("GET").arg(&key).clone()).await
}

/// The scopes starting with `prefix` that hold a state: `SCAN MATCH ferry:{PREFIX*}:state` on
/// every master (glob characters in `prefix` are escaped).
pub(super) async fn scopes(store: &RedisCheckpointStore, prefix: &str) -> StoreResult<Vec<String>> {
    let mut escaped = String::new();
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    let pattern = format!("ferry:{{{escaped}*}}:state");
    let mut out = Vec::new();
    for node in store.endpoint.masters() {
        let mut cursor = 0;
        loop {
            let (next, keys) = node
                .scan(cursor, Some(pattern.as_bytes()), 1000)
                .await
                .map_err(|e| StoreError::Backend(format!("{}: {e}", store.endpoint.display())))?;
            for key in keys {
                let name = String::from_utf8_lossy(&key);
                if let Some(scope) = name
                    .strip_prefix("ferry:{")
                    .and_then(|rest| rest.strip_suffix("}:state"))
                {
                    out.push(scope.to_string());
                }
            }
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Saves the position of `scope` (fenced while a lease is held).
pub(super) async fn save(
    store: &RedisCheckpointStore,
    scope: &str,
    state: &[u8],
) -> StoreResult<()> {
    let key = state_key(scope);
    if let Some(token) = store.tokens.get(scope) {
        return store
            .fenced(&FENCED_SAVE, scope, token, &[&key], &[state])
            .await;
    }
    store
        .q::<Value>(&key, redis::cmd("SET").arg(&key).arg(state).clone())
        .await
        .map(drop)
}

/// Deletes the state, the registry, the fence and every ledger and journal of `scope` (fenced
/// while a lease is held).
pub(super) async fn clear(store: &RedisCheckpointStore, scope: &str) -> StoreResult<()> {
    let registry = RedisCheckpointStore::registry_key(scope);
    let ledgers: Vec<String> = store
        .q(&registry, redis::cmd("SMEMBERS").arg(&registry).clone())
        .await?;
    let mut keys = vec![
        state_key(scope),
        registry.clone(),
        RedisCheckpointStore::fence_key(scope),
    ];
    for l in ledgers {
        keys.push(RedisCheckpointStore::ledger_key(scope, &l));
        keys.push(RedisCheckpointStore::journal_key(scope, &l));
    }
    if let Some(token) = store.tokens.get(scope) {
        let keys: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
        return store.fenced(&FENCED_DEL, scope, token, &keys, &[]).await;
    }
    store
        .q::<i64>(&registry, redis::cmd("DEL").arg(keys).clone())
        .await
        .map(drop)
}
