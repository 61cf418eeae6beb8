//! The stores a vectors run names by URL, opened behind one type each for sources and
//! targets (the job's code is generic over the traits; these enums only dispatch).

use ferry_connectors::falkordb::FalkorDbVectorSource;
use ferry_connectors::graph_vectors::GraphVectorOptions;
use ferry_connectors::milvus::{MilvusMetric, MilvusOptions, MilvusTarget};
use ferry_connectors::neo4j::Neo4jVectorSource;
use ferry_connectors::postgres::vectors::PgVectorSource;
use ferry_connectors::redis::{RedisHashVectorSource, VectorSetOptions, VectorSetTarget};
use ferry_core::jobs::vectors::{
    IdKind, IdRange, ItemFailure, Quantization, SourceInfo, SourceItem, TargetInfo, VectorError,
    VectorId, VectorResult, VectorSource, VectorTarget,
};

use super::{SourceSpec, TargetSpec};

/// An opened source.
#[derive(Debug)]
pub enum AnySource {
    /// A FalkorDB graph.
    FalkorDb(FalkorDbVectorSource),
    /// A Neo4j graph.
    Neo4j(Neo4jVectorSource),
    /// Redis hashes with a FLOAT32 blob field.
    RedisHash(RedisHashVectorSource),
    /// A PostgreSQL table with a `real[]` column.
    Postgres(PgVectorSource),
}

/// An opened target.
#[derive(Debug)]
pub enum AnyTarget {
    /// A Redis 8 vector set.
    VectorSet(VectorSetTarget),
    /// A Milvus collection.
    Milvus(MilvusTarget),
}

macro_rules! source_dispatch {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            AnySource::FalkorDb($s) => $e,
            AnySource::Neo4j($s) => $e,
            AnySource::RedisHash($s) => $e,
            AnySource::Postgres($s) => $e,
        }
    };
}

macro_rules! target_dispatch {
    ($self:ident, $t:ident => $e:expr) => {
        match $self {
            AnyTarget::VectorSet($t) => $e,
            AnyTarget::Milvus($t) => $e,
        }
    };
}

impl AnySource {
    /// Opens the source `spec` names.
    pub async fn open(spec: &SourceSpec) -> VectorResult<Self> {
        let url = spec.url.expose();
        let graph = || GraphVectorOptions {
            label: spec.label.clone(),
            id_property: spec.id_property.clone(),
            embedding_property: spec.embedding_property.clone(),
        };
        let scheme = url.split("://").next().unwrap_or_default();
        match scheme {
            "falkordb" => Ok(AnySource::FalkorDb(
                FalkorDbVectorSource::open(url, graph()).await?,
            )),
            "neo4j" | "bolt" | "neo4j+s" | "bolt+s" => Ok(AnySource::Neo4j(
                Neo4jVectorSource::open(url, graph()).await?,
            )),
            "redis" | "rediss" => {
                let pattern = spec.key_pattern.as_deref().ok_or_else(|| {
                    VectorError::Config(
                        "a Redis source needs --key-pattern (e.g. 'media:*') naming its hashes"
                            .into(),
                    )
                })?;
                Ok(AnySource::RedisHash(
                    RedisHashVectorSource::open(url, pattern, &spec.embedding_property).await?,
                ))
            }
            "postgres" | "postgresql" => {
                let table = spec.table.as_deref().ok_or_else(|| {
                    VectorError::Config(
                        "a PostgreSQL source needs --table naming the table of items".into(),
                    )
                })?;
                Ok(AnySource::Postgres(
                    PgVectorSource::open(url, table, &spec.id_property, &spec.embedding_property)
                        .await?,
                ))
            }
            _ => Err(VectorError::Config(format!(
                "unknown source `{}`: use falkordb://HOST:PORT/GRAPH, neo4j://HOST:PORT, redis://HOST:PORT/DB (with --key-pattern) or postgres://... (with --table)",
                spec.url.redacted()
            ))),
        }
    }
}

impl AnyTarget {
    /// Opens the target `spec` names.
    pub async fn open(spec: &TargetSpec) -> VectorResult<Self> {
        let url = spec.url.expose();
        let scheme = url.split("://").next().unwrap_or_default();
        match scheme {
            "redis" | "rediss" => {
                let key = spec.vector_set.as_deref().ok_or_else(|| {
                    VectorError::Config(
                        "a Redis target needs --vector-set NAME (the vector set's key)".into(),
                    )
                })?;
                let options = VectorSetOptions {
                    quantization: spec.quantization,
                    ef: spec.ef,
                    m: spec.m,
                    cas: spec.cas,
                };
                Ok(AnyTarget::VectorSet(
                    VectorSetTarget::open(url, key, options).await?,
                ))
            }
            "milvus" | "http" | "https" => {
                let collection = spec.collection.as_deref().ok_or_else(|| {
                    VectorError::Config("a Milvus target needs --collection NAME".into())
                })?;
                if spec.quantization != Quantization::NoQuant {
                    return Err(VectorError::Config(format!(
                        "--quant {} applies to Redis vector sets; Milvus stores 32-bit floats (leave --quant out)",
                        spec.quantization
                    )));
                }
                let options = MilvusOptions {
                    metric: MilvusMetric::Cosine,
                    ..MilvusOptions::default()
                };
                Ok(AnyTarget::Milvus(
                    MilvusTarget::open(url, collection, options).await?,
                ))
            }
            _ => Err(VectorError::Config(format!(
                "unknown target `{}`: use redis://HOST:PORT/DB (with --vector-set) or milvus://HOST:PORT (with --collection)",
                spec.url.redacted()
            ))),
        }
    }
}

impl VectorSource for AnySource {
    async fn describe(&self) -> VectorResult<SourceInfo> {
        source_dispatch!(self, s => s.describe().await)
    }
    async fn ids(&self, range: &IdRange, limit: usize) -> VectorResult<Vec<VectorId>> {
        source_dispatch!(self, s => s.ids(range, limit).await)
    }
    async fn page(&self, range: &IdRange, limit: usize) -> VectorResult<Vec<SourceItem>> {
        source_dispatch!(self, s => s.page(range, limit).await)
    }
    async fn get(&self, ids: &[VectorId]) -> VectorResult<Vec<SourceItem>> {
        source_dispatch!(self, s => s.get(ids).await)
    }
    async fn sample(&self, n: usize) -> VectorResult<Vec<VectorId>> {
        source_dispatch!(self, s => s.sample(n).await)
    }
}

impl VectorTarget for AnyTarget {
    async fn describe(&self) -> VectorResult<TargetInfo> {
        target_dispatch!(self, t => t.describe().await)
    }
    fn quantization(&self) -> Quantization {
        target_dispatch!(self, t => t.quantization())
    }
    async fn prepare(&self, dimension: usize, kind: IdKind) -> VectorResult<()> {
        target_dispatch!(self, t => t.prepare(dimension, kind).await)
    }
    async fn upsert(&self, items: &[(VectorId, Vec<f32>)]) -> VectorResult<Vec<ItemFailure>> {
        target_dispatch!(self, t => t.upsert(items).await)
    }
    async fn get(&self, ids: &[VectorId]) -> VectorResult<Vec<Option<Vec<f32>>>> {
        target_dispatch!(self, t => t.get(ids).await)
    }
    async fn delete(&self, ids: &[VectorId]) -> VectorResult<u64> {
        target_dispatch!(self, t => t.delete(ids).await)
    }
    async fn ids(&self, kind: IdKind) -> VectorResult<Vec<VectorId>> {
        target_dispatch!(self, t => t.ids(kind).await)
    }
    async fn sample(&self, n: usize, kind: IdKind) -> VectorResult<Vec<VectorId>> {
        target_dispatch!(self, t => t.sample(n, kind).await)
    }
    async fn search(
        &self,
        vector: &[f32],
        k: usize,
        kind: IdKind,
    ) -> VectorResult<Vec<(VectorId, f32)>> {
        target_dispatch!(self, t => t.search(vector, k, kind).await)
    }
    async fn drop_all(&self) -> VectorResult<()> {
        target_dispatch!(self, t => t.drop_all().await)
    }
}
