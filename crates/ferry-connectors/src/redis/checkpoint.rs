use std::time::Duration;

use ferry_core::checkpoint::{CheckpointStore, Lease, LedgerPage, StoreError, StoreResult};
use redis::{Cmd, FromRedisValue, Value};

use std::sync::LazyLock;

use super::{LuaScript, RedisEndpoint};

/// The default checkpoint store: keys under `ferry:{<scope>}:` on a Redis server or Cluster
/// (the braces keep one scope's keys in one cluster slot).
///
/// - `…:state` — the job's saved position (a string);
/// - `…:lease` — the run lease (`SET NX PX`, renewed and released only by its owner);
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
}

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
        Self { endpoint }
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
        self.q::<Value>(&key, redis::cmd("SET").arg(&key).arg(state).clone())
            .await
            .map(drop)
    }

    async fn acquire_lease(&self, scope: &str, owner: &str, ttl: Duration) -> StoreResult<Lease> {
        let key = Self::key(scope, "lease");
        let ms = ttl.as_millis().max(1) as u64;
        let set: Value = self
            .q(
                &key,
                redis::cmd("SET")
                    .arg(&key)
                    .arg(owner)
                    .arg("NX")
                    .arg("PX")
                    .arg(ms)
                    .clone(),
            )
            .await?;
        let lease = Lease {
            scope: scope.to_string(),
            owner: owner.to_string(),
            token: 0,
        };
        if set != Value::Nil {
            return Ok(lease);
        }
        let holder: Option<String> = self.q(&key, redis::cmd("GET").arg(&key).clone()).await?;
        match holder {
            Some(h) if h == owner => self.renew_lease(&lease, ttl).await.map(|_| lease),
            Some(holder) => Err(StoreError::LeaseHeld {
                scope: scope.to_string(),
                holder,
            }),
            // Expired between the two commands: try once more.
            None => {
                let set: Value = self
                    .q(
                        &key,
                        redis::cmd("SET")
                            .arg(&key)
                            .arg(owner)
                            .arg("NX")
                            .arg("PX")
                            .arg(ms)
                            .clone(),
                    )
                    .await?;
                if set == Value::Nil {
                    Err(StoreError::LeaseHeld {
                        scope: scope.to_string(),
                        holder: "a concurrent run".to_string(),
                    })
                } else {
                    Ok(lease)
                }
            }
        }
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
        self.q::<i64>(&key, redis::cmd("HDEL").arg(&key).arg(keys).clone())
            .await
            .map(drop)
    }

    async fn clear(&self, scope: &str) -> StoreResult<()> {
        let registry = Self::registry_key(scope);
        let ledgers: Vec<String> = self
            .q(&registry, redis::cmd("SMEMBERS").arg(&registry).clone())
            .await?;
        let mut del = redis::cmd("DEL");
        del.arg(Self::key(scope, "state")).arg(&registry);
        for l in ledgers {
            del.arg(Self::ledger_key(scope, &l));
            del.arg(Self::journal_key(scope, &l));
        }
        self.q::<i64>(&registry, del).await.map(drop)
    }
}
