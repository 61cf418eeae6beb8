use std::time::Duration;

use ferry_core::checkpoint::{
    CheckpointStore, HeldTokens, Lease, LedgerPage, StoreError, StoreResult,
};
use redis::{Cmd, FromRedisValue, Value};

use std::sync::LazyLock;

use super::{LuaScript, RedisEndpoint};

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

/// KEYS: lease, fence. ARGV: owner, ttl ms. Returns `{1, token}` when the lease is ours now,
/// `{0, holder}` when someone else holds it.
static ACQUIRE: LazyLock<LuaScript> = LazyLock::new(|| {
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
static TAKE_OVER: LazyLock<LuaScript> = LazyLock::new(|| {
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
static FENCED_SAVE: LazyLock<LuaScript> = LazyLock::new(|| {
    LuaScript::new(format!(
        "{FENCE_CHECK}redis.call('SET', KEYS[2], ARGV[2])\nreturn 0\n"
    ))
});

/// KEYS: fence, registry, ledger hash. ARGV: token, ledger name, key, value, key, value…
static FENCED_PUT: LazyLock<LuaScript> = LazyLock::new(|| {
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
static FENCED_REMOVE: LazyLock<LuaScript> = LazyLock::new(|| {
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
static FENCED_DEL: LazyLock<LuaScript> = LazyLock::new(|| {
    LuaScript::new(format!(
        "{FENCE_CHECK}redis.call('DEL', unpack(KEYS, 2))\nreturn 0\n"
    ))
});

const RENEW: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end";
const RELEASE: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

/// Journal records folded per script call.
const FOLD_RECORDS: u64 = 16;
/// KEYS: journal, hash. ARGV: records at most. Returns the records moved.
static FOLD: LazyLock<LuaScript> = LazyLock::new(|| {
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

    /// Runs a script and decodes its reply.
    async fn script<T: FromRedisValue>(
        &self,
        script: &LuaScript,
        keys: &[&[u8]],
        args: &[&[u8]],
    ) -> StoreResult<T> {
        let v = self
            .endpoint
            .eval(script, keys, args)
            .await
            .map_err(|e| StoreError::Backend(e.to_string()))?
            .map_err(|e| StoreError::Backend(format!("{}: {e}", self.endpoint.display())))?;
        redis::from_redis_value(v).map_err(|e| StoreError::Corrupt(e.to_string()))
    }

    /// Runs a fenced write script (`keys` after the fence, `args` after the token) for `scope`,
    /// held with `token`.
    async fn fenced(
        &self,
        script: &LuaScript,
        scope: &str,
        token: u64,
        keys: &[&[u8]],
        args: &[&[u8]],
    ) -> StoreResult<()> {
        let fence = Self::fence_key(scope);
        let token_arg = token.to_string();
        let all_keys: Vec<&[u8]> = std::iter::once(fence.as_slice())
            .chain(keys.iter().copied())
            .collect();
        let all_args: Vec<&[u8]> = std::iter::once(token_arg.as_bytes())
            .chain(args.iter().copied())
            .collect();
        match self.script::<i64>(script, &all_keys, &all_args).await? {
            0 => Ok(()),
            current => Err(StoreError::Fenced {
                scope: scope.to_string(),
                token,
                current: current.max(0) as u64,
            }),
        }
    }

    /// Reads the reply of [`ACQUIRE`] or [`TAKE_OVER`].
    fn granted(&self, scope: &str, owner: &str, reply: (i64, Value)) -> StoreResult<Lease> {
        let (ok, v) = reply;
        if ok != 1 {
            let holder: Option<String> =
                redis::from_redis_value(v).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            return Err(StoreError::LeaseHeld {
                scope: scope.to_string(),
                holder: holder.unwrap_or_else(|| "a concurrent run".to_string()),
            });
        }
        let token: u64 =
            redis::from_redis_value(v).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let lease = Lease {
            scope: scope.to_string(),
            owner: owner.to_string(),
            token,
        };
        self.tokens.hold(&lease);
        Ok(lease)
    }

    /// Moves the journal of `ledger` into its hash, oldest entries first.
    async fn fold(&self, scope: &str, ledger: &str) -> StoreResult<()> {
        let journal = Self::journal_key(scope, ledger);
        let hash = Self::ledger_key(scope, ledger);
        let max = FOLD_RECORDS.to_string();
        loop {
            let moved = self
                .endpoint
                .eval(&FOLD, &[&journal, &hash], &[max.as_bytes()])
                .await
                .map_err(|e| StoreError::Backend(e.to_string()))?
                .map_err(|e| StoreError::Backend(format!("{}: {e}", self.endpoint.display())))?;
            let moved: u64 =
                redis::from_redis_value(moved).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            if moved < FOLD_RECORDS {
                return Ok(());
            }
        }
    }

    /// The set listing the ledgers of `scope`.
    pub fn registry_key(scope: &str) -> Vec<u8> {
        Self::key(scope, "ledgers")
    }

    fn key(scope: &str, suffix: &str) -> Vec<u8> {
        let mut k = Self::prefix(scope);
        k.extend_from_slice(suffix.as_bytes());
        k
    }

    async fn q<T: FromRedisValue>(&self, key: &[u8], cmd: Cmd) -> StoreResult<T> {
        let v = self
            .endpoint
            .query(key, cmd)
            .await
            .map_err(|e| StoreError::Backend(e.to_string()))?
            .map_err(|e| StoreError::Backend(format!("{}: {e}", self.endpoint.display())))?;
        redis::from_redis_value(v).map_err(|e| StoreError::Corrupt(e.to_string()))
    }
}

impl CheckpointStore for RedisCheckpointStore {
    async fn load(&self, scope: &str) -> StoreResult<Option<Vec<u8>>> {
        let key = Self::key(scope, "state");
        self.q(&key, redis::cmd("GET").arg(&key).clone()).await
    }

    async fn save(&self, scope: &str, state: &[u8]) -> StoreResult<()> {
        let key = Self::key(scope, "state");
        if let Some(token) = self.tokens.get(scope) {
            return self
                .fenced(&FENCED_SAVE, scope, token, &[&key], &[state])
                .await;
        }
        self.q::<Value>(&key, redis::cmd("SET").arg(&key).arg(state).clone())
            .await
            .map(drop)
    }

    async fn acquire_lease(&self, scope: &str, owner: &str, ttl: Duration) -> StoreResult<Lease> {
        let ms = ttl.as_millis().max(1).to_string();
        let reply = self
            .script(
                &ACQUIRE,
                &[&Self::key(scope, "lease"), &Self::fence_key(scope)],
                &[owner.as_bytes(), ms.as_bytes()],
            )
            .await?;
        self.granted(scope, owner, reply)
    }

    async fn take_over_lease(
        &self,
        scope: &str,
        expected_holder: &str,
        owner: &str,
        ttl: Duration,
    ) -> StoreResult<Lease> {
        let ms = ttl.as_millis().max(1).to_string();
        let reply = self
            .script(
                &TAKE_OVER,
                &[&Self::key(scope, "lease"), &Self::fence_key(scope)],
                &[expected_holder.as_bytes(), owner.as_bytes(), ms.as_bytes()],
            )
            .await?;
        self.granted(scope, owner, reply)
    }

    fn fence(&self, scope: &str) -> Option<u64> {
        self.tokens.get(scope)
    }

    async fn check_lease(&self, scope: &str) -> StoreResult<()> {
        let Some(token) = self.tokens.get(scope) else {
            return Ok(());
        };
        let key = Self::fence_key(scope);
        let current: Option<u64> = self.q(&key, redis::cmd("GET").arg(&key).clone()).await?;
        if current == Some(token) {
            return Ok(());
        }
        Err(StoreError::Fenced {
            scope: scope.to_string(),
            token,
            current: current.unwrap_or(0),
        })
    }

    async fn renew_lease(&self, lease: &Lease, ttl: Duration) -> StoreResult<()> {
        let key = Self::key(&lease.scope, "lease");
        let ok: i64 = self
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

    async fn release_lease(&self, lease: &Lease) -> StoreResult<()> {
        self.tokens.forget(lease);
        let key = Self::key(&lease.scope, "lease");
        self.q::<i64>(
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

    async fn ledger_put(
        &self,
        scope: &str,
        ledger: &str,
        entries: &[(Vec<u8>, Vec<u8>)],
    ) -> StoreResult<()> {
        if entries.is_empty() {
            return Ok(());
        }
        self.fold(scope, ledger).await?;
        let key = Self::ledger_key(scope, ledger);
        let registry = Self::registry_key(scope);
        if let Some(token) = self.tokens.get(scope) {
            let mut args: Vec<&[u8]> = Vec::with_capacity(1 + 2 * entries.len());
            args.push(ledger.as_bytes());
            for (k, v) in entries {
                args.push(k);
                args.push(v);
            }
            return self
                .fenced(&FENCED_PUT, scope, token, &[&registry, &key], &args)
                .await;
        }
        let mut hset = redis::cmd("HSET");
        hset.arg(&key);
        for (k, v) in entries {
            hset.arg(k).arg(v);
        }
        let replies = self
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

    async fn ledger_get(
        &self,
        scope: &str,
        ledger: &str,
        keys: &[Vec<u8>],
    ) -> StoreResult<Vec<Option<Vec<u8>>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        self.fold(scope, ledger).await?;
        let key = Self::ledger_key(scope, ledger);
        self.q(&key, redis::cmd("HMGET").arg(&key).arg(keys).clone())
            .await
    }

    async fn ledger_page(
        &self,
        scope: &str,
        ledger: &str,
        cursor: u64,
        count: usize,
    ) -> StoreResult<LedgerPage> {
        self.fold(scope, ledger).await?;
        let key = Self::ledger_key(scope, ledger);
        let (next, flat): (u64, Vec<Vec<u8>>) = self
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

    async fn ledger_len(&self, scope: &str, ledger: &str) -> StoreResult<u64> {
        self.fold(scope, ledger).await?;
        let key = Self::ledger_key(scope, ledger);
        self.q(&key, redis::cmd("HLEN").arg(&key).clone()).await
    }

    async fn ledger_remove(&self, scope: &str, ledger: &str, keys: &[Vec<u8>]) -> StoreResult<()> {
        if keys.is_empty() {
            return Ok(());
        }
        self.fold(scope, ledger).await?;
        let key = Self::ledger_key(scope, ledger);
        if let Some(token) = self.tokens.get(scope) {
            let args: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
            return self
                .fenced(&FENCED_REMOVE, scope, token, &[&key], &args)
                .await;
        }
        self.q::<i64>(&key, redis::cmd("HDEL").arg(&key).arg(keys).clone())
            .await
            .map(drop)
    }

    async fn clear(&self, scope: &str) -> StoreResult<()> {
        let registry = Self::registry_key(scope);
        let ledgers: Vec<String> = self
            .q(&registry, redis::cmd("SMEMBERS").arg(&registry).clone())
            .await?;
        let mut keys = vec![
            Self::key(scope, "state"),
            registry.clone(),
            Self::fence_key(scope),
        ];
        for l in ledgers {
            keys.push(Self::ledger_key(scope, &l));
            keys.push(Self::journal_key(scope, &l));
        }
        if let Some(token) = self.tokens.get(scope) {
            let keys: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
            return self.fenced(&FENCED_DEL, scope, token, &keys, &[]).await;
        }
        self.q::<i64>(&registry, redis::cmd("DEL").arg(keys).clone())
            .await
            .map(drop)
    }
}
