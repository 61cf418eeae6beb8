//! Reads: vectors by id, every id in keyset pages, random ids, nearest neighbours.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};

use ferry_core::jobs::vectors::{IdKind, VectorError, VectorId, VectorResult};
use milvus::v2::prelude::{
    ConsistencyLevel, FieldData, Ids, QueryRequest, QueryResults, SearchRequest, SearchVectors,
};

use super::MilvusTarget;
use super::error::is_not_loaded;
use super::filter::{self, ID_FIELD, VECTOR_FIELD};
use super::schema::Layout;

/// Milvus' largest top-k.
const MAX_TOP_K: usize = 16_384;

/// The ids of an id column.
fn ids_of(column: Option<&FieldData>) -> Vec<VectorId> {
    match column {
        Some(c) => match (c.as_int64(), c.as_varchar()) {
            (Some(ints), _) => ints.iter().copied().map(VectorId::Int).collect(),
            (None, Some(strs)) => strs.iter().cloned().map(VectorId::Str).collect(),
            (None, None) => Vec::new(),
        },
        None => Vec::new(),
    }
}

fn ids_of_hits(ids: &Ids) -> Vec<VectorId> {
    match ids {
        Ids::Int64(v) => v.iter().copied().map(VectorId::Int).collect(),
        Ids::VarChar(v) => v.iter().cloned().map(VectorId::Str).collect(),
        // A key type newer SDKs may add: Ferry's collections have none.
        _ => Vec::new(),
    }
}

/// Picks `n` of a stream uniformly at random (reservoir sampling), in `O(n)` memory.
#[derive(Debug)]
pub struct Reservoir<T> {
    n: usize,
    seen: u64,
    state: u64,
    kept: Vec<T>,
}

impl<T> Reservoir<T> {
    /// Keeps up to `n`, seeded by `seed`.
    pub fn new(n: usize, seed: u64) -> Self {
        Reservoir {
            n,
            seen: 0,
            state: seed,
            kept: Vec::with_capacity(n.min(1 << 16)),
        }
    }

    /// SplitMix64: a small, well-spread generator (no cryptographic use).
    fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Offers one item.
    pub fn offer(&mut self, item: T) {
        self.seen += 1;
        if self.kept.len() < self.n {
            self.kept.push(item);
            return;
        }
        let slot = self.next() % self.seen;
        if let Some(place) = self.kept.get_mut(slot as usize) {
            *place = item;
        }
    }

    /// What was kept.
    pub fn into_inner(self) -> Vec<T> {
        self.kept
    }
}

impl MilvusTarget {
    /// The layout, or `None` when the collection does not exist.
    pub(super) async fn layout_if_exists(&self) -> VectorResult<Option<Layout>> {
        if let Some(layout) = *self.cached() {
            return Ok(Some(layout));
        }
        let layout = self.read_layout().await?;
        *self.cached() = layout;
        Ok(layout)
    }

    /// Runs a query; a collection found released (a restarted server) is loaded and asked
    /// again once.
    async fn query(&self, op: &str, req: QueryRequest) -> VectorResult<QueryResults> {
        let mut reply = self.client.query(req.clone()).await;
        if reply.as_ref().is_err_and(is_not_loaded) {
            self.load().await?;
            reply = self.client.query(req).await;
        }
        let reply = reply.map_err(|e| self.place.sdk(op, e))?;
        Ok(reply.results().clone())
    }

    fn by_filter(&self, expr: String) -> milvus::v2::prelude::QueryRequestBuilder {
        QueryRequest::builder()
            .collection_name(self.collection())
            .filter(expr)
            .consistency_level(ConsistencyLevel::Strong)
    }

    /// Those of `ids` (one chunk) that the collection holds.
    pub(super) async fn existing(&self, ids: &[VectorId]) -> VectorResult<Vec<VectorId>> {
        let req = self
            .by_filter(filter::id_in(ids))
            .output_fields([ID_FIELD])
            .build()
            .map_err(|e| self.place.backend("looking ids up", e))?;
        let found = self.query("looking ids up", req).await?;
        Ok(ids_of(found.get_output_field(ID_FIELD)))
    }

    pub(super) async fn get_vectors(
        &self,
        ids: &[VectorId],
    ) -> VectorResult<Vec<Option<Vec<f32>>>> {
        let Some(layout) = self.layout_if_exists().await? else {
            return Ok(vec![None; ids.len()]);
        };
        let wanted: Vec<VectorId> = ids
            .iter()
            .filter(|id| id.kind() == layout.kind)
            .cloned()
            .collect();
        let mut found: HashMap<VectorId, Vec<f32>> = HashMap::with_capacity(wanted.len());
        for chunk in wanted.chunks(filter::get_chunk(layout.dimension, layout.kind)) {
            let req = self
                .by_filter(filter::id_in(chunk))
                .output_fields([ID_FIELD, VECTOR_FIELD])
                .build()
                .map_err(|e| self.place.backend("reading vectors", e))?;
            let rows = self.query("reading vectors", req).await?;
            let keys = ids_of(rows.get_output_field(ID_FIELD));
            let vectors = rows
                .get_output_field(VECTOR_FIELD)
                .and_then(|f| f.as_float_vectors())
                .unwrap_or_default();
            if vectors.len() != keys.len() {
                return Err(self.place.backend(
                    "reading vectors",
                    format!(
                        "{} ids came back with {} vectors",
                        keys.len(),
                        vectors.len()
                    ),
                ));
            }
            found.extend(keys.into_iter().zip(vectors.iter().cloned()));
        }
        Ok(ids.iter().map(|id| found.get(id).cloned()).collect())
    }

    /// Calls `each` with every page of ids, in id order (keyset pagination on `id > last`).
    pub(super) async fn walk_ids(
        &self,
        _kind: IdKind,
        mut each: impl FnMut(&[VectorId]),
    ) -> VectorResult<()> {
        let Some(layout) = self.layout_if_exists().await? else {
            return Ok(());
        };
        let limit = filter::id_page(layout.kind);
        let mut last: Option<VectorId> = None;
        loop {
            // `iterator` asks for rows in primary key order, which keyset pages need.
            let req = self
                .by_filter(filter::after(last.as_ref()))
                .output_fields([ID_FIELD])
                .limit(limit as i64)
                .extra_params([("iterator".to_string(), "true".to_string())].into())
                .build()
                .map_err(|e| self.place.backend("listing ids", e))?;
            let page = ids_of(
                self.query("listing ids", req)
                    .await?
                    .get_output_field(ID_FIELD),
            );
            if !page.is_sorted_by(|a, b| a < b)
                || last
                    .as_ref()
                    .is_some_and(|l| page.first().is_some_and(|f| f <= l))
            {
                return Err(self.place.backend(
                    "listing ids",
                    "the server returned ids out of order, so pages cannot be walked: is it a Milvus release with query iterators (2.3 or later)?",
                ));
            }
            each(&page);
            if page.len() < limit {
                return Ok(());
            }
            last = page.last().cloned();
        }
    }

    pub(super) async fn sample_ids(&self, n: usize, kind: IdKind) -> VectorResult<Vec<VectorId>> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let seed = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let mut reservoir = Reservoir::new(n, seed);
        self.walk_ids(kind, |page| {
            for id in page {
                reservoir.offer(id.clone());
            }
        })
        .await?;
        Ok(reservoir.into_inner())
    }

    pub(super) async fn search_nearest(
        &self,
        vector: &[f32],
        k: usize,
        _kind: IdKind,
    ) -> VectorResult<Vec<(VectorId, f32)>> {
        let Some(layout) = self.layout_if_exists().await? else {
            return Ok(Vec::new());
        };
        if k == 0 {
            return Ok(Vec::new());
        }
        if vector.len() != layout.dimension {
            return Err(VectorError::Mismatch(format!(
                "a {}-dimensional query vector for collection `{}`, whose vectors have {} dimensions",
                vector.len(),
                self.collection(),
                layout.dimension
            )));
        }
        let req = SearchRequest::builder()
            .collection_name(self.collection())
            .vector_field(VECTOR_FIELD)
            .vectors(SearchVectors::Float(vec![vector.to_vec()]))
            .limit(k.min(MAX_TOP_K) as i64)
            .consistency_level(ConsistencyLevel::Strong)
            .build()
            .map_err(|e| self.place.backend("searching", e))?;
        let mut reply = self.client.search(req.clone()).await;
        if reply.as_ref().is_err_and(is_not_loaded) {
            self.load().await?;
            reply = self.client.search(req).await;
        }
        let reply = reply.map_err(|e| self.place.sdk("searching", e))?;
        let Some(hits) = reply.results().iter().next() else {
            return Ok(Vec::new());
        };
        let ids = ids_of_hits(hits.get_ids());
        Ok(ids
            .into_iter()
            .zip(hits.get_scores().iter().copied())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reservoir_keeps_n_distinct_items_of_the_stream() {
        let mut r = Reservoir::new(10, 42);
        for i in 0..1000 {
            r.offer(i);
        }
        let mut kept = r.into_inner();
        kept.sort_unstable();
        kept.dedup();
        assert_eq!(kept.len(), 10);
        assert!(kept.iter().any(|&i| i >= 10), "later items get a chance");

        let mut small = Reservoir::new(5, 1);
        small.offer("a");
        assert_eq!(small.into_inner(), vec!["a"]);
    }

    #[test]
    fn id_columns_read_as_ids() {
        let ints = FieldData::int64(ID_FIELD, vec![3, 1]);
        assert_eq!(
            ids_of(Some(&ints)),
            vec![VectorId::Int(3), VectorId::Int(1)]
        );
        let strs = FieldData::varchar(ID_FIELD, vec!["a".into()]);
        assert_eq!(ids_of(Some(&strs)), vec![VectorId::from("a")]);
        assert!(ids_of(None).is_empty());
        assert_eq!(
            ids_of_hits(&Ids::VarChar(vec!["x".into()])),
            vec![VectorId::from("x")]
        );
    }
}
