//! Copying one key element by element, for values too big for one DUMP payload or refused by
//! the target (e.g. a DUMP from a newer Redis). Memory stays bounded by one chunk.

use std::collections::BTreeSet;

use redis::{Cmd, FromRedisValue, Value};

use std::sync::LazyLock;

use super::{ConnError, LuaScript, RedisEndpoint, key_slot};

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

    /// The ids of every pending entry of every consumer group of the source stream, in order:
    /// `XCLAIM … FORCE` skips ids no longer in the stream (deleted or trimmed messages that
    /// are still pending), so the copy adds a placeholder entry for each while it runs.
    async fn pending_ids(&self) -> Result<BTreeSet<StreamId>, ChunkError> {
        let groups: Vec<HashMapValue> = self
            .read({
                let mut c = redis::cmd("XINFO");
                c.arg("GROUPS").arg(self.src);
                c
            })
            .await?;
        let mut ids = BTreeSet::new();
        for group in groups {
            let name = group.get("name").unwrap_or_default();
            let mut start = "-".to_string();
            loop {
                let mut c = redis::cmd("XPENDING");
                c.arg(self.src)
                    .arg(&name)
                    .arg(&start)
                    .arg("+")
                    .arg(self.chunk);
                let pending: Vec<(String, String, i64, i64)> = self.read(c).await?;
                let Some(last) = pending.last() else { break };
                start = format!("({}", last.0);
                ids.extend(pending.iter().filter_map(|p| StreamId::parse(&p.0)));
                if pending.len() < self.chunk {
                    break;
                }
            }
        }
        Ok(ids)
    }

    async fn add_placeholder(&self, id: StreamId) -> Result<(), ChunkError> {
        let mut w = redis::cmd("XADD");
        w.arg(&self.tmp)
            .arg(id.to_string())
            .arg("ferry")
            .arg("pending");
        self.write(w).await.map(drop)
    }

    async fn copy_stream(&mut self) -> Result<(), ChunkError> {
        let mut pending = self.pending_ids().await?;
        // Placeholders before the first entry (trimmed messages) and after it (deleted ones).
        let (mut below_first, mut between) = (Vec::new(), Vec::new());
        let mut start = b"-".to_vec();
        let mut copied = 0usize;
        loop {
            let mut c = redis::cmd("XRANGE");
            c.arg(self.src)
                .arg(&start)
                .arg("+")
                .arg("COUNT")
                .arg(self.chunk);
            let entries: Vec<(Vec<u8>, Vec<Vec<u8>>)> = self.read(c).await?;
            let Some((last, _)) = entries.last() else {
                break;
            };
            let mut next = b"(".to_vec();
            next.extend_from_slice(last);
            start = next;
            for (id, fields) in &entries {
                if let Some(entry) = StreamId::parse(&String::from_utf8_lossy(id)) {
                    while let Some(&p) = pending.first().filter(|&&p| p <= entry) {
                        pending.pop_first();
                        if p < entry {
                            self.add_placeholder(p).await?;
                            if copied == 0 {
                                below_first.push(p);
                            } else {
                                between.push(p);
                            }
                        }
                    }
                }
                self.count(fields);
                let mut w = redis::cmd("XADD");
                w.arg(&self.tmp).arg(id).arg(fields);
                self.write(w).await?;
                copied += 1;
            }
        }
        for p in std::mem::take(&mut pending) {
            self.add_placeholder(p).await?;
            if copied == 0 {
                below_first.push(p);
            } else {
                between.push(p);
            }
        }
        let info: Vec<Value> = self
            .read({
                let mut c = redis::cmd("XINFO");
                c.arg("STREAM").arg(self.src);
                c
            })
            .await?;
        let field = |name: &str| -> Option<Value> {
            info.chunks(2).find_map(|kv| match &kv[0] {
                Value::BulkString(k) if k == name.as_bytes() => Some(kv[1].clone()),
                Value::SimpleString(k) if k == name => Some(kv[1].clone()),
                _ => None,
            })
        };
        let text = |v: Option<Value>| -> Option<String> {
            v.and_then(|v| redis::from_redis_value(v).ok())
        };
        let last_id = text(field("last-generated-id")).unwrap_or_else(|| "0-0".into());
        if copied == 0 && below_first.is_empty() {
            // An empty stream still exists: create it with an entry trimmed at once (a trim,
            // unlike XDEL, leaves max-deleted-entry-id alone).
            let mut w = redis::cmd("XADD");
            w.arg(&self.tmp)
                .arg("MAXLEN")
                .arg(0)
                .arg("0-1")
                .arg("f")
                .arg("v");
            self.write(w).await?;
        }
        let mut setid = redis::cmd("XSETID");
        setid.arg(&self.tmp).arg(&last_id);
        if self.to.version() >= (7, 0) && self.from.version() >= (7, 0) {
            if let Some(added) = text(field("entries-added")) {
                setid.arg("ENTRIESADDED").arg(added);
            }
            if let Some(maxdel) = text(field("max-deleted-entry-id")) {
                setid.arg("MAXDELETEDID").arg(maxdel);
            }
        }
        self.write(setid.clone()).await?;
        self.copy_groups().await?;
        if below_first.is_empty() && between.is_empty() {
            return Ok(());
        }
        // The placeholders go: trimmed below the first entry, deleted after it; then the
        // stream's counters are set again.
        if let Some(&top) = below_first.last() {
            let mut t = redis::cmd("XTRIM");
            t.arg(&self.tmp).arg("MINID").arg(top.next().to_string());
            self.write(t).await?;
        }
        for ids in between.chunks(self.chunk) {
            let mut d = redis::cmd("XDEL");
            d.arg(&self.tmp);
            for id in ids {
                d.arg(id.to_string());
            }
            self.write(d).await?;
        }
        self.write(setid).await.map(drop)
    }

    async fn copy_groups(&mut self) -> Result<(), ChunkError> {
        let groups: Vec<HashMapValue> = self
            .read({
                let mut c = redis::cmd("XINFO");
                c.arg("GROUPS").arg(self.src);
                c
            })
            .await?;
        for group in groups {
            let name = group.get("name").unwrap_or_default();
            let last = group
                .get("last-delivered-id")
                .unwrap_or_else(|| "0-0".into());
            let mut w = redis::cmd("XGROUP");
            w.arg("CREATE").arg(&self.tmp).arg(&name).arg(&last);
            if let Some(read) = group.get("entries-read")
                && self.to.version() >= (7, 0)
            {
                w.arg("ENTRIESREAD").arg(read);
            }
            self.write(w).await?;
            // Consumers, then their pending entries with idle time and delivery count.
            let consumers: Vec<HashMapValue> = self
                .read({
                    let mut c = redis::cmd("XINFO");
                    c.arg("CONSUMERS").arg(self.src).arg(&name);
                    c
                })
                .await?;
            for consumer in consumers {
                let cname = consumer.get("name").unwrap_or_default();
                if self.to.version() >= (6, 2) {
                    let mut w = redis::cmd("XGROUP");
                    w.arg("CREATECONSUMER")
                        .arg(&self.tmp)
                        .arg(&name)
                        .arg(&cname);
                    self.write(w).await?;
                }
                let mut start = "-".to_string();
                loop {
                    let mut c = redis::cmd("XPENDING");
                    c.arg(self.src)
                        .arg(&name)
                        .arg(&start)
                        .arg("+")
                        .arg(self.chunk)
                        .arg(&cname);
                    let pending: Vec<(String, String, i64, i64)> = self.read(c).await?;
                    let Some(last) = pending.last() else { break };
                    start = format!("({}", last.0);
                    for (id, _, idle, deliveries) in &pending {
                        let mut w = redis::cmd("XCLAIM");
                        w.arg(&self.tmp)
                            .arg(&name)
                            .arg(&cname)
                            .arg(0)
                            .arg(id)
                            .arg("IDLE")
                            .arg(idle)
                            .arg("RETRYCOUNT")
                            .arg(deliveries)
                            .arg("FORCE")
                            .arg("JUSTID");
                        self.write(w).await?;
                    }
                    if pending.len() < self.chunk {
                        break;
                    }
                }
            }
        }
        Ok(())
    }
}

/// A stream entry id, `ms-seq`, ordered as Redis orders them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct StreamId(u64, u64);

impl StreamId {
    fn parse(s: &str) -> Option<Self> {
        let (ms, seq) = s.split_once('-')?;
        Some(Self(ms.parse().ok()?, seq.parse().ok()?))
    }

    /// The smallest id after this one.
    fn next(self) -> Self {
        match self.1.checked_add(1) {
            Some(seq) => Self(self.0, seq),
            None => Self(self.0 + 1, 0),
        }
    }
}

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.0, self.1)
    }
}

/// A reply of field/value pairs (`XINFO GROUPS`, `XINFO CONSUMERS`) read as text.
struct HashMapValue(Vec<(String, Value)>);

impl HashMapValue {
    fn get(&self, name: &str) -> Option<String> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| redis::from_redis_value::<String>(v.clone()).ok())
    }
}

impl FromRedisValue for HashMapValue {
    fn from_redis_value(v: Value) -> Result<Self, redis::ParsingError> {
        let pairs: Vec<(String, Value)> = match v {
            Value::Map(m) => m
                .into_iter()
                .filter_map(|(k, v)| redis::from_redis_value::<String>(k).ok().map(|k| (k, v)))
                .collect(),
            Value::Array(items) => items
                .chunks(2)
                .filter_map(|kv| {
                    let k = redis::from_redis_value::<String>(kv.first()?.clone()).ok()?;
                    Some((k, kv.get(1)?.clone()))
                })
                .collect(),
            _ => Vec::new(),
        };
        Ok(HashMapValue(pairs))
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
        // The source may have gone while it was read (a scan of a deleted key just ends), or
        // expired: then there is nothing complete to put in place.
        let mut exists = redis::cmd("EXISTS");
        exists.arg(src);
        let gone = matches!(from.query(src, exists).await?, Ok(Value::Int(0)))
            || expire_at_ms.is_some_and(|at| at <= ferry_core::checkpoint::now_ms());
        if gone {
            return Ok(ChunkedCopy::Vanished);
        }
        if let Some(fence) = fence.filter(|f| !f.beside(to)) {
            fence.check().await?;
        }
        let moved = match fence.filter(|f| !direct && f.beside(to)) {
            Some(fence) => {
                let token = fence.token.to_string();
                let at = expire_at_ms.map(|a| a.to_string()).unwrap_or_default();
                let flag: &[u8] = if replace { b"1" } else { b"0" };
                to.eval(
                    &FENCED_RENAME,
                    &[&ctx.tmp, dst, fence.key],
                    &[token.as_bytes(), flag, at.as_bytes()],
                )
                .await?
                .map_err(|e| ChunkError::Key(format!("writing the target: {e}")))?
            }
            None => {
                if let Some(at) = expire_at_ms {
                    let mut c = redis::cmd("PEXPIREAT");
                    c.arg(&ctx.tmp).arg(at);
                    ctx.write(c).await?;
                }
                if direct {
                    return Ok(ChunkedCopy::Copied { bytes: ctx.bytes });
                }
                let mut c = redis::cmd(if replace { "RENAME" } else { "RENAMENX" });
                c.arg(&ctx.tmp).arg(dst);
                ctx.write(c).await?
            }
        };
        if moved == Value::Int(0) {
            return Ok(ChunkedCopy::Exists);
        }
        Ok(ChunkedCopy::Copied { bytes: ctx.bytes })
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
