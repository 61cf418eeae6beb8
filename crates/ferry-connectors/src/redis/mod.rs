//! Redis: endpoints (standalone or Cluster), key copy primitives and the checkpoint store.

mod checkpoint;
mod copy;
mod endpoint;
mod error;
mod hash_vectors;
mod ledgered_copy;
mod moves;
mod url;
mod vector_set;

pub use checkpoint::RedisCheckpointStore;
pub use copy::{
    ChunkError, ChunkFence, ChunkedCopy, KeyKind, chunk_tmp_key, copy_in_chunks,
    copy_in_chunks_fenced,
};
pub use endpoint::{LuaScript, Node, RedisEndpoint, key_slot};
pub use error::{ConnError, is_transient, is_unreachable};
pub use hash_vectors::RedisHashVectorSource;
pub use ledgered_copy::{
    LedgerWrite, LedgeredCopy, LedgeredRestore, copy_with_ledger, restore_with_ledger,
};
pub use moves::{
    DeleteIfUnchanged, Moved, SourceDelete, Witness, delete_if_unchanged, move_on_server,
    source_digest,
};
pub use url::RedisUrl;
pub use vector_set::{VectorSetOptions, VectorSetTarget, fp32_blob};

/// Re-exported so callers build commands and read replies with the same types.
pub use ::redis::{Cmd, RedisError, RedisResult, Value, cmd};
