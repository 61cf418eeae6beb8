//! A Milvus collection as a vector migration's target, through the official SDK
//! (`milvus-sdk-rust`, ClientV2) over gRPC.
//!
//! The collection has two fields: the primary key `id` (`Int64` or `VarChar(512)`, never
//! auto-id) and `embedding` (`FloatVector`), with an index on `embedding` (AUTOINDEX or HNSW)
//! for the chosen metric. Writes are upserts by primary key, so a retry never duplicates.
//!
//! What works against Milvus Lite as well as Milvus: client telemetry is off, indexes are
//! created without waiting (Lite cannot allocate the timestamps the wait needs), ids are written
//! into filters as literals (`id in [1, 2]`, never the SDK's templated `{ids}`), every reply is
//! kept under gRPC's 4 MiB by paging, and one target writes to one collection at a time.

mod address;
mod error;
mod filter;
mod read;
mod schema;
mod write;

use std::sync::Mutex;
use std::time::Duration;

use ferry_core::jobs::vectors::{
    IdKind, ItemFailure, Quantization, TargetInfo, VectorError, VectorId, VectorResult,
    VectorTarget,
};
use milvus::v2::prelude::{ClientV2, ConnectConfig, RetryConfig, TelemetryConfig};

pub use address::{DEFAULT_PORT, MilvusAddress, check_collection_name};
pub use filter::{MAX_STR_ID_BYTES, quote};

use error::Place;
use schema::Layout;

/// The similarity a collection's index ranks by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum MilvusMetric {
    /// Cosine similarity (larger is closer).
    #[default]
    Cosine,
    /// Squared Euclidean distance (smaller is closer).
    L2,
    /// Inner product (larger is closer).
    Ip,
}

impl MilvusMetric {
    /// Its name as Milvus spells it (`COSINE`, `L2`, `IP`).
    pub fn milvus_name(self) -> &'static str {
        match self {
            MilvusMetric::Cosine => "COSINE",
            MilvusMetric::L2 => "L2",
            MilvusMetric::Ip => "IP",
        }
    }

    /// Its name in reports (`cosine`, `l2`, `ip`).
    pub fn as_str(self) -> &'static str {
        match self {
            MilvusMetric::Cosine => "cosine",
            MilvusMetric::L2 => "l2",
            MilvusMetric::Ip => "ip",
        }
    }

    /// Reads a metric name in any case (`cosine`, `L2`, `ip`, ...).
    pub fn parse(name: &str) -> Option<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "cosine" => Some(MilvusMetric::Cosine),
            "l2" => Some(MilvusMetric::L2),
            "ip" => Some(MilvusMetric::Ip),
            _ => None,
        }
    }
}

/// The index built on the vector field of a new collection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MilvusIndex {
    /// `AUTOINDEX`: the server picks (HNSW on Milvus Lite with faiss, else a flat scan).
    #[default]
    Auto,
    /// `HNSW` with `M` links a node and `efConstruction` candidates while building.
    Hnsw {
        /// Links per node (Milvus accepts 2 to 2048; 16 is a common choice).
        m: u32,
        /// Candidates explored while inserting (8 to 512; 200 is a common choice).
        ef_construction: u32,
    },
}

/// How a [`MilvusTarget`] connects and what it creates.
#[derive(Debug, Clone, PartialEq)]
pub struct MilvusOptions {
    /// The index metric of a new collection; an existing one must have the same.
    pub metric: MilvusMetric,
    /// The index of a new collection (an existing one keeps its own).
    pub index: MilvusIndex,
    /// How long opening waits for the server to answer.
    pub connect_timeout: Duration,
    /// How long one operation retries a server that went away before giving up.
    pub retry_timeout: Duration,
    /// Upper bound of one upsert request's size, in bytes (items are batched under it).
    pub max_request_bytes: usize,
}

impl Default for MilvusOptions {
    fn default() -> Self {
        MilvusOptions {
            metric: MilvusMetric::Cosine,
            index: MilvusIndex::Auto,
            connect_timeout: Duration::from_secs(10),
            retry_timeout: Duration::from_secs(30),
            max_request_bytes: 4 << 20,
        }
    }
}

/// One collection on a Milvus server (or Milvus Lite).
pub struct MilvusTarget {
    client: ClientV2,
    place: Place,
    options: MilvusOptions,
    /// The collection's layout once known (after `prepare`, or read on first use).
    layout: Mutex<Option<Layout>>,
    /// One writer a collection: upserts and deletes of this target run one at a time.
    writer: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for MilvusTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MilvusTarget")
            .field("server", &self.place.server)
            .field("collection", &self.place.collection)
            .field("options", &self.options)
            .finish()
    }
}

impl MilvusTarget {
    /// Connects to the server named by `url` (`milvus://[user:password@]host:port[/database]`,
    /// or `http://`, `https://`) for the collection `collection` (which need not exist yet).
    pub async fn open(url: &str, collection: &str, options: MilvusOptions) -> VectorResult<Self> {
        let address = MilvusAddress::parse(url)?;
        check_collection_name(collection)?;
        if options.max_request_bytes == 0 {
            return Err(VectorError::Config(
                "the Milvus request size limit must be above 0 bytes".into(),
            ));
        }
        let place = Place {
            server: address.shown.clone(),
            collection: collection.to_string(),
        };
        let retry = RetryConfig::new().max_retry_timeout(options.retry_timeout);
        let mut config = ConnectConfig::new()
            .uri(address.endpoint.clone())
            .connect_timeout(options.connect_timeout)
            .retry(retry)
            .telemetry(TelemetryConfig::new().enabled(false));
        if let Some((user, password)) = &address.credentials {
            config = config.username_password(user, password);
        }
        if let Some(db) = &address.database {
            config = config.database(db.clone());
        }
        let client = ClientV2::new(&config)
            .await
            .map_err(|e| place.sdk("connecting", e))?;
        Ok(MilvusTarget {
            client,
            place,
            options,
            layout: Mutex::new(None),
            writer: tokio::sync::Mutex::new(()),
        })
    }

    /// The collection's name.
    pub fn collection(&self) -> &str {
        &self.place.collection
    }

    /// `host:port` of the server.
    pub fn server(&self) -> &str {
        &self.place.server
    }

    /// The options it was opened with.
    pub fn options(&self) -> &MilvusOptions {
        &self.options
    }
}

impl VectorTarget for MilvusTarget {
    async fn describe(&self) -> VectorResult<TargetInfo> {
        self.describe_target().await
    }

    fn quantization(&self) -> Quantization {
        Quantization::NoQuant
    }

    async fn prepare(&self, dimension: usize, kind: IdKind) -> VectorResult<()> {
        self.prepare_collection(dimension, kind).await
    }

    async fn upsert(&self, items: &[(VectorId, Vec<f32>)]) -> VectorResult<Vec<ItemFailure>> {
        self.upsert_items(items).await
    }

    async fn get(&self, ids: &[VectorId]) -> VectorResult<Vec<Option<Vec<f32>>>> {
        self.get_vectors(ids).await
    }

    async fn delete(&self, ids: &[VectorId]) -> VectorResult<u64> {
        self.delete_ids(ids).await
    }

    async fn ids(&self, kind: IdKind) -> VectorResult<Vec<VectorId>> {
        let mut all = Vec::new();
        self.walk_ids(kind, |page| all.extend_from_slice(page))
            .await?;
        Ok(all)
    }

    async fn sample(&self, n: usize, kind: IdKind) -> VectorResult<Vec<VectorId>> {
        self.sample_ids(n, kind).await
    }

    async fn search(
        &self,
        vector: &[f32],
        k: usize,
        kind: IdKind,
    ) -> VectorResult<Vec<(VectorId, f32)>> {
        self.search_nearest(vector, k, kind).await
    }

    async fn drop_all(&self) -> VectorResult<()> {
        self.drop_collection().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_parse_in_any_case() {
        for m in [MilvusMetric::Cosine, MilvusMetric::L2, MilvusMetric::Ip] {
            assert_eq!(MilvusMetric::parse(m.milvus_name()), Some(m));
            assert_eq!(MilvusMetric::parse(m.as_str()), Some(m));
        }
        assert_eq!(MilvusMetric::parse("hamming"), None);
        assert_eq!(MilvusMetric::default(), MilvusMetric::Cosine);
    }
}
