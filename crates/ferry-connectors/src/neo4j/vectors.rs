//! Neo4j as a vector source (`neo4j://user:password@host:7687[/database]`, also `bolt://`):
//! the nodes of one label, read in id order by keyset pagination with Bolt parameters, the
//! same Cypher as FalkorDB's ([`crate::graph_vectors`]). Embeddings are lists of numbers.
//!
//! Needs Neo4j 5.10 or later (type predicates, `x IS :: INTEGER NOT NULL`). Neo4j compares
//! integers exactly and its range indexes serve both kinds of id, so a range is one query.

use std::collections::HashSet;

use ferry_core::jobs::tier::EventStoreError;
use ferry_core::jobs::vectors::{
    Embedding, IdKind, IdRange, SourceInfo, SourceItem, VectorError, VectorId, VectorResult,
    VectorSource,
};
use neo4rs::{BoltType, Graph, Query, Row, query};

use super::Neo4jEventStore;
use crate::graph_vectors::{Dialect, GraphQueries, GraphVectorOptions, RangeShape};

const STORE: &str = "neo4j";

/// The items of one label of a Neo4j database: an id property (integer or string) and an
/// embedding property (a list of numbers).
pub struct Neo4jVectorSource {
    graph: Graph,
    shown: String,
    queries: GraphQueries,
}

impl std::fmt::Debug for Neo4jVectorSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Neo4jVectorSource")
            .field("url", &self.shown)
            .field("queries", &self.queries)
            .finish()
    }
}

/// The name of a Bolt value's type, for messages.
fn type_name(v: &BoltType) -> &'static str {
    match v {
        BoltType::String(_) => "string",
        BoltType::Boolean(_) => "boolean",
        BoltType::Map(_) => "map",
        BoltType::Null(_) => "null",
        BoltType::Integer(_) => "integer",
        BoltType::Float(_) => "float",
        BoltType::List(_) => "list",
        BoltType::Bytes(_) => "byte array",
        BoltType::Point2D(_) | BoltType::Point3D(_) => "point",
        BoltType::Node(_) => "node",
        _ => "value of another type",
    }
}

/// An embedding: a list of integers and floats is a vector; null is missing; anything else,
/// an empty list, or a component that is not a finite 32-bit float is invalid.
fn embedding(v: &BoltType) -> Embedding {
    let items = match v {
        BoltType::Null(_) => return Embedding::Missing,
        BoltType::List(list) => &list.value,
        other => {
            return Embedding::Invalid(format!(
                "the embedding is a {}, not a list of numbers",
                type_name(other)
            ));
        }
    };
    if items.is_empty() {
        return Embedding::Invalid("the embedding is an empty list".into());
    }
    let mut vector = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let x = match item {
            BoltType::Integer(n) => n.value as f64,
            BoltType::Float(f) => f.value,
            other => {
                return Embedding::Invalid(format!(
                    "component {i} is a {}, not a number",
                    type_name(other)
                ));
            }
        };
        if !x.is_finite() || !(x as f32).is_finite() {
            return Embedding::Invalid(format!("component {i} is not a finite 32-bit float"));
        }
        vector.push(x as f32);
    }
    Embedding::Vector(vector)
}

fn id_of(v: &BoltType) -> Option<VectorId> {
    match v {
        BoltType::Integer(n) => Some(VectorId::Int(n.value)),
        BoltType::String(s) => Some(VectorId::Str(s.value.clone())),
        _ => None,
    }
}

fn bolt(id: &VectorId) -> BoltType {
    match id {
        VectorId::Int(n) => BoltType::from(*n),
        VectorId::Str(s) => BoltType::from(s.as_str()),
    }
}

/// Whether `version` (`5.15.0`, `2025.01.0`) is 5.10 or later.
fn has_type_predicates(version: &str) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    major > 5 || (major == 5 && minor >= 10)
}

impl Neo4jVectorSource {
    /// Connects, checks the server's version and that the label exists, and warns when no
    /// range index covers the id property.
    pub async fn open(url: &str, options: GraphVectorOptions) -> VectorResult<Self> {
        let queries = GraphQueries::new(&options, Dialect::Neo4j)?;
        let store = Neo4jEventStore::open(url).await.map_err(|e| match e {
            EventStoreError::Config(m) => VectorError::Config(m),
            EventStoreError::Backend { message, .. } => VectorError::Unreachable {
                store: STORE.into(),
                message,
            },
            other => VectorError::Unreachable {
                store: STORE.into(),
                message: other.to_string(),
            },
        })?;
        let source = Neo4jVectorSource {
            graph: store.graph,
            shown: store.shown,
            queries,
        };
        let version = source.server_version().await?;
        if !has_type_predicates(&version.0) {
            return Err(VectorError::Config(format!(
                "{} runs Neo4j {}: reading vectors needs Neo4j 5.10 or later (type predicates)",
                source.shown, version.0
            )));
        }
        source.check_label(&options.label).await?;
        if !source.id_indexed(&options).await? {
            tracing::warn!(
                label = %options.label,
                property = %options.id_property,
                "no range index on the id property: every page scans the label; \
                 CREATE INDEX FOR (n:Label) ON (n.id) speeds it up"
            );
        }
        Ok(source)
    }

    fn error(&self, e: impl std::fmt::Display) -> VectorError {
        VectorError::Backend {
            store: format!("Neo4j at {}", self.shown),
            message: e.to_string(),
        }
    }

    async fn rows(&self, q: Query) -> VectorResult<Vec<Row>> {
        let mut stream = self.graph.execute(q).await.map_err(|e| self.error(e))?;
        let mut rows = Vec::new();
        while let Some(row) = stream.next().await.map_err(|e| self.error(e))? {
            rows.push(row);
        }
        Ok(rows)
    }

    fn get<T: serde::de::DeserializeOwned>(&self, row: &Row, key: &str) -> VectorResult<T> {
        row.get::<T>(key)
            .map_err(|e| self.error(format!("column {key}: {e}")))
    }

    /// The kernel's version and edition.
    async fn server_version(&self) -> VectorResult<(String, String)> {
        let rows = self
            .rows(query(
                "CALL dbms.components() YIELD name, versions, edition \
                 WHERE name = 'Neo4j Kernel' RETURN versions[0] AS version, edition",
            ))
            .await?;
        let row = rows
            .first()
            .ok_or_else(|| self.error("dbms.components() named no Neo4j Kernel"))?;
        Ok((self.get(row, "version")?, self.get(row, "edition")?))
    }

    async fn check_label(&self, label: &str) -> VectorResult<()> {
        let rows = self
            .rows(query("CALL db.labels() YIELD label RETURN label"))
            .await?;
        let labels: Vec<String> = rows
            .iter()
            .filter_map(|r| r.get::<String>("label").ok())
            .collect();
        if labels.iter().any(|l| l == label) {
            return Ok(());
        }
        Err(VectorError::Config(format!(
            "{} has no nodes labelled {label:?} (its labels: {}): check the label",
            self.shown,
            labels.join(", ")
        )))
    }

    async fn id_indexed(&self, options: &GraphVectorOptions) -> VectorResult<bool> {
        let rows = self
            .rows(
                query(
                    "SHOW INDEXES YIELD type, entityType, labelsOrTypes, properties \
                     WHERE type = 'RANGE' AND entityType = 'NODE' AND labelsOrTypes = [$label] \
                     AND properties[0] = $property RETURN count(*) AS n",
                )
                .param("label", options.label.as_str())
                .param("property", options.id_property.as_str()),
            )
            .await?;
        Ok(rows
            .first()
            .is_some_and(|r| r.get::<i64>("n").unwrap_or(0) > 0))
    }

    async fn read(
        &self,
        range: &IdRange,
        limit: usize,
        embeddings: bool,
    ) -> VectorResult<Vec<(VectorId, Option<Embedding>)>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let bounds = [&range.after, &range.upto];
        if bounds
            .iter()
            .any(|b| b.as_ref().is_some_and(|id| id.kind() != range.kind))
        {
            return Err(VectorError::Config(
                "an id range has a bound of the other kind of id (a bug in the caller: ranges never mix kinds)".into(),
            ));
        }
        let shape = RangeShape {
            kind: range.kind,
            after: range.after.is_some(),
            upto: range.upto.is_some(),
            sign: None,
            index_prefilter: false,
            embeddings,
        };
        let mut q =
            query(&self.queries.range(&shape)).param("limit", limit.min(i64::MAX as usize) as i64);
        if let Some(after) = &range.after {
            q = q.param("after", bolt(after));
        }
        if let Some(upto) = &range.upto {
            q = q.param("upto", bolt(upto));
        }
        let mut out = Vec::new();
        for row in self.rows(q).await? {
            let Some(id) = id_of(&self.get::<BoltType>(&row, "id")?) else {
                continue;
            };
            let e = match embeddings {
                true => Some(embedding(&self.get::<BoltType>(&row, "embedding")?)),
                false => None,
            };
            out.push((id, e));
        }
        Ok(out)
    }

    async fn info(&self) -> VectorResult<SourceInfo> {
        let (version, edition) = self.server_version().await?;
        let mut info = SourceInfo {
            store: STORE.into(),
            version: format!("Neo4j {version} {edition}"),
            ..SourceInfo::default()
        };
        for row in self.rows(query(&self.queries.describe())).await? {
            let count = self.get::<i64>(&row, "items")?.max(0) as u64;
            match self.get::<String>(&row, "id_type")?.as_str() {
                "Integer" => info.int_ids += count,
                "String" => info.str_ids += count,
                _ => {
                    info.bad_ids += count;
                    continue;
                }
            }
            if let Some(d) = self
                .get::<Option<i64>>(&row, "dimension")?
                .filter(|&d| d > 0)
            {
                info.with_embedding += count;
                *info.dimensions.entry(d as usize).or_default() += count;
            }
        }
        info.items = info.int_ids + info.str_ids;
        let rows = self.rows(query(&self.queries.distinct())).await?;
        if let Some(row) = rows.first() {
            let (ids, distinct) = (
                self.get::<i64>(row, "ids")?,
                self.get::<i64>(row, "distinct_ids")?,
            );
            crate::graph_vectors::warn_shared_ids(ids, distinct);
        }
        Ok(info)
    }
}

impl VectorSource for Neo4jVectorSource {
    async fn describe(&self) -> VectorResult<SourceInfo> {
        self.info().await
    }

    async fn ids(&self, range: &IdRange, limit: usize) -> VectorResult<Vec<VectorId>> {
        let rows = self.read(range, limit, false).await?;
        Ok(rows.into_iter().map(|(id, _)| id).collect())
    }

    async fn page(&self, range: &IdRange, limit: usize) -> VectorResult<Vec<SourceItem>> {
        let rows = self.read(range, limit, true).await?;
        Ok(crate::graph_vectors::into_items(rows))
    }

    async fn get(&self, ids: &[VectorId]) -> VectorResult<Vec<SourceItem>> {
        let wanted: HashSet<&VectorId> = ids.iter().collect();
        let mut items = Vec::new();
        for kind in [IdKind::Int, IdKind::Str] {
            let of_kind: Vec<BoltType> = ids
                .iter()
                .filter(|id| id.kind() == kind)
                .map(bolt)
                .collect();
            if of_kind.is_empty() {
                continue;
            }
            let q = query(&self.queries.get(kind)).param("ids", of_kind);
            for row in self.rows(q).await? {
                let Some(id) = id_of(&self.get::<BoltType>(&row, "id")?) else {
                    continue;
                };
                if wanted.contains(&id) {
                    let embedding = embedding(&self.get::<BoltType>(&row, "embedding")?);
                    items.push(SourceItem { id, embedding });
                }
            }
        }
        Ok(items)
    }

    async fn sample(&self, n: usize) -> VectorResult<Vec<VectorId>> {
        let q = query(&self.queries.sample()).param("n", n.min(i64::MAX as usize) as i64);
        let mut ids = Vec::new();
        for row in self.rows(q).await? {
            ids.extend(id_of(&self.get::<BoltType>(&row, "id")?));
        }
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_of_numbers_are_embeddings_and_the_rest_is_invalid() {
        let list = |items: Vec<BoltType>| BoltType::List(neo4rs::BoltList { value: items });
        assert_eq!(
            embedding(&list(vec![BoltType::from(1_i64), BoltType::from(0.5_f64)])),
            Embedding::Vector(vec![1.0, 0.5])
        );
        assert_eq!(
            embedding(&BoltType::Null(neo4rs::BoltNull)),
            Embedding::Missing
        );
        let invalid = |v: BoltType| match embedding(&v) {
            Embedding::Invalid(reason) => reason,
            other => panic!("{other:?}"),
        };
        assert!(invalid(BoltType::from("x")).contains("is a string"));
        assert!(invalid(list(vec![])).contains("empty"));
        assert!(
            invalid(list(vec![BoltType::from(1.0_f64), BoltType::from("x")]))
                .contains("component 1 is a string")
        );
        assert!(invalid(list(vec![BoltType::from(f64::NAN)])).contains("component 0"));
        assert!(invalid(list(vec![BoltType::from(1e300_f64)])).contains("component 0"));
    }

    #[test]
    fn ids_are_integers_or_strings_and_versions_are_checked() {
        assert_eq!(id_of(&BoltType::from(-3_i64)), Some(VectorId::Int(-3)));
        assert_eq!(id_of(&BoltType::from("a")), Some(VectorId::from("a")));
        assert_eq!(id_of(&BoltType::from(2.5_f64)), None);
        for (version, ok) in [
            ("5.15.0", true),
            ("5.10.0", true),
            ("5.9.0", false),
            ("4.4.30", false),
            ("2025.01.0", true),
        ] {
            assert_eq!(has_type_predicates(version), ok, "{version}");
        }
    }
}
