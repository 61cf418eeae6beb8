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

/// Shared start of both scripts: refuse a fenced-off run, register the ledger, then the loop's
/// state. KEYS[1..4] are the journal, the ledger hash, the registry and the run's fence; ARGV[1]
/// the value prefix, ARGV[2] the ledger name, ARGV[3] the fencing token ('0': unfenced), ARGV[4]
/// the mode ('m': move, for COPY). `ours(dst, src)` tells whether the ledger lists `dst` as
/// written by this run from `src` (another source mapping to the same name is a clash, not a
/// redo).
const SCRIPT_HEAD: &str = r#"
local journal, index = KEYS[1], KEYS[2]
if ARGV[3] ~= '0' and redis.call('GET', KEYS[4]) ~= ARGV[3] then
  return redis.error_reply('FENCED the run lease was taken over by a newer run; nothing written')
end
local registered = redis.pcall('SADD', KEYS[3], ARGV[2])
if type(registered) == 'table' and registered.err then return registered end
local pcall, call = redis.pcall, redis.call
local plen = #ARGV[1]
local function ours(dst, src)
  local v = call('HGET', index, dst)
  return v and string.sub(v, plen + 1) == src
end
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
    for j = 2, c, 2 do
      if ARGV[4] == 'm' then call('RENAME', created[j], created[j + 1]) else call('UNLINK', created[j]) end
    end
    return redis.error_reply('recording the ledger failed, writes undone: ' .. pushed.err)
  end
end
local out = { table.concat(status) }
for k = 1, e do out[k + 1] = errors[k] end
return out
"#;

/// KEYS[5..]: source, new name of each pair. COPY without REPLACE only creates, so 1 means the
/// name was free; on 0 the source is gone or the name exists (redone when the ledger lists it
/// from this source). In move mode RENAMENX instead of COPY: the source is removed in the same
/// step, so no write of an application can fall between the copy and the delete.
const COPY_LOOP: &str = r#"
local move = ARGV[4] == 'm'
for i = 5, #KEYS, 2 do
  local src, dst = KEYS[i], KEYS[i + 1]
  local copied
  if move then
    if call('EXISTS', src) == 0 then copied = 'gone' else copied = pcall('RENAMENX', src, dst) end
  else
    copied = pcall('COPY', src, dst)
  end
  n = n + 1
  if copied == 1 then
    status[n] = 'c'
    created[c + 1] = dst
    created[c + 2] = src
    c = c + 2
  elseif copied == 'gone' then
    status[n] = 'v'
  elseif copied == 0 then
    if call('EXISTS', src) == 0 then
      status[n] = 'v'
    elseif ours(dst, src) then
      if move then copied = pcall('RENAME', src, dst) else copied = pcall('COPY', src, dst, 'REPLACE') end
      if copied == 1 or (type(copied) == 'table' and copied.ok) then status[n] = 'r'
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

/// KEYS[5..]: new names; ARGV[5..]: source name, expire-at in ms (0 = none) and DUMP payload of
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
for i = 5, #KEYS do
  local a = (i - 5) * 3 + 5
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
      if ours(dst, src) then
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

/// Where and how a ledgered script records what it writes.
#[derive(Debug, Clone, Copy)]
pub struct LedgerWrite<'a> {
    /// The checkpoint store scope, e.g. `keys/default`.
    pub scope: &'a str,
    /// The ledger's name.
    pub ledger: &'a str,
    /// Each entry's value is this prefix followed by the source name.
    pub value_prefix: &'a [u8],
    /// The run lease's fencing token: a script refuses to write anything once the scope's fence
    /// holds another value (a newer run took the lease over). 0 = unfenced.
    pub fence: u64,
}

/// The keys every script call starts with (the ledger's journal, hash and registry, and the
/// scope's fence) and the arguments (value prefix, ledger name, token, mode).
struct ScriptFrame {
    keys: [Vec<u8>; 4],
    token: String,
}

impl ScriptFrame {
    fn new(to: &LedgerWrite<'_>) -> Self {
        Self {
            keys: [
                RedisCheckpointStore::journal_key(to.scope, to.ledger),
                RedisCheckpointStore::ledger_key(to.scope, to.ledger),
                RedisCheckpointStore::registry_key(to.scope),
                RedisCheckpointStore::fence_key(to.scope),
            ],
            token: to.fence.to_string(),
        }
    }

    /// The KEYS of one call, with room for `more`.
    fn keys(&self, more: usize) -> Vec<&[u8]> {
        let mut keys = Vec::with_capacity(4 + more);
        keys.extend(self.keys.iter().map(Vec::as_slice));
        keys
    }

    /// The first ARGV of one call, with room for `more`.
    fn args<'a>(&'a self, to: &LedgerWrite<'a>, mode: &'a [u8], more: usize) -> Vec<&'a [u8]> {
        let mut args = Vec::with_capacity(4 + more);
        args.extend([
            to.value_prefix,
            to.ledger.as_bytes(),
            self.token.as_bytes(),
            mode,
        ]);
        args
    }
}

/// Copies each `(source, new name)` pair with server-side `COPY` — or, with `moves`, moves it
/// with `RENAMENX`, so the source is gone in the same step — and records every key it creates
/// in the ledger `to` describes, in scripts run on `endpoint`, which must be a standalone server
/// holding the checkpoint store in the same database. Returns one outcome per pair, in order.
pub async fn copy_with_ledger(
    endpoint: &RedisEndpoint,
    to: &LedgerWrite<'_>,
    moves: bool,
    pairs: &[(&[u8], &[u8])],
) -> Result<Vec<LedgeredCopy>, ConnError> {
    let frame = ScriptFrame::new(to);
    let mode: &[u8] = if moves { b"m" } else { b"c" };
    let calls = pairs.chunks(PAIRS_PER_CALL).map(|chunk| {
        let mut keys = frame.keys(chunk.len() * 2);
        for (src, dst) in chunk {
            keys.extend([*src, *dst]);
        }
        let args = frame.args(to, mode, 0);
        async move {
            let reply = endpoint.eval(&COPY_SCRIPT, &keys, &args).await?;
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
/// does not list as made from the same source) and records every key it creates in the ledger
/// `to` describes, in scripts run on `endpoint`, which must be a standalone server holding the
/// checkpoint store in the same database. Returns one outcome per item, in order; a payload the
/// server refuses is `Failed` with the server's message.
pub async fn restore_with_ledger(
    endpoint: &RedisEndpoint,
    to: &LedgerWrite<'_>,
    items: &[LedgeredRestore<'_>],
) -> Result<Vec<LedgeredCopy>, ConnError> {
    let frame = ScriptFrame::new(to);
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
        let mut keys = frame.keys(len);
        let mut args = frame.args(to, b"r", len * 3);
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
