//! Server-side COPY with the rollback ledger written in the same atomic step.
//!
//! A Lua script copies a slice of keys and appends the names it created to the ledger's
//! journal (see [`RedisCheckpointStore`]) before it returns. Redis runs a script as one unit, so
//! a client killed at any moment leaves either both the copies and their record, or neither:
//! which keys a run created is known exactly without asking first whether each new name exists.

use futures::future::try_join_all;
use redis::Value;
use std::sync::LazyLock;

use super::{ConnError, LuaScript, RedisCheckpointStore, RedisEndpoint};

/// What a ledgered COPY did with one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LedgeredCopy {
    /// The new name was free: the key was copied and recorded in the ledger.
    Created,
    /// The ledger already held the new name (an earlier attempt of the run made it): copied
    /// again with `REPLACE`.
    Redone,
    /// The new name exists and the ledger does not list it (yet): nothing was written.
    Exists,
    /// The source key is gone.
    Vanished,
    /// The server refused the copy.
    Failed(String),
}

/// Pairs per script call: bounds how long one call holds the server.
const PAIRS_PER_CALL: usize = 256;

/// KEYS: journal, ledger hash, ledger registry, then source and new name of each pair.
/// ARGV: the ledger value's prefix (followed by the source name), the ledger name.
/// Returns the status letters (c, r, e, v, f) followed by one message per `f`.
static COPY_SCRIPT: LazyLock<LuaScript> = LazyLock::new(|| {
    LuaScript::new(
        r#"
local journal, index = KEYS[1], KEYS[2]
local registered = redis.pcall('SADD', KEYS[3], ARGV[2])
if type(registered) == 'table' and registered.err then return registered end
local pcall, call = redis.pcall, redis.call
-- Counters instead of `#t`: this loop is the hot path of a one-server apply.
local status, errors, created = {}, {}, { ARGV[1] }
local n, c, e = 0, 1, 0
for i = 4, #KEYS, 2 do
  local src, dst = KEYS[i], KEYS[i + 1]
  local copied = pcall('COPY', src, dst)
  n = n + 1
  if copied == 1 then
    status[n] = 'c'
    created[c + 1] = dst
    created[c + 2] = src
    c = c + 2
  elseif copied == 0 then
    if call('EXISTS', src) == 0 then
      status[n] = 'v'
    elseif call('HEXISTS', index, dst) == 1 then
      copied = pcall('COPY', src, dst, 'REPLACE')
      if copied == 1 then status[n] = 'r'
      elseif copied == 0 then status[n] = 'v'
      else status[n] = 'f'; e = e + 1; errors[e] = copied.err end
    else
      status[n] = 'e'
    end
  else
    status[n] = 'f'; e = e + 1; errors[e] = copied.err
  end
end
if c > 1 then
  local pushed = pcall('RPUSH', journal, cmsgpack.pack(created))
  if type(pushed) == 'table' and pushed.err then
    -- A copy without its record must not stay: these names were free before this call.
    for j = 2, c, 2 do call('UNLINK', created[j]) end
    return redis.error_reply('recording the ledger failed, copies undone: ' .. pushed.err)
  end
end
local out = { table.concat(status) }
for k = 1, e do out[k + 1] = errors[k] end
return out
"#,
    )
});

/// Copies each `(source, new name)` pair with server-side `COPY` and records every key it
/// creates in ledger `ledger` of `scope` (value: `value_prefix` then the source name), in
/// scripts run on `endpoint`, which must be a standalone server holding the checkpoint store
/// in the same database. Returns one outcome per pair, in order.
pub async fn copy_with_ledger(
    endpoint: &RedisEndpoint,
    scope: &str,
    ledger: &str,
    value_prefix: &[u8],
    pairs: &[(&[u8], &[u8])],
) -> Result<Vec<LedgeredCopy>, ConnError> {
    let journal = RedisCheckpointStore::journal_key(scope, ledger);
    let index = RedisCheckpointStore::ledger_key(scope, ledger);
    let registry = RedisCheckpointStore::registry_key(scope);
    let calls = pairs.chunks(PAIRS_PER_CALL).map(|chunk| {
        let mut keys: Vec<&[u8]> = Vec::with_capacity(3 + chunk.len() * 2);
        keys.extend([journal.as_slice(), index.as_slice(), registry.as_slice()]);
        for (src, dst) in chunk {
            keys.extend([*src, *dst]);
        }
        async move {
            let reply = endpoint
                .eval(&COPY_SCRIPT, &keys, &[value_prefix, ledger.as_bytes()])
                .await?;
            parse_reply(endpoint, reply, chunk.len())
        }
    });
    Ok(try_join_all(calls).await?.into_iter().flatten().collect())
}

fn parse_reply(
    endpoint: &RedisEndpoint,
    reply: redis::RedisResult<Value>,
    pairs: usize,
) -> Result<Vec<LedgeredCopy>, ConnError> {
    let unexpected = |what: String| ConnError::Command {
        endpoint: endpoint.display().to_string(),
        source: redis::RedisError::from((
            redis::ErrorKind::Client,
            "unexpected reply from the ledgered COPY script",
            what,
        )),
    };
    let reply = reply.map_err(|source| ConnError::Command {
        endpoint: endpoint.display().to_string(),
        source,
    })?;
    let Value::Array(items) = reply else {
        return Err(unexpected(format!("{reply:?}")));
    };
    let mut items = items.into_iter();
    let status = match items.next() {
        Some(Value::BulkString(s)) if s.len() == pairs => s,
        other => return Err(unexpected(format!("{other:?}"))),
    };
    let mut errors = items.map(|v| redis::from_redis_value::<String>(v).unwrap_or_default());
    Ok(status
        .iter()
        .map(|s| match s {
            b'c' => LedgeredCopy::Created,
            b'r' => LedgeredCopy::Redone,
            b'e' => LedgeredCopy::Exists,
            b'v' => LedgeredCopy::Vanished,
            _ => LedgeredCopy::Failed(errors.next().unwrap_or_default()),
        })
        .collect())
}
