//! The vectors job: moves embeddings from a graph, Redis hashes or a PostgreSQL table into a
//! vector database (a Redis 8 vector set or a Milvus collection) while applications keep
//! running, on the migration life cycle ([`crate::lifecycle::Migration`]):
//!
//! - [`preflight`]: connects to every store, surveys the source, checks the target fits,
//!   estimates storage and duration from a measured sample (the life cycle's analyze);
//! - [`migrate`]: parallel reads by id range, batched idempotent upserts, a checkpoint per
//!   range, resumable after a crash (plan = `--dry-run`, apply);
//! - [`validate`]: compares the copies with the source within what the target's quantisation
//!   allows, finds missing and orphan items, fixes them on request (verify);
//! - [`rollback`]: the storage mode back to primary-only, optionally the target data dropped;
//! - [`status`]: progress of a running or finished migration, once or live ([`status::monitor`]);
//! - [`mode`]: the live storage mode applications read; [`crate::dual_store`]: the dual-write library that
//!   follows it.

pub mod args;
pub mod cli;
pub mod config;
pub mod demo;
pub mod lifecycle;
pub mod metrics;
pub mod migrate;
pub mod mode;
pub mod preflight;
pub mod rollback;
pub mod routes;
pub mod state;
pub mod status;
pub mod stores;
pub mod validate;

use std::sync::Arc;

use ferry_connectors::redis::{ConnError, RedisCheckpointStore, RedisEndpoint};
use ferry_core::checkpoint::StoreError;
use ferry_core::error::{Classify, ErrorClass};
use ferry_core::jobs::vectors::{Quantization, VectorError};
use ferry_core::secret::SecretUrl;

pub use stores::{AnySource, AnyTarget};

/// The source of a vectors run: a URL and how items are found in it.
#[derive(Debug, Clone)]
pub struct SourceSpec {
    /// `falkordb://HOST:PORT/GRAPH`, `neo4j://HOST:PORT`, `redis://HOST:PORT/DB` or `postgres://…`.
    pub url: SecretUrl,
    /// The node label (graphs).
    pub label: String,
    /// The id property (graphs) or column (PostgreSQL).
    pub id_property: String,
    /// The embedding property (graphs), hash field (Redis) or column (PostgreSQL).
    pub embedding_property: String,
    /// The hashes' SCAN pattern (Redis).
    pub key_pattern: Option<String>,
    /// The table, optionally `schema.table` (PostgreSQL).
    pub table: Option<String>,
}

/// The target of a vectors run.
#[derive(Debug, Clone)]
pub struct TargetSpec {
    /// `redis://HOST:PORT/DB` or `milvus://HOST:PORT`.
    pub url: SecretUrl,
    /// The vector set's key (Redis).
    pub vector_set: Option<String>,
    /// The collection (Milvus).
    pub collection: Option<String>,
    /// How a vector set stores vectors.
    pub quantization: Quantization,
    /// A vector set's `EF` build option.
    pub ef: Option<u32>,
    /// A vector set's `M` build option.
    pub m: Option<u32>,
    /// `VADD … CAS`: neighbours found on a background thread.
    pub cas: bool,
}

impl TargetSpec {
    /// The vector set or collection name.
    pub fn name(&self) -> &str {
        self.vector_set
            .as_deref()
            .or(self.collection.as_deref())
            .unwrap_or("vectors")
    }
}

/// Checked options of a vectors run.
#[derive(Debug, Clone)]
pub struct VectorsOptions {
    /// Where items come from.
    pub source: SourceSpec,
    /// Where they go.
    pub target: TargetSpec,
    /// The Redis holding the checkpoint and the storage mode.
    pub state: SecretUrl,
    /// The migration's name (default: the vector set or collection name).
    pub name: String,
    /// The key holding the storage mode (default `ferry:vectors:NAME:mode`).
    pub mode_key: String,
    /// Items per read and per upsert.
    pub batch: usize,
    /// Id ranges read and written at once.
    pub workers: usize,
    /// Validation passes at this share of matching items (0..=1).
    pub threshold: f64,
}

impl VectorsOptions {
    /// The checkpoint scope of this migration.
    pub fn scope(&self) -> String {
        format!("vectors/{}", self.name)
    }
}

/// What can stop a vectors action.
#[derive(Debug, thiserror::Error)]
pub enum VectorsError {
    /// Bad flags or configuration.
    #[error("{0}")]
    Usage(String),
    /// A source or target failed.
    #[error(transparent)]
    Store(#[from] VectorError),
    /// The state Redis failed.
    #[error("the state Redis: {0}")]
    State(#[from] ConnError),
    /// The checkpoint store failed (or another run holds the migration).
    #[error(transparent)]
    Checkpoint(#[from] StoreError),
    /// The saved checkpoint does not belong to this migration.
    #[error("{0}")]
    Conflict(String),
}

impl Classify for VectorsError {
    fn class(&self) -> ErrorClass {
        match self {
            VectorsError::Usage(_) | VectorsError::Conflict(_) => ErrorClass::User,
            VectorsError::Store(e) => e.class(),
            VectorsError::State(e) => e.class(),
            VectorsError::Checkpoint(e) => e.class(),
        }
    }
}

/// A vectors run's connected stores.
#[derive(Debug)]
pub struct VectorsContext {
    /// The options.
    pub options: VectorsOptions,
    /// The source.
    pub source: Arc<AnySource>,
    /// The target.
    pub target: Arc<AnyTarget>,
    /// The checkpoint store (on the state Redis).
    pub checkpoints: Arc<RedisCheckpointStore>,
}

impl VectorsContext {
    /// Connects to the source, the target and the state Redis.
    pub async fn connect(options: VectorsOptions) -> Result<Self, VectorsError> {
        let state = state::connect(&options.state).await?;
        let (source, target) = tokio::try_join!(
            AnySource::open(&options.source),
            AnyTarget::open(&options.target)
        )?;
        Ok(VectorsContext {
            options,
            source: Arc::new(source),
            target: Arc::new(target),
            checkpoints: Arc::new(RedisCheckpointStore::new(state)),
        })
    }

    /// The state Redis.
    pub fn state(&self) -> &RedisEndpoint {
        self.checkpoints.endpoint()
    }
}
