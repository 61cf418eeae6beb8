//! `[vectors]` of the config file: the stores and settings of a vectors migration (every key
//! is listed in `config/reference.toml`); command-line flags override it.

use serde::Deserialize;

use ferry_core::secret::SecretUrl;

/// `[vectors]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VectorsSection {
    /// Source URL: `falkordb://HOST:PORT/GRAPH`, `neo4j://…`, `redis://…`, `postgres://…`.
    pub source: Option<SecretUrl>,
    /// Node label (graph sources).
    pub label: Option<String>,
    /// Id property or column.
    pub id_property: Option<String>,
    /// Embedding property, hash field or column.
    pub embedding_property: Option<String>,
    /// SCAN pattern of the hashes (Redis sources).
    pub key_pattern: Option<String>,
    /// Table (PostgreSQL sources).
    pub table: Option<String>,
    /// Target URL: `redis://HOST:PORT/DB` or `milvus://HOST:PORT`.
    pub target: Option<SecretUrl>,
    /// Vector set key (Redis targets).
    pub vector_set: Option<String>,
    /// Collection (Milvus targets).
    pub collection: Option<String>,
    /// Vector set quantisation: `noquant`, `q8` or `bin`.
    pub quant: Option<String>,
    /// Vector set `EF` build option.
    pub ef: Option<u32>,
    /// Vector set `M` build option.
    pub m: Option<u32>,
    /// `VADD … CAS`.
    pub cas: Option<bool>,
    /// Redis holding the checkpoint and the storage mode.
    pub state: Option<SecretUrl>,
    /// The migration's name.
    pub name: Option<String>,
    /// The storage mode key.
    pub mode_key: Option<String>,
    /// Items per batch.
    pub batch: Option<usize>,
    /// Parallel id ranges.
    pub workers: Option<usize>,
    /// Validation pass threshold, percent.
    pub threshold_percent: Option<f64>,
}
