//! Copying one key element by element, for values too big for one DUMP payload or refused by
//! the target (e.g. a DUMP from a newer Redis). Memory stays bounded by one chunk.

use redis::{Cmd, FromRedisValue, Value};

use std::sync::LazyLock;

use super::{ConnError, LuaScript, RedisEndpoint, key_slot};

mod stream;

/// The Redis data type of a key, as `TYPE` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyKind {
    /// `string`
    String,
    /// `hash`
    Hash,
    /// `list`
    List,
    /// `set`
    Set,
    /// `zset`
    ZSet,
    /// `stream`
    Stream,
    /// The key does not exist.
    None,
    /// Any other (module) type.
    Other(String),
}

impl KeyKind {
    /// Parses a `TYPE` reply.
    pub fn parse(s: &str) -> Self {
        match s {
            "string" => KeyKind::String,
            "hash" => KeyKind::Hash,
            "list" => KeyKind::List,
            "set" => KeyKind::Set,
            "zset" => KeyKind::ZSet,
            "stream" => KeyKind::Stream,
            "none" => KeyKind::None,
            other => KeyKind::Other(other.to_string()),
        }
    }

    /// The name `TYPE` uses.
    pub fn as_str(&self) -> &str {
        match self {
            KeyKind::String => "string",
            KeyKind::Hash => "hash",
            KeyKind::List => "list",
            KeyKind::Set => "set",
            KeyKind::ZSet => "zset",
            KeyKind::Stream => "stream",
            KeyKind::None => "none",
            KeyKind::Other(s) => s,
        }
    }
}

/// What a chunked copy did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkedCopy {
    /// The key was copied; about this many bytes of elements moved.
    Copied {
        /// Bytes of keys, fields and values read.
        bytes: u64,
    },
    /// The source key no longer exists.
    Vanished,
    /// The destination exists and `replace` was false.
    Exists,
}

/// Why a chunked copy failed: the connection (fatal for a run) or this key only.
#[derive(Debug, thiserror::Error)]
pub enum ChunkError {
    /// A connection-level failure.
    #[error(transparent)]
    Conn(#[from] ConnError),
    /// A failure that concerns this key only.
    #[error("{0}")]
    Key(String),
}

const STRING_CHUNK: usize = 512 * 1024;

/// The temporary key a chunked copy of `dst` builds its value in: `dst` followed by
/// `:ferry-tmp:<tag>` (on a cluster, with `dst`'s hash tag, so that the final RENAME stays inside
/// one slot). The name depends only on `dst` and `tag`, so a run that restarts after a crash
/// finds, and removes, what an interrupted copy left. `None` when `dst` cannot share a slot
/// with any other name (a cluster key with an unbalanced hash tag): then the copy writes `dst`
/// directly.
pub fn chunk_tmp_key(dst: &[u8], tag: &str, cluster: bool) -> Option<Vec<u8>> {
    let suffix = format!(":ferry-tmp:{tag}");
    let mut tmp = Vec::with_capacity(dst.len() + suffix.len() + 2);
    if !cluster {
        tmp.extend_from_slice(dst);
    } else if !dst.contains(&b'{') && !dst.contains(&b'}') {
        // `{dst}` hashes exactly like `dst`, so the rename stays inside one slot.
        tmp.push(b'{');
        tmp.extend_from_slice(dst);
        tmp.push(b'}');
    } else {
        let open = dst.iter().position(|&b| b == b'{')?;
        let len = dst[open + 1..].iter().position(|&b| b == b'}')?;
        if len == 0 {
            return None;
        }
        tmp.extend_from_slice(&dst[open..open + len + 2]);
    }
    tmp.extend_from_slice(suffix.as_bytes());
    debug_assert!(!cluster || key_slot(&tmp) == key_slot(dst));
    Some(tmp)
}

struct Ctx<'a> {
    from: &'a RedisEndpoint,
    src: &'a [u8],
    to: &'a RedisEndpoint,
    tmp: Vec<u8>,
    chunk: usize,
    bytes: u64,
}

impl Ctx<'_> {
    async fn read<T: FromRedisValue>(&self, cmd: Cmd) -> Result<T, ChunkError> {
        let v = self
            .from
            .query(self.src, cmd)
            .await?
            .map_err(|e| ChunkError::Key(format!("reading the source: {e}")))?;
        redis::from_redis_value(v).map_err(|e| ChunkError::Key(format!("reading the source: {e}")))
    }

    async fn write(&self, cmd: Cmd) -> Result<Value, ChunkError> {
        self.to
            .query(&self.tmp, cmd)
            .await?
            .map_err(|e| ChunkError::Key(format!("writing the target: {e}")))
    }

    fn count(&mut self, items: &[Vec<u8>]) {
        self.bytes += items.iter().map(|i| i.len() as u64).sum::<u64>();
    }

    /// Gives the copy its expiry and renames it to `dst` (`RENAMENX` unless `replace`; a
    /// `direct` copy already is `dst`), unless the source went or expired while it was read;
    /// the rename checks the run's `fence` in the same script when the fence lives beside it,
    /// else just before.
    async fn put_in_place(
        &self,
        dst: &[u8],
        expire_at_ms: Option<i64>,
        replace: bool,
        direct: bool,
        fence: Option<ChunkFence<'_>>,
    ) -> Result<ChunkedCopy, ChunkError> {
        // The source may have gone while it was read (a scan of a deleted key just ends), or
        // expired: then there is nothing complete to put in place.
        let mut exists = redis::cmd("EXISTS");
        exists.arg(self.src);
        let gone = matches!(self.from.query(self.src, exists).await?, Ok(Value::Int(0)))
            || expire_at_ms.is_some_and(|at| at <= ferry_core::checkpoint::now_ms());
        if gone {
            return Ok(ChunkedCopy::Vanished);
        }
        if let Some(fence) = fence.filter(|f| !f.beside(self.to)) {
            fence.check().await?;
        }
        let moved = match fence.filter(|f| !direct && f.beside(self.to)) {
            Some(fence) => {
                let token = fence.token.to_string();
                let at = expire_at_ms.map(|a| a.to_string()).unwrap_or_default();
                let flag: &[u8] = if replace { b"1" } else { b"0" };
                self.to
                    .eval(
                        &FENCED_RENAME,
                        &[&self.tmp, dst, fence.key],
                        &[token.as_bytes(), flag, at.as_bytes()],
                    )
                    .await?
                    .map_err(|e| ChunkError::Key(format!("writing the target: {e}")))?
            }
            None => {
                if let Some(at) = expire_at_ms {
                    let mut c = redis::cmd("PEXPIREAT");
                    c.arg(&self.tmp).arg(at);
                    self.write(c).await?;
                }
                if direct {
                    return Ok(ChunkedCopy::Copied { bytes: self.bytes });
                }
                let mut c = redis::cmd(if replace { "RENAME" } else { "RENAMENX" });
                c.arg(&self.tmp).arg(dst);
                self.write(c).await?
            }
        };
        if moved == Value::Int(0) {
            return Ok(ChunkedCopy::Exists);
        }
        Ok(ChunkedCopy::Copied { bytes: self.bytes })
    }

    async fn copy_scanned(
        &mut self,
        scan: &str,
        write: &str,
        pairs: bool,
    ) -> Result<(), ChunkError> {
        let mut cursor = 0u64;
        loop {
            let mut cmd = redis::cmd(scan);
            cmd.arg(self.src).arg(cursor).arg("COUNT").arg(self.chunk);
            let (next, items): (u64, Vec<Vec<u8>>) = self.read(cmd).await?;
            if !items.is_empty() {
                self.count(&items);
                let mut w = redis::cmd(write);
                w.arg(&self.tmp);
                if pairs && write == "ZADD" {
                    // ZSCAN yields member, score; ZADD wants score, member.
                    for pair in items.chunks(2) {
                        w.arg(&pair[1]).arg(&pair[0]);
                    }
                } else {
                    w.arg(&items);
                }
                self.write(w).await?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }

    async fn copy_string(&mut self) -> Result<(), ChunkError> {
        let len: usize = self
            .read({
                let mut c = redis::cmd("STRLEN");
                c.arg(self.src);
                c
            })
            .await?;
        if len == 0 {
            let mut c = redis::cmd("SET");
            c.arg(&self.tmp).arg("");
            self.write(c).await?;
        }
        let mut at = 0;
        while at < len {
            let mut c = redis::cmd("GETRANGE");
            c.arg(self.src).arg(at).arg(at + STRING_CHUNK - 1);
            let part: Vec<u8> = self.read(c).await?;
            if part.is_empty() {
                break;
            }
            at += part.len();
            self.bytes += part.len() as u64;
            let mut w = redis::cmd("APPEND");
            w.arg(&self.tmp).arg(part);
            self.write(w).await?;
        }
        Ok(())
    }

    async fn copy_list(&mut self) -> Result<(), ChunkError> {
        let mut at = 0usize;
        loop {
            let mut c = redis::cmd("LRANGE");
            c.arg(self.src).arg(at).arg(at + self.chunk - 1);
            let items: Vec<Vec<u8>> = self.read(c).await?;
            if items.is_empty() {
                return Ok(());
            }
            at += items.len();
            self.count(&items);
            let mut w = redis::cmd("RPUSH");
            w.arg(&self.tmp).arg(&items);
            self.write(w).await?;
        }
    }
}

/// Copies `src` (on `from`) to `dst` (on `to`) element by element, `chunk` elements at a time,
/// into the temporary key [`chunk_tmp_key`]`(dst, tmp_tag, …)` that is renamed into place at
/// the end, so readers never see a partial value; a leftover of an interrupted copy under that
/// name is removed first. `expire_at_ms` is the absolute expiry (Unix ms), `None` for none.
/// With `replace` false an existing `dst` is left alone ([`ChunkedCopy::Exists`]).
#[allow(clippy::too_many_arguments)]
pub async fn copy_in_chunks(
    from: &RedisEndpoint,
    src: &[u8],
    to: &RedisEndpoint,
    dst: &[u8],
    expire_at_ms: Option<i64>,
    replace: bool,
    chunk: usize,
    tmp_tag: &str,
) -> Result<ChunkedCopy, ChunkError> {
    copy_in_chunks_fenced(
        from,
        src,
        to,
        dst,
        expire_at_ms,
        replace,
        chunk,
        tmp_tag,
        None,
    )
    .await
}

/// A run's fence: the final rename of a chunked copy happens only while the key `key` on
/// `endpoint` holds `token` — checked in the renaming script itself when `endpoint` is the
/// target (a standalone server, same database), else read just before the rename.
#[derive(Debug, Clone, Copy)]
pub struct ChunkFence<'a> {
    /// Where the fence lives (the checkpoint store's server).
    pub endpoint: &'a RedisEndpoint,
    /// The fence key (`ferry:{<scope>}:fence`).
    pub key: &'a [u8],
    /// The run's fencing token.
    pub token: u64,
}

impl ChunkFence<'_> {
    /// Whether the fence lives next to keys of `to`, so one script can check it and rename.
    fn beside(&self, to: &RedisEndpoint) -> bool {
        !to.is_cluster() && self.endpoint.same_server(to) && self.endpoint.db() == to.db()
    }

    /// Reads the fence: a key error when it no longer holds the token.
    async fn check(&self) -> Result<(), ChunkError> {
        let mut c = redis::cmd("GET");
        c.arg(self.key);
        let current = self
            .endpoint
            .query(self.key, c)
            .await?
            .map_err(|e| ChunkError::Key(format!("reading the run's fence: {e}")))?;
        let current: Option<String> = redis::from_redis_value(current).unwrap_or(None);
        if current.as_deref() == Some(self.token.to_string().as_str()) {
            return Ok(());
        }
        Err(ChunkError::Key(
            "FENCED the run lease was taken over by a newer run; the copy was not put in place"
                .to_string(),
        ))
    }
}

/// KEYS: temporary key, new name, fence. ARGV: token, `1` to replace, expire-at in ms (empty:
/// none). Gives the temporary key its expiry and renames it into place, only while the fence
/// holds the token.
static FENCED_RENAME: LazyLock<LuaScript> = LazyLock::new(|| {
    LuaScript::new(
        r#"
if redis.call('GET', KEYS[3]) ~= ARGV[1] then
  return redis.error_reply('FENCED the run lease was taken over by a newer run; the copy was not put in place')
end
if ARGV[3] ~= '' then redis.call('PEXPIREAT', KEYS[1], ARGV[3]) end
if ARGV[2] == '1' then
  redis.call('RENAME', KEYS[1], KEYS[2])
  return 1
end
return redis.call('RENAMENX', KEYS[1], KEYS[2])
"#,
    )
});

/// [`copy_in_chunks`], with the final rename checking the run's `fence` in the same script
/// (a run that lost its lease while copying never puts its copy in place).
#[allow(clippy::too_many_arguments)]
pub async fn copy_in_chunks_fenced(
    from: &RedisEndpoint,
    src: &[u8],
    to: &RedisEndpoint,
    dst: &[u8],
    expire_at_ms: Option<i64>,
    replace: bool,
    chunk: usize,
    tmp_tag: &str,
    fence: Option<ChunkFence<'_>>,
) -> Result<ChunkedCopy, ChunkError> {
    let tmp = chunk_tmp_key(dst, tmp_tag, to.is_cluster());
    let direct = tmp.is_none();
    let mut ctx = Ctx {
        from,
        src,
        to,
        tmp: tmp.unwrap_or_else(|| dst.to_vec()),
        chunk: chunk.max(1),
        bytes: 0,
    };
    let kind: String = ctx
        .read({
            let mut c = redis::cmd("TYPE");
            c.arg(src);
            c
        })
        .await?;
    let kind = KeyKind::parse(&kind);
    if kind == KeyKind::None {
        return Ok(ChunkedCopy::Vanished);
    }
    if !replace || direct {
        let mut c = redis::cmd("EXISTS");
        c.arg(dst);
        let exists: i64 = redis::from_redis_value(
            to.query(dst, c)
                .await?
                .map_err(|e| ChunkError::Key(format!("checking the target: {e}")))?,
        )
        .map_err(|e| ChunkError::Key(e.to_string()))?;
        if exists == 1 && !replace {
            return Ok(ChunkedCopy::Exists);
        }
        if exists == 1 && direct {
            let mut c = redis::cmd("DEL");
            c.arg(dst);
            ctx.write(c).await?;
        }
    }
    if !direct {
        let mut c = redis::cmd("DEL");
        c.arg(&ctx.tmp);
        ctx.write(c).await?;
    }
    let result = match kind {
        KeyKind::String => ctx.copy_string().await,
        KeyKind::Hash => ctx.copy_scanned("HSCAN", "HSET", true).await,
        KeyKind::Set => ctx.copy_scanned("SSCAN", "SADD", false).await,
        KeyKind::ZSet => ctx.copy_scanned("ZSCAN", "ZADD", true).await,
        KeyKind::List => ctx.copy_list().await,
        KeyKind::Stream => ctx.copy_stream().await,
        KeyKind::None => unreachable!("handled above"),
        KeyKind::Other(t) => Err(ChunkError::Key(format!(
            "type `{t}` can only be copied with DUMP/RESTORE, and the target refused its payload"
        ))),
    };
    let finish = async {
        result?;
        ctx.put_in_place(dst, expire_at_ms, replace, direct, fence)
            .await
    };
    let outcome = finish.await;
    if !matches!(outcome, Ok(ChunkedCopy::Copied { .. })) && !direct {
        let mut c = redis::cmd("DEL");
        c.arg(&ctx.tmp);
        let _ = to.query(&ctx.tmp, c).await;
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_keys_share_the_destination_slot() {
        for dst in [&b"plain:key"[..], b"user:{42}:profile", b"\xff\x00bin"] {
            let tmp = chunk_tmp_key(dst, "run", true).unwrap();
            assert_eq!(key_slot(&tmp), key_slot(dst), "{dst:?}");
            assert_ne!(tmp, dst);
            assert_eq!(chunk_tmp_key(dst, "run", true), Some(tmp), "deterministic");
        }
        assert!(chunk_tmp_key(b"odd}{", "run", true).is_none());
        assert!(chunk_tmp_key(b"odd}{", "run", false).is_some());
    }
}
