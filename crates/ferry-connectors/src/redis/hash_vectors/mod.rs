//! Redis hashes as a vector source, in the RediSearch layout: one hash per item, its
//! embedding a field of packed little-endian 32-bit floats.
//!
//! The items are the keys matching a glob (`media:*`), found once with `SCAN MATCH` (names
//! only) when first needed and held sorted by id, so that ranges are slices; a page reads its
//! fields with one pipeline of `HGET`. Keys created later are not in ranges (`get` still
//! finds them). A key's id is its text after the pattern's literal prefix; a key whose id is
//! not UTF-8 is skipped and counted as a bad id. A key of another type is an invalid item, a
//! hash without the field a missing embedding, a key deleted since it was listed no item.
//! One standalone server (or a replica): a Redis Cluster is refused.

mod keys;

use std::sync::Arc;

use ferry_core::jobs::vectors::{
    Embedding, IdRange, SourceInfo, SourceItem, VectorError, VectorId, VectorResult, VectorSource,
    parse_embedding_blob,
};
use redis::Value;
use redis::aio::MultiplexedConnection;
use tokio::sync::OnceCell;

use self::keys::{KeyIndex, glob_match, id_text, literal_prefix};
use super::RedisUrl;

const STORE: &str = "redis";
/// Keys per SCAN call and per pipeline of `describe`.
const BATCH: usize = 1000;

/// The hashes whose keys match one glob, with a FLOAT32 blob field.
pub struct RedisHashVectorSource {
    conn: MultiplexedConnection,
    shown: String,
    pattern: String,
    prefix: String,
    field: String,
    index: OnceCell<Arc<KeyIndex>>,
}

impl std::fmt::Debug for RedisHashVectorSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisHashVectorSource")
            .field("url", &self.shown)
            .field("pattern", &self.pattern)
            .field("field", &self.field)
            .finish()
    }
}

impl RedisHashVectorSource {
    /// Connects to the standalone server of `url` (`redis://`, `rediss://`); the items are the
    /// hashes whose keys match `key_pattern`, their embeddings in `embedding_field`.
    pub async fn open(url: &str, key_pattern: &str, embedding_field: &str) -> VectorResult<Self> {
        let parsed = RedisUrl::parse(url, None).map_err(|e| VectorError::Config(e.to_string()))?;
        let shown = parsed.redacted.clone();
        if parsed.cluster {
            return Err(VectorError::Config(format!(
                "{shown}: a vector source reads one standalone Redis server, not a Cluster; name a redis:// URL"
            )));
        }
        if key_pattern.is_empty() || embedding_field.is_empty() {
            return Err(VectorError::Config(
                "a Redis source needs a key pattern (e.g. 'media:*') and an embedding field".into(),
            ));
        }
        let unreachable = |e: redis::RedisError| VectorError::Unreachable {
            store: format!("Redis at {shown}"),
            message: e.to_string(),
        };
        let conn = redis::Client::open(parsed.info)
            .map_err(|e| VectorError::Config(format!("{shown}: {e}")))?
            .get_multiplexed_async_connection()
            .await
            .map_err(unreachable)?;
        let source = RedisHashVectorSource {
            conn,
            shown: shown.clone(),
            pattern: key_pattern.to_string(),
            prefix: literal_prefix(key_pattern).to_string(),
            field: embedding_field.to_string(),
            index: OnceCell::new(),
        };
        let info = source.info_section("cluster").await?;
        if info.lines().any(|l| l.trim() == "cluster_enabled:1") {
            return Err(VectorError::Config(format!(
                "{shown} is a Redis Cluster node: a vector source reads one standalone server, and this node holds only its own slots"
            )));
        }
        Ok(source)
    }

    fn error(&self, e: redis::RedisError) -> VectorError {
        let store = format!("Redis at {}", self.shown);
        match super::is_unreachable(&e) {
            true => VectorError::Unreachable {
                store,
                message: e.to_string(),
            },
            false => VectorError::Backend {
                store,
                message: e.to_string(),
            },
        }
    }

    async fn info_section(&self, section: &str) -> VectorResult<String> {
        redis::cmd("INFO")
            .arg(section)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(|e| self.error(e))
    }

    /// The keys, listed and sorted on first use.
    async fn index(&self) -> VectorResult<Arc<KeyIndex>> {
        self.index
            .get_or_try_init(|| async {
                let mut conn = self.conn.clone();
                let mut keys = Vec::new();
                let mut cursor: u64 = 0;
                loop {
                    let (next, batch): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&self.pattern)
                        .arg("COUNT")
                        .arg(BATCH)
                        .query_async(&mut conn)
                        .await
                        .map_err(|e| self.error(e))?;
                    keys.extend(batch);
                    if next == 0 {
                        break;
                    }
                    cursor = next;
                }
                let index = KeyIndex::build(self.prefix.as_bytes(), keys);
                if index.not_utf8 > 0 {
                    tracing::warn!(
                        pattern = %self.pattern,
                        keys = index.not_utf8,
                        "skipped keys whose id (the text after the pattern's prefix) is not UTF-8"
                    );
                }
                Ok(Arc::new(index))
            })
            .await
            .cloned()
    }

    /// The embeddings of `keys` with one pipeline of `HGET`; `None` for a key that no longer
    /// exists.
    async fn read(&self, keys: &[&[u8]]) -> VectorResult<Vec<Option<Embedding>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for key in keys {
            pipe.cmd("HGET").arg(*key).arg(&self.field);
        }
        let mut conn = self.conn.clone();
        let replies: Vec<Value> = pipe
            .ignore_errors()
            .query_async(&mut conn)
            .await
            .map_err(|e| self.error(e))?;
        let mut out = Vec::with_capacity(keys.len());
        let mut nils = Vec::new();
        for (i, reply) in replies.into_iter().enumerate() {
            out.push(Some(match reply {
                Value::BulkString(blob) => parse_embedding_blob(&blob),
                Value::Nil => {
                    nils.push(i);
                    Embedding::Missing
                }
                Value::ServerError(e) if e.code() == "WRONGTYPE" => {
                    Embedding::Invalid("the key is not a hash (it holds another type)".into())
                }
                Value::ServerError(e) => {
                    return Err(VectorError::Backend {
                        store: format!("Redis at {}", self.shown),
                        message: format!("HGET {}: {e:?}", String::from_utf8_lossy(keys[i])),
                    });
                }
                other => Embedding::Invalid(format!("the server answered HGET with {other:?}")),
            }));
        }
        if !nils.is_empty() {
            // No field, or no key any more: only the first is an item.
            let mut pipe = redis::pipe();
            for &i in &nils {
                pipe.cmd("EXISTS").arg(keys[i]);
            }
            let exists: Vec<i64> = pipe
                .query_async(&mut conn)
                .await
                .map_err(|e| self.error(e))?;
            for (&i, n) in nils.iter().zip(exists) {
                if n == 0 {
                    out[i] = None;
                }
            }
        }
        Ok(out)
    }

    /// Counts the embeddings by dimension from the field's length (`HSTRLEN`), without
    /// reading them.
    async fn dimensions(&self, index: &KeyIndex, info: &mut SourceInfo) -> VectorResult<()> {
        let keys: Vec<&[u8]> = index.keys().collect();
        for chunk in keys.chunks(BATCH) {
            let mut pipe = redis::pipe();
            for key in chunk {
                pipe.cmd("HSTRLEN").arg(*key).arg(&self.field);
            }
            let lengths: Vec<Value> = pipe
                .ignore_errors()
                .query_async(&mut self.conn.clone())
                .await
                .map_err(|e| self.error(e))?;
            for length in lengths {
                if let Value::Int(n) = length
                    && n > 0
                    && n % 4 == 0
                {
                    info.with_embedding += 1;
                    *info.dimensions.entry(n as usize / 4).or_default() += 1;
                }
            }
        }
        Ok(())
    }
}

impl VectorSource for RedisHashVectorSource {
    async fn describe(&self) -> VectorResult<SourceInfo> {
        let server = self.info_section("server").await?;
        let version = server
            .lines()
            .find_map(|l| l.strip_prefix("redis_version:"))
            .unwrap_or("unknown")
            .trim();
        let index = self.index().await?;
        let (int_ids, str_ids) = index.counts();
        let mut info = SourceInfo {
            store: STORE.into(),
            version: format!("redis {version}"),
            items: int_ids + str_ids,
            int_ids,
            str_ids,
            bad_ids: index.not_utf8,
            ..SourceInfo::default()
        };
        self.dimensions(&index, &mut info).await?;
        Ok(info)
    }

    async fn ids(&self, range: &IdRange, limit: usize) -> VectorResult<Vec<VectorId>> {
        let index = self.index().await?;
        Ok(index
            .range(range, limit)
            .into_iter()
            .map(|(id, _)| id)
            .collect())
    }

    async fn page(&self, range: &IdRange, limit: usize) -> VectorResult<Vec<SourceItem>> {
        let index = self.index().await?;
        let slice = index.range(range, limit);
        let keys: Vec<&[u8]> = slice.iter().map(|(_, k)| *k).collect();
        let embeddings = self.read(&keys).await?;
        Ok(slice
            .into_iter()
            .zip(embeddings)
            .filter_map(|((id, _), e)| e.map(|embedding| SourceItem { id, embedding }))
            .collect())
    }

    async fn get(&self, ids: &[VectorId]) -> VectorResult<Vec<SourceItem>> {
        let mut wanted = Vec::new();
        for id in ids {
            let Some(text) = id_text(id) else { continue };
            let key = format!("{}{text}", self.prefix).into_bytes();
            if glob_match(self.pattern.as_bytes(), &key) {
                wanted.push((id.clone(), key));
            }
        }
        let keys: Vec<&[u8]> = wanted.iter().map(|(_, k)| k.as_slice()).collect();
        let embeddings = self.read(&keys).await?;
        Ok(wanted
            .into_iter()
            .zip(embeddings)
            .filter_map(|((id, _), e)| e.map(|embedding| SourceItem { id, embedding }))
            .collect())
    }

    async fn sample(&self, n: usize) -> VectorResult<Vec<VectorId>> {
        Ok(self.index().await?.sample(n))
    }
}
