//! Redis: endpoints (standalone or Cluster), key copy primitives and the checkpoint store.

mod checkpoint;
mod copy;
mod endpoint;
mod error;
mod url;

pub use checkpoint::RedisCheckpointStore;
pub use copy::{ChunkError, ChunkedCopy, KeyKind, copy_in_chunks};
pub use endpoint::{Node, RedisEndpoint, key_slot};
pub use error::ConnError;
pub use url::RedisUrl;

/// Re-exported so callers build commands and read replies with the same types.
pub use ::redis::{Cmd, RedisError, RedisResult, Value, cmd};
