//! The collection's layout: creating it, checking an existing one, describing and dropping it.

use ferry_core::jobs::vectors::{IdKind, Quantization, TargetInfo, VectorError, VectorResult};
use milvus::v2::prelude::{
    CollectionSchema, ConsistencyLevel, CreateCollectionRequest, CreateIndexRequest, DataType,
    DescribeCollectionRequest, DescribeIndexRequest, DropCollectionRequest, FieldSchema,
    GetCollectionStatsRequest, GetServerVersionRequest, HasCollectionRequest, IndexParam,
    IndexType, LoadCollectionRequest, MetricType, QueryRequest,
};

use super::error::is_index_missing;
use super::filter::{ID_FIELD, MAX_STR_ID_BYTES, VECTOR_FIELD};
use super::{MilvusIndex, MilvusMetric, MilvusTarget};

/// What a collection holds, as far as a migration cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// The vector field's dimension.
    pub dimension: usize,
    /// The primary key's kind.
    pub kind: IdKind,
    /// The longest string id the primary key takes, in bytes.
    pub max_id_bytes: usize,
    /// The vector index's metric (`None`: no index, or one of another metric family).
    pub metric: Option<MilvusMetric>,
}

fn metric_of(m: MetricType) -> Option<MilvusMetric> {
    match m {
        MetricType::Cosine => Some(MilvusMetric::Cosine),
        MetricType::L2 => Some(MilvusMetric::L2),
        MetricType::Ip => Some(MilvusMetric::Ip),
        _ => None,
    }
}

fn to_metric(m: MilvusMetric) -> MetricType {
    match m {
        MilvusMetric::Cosine => MetricType::Cosine,
        MilvusMetric::L2 => MetricType::L2,
        MilvusMetric::Ip => MetricType::Ip,
    }
}

/// The Ferry layout of `fields`, or what is wrong with it.
fn layout_of(fields: &[FieldSchema]) -> Result<(usize, IdKind, usize), String> {
    let pk = fields
        .iter()
        .find(|f| f.is_primary_key())
        .ok_or("it has no primary key")?;
    if pk.get_name() != ID_FIELD {
        return Err(format!(
            "its primary key is `{}`, not `{ID_FIELD}`",
            pk.get_name()
        ));
    }
    let (kind, max_id_bytes) = match pk.get_data_type() {
        DataType::Int64 => (IdKind::Int, 0),
        DataType::VarChar => (IdKind::Str, pk.get_max_length() as usize),
        other => return Err(format!("its primary key is of type {other:?}")),
    };
    if pk.is_auto_id() {
        return Err("its primary key is auto-generated (auto_id)".into());
    }
    let vector = fields
        .iter()
        .find(|f| f.get_name() == VECTOR_FIELD)
        .ok_or(format!("it has no `{VECTOR_FIELD}` field"))?;
    if vector.get_data_type() != DataType::FloatVector {
        return Err(format!(
            "its `{VECTOR_FIELD}` field is a {:?}, not a FloatVector",
            vector.get_data_type()
        ));
    }
    Ok((vector.get_dimension() as usize, kind, max_id_bytes))
}

fn kind_name(kind: IdKind) -> &'static str {
    match kind {
        IdKind::Int => "integer (Int64)",
        IdKind::Str => "string (VarChar)",
    }
}

impl MilvusTarget {
    async fn exists(&self) -> VectorResult<bool> {
        let req = HasCollectionRequest::builder()
            .collection_name(self.collection())
            .build()
            .map_err(|e| self.place.backend("checking", e))?;
        let has = self.client.has_collection(req).await;
        Ok(has.map_err(|e| self.place.sdk("checking", e))?.exists())
    }

    /// Reads the layout of the collection (`None` when it does not exist).
    pub(super) async fn read_layout(&self) -> VectorResult<Option<Layout>> {
        if !self.exists().await? {
            return Ok(None);
        }
        let req = DescribeCollectionRequest::builder()
            .collection_name(self.collection())
            .build()
            .map_err(|e| self.place.backend("describing", e))?;
        let described = self.client.describe_collection(req).await;
        let described = described.map_err(|e| self.place.sdk("describing", e))?;
        let fields = described.description().get_schema().get_fields();
        let (dimension, kind, max_id_bytes) = layout_of(fields).map_err(|why| {
            VectorError::Mismatch(format!(
                "collection `{}` on {} does not have Ferry's layout ({why}): use another collection",
                self.collection(),
                self.place.store()
            ))
        })?;
        Ok(Some(Layout {
            dimension,
            kind,
            max_id_bytes,
            metric: self.index_metric().await?,
        }))
    }

    /// The metric of the index on the vector field (`None` when there is none).
    async fn index_metric(&self) -> VectorResult<Option<MilvusMetric>> {
        let req = DescribeIndexRequest::builder()
            .collection_name(self.collection())
            .field_name(VECTOR_FIELD)
            .build()
            .map_err(|e| self.place.backend("describing the index", e))?;
        match self.client.describe_index(req).await {
            Ok(r) => Ok(r
                .indexes()
                .iter()
                .find(|i| i.get_field_name() == VECTOR_FIELD)
                .and_then(|i| metric_of(i.get_metric_type()))),
            Err(e) if is_index_missing(&e) => Ok(None),
            Err(e) => Err(self.place.sdk("describing the index", e)),
        }
    }

    /// The layout, read from the server the first time.
    pub(super) async fn layout(&self) -> VectorResult<Layout> {
        if let Some(layout) = *self.cached() {
            return Ok(layout);
        }
        let layout = self.read_layout().await?.ok_or_else(|| {
            VectorError::Config(format!(
                "collection `{}` does not exist on {}: prepare the target first",
                self.collection(),
                self.place.store()
            ))
        })?;
        *self.cached() = Some(layout);
        Ok(layout)
    }

    pub(super) fn cached(&self) -> std::sync::MutexGuard<'_, Option<Layout>> {
        self.layout
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(super) async fn prepare_collection(
        &self,
        dimension: usize,
        kind: IdKind,
    ) -> VectorResult<()> {
        if dimension == 0 || dimension > 32_768 {
            return Err(VectorError::Config(format!(
                "Milvus float vectors have 1 to 32768 dimensions, not {dimension}"
            )));
        }
        let layout = match self.read_layout().await? {
            Some(existing) => {
                self.check_fits(&existing, dimension, kind)?;
                existing
            }
            None => self.create(dimension, kind).await?,
        };
        let layout = match layout.metric {
            Some(_) => layout,
            None => {
                self.create_index().await?;
                Layout {
                    metric: Some(self.options.metric),
                    ..layout
                }
            }
        };
        self.load().await?;
        *self.cached() = Some(layout);
        Ok(())
    }

    fn check_fits(&self, have: &Layout, dimension: usize, kind: IdKind) -> VectorResult<()> {
        let shown = format!(
            "collection `{}` on {}",
            self.collection(),
            self.place.store()
        );
        if have.dimension != dimension {
            return Err(VectorError::Mismatch(format!(
                "{shown} holds {}-dimensional vectors, the source's are {dimension}-dimensional: use another collection or drop this one",
                have.dimension
            )));
        }
        if have.kind != kind {
            return Err(VectorError::Mismatch(format!(
                "{shown} has {} ids, the source's are {}: use another collection",
                kind_name(have.kind),
                kind_name(kind)
            )));
        }
        if let Some(metric) = have.metric.filter(|m| *m != self.options.metric) {
            return Err(VectorError::Mismatch(format!(
                "{shown} is indexed for the {} metric, not {}: use another collection (or drop this one)",
                metric.as_str(),
                self.options.metric.as_str()
            )));
        }
        Ok(())
    }

    async fn create(&self, dimension: usize, kind: IdKind) -> VectorResult<Layout> {
        let pk = FieldSchema::new()
            .name(ID_FIELD)
            .primary_key(true)
            .auto_id(false);
        let (pk, max_id_bytes) = match kind {
            IdKind::Int => (pk.data_type(DataType::Int64), 0),
            IdKind::Str => (
                pk.data_type(DataType::VarChar)
                    .max_length(MAX_STR_ID_BYTES as u32),
                MAX_STR_ID_BYTES,
            ),
        };
        let vector = FieldSchema::new()
            .name(VECTOR_FIELD)
            .data_type(DataType::FloatVector)
            .dimension(dimension as u32);
        let schema = CollectionSchema::new()
            .enable_dynamic_field(false)
            .add_field(pk)
            .add_field(vector);
        let req = CreateCollectionRequest::builder()
            .collection_name(self.collection())
            .description("Ferry vectors")
            .schema(schema)
            .consistency_level(ConsistencyLevel::Strong)
            .build()
            .map_err(|e| self.place.backend("creating", e))?;
        let created = self.client.create_collection(req).await;
        created.map_err(|e| self.place.sdk("creating", e))?;
        Ok(Layout {
            dimension,
            kind,
            max_id_bytes,
            metric: None,
        })
    }

    async fn create_index(&self) -> VectorResult<()> {
        let param = IndexParam::new()
            .field_name(VECTOR_FIELD)
            .index_name(VECTOR_FIELD)
            .metric_type(to_metric(self.options.metric));
        let param = match self.options.index {
            MilvusIndex::Auto => param.index_type(IndexType::AutoIndex),
            MilvusIndex::Hnsw { m, ef_construction } => {
                param.index_type(IndexType::Hnsw).extra_params(
                    [
                        ("M".to_string(), m.to_string()),
                        ("efConstruction".to_string(), ef_construction.to_string()),
                    ]
                    .into(),
                )
            }
        };
        // Milvus Lite cannot allocate the timestamp that waiting for the build needs.
        let req = CreateIndexRequest::builder()
            .collection_name(self.collection())
            .index_param(param)
            .sync(false)
            .build()
            .map_err(|e| self.place.backend("creating the index", e))?;
        let created = self.client.create_index(req).await;
        created.map_err(|e| self.place.sdk("creating the index", e))
    }

    pub(super) async fn load(&self) -> VectorResult<()> {
        let req = LoadCollectionRequest::builder()
            .collection_name(self.collection())
            .build()
            .map_err(|e| self.place.backend("loading", e))?;
        let loaded = self.client.load_collection(req).await;
        loaded.map_err(|e| self.place.sdk("loading", e))
    }

    /// Rows the collection holds: `count(*)` (live rows), else the server's statistics.
    async fn count(&self) -> VectorResult<u64> {
        let req = QueryRequest::builder()
            .collection_name(self.collection())
            .output_fields(["count(*)"])
            .consistency_level(ConsistencyLevel::Strong)
            .build()
            .map_err(|e| self.place.backend("counting", e))?;
        if let Ok(r) = self.client.query(req).await
            && let Some(n) = r
                .results()
                .get_output_field("count(*)")
                .and_then(|f| f.as_int64())
                .and_then(|v| v.first().copied())
        {
            return Ok(n.max(0) as u64);
        }
        let req = GetCollectionStatsRequest::builder()
            .collection_name(self.collection())
            .build()
            .map_err(|e| self.place.backend("counting", e))?;
        let stats = self.client.get_collection_stats(req).await;
        let stats = stats.map_err(|e| self.place.sdk("counting", e))?;
        Ok(stats.row_count().unwrap_or(0).max(0) as u64)
    }

    pub(super) async fn describe_target(&self) -> VectorResult<TargetInfo> {
        let req = GetServerVersionRequest::builder()
            .build()
            .map_err(|e| self.place.backend("reading the version", e))?;
        let version = self.client.server_version(req).await;
        let version = version.map_err(|e| self.place.sdk("reading the version", e))?;
        let mut info = TargetInfo {
            store: "milvus".into(),
            version: version.version().to_string(),
            exists: false,
            dimension: None,
            metric: None,
            quantization: None,
            id_kind: None,
            items: 0,
        };
        if let Some(layout) = self.read_layout().await? {
            info.exists = true;
            info.dimension = Some(layout.dimension);
            info.metric = layout.metric.map(|m| m.as_str().to_string());
            info.quantization = Some(Quantization::NoQuant);
            info.id_kind = Some(layout.kind);
            info.items = self.count().await?;
        }
        Ok(info)
    }

    pub(super) async fn drop_collection(&self) -> VectorResult<()> {
        let _writing = self.writer.lock().await;
        *self.cached() = None;
        if !self.exists().await? {
            return Ok(());
        }
        let req = DropCollectionRequest::builder()
            .collection_name(self.collection())
            .build()
            .map_err(|e| self.place.backend("dropping", e))?;
        let dropped = self.client.drop_collection(req).await;
        dropped.map_err(|e| self.place.sdk("dropping", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pk(t: DataType) -> FieldSchema {
        FieldSchema::new()
            .name(ID_FIELD)
            .primary_key(true)
            .data_type(t)
    }

    fn vector(dim: u32) -> FieldSchema {
        FieldSchema::new()
            .name(VECTOR_FIELD)
            .data_type(DataType::FloatVector)
            .dimension(dim)
    }

    #[test]
    fn the_ferry_layout_is_read_from_the_fields() {
        let fields = [pk(DataType::Int64), vector(384)];
        assert_eq!(layout_of(&fields), Ok((384, IdKind::Int, 0)));
        let fields = [pk(DataType::VarChar).max_length(512), vector(3)];
        assert_eq!(layout_of(&fields), Ok((3, IdKind::Str, 512)));
    }

    #[test]
    fn other_layouts_say_what_differs() {
        let cases = [
            vec![vector(3)],
            vec![pk(DataType::Int64).name("pk"), vector(3)],
            vec![pk(DataType::Int32), vector(3)],
            vec![pk(DataType::Int64).auto_id(true), vector(3)],
            vec![pk(DataType::Int64)],
            vec![
                pk(DataType::Int64),
                FieldSchema::new()
                    .name(VECTOR_FIELD)
                    .data_type(DataType::BinaryVector),
            ],
        ];
        for fields in cases {
            assert!(layout_of(&fields).is_err(), "{fields:?}");
        }
    }
}
