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
//!
//! **What is where.** This file: the source, its layout and what both layouts share (reading
//! and counting dispatched by layout, the reply helpers). [`stream`]: the `stream` layout
//! (XRANGE, field decoding, the embedding bytes, XDEL, XLEN). [`keys`]: the `keys` layout (GET
//! of a chunk of the index, JSON decoding, UNLINK). [`discovery`]: the SCAN finding the
//! cameras. [`delete`]: deleting by id in chunks, fenced or not. [`wordings`]: the camera's
//! learned wordings, `ferry:{tier/<camera>}:wordings`.

mod delete;
mod discovery;
mod keys;
mod stream;
mod wordings;

use std::collections::BTreeMap;

use ferry_connectors::redis::{ConnError, RedisEndpoint};
use ferry_core::jobs::tier::{Caption, EntryId};
use redis::Value;
use serde::{Deserialize, Serialize};

pub use stream::{decode_embedding, encode_embedding};

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

    /// The layout.
    pub fn layout(&self) -> Layout {
        self.layout
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

    /// Number of entries a camera holds (XLEN, or the index length).
    pub async fn len(&self, camera: &str, index: &[u64]) -> Result<u64, ConnError> {
        match self.layout {
            Layout::Keys => Ok(index.len() as u64),
            Layout::Stream => self.stream_len(camera).await,
        }
    }
}

/// The count an integer reply holds (0 for any other reply), or the command's error.
fn reply_count(reply: redis::RedisResult<Value>, redis: &RedisEndpoint) -> Result<u64, ConnError> {
    match reply {
        Ok(Value::Int(n)) => Ok(n.max(0) as u64),
        Ok(_) => Ok(0),
        Err(e) => Err(command_error(redis, e)),
    }
}

/// A failed command on `redis`, as a connection error naming the endpoint.
pub fn command_error(redis: &RedisEndpoint, source: redis::RedisError) -> ConnError {
    ConnError::Command {
        endpoint: redis.display().to_string(),
        source,
    }
}
