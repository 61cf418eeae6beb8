//! The vectors job's pure parts: item ids, embeddings, the source and target store traits,
//! the storage modes of a live migration and how a copied vector is compared with its source.
//!
//! A migration reads items (an id and an embedding) from a [`VectorSource`] — a graph, Redis
//! hashes or a PostgreSQL table — in id order, one id range at a time, and upserts them into a
//! [`VectorTarget`] — a Redis vector set or a Milvus collection. Ids are kept as given: an
//! integer stays an integer, a string a string.

mod compare;
mod id;
mod mode;
mod store;

pub use compare::{Comparison, Quantization, Tolerance, compare};
pub use id::{IdKind, IdRange, VectorId};
pub use mode::{ParseModeError, StorageMode};
pub use store::{
    Embedding, ItemFailure, SourceInfo, SourceItem, TargetInfo, VectorError, VectorResult,
    VectorSource, VectorTarget, parse_embedding_blob,
};
