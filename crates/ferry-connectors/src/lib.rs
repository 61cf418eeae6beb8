//! Ferry's connectors: one module per backend, each behind a cargo feature.
//!
//! - `redis` (feature `redis`): standalone and Cluster endpoints with slot routing and
//!   MOVED/ASK handling, key copy primitives, and the Redis-backed checkpoint store.
//! - `sqlite`, `postgres`, `falkordb`, `neo4j` (features of the same names): durable stores of the
//!   `tier` job's events, implementing [`ferry_core::jobs::tier::EventStore`].
//! - `graph_vectors` (features `falkordb`, `neo4j`): the Cypher the graph vector sources share.
//! - `kafka` (feature `kafka`): Kafka group consumers and batch producers through librdkafka.
//! - `embed` (feature `minilm`): all-MiniLM-L6-v2 sentence embeddings on CPU with candle.
//! - `milvus` (feature `milvus`): a Milvus collection as a vector migration's target.
//! - `frames` (feature `frames`): JSON camera frames to Protocol Buffers with JPEG/WebP/PNG recompression.

#[cfg(feature = "minilm")]
pub mod embed;
#[cfg(feature = "falkordb")]
pub mod falkordb;
#[cfg(feature = "frames")]
pub mod frames;
#[cfg(any(feature = "falkordb", feature = "neo4j"))]
pub mod graph_vectors;
#[cfg(feature = "kafka")]
pub mod kafka;
#[cfg(feature = "milvus")]
pub mod milvus;
#[cfg(feature = "neo4j")]
pub mod neo4j;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(any(
    feature = "sqlite",
    feature = "postgres",
    feature = "falkordb",
    feature = "neo4j"
))]
pub mod schema;
#[cfg(feature = "sqlite")]
pub mod sqlite;
