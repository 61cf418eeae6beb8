//! The checkpoint store's Lua scripts: taking a lease and its fencing token, the fenced
//! writes (refused once the fence has moved past the held token), renewing and releasing a
//! lease, and folding a ledger's journal into its hash.

use std::sync::LazyLock;

use crate::redis::LuaScript;

/// KEYS: lease, fence. ARGV: owner, ttl ms. Returns `{1, token}` when the lease is ours now,
/// `{0, holder}` when someone else holds it.
pub(super) static ACQUIRE: LazyLock<LuaScript> = LazyLock::new(|| {
    LuaScript::new(
        r#"
local function next_token()
  if redis.call('EXISTS', KEYS[2]) == 0 then
    local now = redis.call('TIME')
    redis.call('SET', KEYS[2], now[1] .. string.format('%06d', tonumber(now[2])))
  end
  return redis.call('INCR', KEYS[2])
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])
  or redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return {1, next_token()}
end
return {0, redis.call('GET', KEYS[1])}
"#,
    )
});

/// KEYS: lease, fence. ARGV: expected holder, owner, ttl ms. Like [`ACQUIRE`], and also takes
/// the lease when it still names exactly the expected holder.
pub(super) static TAKE_OVER: LazyLock<LuaScript> = LazyLock::new(|| {
    LuaScript::new(
        r#"
local function next_token()
  if redis.call('EXISTS', KEYS[2]) == 0 then
    local now = redis.call('TIME')
    redis.call('SET', KEYS[2], now[1] .. string.format('%06d', tonumber(now[2])))
  end
  return redis.call('INCR', KEYS[2])
end
local holder = redis.call('GET', KEYS[1])
if not holder or holder == ARGV[1] or holder == ARGV[2] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return {1, next_token()}
end
return {0, holder}
"#,
    )
});

/// The start of every fenced write: KEYS[1] is the fence, ARGV[1] the held token; returns the
/// fence when it no longer holds the token (the write is refused; `-1` when the fence is gone,
/// e.g. cleared by a rollback that took the lease over), else goes on (and returns 0).
const FENCE_CHECK: &str = r#"
local current = redis.call('GET', KEYS[1])
if current ~= ARGV[1] then return current or '-1' end
"#;

/// KEYS: fence, state. ARGV: token, state.
pub(super) static FENCED_SAVE: LazyLock<LuaScript> = LazyLock::new(|| {
    LuaScript::new(format!(
        "{FENCE_CHECK}redis.call('SET', KEYS[2], ARGV[2])\nreturn 0\n"
    ))
});

/// KEYS: fence, registry, ledger hash. ARGV: token, ledger name, key, value, key, value…
pub(super) static FENCED_PUT: LazyLock<LuaScript> = LazyLock::new(|| {
    LuaScript::new(format!(
        r#"{FENCE_CHECK}
redis.call('SADD', KEYS[2], ARGV[2])
for i = 3, #ARGV, 1000 do
  redis.call('HSET', KEYS[3], unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
return 0
"#
    ))
});

/// KEYS: fence, ledger hash. ARGV: token, key, key…
pub(super) static FENCED_REMOVE: LazyLock<LuaScript> = LazyLock::new(|| {
    LuaScript::new(format!(
        r#"{FENCE_CHECK}
for i = 2, #ARGV, 1000 do
  redis.call('HDEL', KEYS[2], unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
return 0
"#
    ))
});

/// KEYS: fence, then every key to delete. ARGV: token.
pub(super) static FENCED_DEL: LazyLock<LuaScript> = LazyLock::new(|| {
    LuaScript::new(format!(
        "{FENCE_CHECK}redis.call('DEL', unpack(KEYS, 2))\nreturn 0\n"
    ))
});

/// KEYS: lease. ARGV: owner, ttl ms. Extends the lease if `owner` still holds it (returns 1).
pub(super) const RENEW: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end";
/// KEYS: lease. ARGV: owner. Deletes the lease if `owner` still holds it.
pub(super) const RELEASE: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

/// Journal records folded per script call.
pub(super) const FOLD_RECORDS: u64 = 16;
/// KEYS: journal, hash. ARGV: records at most. Returns the records moved.
pub(super) static FOLD: LazyLock<LuaScript> = LazyLock::new(|| {
    LuaScript::new(
        r#"
local moved = 0
for _ = 1, tonumber(ARGV[1]) do
  local record = redis.call('LPOP', KEYS[1])
  if not record then break end
  local entries = cmsgpack.unpack(record)
  local prefix, fields = entries[1], {}
  for i = 2, #entries, 2 do
    fields[#fields + 1] = entries[i]
    fields[#fields + 1] = prefix .. entries[i + 1]
    if #fields == 1000 or i + 1 == #entries then
      redis.call('HSET', KEYS[2], unpack(fields))
      fields = {}
    end
  end
  moved = moved + 1
end
return moved
"#,
    )
});
