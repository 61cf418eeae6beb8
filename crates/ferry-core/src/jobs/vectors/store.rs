//! The stores a vector migration reads from and writes to.

use std::collections::BTreeMap;
use std::future::Future;

use serde::Serialize;

use super::{IdKind, IdRange, Quantization, VectorId};
use crate::error::{Classify, ErrorClass};

/// What a source holds for one item's embedding.
#[derive(Debug, Clone, PartialEq)]
pub enum Embedding {
    /// The item has no embedding (the property, field or column is absent or null).
    Missing,
    /// A vector of 32-bit floats.
    Vector(Vec<f32>),
    /// Something that is not a vector of finite numbers, with what is wrong with it.
    Invalid(String),
}

/// One item read from a source.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceItem {
    /// Its id.
    pub id: VectorId,
    /// Its embedding.
    pub embedding: Embedding,
}

/// An item a store could not take, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ItemFailure {
    /// The item.
    pub id: VectorId,
    /// What went wrong.
    pub error: String,
}

/// What a source holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SourceInfo {
    /// The store's kind (`falkordb`, `neo4j`, `redis`, `postgres`).
    pub store: String,
    /// The server's version.
    pub version: String,
    /// Items (nodes, hashes, rows) in scope.
    pub items: u64,
    /// Items with an embedding.
    pub with_embedding: u64,
    /// How many embeddings have each dimension.
    pub dimensions: BTreeMap<usize, u64>,
    /// Items with an integer id.
    pub int_ids: u64,
    /// Items with a string id.
    pub str_ids: u64,
    /// Records skipped because their id is neither an integer nor a string (a float, a list,
    /// none): not items, not counted in `items`.
    pub bad_ids: u64,
}

impl SourceInfo {
    /// The one dimension every embedding has, if they agree.
    pub fn dimension(&self) -> Option<usize> {
        match self.dimensions.len() {
            1 => self.dimensions.keys().next().copied(),
            _ => None,
        }
    }

    /// The one kind every id has (`None` for an empty source or mixed kinds).
    pub fn id_kind(&self) -> Option<IdKind> {
        match (self.int_ids, self.str_ids) {
            (0, 0) => None,
            (_, 0) => Some(IdKind::Int),
            (0, _) => Some(IdKind::Str),
            _ => None,
        }
    }
}

/// What a target holds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TargetInfo {
    /// The store's kind (`redis-vectorset`, `milvus`).
    pub store: String,
    /// The server's version.
    pub version: String,
    /// Whether the vector set or collection exists.
    pub exists: bool,
    /// Its dimension, when it exists.
    pub dimension: Option<usize>,
    /// Its similarity metric (`cosine`, `l2`, `ip`), when known.
    pub metric: Option<String>,
    /// How it stores vectors, when it exists.
    pub quantization: Option<Quantization>,
    /// The kind of its ids (a Milvus primary key's type), when it exists and has one.
    pub id_kind: Option<IdKind>,
    /// Items it holds.
    pub items: u64,
}

/// Errors of a vector store.
#[derive(Debug, thiserror::Error)]
pub enum VectorError {
    /// Bad URL, option or data layout: the operator must fix it.
    #[error("{0}")]
    Config(String),
    /// The target does not fit the data (dimension, quantisation, id type).
    #[error("{0}")]
    Mismatch(String),
    /// The store cannot be reached.
    #[error("cannot reach {store}: {message}")]
    Unreachable {
        /// The store's kind and address (no password).
        store: String,
        /// What failed.
        message: String,
    },
    /// The store failed a command.
    #[error("{store}: {message}")]
    Backend {
        /// The store's kind and address (no password).
        store: String,
        /// What failed.
        message: String,
    },
}

impl Classify for VectorError {
    fn class(&self) -> ErrorClass {
        match self {
            VectorError::Config(_) | VectorError::Mismatch(_) => ErrorClass::User,
            VectorError::Unreachable { .. } | VectorError::Backend { .. } => ErrorClass::External,
        }
    }
}

/// The result of a vector store operation.
pub type VectorResult<T> = Result<T, VectorError>;

/// A store holding items with embeddings, read in id order (keyset pagination, never offsets).
pub trait VectorSource: Send + Sync {
    /// The server's version and what the source holds.
    fn describe(&self) -> impl Future<Output = VectorResult<SourceInfo>> + Send;
    /// Up to `limit` ids of `range`, in id order (cheap: used to cut ranges for workers).
    fn ids(
        &self,
        range: &IdRange,
        limit: usize,
    ) -> impl Future<Output = VectorResult<Vec<VectorId>>> + Send;
    /// Up to `limit` items of `range` with their embeddings, in id order.
    fn page(
        &self,
        range: &IdRange,
        limit: usize,
    ) -> impl Future<Output = VectorResult<Vec<SourceItem>>> + Send;
    /// The items with these ids that exist (in any order).
    fn get(&self, ids: &[VectorId]) -> impl Future<Output = VectorResult<Vec<SourceItem>>> + Send;
    /// Up to `n` ids picked at random.
    fn sample(&self, n: usize) -> impl Future<Output = VectorResult<Vec<VectorId>>> + Send;
}

/// A vector store a migration writes to (and the stores of a dual write).
///
/// Ids of `kind` are read back from stores that keep them as text (vector set elements).
pub trait VectorTarget: Send + Sync {
    /// The server's version and what the target holds.
    fn describe(&self) -> impl Future<Output = VectorResult<TargetInfo>> + Send;
    /// How it stores vectors (bounds what validation accepts).
    fn quantization(&self) -> Quantization;
    /// Makes the target ready for vectors of `dimension` with ids of `kind` (creates a
    /// collection that does not exist); refuses one that does not fit.
    fn prepare(
        &self,
        dimension: usize,
        kind: IdKind,
    ) -> impl Future<Output = VectorResult<()>> + Send;
    /// Writes the items, replacing any with the same id (idempotent); returns those refused.
    fn upsert(
        &self,
        items: &[(VectorId, Vec<f32>)],
    ) -> impl Future<Output = VectorResult<Vec<ItemFailure>>> + Send;
    /// The stored vector of each id, `None` where the target has none.
    fn get(
        &self,
        ids: &[VectorId],
    ) -> impl Future<Output = VectorResult<Vec<Option<Vec<f32>>>>> + Send;
    /// Deletes these ids; returns how many existed.
    fn delete(&self, ids: &[VectorId]) -> impl Future<Output = VectorResult<u64>> + Send;
    /// Every id the target holds.
    fn ids(&self, kind: IdKind) -> impl Future<Output = VectorResult<Vec<VectorId>>> + Send;
    /// Up to `n` ids picked at random.
    fn sample(
        &self,
        n: usize,
        kind: IdKind,
    ) -> impl Future<Output = VectorResult<Vec<VectorId>>> + Send;
    /// The `k` nearest ids to `vector` with their similarity scores, best first.
    fn search(
        &self,
        vector: &[f32],
        k: usize,
        kind: IdKind,
    ) -> impl Future<Output = VectorResult<Vec<(VectorId, f32)>>> + Send;
    /// Removes the vector set or collection with everything in it.
    fn drop_all(&self) -> impl Future<Output = VectorResult<()>> + Send;
}

/// Reads the RediSearch vector layout: little-endian 32-bit floats, packed.
pub fn parse_embedding_blob(blob: &[u8]) -> Embedding {
    if blob.is_empty() {
        return Embedding::Invalid("empty vector blob".into());
    }
    if !blob.len().is_multiple_of(4) {
        return Embedding::Invalid(format!(
            "a FLOAT32 vector blob is a multiple of 4 bytes long, this one is {}",
            blob.len()
        ));
    }
    let vector: Vec<f32> = blob
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    match vector.iter().position(|x| !x.is_finite()) {
        Some(i) => Embedding::Invalid(format!("component {i} is not a finite number")),
        None => Embedding::Vector(vector),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_parse_as_little_endian_floats() {
        let blob: Vec<u8> = [1.5_f32, -0.25]
            .iter()
            .flat_map(|f| f.to_le_bytes())
            .collect();
        assert_eq!(
            parse_embedding_blob(&blob),
            Embedding::Vector(vec![1.5, -0.25])
        );
        assert!(matches!(
            parse_embedding_blob(&blob[..5]),
            Embedding::Invalid(_)
        ));
        assert!(matches!(parse_embedding_blob(&[]), Embedding::Invalid(_)));
        let nan = f32::NAN.to_le_bytes();
        assert!(matches!(parse_embedding_blob(&nan), Embedding::Invalid(_)));
    }

    #[test]
    fn a_source_has_one_dimension_and_kind_only_when_all_agree() {
        let mut info = SourceInfo::default();
        assert_eq!(info.id_kind(), None);
        info.int_ids = 3;
        info.dimensions.insert(384, 3);
        assert_eq!(
            (info.id_kind(), info.dimension()),
            (Some(IdKind::Int), Some(384))
        );
        info.str_ids = 1;
        info.dimensions.insert(3, 1);
        assert_eq!((info.id_kind(), info.dimension()), (None, None));
    }
}
