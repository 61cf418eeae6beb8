//! Server-side COPY, or RESTORE of DUMP payloads, with the rollback ledger written in the same
//! atomic step.
//!
//! A Lua script writes a slice of keys and appends the names it created to the ledger's
//! journal (see [`RedisCheckpointStore`]) before it returns. Redis runs a script as one unit, so
//! a client killed at any moment leaves either both the copies and their record, or neither:
//! which keys a run created is known exactly without asking first whether each new name exists.

use futures::future::try_join_all;
use redis::Value;
use std::sync::LazyLock;

use super::{ConnError, LuaScript, RedisCheckpointStore, RedisEndpoint};

/// What a ledgered COPY or RESTORE did with one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LedgeredCopy {
    /// The new name was free: the key was written and recorded in the ledger.
    Created,
    /// The ledger already held the new name (an earlier attempt of the run made it): written
    /// again with `REPLACE`.
    Redone,
    /// The new name exists and the ledger does not list it (yet): nothing was written.
    Exists,
    /// The source key is gone (or, for a RESTORE, its expiry passed meanwhile).
    Vanished,
    /// The server refused the write.
    Failed(String),
}

/// Keys per script call: bounds how long one call holds the server.
const PAIRS_PER_CALL: usize = 256;
/// Payload bytes per RESTORE script call, at most (a single larger payload goes alone).
const BYTES_PER_CALL: usize = 8 << 20;

/// Shared start of both scripts: register the ledger, then the loop's state. KEYS[1..3] are the
/// journal, the ledger hash and the registry; ARGV[1] the value prefix, ARGV[2] the ledger name.
const SCRIPT_HEAD: &str = r#"
local journal, index = KEYS[1], KEYS[2]
local registered = redis.pcall('SADD', KEYS[3], ARGV[2])
if type(registered) == 'table' and registered.err then return registered end
local pcall, call = redis.pcall, redis.call
-- Counters instead of `#t`: this loop is the hot path of an apply.
local status, errors, created = {}, {}, { ARGV[1] }
local n, c, e = 0, 1, 0
"#;

/// Shared end: append the record of the created keys to the journal and return the statuses.
const SCRIPT_TAIL: &str = r#"
if c > 1 then
  local pushed = pcall('RPUSH', journal, cmsgpack.pack(created))
  if type(pushed) == 'table' and pushed.err then
    -- A write without its record must not stay: these names were free before this call.
    for j = 2, c, 2 do call('UNLINK', created[j]) end
    return redis.error_reply('recording the ledger failed, writes undone: ' .. pushed.err)
  end
end
local out = { table.concat(status) }
for k = 1, e do out[k + 1] = errors[k] end
return out
"#;

/// KEYS[4..]: source, new name of each pair. COPY without REPLACE only creates, so 1 means the
/// name was free; on 0 the source is gone or the name exists (redone when the ledger has it).
const COPY_LOOP: &str = r#"
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
"#;

/// KEYS[4..]: new names; ARGV[3..]: source name, expire-at in ms (0 = none) and DUMP payload of
/// each. RESTORE without REPLACE only creates (BUSYKEY otherwise); a value whose expire-at has
/// passed meanwhile is not restored (keys expire by the script's start time while it runs).
const RESTORE_LOOP: &str = r#"
local clock = call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local function restore(dst, at, payload, replace)
  if at == '0' then
    if replace then return pcall('RESTORE', dst, 0, payload, 'REPLACE') end
    return pcall('RESTORE', dst, 0, payload)
  end
  if replace then return pcall('RESTORE', dst, at, payload, 'REPLACE', 'ABSTTL') end
  return pcall('RESTORE', dst, at, payload, 'ABSTTL')
end
for i = 4, #KEYS do
  local a = (i - 4) * 3 + 3
  local dst, src, at, payload = KEYS[i], ARGV[a], ARGV[a + 1], ARGV[a + 2]
  n = n + 1
  if at ~= '0' and tonumber(at) <= now then
    status[n] = 'v'
  else
    local restored = restore(dst, at, payload, false)
    if restored.ok then
      status[n] = 'c'
      created[c + 1] = dst
      created[c + 2] = src
      c = c + 2
    elseif string.sub(restored.err, 1, 7) == 'BUSYKEY' then
      if call('HEXISTS', index, dst) == 1 then
        restored = restore(dst, at, payload, true)
        if restored.ok then status[n] = 'r'
        else status[n] = 'f'; e = e + 1; errors[e] = restored.err end
      else
        status[n] = 'e'
      end
    else
      status[n] = 'f'; e = e + 1; errors[e] = restored.err
    end
  end
end
"#;

/// Both scripts return the status letters (c, r, e, v, f) followed by one message per `f`.
static COPY_SCRIPT: LazyLock<LuaScript> =
    LazyLock::new(|| LuaScript::new([SCRIPT_HEAD, COPY_LOOP, SCRIPT_TAIL].concat()));
static RESTORE_SCRIPT: LazyLock<LuaScript> =
    LazyLock::new(|| LuaScript::new([SCRIPT_HEAD, RESTORE_LOOP, SCRIPT_TAIL].concat()));

/// The keys every script call starts with: the ledger's journal, hash and registry.
struct LedgerKeys([Vec<u8>; 3]);

impl LedgerKeys {
    fn new(scope: &str, ledger: &str) -> Self {
        Self([
            RedisCheckpointStore::journal_key(scope, ledger),
            RedisCheckpointStore::ledger_key(scope, ledger),
            RedisCheckpointStore::registry_key(scope),
        ])
    }

    /// The KEYS of one call, with room for `more`.
    fn start(&self, more: usize) -> Vec<&[u8]> {
        let mut keys = Vec::with_capacity(3 + more);
        keys.extend(self.0.iter().map(Vec::as_slice));
        keys
    }
}

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
    let ledger_keys = LedgerKeys::new(scope, ledger);
    let calls = pairs.chunks(PAIRS_PER_CALL).map(|chunk| {
        let mut keys = ledger_keys.start(chunk.len() * 2);
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

/// One value to restore under its new name with [`restore_with_ledger`].
#[derive(Debug, Clone, Copy)]
pub struct LedgeredRestore<'a> {
    /// The new name.
    pub dst: &'a [u8],
    /// The source name, recorded in the ledger.
    pub src: &'a [u8],
    /// When the key expires (Unix ms), or `None`.
    pub expire_at: Option<i64>,
    /// The source's `DUMP` payload.
    pub payload: &'a [u8],
}

/// Restores each value under its new name (`RESTORE … ABSTTL`, never replacing a key the ledger
/// does not list) and records every key it creates in ledger `ledger` of `scope` (value:
/// `value_prefix` then the source name), in scripts run on `endpoint`, which must be a
/// standalone server holding the checkpoint store in the same database. Returns one outcome
/// per item, in order; a payload the server refuses is `Failed` with the server's message.
pub async fn restore_with_ledger(
    endpoint: &RedisEndpoint,
    scope: &str,
    ledger: &str,
    value_prefix: &[u8],
    items: &[LedgeredRestore<'_>],
) -> Result<Vec<LedgeredCopy>, ConnError> {
    let ledger_keys = LedgerKeys::new(scope, ledger);
    let expiries: Vec<String> = items
        .iter()
        .map(|i| i.expire_at.unwrap_or(0).to_string())
        .collect();
    let mut slices = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, item) in items.iter().enumerate() {
        if i > start && (i - start == PAIRS_PER_CALL || bytes + item.payload.len() > BYTES_PER_CALL)
        {
            slices.push(start..i);
            (start, bytes) = (i, 0);
        }
        bytes += item.payload.len();
    }
    if start < items.len() {
        slices.push(start..items.len());
    }
    let calls = slices.into_iter().map(|range| {
        let len = range.len();
        let mut keys = ledger_keys.start(len);
        let mut args: Vec<&[u8]> = Vec::with_capacity(2 + len * 3);
        args.extend([value_prefix, ledger.as_bytes()]);
        for i in range {
            keys.push(items[i].dst);
            args.extend([items[i].src, expiries[i].as_bytes(), items[i].payload]);
        }
        async move {
            let reply = endpoint.eval(&RESTORE_SCRIPT, &keys, &args).await?;
            parse_reply(endpoint, reply, len)
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
            "unexpected reply from a ledgered write script",
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
