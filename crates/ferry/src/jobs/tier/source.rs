//! Reading captions from Redis in one of the two input layouts, and deleting consumed ones.
//!
//! - `stream`: one Stream per camera, `{stream_prefix}{camera_id}`, fields `caption`, optional
//!   `ts` (ms; default the entry id's time), `embedding` (little-endian f32 bytes), `frame`,
//!   `confidence`.
//! - `keys`: keys `{key_prefix}{camera_id}:{ts_ms}` holding JSON `{"camera_id", "caption",
//!   "timestamp", "embedding"?}` with a TTL (the seed's layout). `timestamp` may be Unix
//!   seconds or milliseconds, or RFC 3339.
//!
//! **Fenced deletes.** A pass deletes the captions it stored under its camera's run lease. When
//! the lease store is a Redis on the very server and database of the captions (the default:
//! no `checkpoint` option), the delete is one Lua script that first checks the camera's fence,
//! `ferry:{tier/<camera>}:fence` (the token of the newest acquisition of the lease), against the
//! pass's token and deletes nothing when they differ: a pass paused past its lease while
//! another replica took the camera over cannot delete anything afterwards. Elsewhere the delete
//! is not fenced, only the store commit before it is:
//!
//! - the lease store is a file store or another Redis server or database: a script cannot read
//!   the fence;
//! - the captions are on a Redis Cluster: the fence key hashes to the slot of `tier/<camera>`,
//!   the Stream (or caption keys) to other slots, and one script only touches keys of one slot.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use ferry_connectors::redis::{ConnError, LuaScript, RedisCheckpointStore, RedisEndpoint};
use ferry_core::jobs::tier::store::Fence;
use ferry_core::jobs::tier::wordings::CameraWordings;
use ferry_core::jobs::tier::{Caption, EntryId};
use redis::Value;
use serde::{Deserialize, Serialize};

use super::TierError;

/// XDEL only while the fence holds this pass's token. KEYS: fence, stream. ARGV: token, ids.
/// Returns `{1, deleted}`, or `{0, fence}` (nothing deleted) when the fence has moved.
static FENCED_XDEL: LazyLock<LuaScript> = LazyLock::new(|| {
    LuaScript::new(
        r#"
local fence = redis.call('GET', KEYS[1])
if fence ~= ARGV[1] then return {0, fence or ''} end
return {1, redis.call('XDEL', KEYS[2], unpack(ARGV, 2))}
"#,
    )
});

/// UNLINK only while the fence holds this pass's token. KEYS: fence, caption keys. ARGV:
/// token. Returns `{1, deleted}`, or `{0, fence}` (nothing deleted) when the fence has moved.
static FENCED_UNLINK: LazyLock<LuaScript> = LazyLock::new(|| {
    LuaScript::new(
        r#"
local fence = redis.call('GET', KEYS[1])
if fence ~= ARGV[1] then return {0, fence or ''} end
return {1, redis.call('UNLINK', unpack(KEYS, 2))}
"#,
    )
});

/// How captions are laid out in Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// One Stream per camera (recommended).
    #[default]
    Stream,
    /// One key per caption, with a TTL.
    Keys,
}

/// One entry as read: a caption, or why it cannot be used (it is then left in Redis).
#[derive(Debug, Clone)]
pub struct RawEntry {
    /// Its position.
    pub entry: EntryId,
    /// The caption, or the problem.
    pub caption: Result<Caption, String>,
}

/// The captions of one Redis server or cluster, in one layout.
#[derive(Debug)]
pub struct CaptionSource {
    redis: RedisEndpoint,
    layout: Layout,
    prefix: String,
    /// Whether the lease fences live on this server and database (so deletes check them).
    fences_here: bool,
}

/// Per-camera timestamps of the `keys` layout, found by one SCAN of the keyspace.
pub type KeyIndex = BTreeMap<String, Vec<u64>>;

impl CaptionSource {
    /// A source over `redis`; `prefix` is the stream prefix or the key prefix.
    pub fn new(redis: RedisEndpoint, layout: Layout, prefix: String) -> Self {
        CaptionSource {
            redis,
            layout,
            prefix,
            fences_here: false,
        }
    }

    /// Tells the source that the lease store is the Redis checkpoint store on `leases`: when it
    /// is the captions' own standalone server and database, deletes check the fence.
    pub fn with_fences_on(mut self, leases: Option<&RedisEndpoint>) -> Self {
        self.fences_here = leases.is_some_and(|l| {
            !self.redis.is_cluster()
                && !l.is_cluster()
                && l.same_server(&self.redis)
                && l.db() == self.redis.db()
        });
        self
    }

    /// Whether deletes check the lease fence in the same script (see the module docs).
    pub fn fences_deletes(&self) -> bool {
        self.fences_here
    }

    /// The Redis endpoint.
    pub fn redis(&self) -> &RedisEndpoint {
        &self.redis
    }

    /// The camera's learned wordings as the last pass left them; `None` when there are none
    /// (or they cannot be read: they are learned again).
    pub async fn load_wordings(&self, camera: &str) -> Result<Option<CameraWordings>, ConnError> {
        let key = wordings_key(camera);
        let mut cmd = redis::cmd("GET");
        cmd.arg(&key);
        let reply = self.redis.query(key.as_bytes(), cmd).await?;
        Ok(match reply {
            Ok(Value::BulkString(bytes)) => match serde_json::from_slice(&bytes) {
                Ok(wordings) => Some(wordings),
                Err(e) => {
                    tracing::warn!(camera, key, error = %e, "the learned wordings are not Ferry's JSON; learning again");
                    None
                }
            },
            Ok(_) => None,
            Err(e) => {
                // Not a string (another program's key): learned again, and overwritten.
                tracing::warn!(camera, key, error = %e, "the learned wordings cannot be read; learning again");
                None
            }
        })
    }

    /// Keeps the camera's learned wordings for the next pass.
    pub async fn save_wordings(
        &self,
        camera: &str,
        wordings: &CameraWordings,
    ) -> Result<(), ConnError> {
        let key = wordings_key(camera);
        let json = serde_json::to_vec(wordings).expect("wordings serialise");
        let mut cmd = redis::cmd("SET");
        cmd.arg(&key).arg(json);
        let reply = self.redis.query(key.as_bytes(), cmd).await?;
        reply.map_err(|e| command_error(&self.redis, e))?;
        Ok(())
    }

    /// The layout.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The Stream key of a camera.
    pub fn stream_key(&self, camera: &str) -> String {
        format!("{}{camera}", self.prefix)
    }

    /// The key of a caption in the `keys` layout.
    pub fn caption_key(&self, camera: &str, ts_ms: u64) -> String {
        format!("{}{camera}:{ts_ms}", self.prefix)
    }

    /// Every camera with captions in Redis; for the `keys` layout also the index of their
    /// caption timestamps (sorted).
    pub async fn cameras(&self) -> Result<(Vec<String>, KeyIndex), ConnError> {
        let pattern = format!("{}*", glob_escape(&self.prefix));
        let mut index: KeyIndex = BTreeMap::new();
        let mut streams = Vec::new();
        for node in self.redis.masters() {
            let mut cursor = 0u64;
            loop {
                let mut cmd = redis::cmd("SCAN");
                cmd.arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1000);
                if self.layout == Layout::Stream {
                    cmd.arg("TYPE").arg("stream");
                }
                let (next, keys): (u64, Vec<Vec<u8>>) = cmd
                    .query_async(&mut node.conn())
                    .await
                    .map_err(|e| command_error(&self.redis, e))?;
                for key in keys {
                    let Ok(key) = String::from_utf8(key) else {
                        continue;
                    };
                    let Some(rest) = key.strip_prefix(&self.prefix) else {
                        continue;
                    };
                    match self.layout {
                        Layout::Stream => streams.push(rest.to_string()),
                        Layout::Keys => {
                            if let Some((camera, ts)) = rest.rsplit_once(':')
                                && let Ok(ts) = ts.parse::<u64>()
                                && !camera.is_empty()
                            {
                                index.entry(camera.to_string()).or_default().push(ts);
                            }
                        }
                    }
                }
                cursor = next;
                if cursor == 0 {
                    break;
                }
            }
        }
        let cameras = match self.layout {
            Layout::Stream => {
                streams.sort();
                streams.dedup();
                streams
            }
            Layout::Keys => {
                index.values_mut().for_each(|v| {
                    v.sort_unstable();
                    v.dedup();
                });
                index.keys().cloned().collect()
            }
        };
        Ok((cameras, index))
    }

    /// Up to `count` entries of `camera` after `after` (exclusive), oldest first. For the `keys`
    /// layout `index` holds the camera's sorted timestamps.
    pub async fn read(
        &self,
        camera: &str,
        after: Option<EntryId>,
        count: usize,
        index: &[u64],
    ) -> Result<Vec<RawEntry>, ConnError> {
        match self.layout {
            Layout::Stream => self.read_stream(camera, after, count).await,
            Layout::Keys => self.read_keys(camera, after, count, index).await,
        }
    }

    async fn read_stream(
        &self,
        camera: &str,
        after: Option<EntryId>,
        count: usize,
    ) -> Result<Vec<RawEntry>, ConnError> {
        let key = self.stream_key(camera);
        let start = after.map_or_else(|| "-".to_string(), |a| format!("({a}"));
        let mut cmd = redis::cmd("XRANGE");
        cmd.arg(&key).arg(start).arg("+").arg("COUNT").arg(count);
        let reply = self.redis.query(key.as_bytes(), cmd).await?;
        let value = reply.map_err(|e| command_error(&self.redis, e))?;
        let entries: Vec<(String, Vec<Vec<u8>>)> =
            redis::from_redis_value(value).map_err(|e| command_error(&self.redis, e.into()))?;
        Ok(entries
            .into_iter()
            .filter_map(|(id, fields)| {
                let entry: EntryId = id.parse().ok()?;
                Some(RawEntry {
                    entry,
                    caption: stream_caption(camera, entry, &fields),
                })
            })
            .collect())
    }

    async fn read_keys(
        &self,
        camera: &str,
        after: Option<EntryId>,
        count: usize,
        index: &[u64],
    ) -> Result<Vec<RawEntry>, ConnError> {
        let from = match after {
            Some(a) => index.partition_point(|&ts| ts <= a.ms),
            None => 0,
        };
        let slice = &index[from..(from + count).min(index.len())];
        let cmds = slice
            .iter()
            .map(|&ts| {
                let key = self.caption_key(camera, ts);
                let mut c = redis::cmd("GET");
                c.arg(&key);
                (key.into_bytes(), c)
            })
            .collect();
        let replies = self.redis.run(cmds).await?;
        Ok(slice
            .iter()
            .zip(replies)
            .filter_map(|(&ts, reply)| {
                let entry = EntryId::new(ts, 0);
                match reply {
                    Ok(Value::BulkString(body)) => Some(RawEntry {
                        entry,
                        caption: key_caption(camera, ts, &body),
                    }),
                    // Expired or deleted since the SCAN: nothing to migrate.
                    Ok(Value::Nil) => None,
                    Ok(other) => Some(RawEntry {
                        entry,
                        caption: Err(format!("unexpected reply {other:?}")),
                    }),
                    Err(e) => Some(RawEntry {
                        entry,
                        caption: Err(format!("GET failed: {e}")),
                    }),
                }
            })
            .collect())
    }

    /// The oldest entry of a camera's Stream (`None` when empty or missing); for the `keys`
    /// layout, the first timestamp of the index.
    pub async fn oldest(&self, camera: &str, index: &[u64]) -> Result<Option<EntryId>, ConnError> {
        match self.layout {
            Layout::Keys => Ok(index.first().map(|&ts| EntryId::new(ts, 0))),
            Layout::Stream => Ok(self
                .read_stream(camera, None, 1)
                .await?
                .first()
                .map(|e| e.entry)),
        }
    }

    /// Deletes exactly these entries of `camera` (XDEL by id, or the caption keys). Returns how
    /// many existed.
    ///
    /// With a `fence` and the lease store on this server ([`Self::fences_deletes`]), each chunk
    /// is deleted by a script that first checks that the scope's fence still holds the fence's
    /// token, and nothing is deleted (error [`TierError::Fenced`]) once a newer run took the
    /// lease over. Otherwise the delete is not fenced (see the module docs).
    pub async fn delete(
        &self,
        camera: &str,
        entries: &[EntryId],
        fence: Option<&Fence>,
    ) -> Result<u64, TierError> {
        let fence = fence.filter(|_| self.fences_here);
        let mut deleted = 0u64;
        match self.layout {
            Layout::Stream => {
                let key = self.stream_key(camera);
                for chunk in entries.chunks(1000) {
                    if let Some(f) = fence {
                        let fence_key = RedisCheckpointStore::fence_key(&f.scope);
                        let token = f.token.to_string();
                        let ids: Vec<String> = chunk.iter().map(EntryId::to_string).collect();
                        let mut args: Vec<&[u8]> = vec![token.as_bytes()];
                        args.extend(ids.iter().map(|i| i.as_bytes()));
                        let reply = self
                            .redis
                            .eval(&FENCED_XDEL, &[&fence_key, key.as_bytes()], &args)
                            .await?;
                        deleted += self.fenced_count(camera, f, reply)?;
                        continue;
                    }
                    let mut cmd = redis::cmd("XDEL");
                    cmd.arg(&key);
                    for e in chunk {
                        cmd.arg(e.to_string());
                    }
                    let n = self.redis.query(key.as_bytes(), cmd).await?;
                    deleted += reply_count(n, &self.redis)?;
                }
            }
            Layout::Keys => {
                for chunk in entries.chunks(1000) {
                    if let Some(f) = fence {
                        let fence_key = RedisCheckpointStore::fence_key(&f.scope);
                        let token = f.token.to_string();
                        let keys: Vec<String> = chunk
                            .iter()
                            .map(|e| self.caption_key(camera, e.ms))
                            .collect();
                        let mut all: Vec<&[u8]> = vec![&fence_key];
                        all.extend(keys.iter().map(|k| k.as_bytes()));
                        let reply = self
                            .redis
                            .eval(&FENCED_UNLINK, &all, &[token.as_bytes()])
                            .await?;
                        deleted += self.fenced_count(camera, f, reply)?;
                        continue;
                    }
                    let cmds = chunk
                        .iter()
                        .map(|e| {
                            let key = self.caption_key(camera, e.ms);
                            let mut c = redis::cmd("UNLINK");
                            c.arg(&key);
                            (key.into_bytes(), c)
                        })
                        .collect();
                    for reply in self.redis.run(cmds).await? {
                        deleted += reply_count(reply, &self.redis)?;
                    }
                }
            }
        }
        Ok(deleted)
    }

    /// The count a fenced delete script returned, or [`TierError::Fenced`].
    fn fenced_count(
        &self,
        camera: &str,
        fence: &Fence,
        reply: redis::RedisResult<Value>,
    ) -> Result<u64, TierError> {
        let reply = reply.map_err(|e| command_error(&self.redis, e))?;
        match reply {
            Value::Array(parts) => match parts.as_slice() {
                [Value::Int(1), Value::Int(n)] => Ok((*n).max(0) as u64),
                [Value::Int(0), current] => Err(TierError::Fenced {
                    camera: camera.to_string(),
                    scope: fence.scope.clone(),
                    token: fence.token,
                    current: match current {
                        Value::BulkString(b) if !b.is_empty() => {
                            String::from_utf8_lossy(b).into_owned()
                        }
                        _ => "missing".to_string(),
                    },
                }),
                _ => Err(self.unexpected(format!("{parts:?}"))),
            },
            other => Err(self.unexpected(format!("{other:?}"))),
        }
    }

    fn unexpected(&self, reply: String) -> TierError {
        let e = redis::RedisError::from((
            redis::ErrorKind::Client,
            "unexpected reply of the fenced delete script",
            reply,
        ));
        command_error(&self.redis, e).into()
    }

    /// Number of entries a camera holds (XLEN, or the index length).
    pub async fn len(&self, camera: &str, index: &[u64]) -> Result<u64, ConnError> {
        match self.layout {
            Layout::Keys => Ok(index.len() as u64),
            Layout::Stream => {
                let key = self.stream_key(camera);
                let mut cmd = redis::cmd("XLEN");
                cmd.arg(&key);
                let reply = self.redis.query(key.as_bytes(), cmd).await?;
                reply_count(reply, &self.redis)
            }
        }
    }
}

fn reply_count(reply: redis::RedisResult<Value>, redis: &RedisEndpoint) -> Result<u64, ConnError> {
    match reply {
        Ok(Value::Int(n)) => Ok(n.max(0) as u64),
        Ok(_) => Ok(0),
        Err(e) => Err(command_error(redis, e)),
    }
}

/// The key keeping a camera's learned wordings (same hash slot as its lease).
fn wordings_key(camera: &str) -> String {
    format!("ferry:{{tier/{camera}}}:wordings")
}

/// A failed command on `redis`, as a connection error naming the endpoint.
pub fn command_error(redis: &RedisEndpoint, source: redis::RedisError) -> ConnError {
    ConnError::Command {
        endpoint: redis.display().to_string(),
        source,
    }
}

/// Escapes SCAN glob metacharacters.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Decodes little-endian f32 bytes; `None` when the length is not a multiple of 4.
pub fn decode_embedding(bytes: &[u8]) -> Option<Vec<f32>> {
    if bytes.is_empty() || !bytes.len().is_multiple_of(4) {
        return None;
    }
    Some(
        bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
}

/// Encodes an embedding as little-endian f32 bytes (the `embedding` field's format).
pub fn encode_embedding(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn stream_caption(camera: &str, entry: EntryId, fields: &[Vec<u8>]) -> Result<Caption, String> {
    let mut text = None;
    let mut ts = None;
    let mut embedding = None;
    for pair in fields.chunks(2) {
        let [name, value] = pair else { break };
        match name.as_slice() {
            b"caption" => {
                text = Some(
                    String::from_utf8(value.clone())
                        .map_err(|_| "field `caption` is not UTF-8".to_string())?,
                )
            }
            b"ts" => {
                let s = std::str::from_utf8(value).unwrap_or("");
                ts = Some(
                    s.parse::<i64>()
                        .map_err(|_| format!("field `ts` is `{s}`, not milliseconds"))?,
                );
            }
            b"embedding" => {
                embedding = Some(decode_embedding(value).ok_or_else(|| {
                    format!(
                        "field `embedding` has {} bytes, not little-endian f32s",
                        value.len()
                    )
                })?)
            }
            _ => {}
        }
    }
    let text = text.ok_or("no `caption` field")?;
    if text.trim().is_empty() {
        return Err("empty `caption`".into());
    }
    Ok(Caption {
        entry,
        camera_id: camera.to_string(),
        ts_ms: ts.unwrap_or(entry.ms as i64),
        text,
        embedding,
    })
}

#[derive(Deserialize)]
struct KeyBody {
    caption: String,
    #[serde(default)]
    timestamp: Option<serde_json::Value>,
    #[serde(default)]
    embedding: Option<Vec<f32>>,
}

fn key_caption(camera: &str, ts: u64, body: &[u8]) -> Result<Caption, String> {
    let body: KeyBody =
        serde_json::from_slice(body).map_err(|e| format!("value is not caption JSON: {e}"))?;
    if body.caption.trim().is_empty() {
        return Err("empty `caption`".into());
    }
    let ts_ms = match &body.timestamp {
        Some(serde_json::Value::Number(n)) => {
            let f = n.as_f64().unwrap_or(ts as f64);
            // Seconds (the seed writes time.time()) or milliseconds.
            if f < 1e11 {
                (f * 1000.0) as i64
            } else {
                f as i64
            }
        }
        Some(serde_json::Value::String(s)) => chrono::DateTime::parse_from_rfc3339(s)
            .map(|t| t.timestamp_millis())
            .unwrap_or(ts as i64),
        _ => ts as i64,
    };
    Ok(Caption {
        entry: EntryId::new(ts, 0),
        camera_id: camera.to_string(),
        ts_ms,
        text: body.caption,
        embedding: body.embedding,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_fields_decode_with_defaults_and_errors() {
        let e = EntryId::new(1000, 1);
        let emb = encode_embedding(&[0.5, -1.0]);
        let c = stream_caption(
            "c",
            e,
            &[
                b"caption".to_vec(),
                b"man".to_vec(),
                b"embedding".to_vec(),
                emb,
            ],
        )
        .unwrap();
        assert_eq!(c.ts_ms, 1000);
        assert_eq!(c.embedding, Some(vec![0.5, -1.0]));
        let err = stream_caption("c", e, &[b"ts".to_vec(), b"x".to_vec()]).unwrap_err();
        assert!(err.contains("`ts`"), "{err}");
        assert!(stream_caption("c", e, &[]).unwrap_err().contains("caption"));
    }

    #[test]
    fn key_json_accepts_seconds_millis_and_rfc3339() {
        let c = key_caption("c", 5, br#"{"caption":"x","timestamp":1700000000.5}"#).unwrap();
        assert_eq!(c.ts_ms, 1_700_000_000_500);
        let c = key_caption("c", 5, br#"{"caption":"x","timestamp":1700000000500}"#).unwrap();
        assert_eq!(c.ts_ms, 1_700_000_000_500);
        let c = key_caption(
            "c",
            5,
            br#"{"caption":"x","timestamp":"2023-11-14T22:13:20Z"}"#,
        )
        .unwrap();
        assert_eq!(c.ts_ms, 1_700_000_000_000);
        assert!(key_caption("c", 5, b"not json").is_err());
    }

    #[test]
    fn globs_are_escaped() {
        assert_eq!(glob_escape("cap*[x]"), "cap\\*\\[x\\]");
    }
}
