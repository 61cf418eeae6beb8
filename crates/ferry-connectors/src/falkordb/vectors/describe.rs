//! What a FalkorDB source holds: server versions, ids by type, embeddings by dimension.

use std::collections::BTreeMap;

use ferry_core::jobs::vectors::{Embedding, SourceInfo, VectorResult};
use redis::Value;

use super::{FalkorDbVectorSource, Param, SCAN_CHUNK, STORE};
use crate::falkordb::compact;

/// `41603` → `4.16.3` (modules report `major * 10000 + minor * 100 + patch`).
fn module_version(ver: i64) -> String {
    format!("{}.{}.{}", ver / 10_000, ver / 100 % 100, ver % 100)
}

/// The `ver` of the module named `graph` in a `MODULE LIST` reply (RESP2 lists or RESP3 maps).
fn graph_module(reply: &Value) -> Option<i64> {
    let Value::Array(modules) = reply else {
        return None;
    };
    modules.iter().find_map(|m| {
        let pairs: Vec<(&Value, &Value)> = match m {
            Value::Array(flat) => flat.chunks_exact(2).map(|p| (&p[0], &p[1])).collect(),
            Value::Map(map) => map.iter().map(|(k, v)| (k, v)).collect(),
            _ => return None,
        };
        let field = |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| compact::bytes(k) == Some(name.as_bytes()))
                .map(|(_, v)| *v)
        };
        match (field("name").and_then(compact::bytes), field("ver")) {
            (Some(b"graph"), Some(Value::Int(v))) => Some(*v),
            _ => None,
        }
    })
}

impl FalkorDbVectorSource {
    /// `redis 8.2.3, FalkorDB 4.16.3`.
    async fn version(&self) -> VectorResult<String> {
        let mut conn = self.conn.clone();
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query_async(&mut conn)
            .await
            .map_err(|e| self.error(e))?;
        let redis = info
            .lines()
            .find_map(|l| l.strip_prefix("redis_version:"))
            .unwrap_or("unknown")
            .trim()
            .to_string();
        let modules: Value = redis::cmd("MODULE")
            .arg("LIST")
            .query_async(&mut conn)
            .await
            .map_err(|e| self.error(e))?;
        let graph = graph_module(&modules).map_or("unknown".into(), module_version);
        Ok(format!("redis {redis}, FalkorDB {graph}"))
    }

    /// The server's versions and what the label holds; warns when two nodes share an id.
    pub(super) async fn info(&self) -> VectorResult<SourceInfo> {
        let mut info = SourceInfo {
            store: STORE.into(),
            version: self.version().await?,
            ..SourceInfo::default()
        };
        let mut vectors = 0;
        for row in self.query(&self.queries.describe(), &[]).await? {
            let text = |i: usize| row.get(i).and_then(compact::text).unwrap_or_default();
            let count = row.get(3).and_then(compact::int).unwrap_or(0).max(0) as u64;
            match text(0).as_str() {
                "Integer" => info.int_ids += count,
                "String" => info.str_ids += count,
                _ => {
                    info.bad_ids += count;
                    continue;
                }
            }
            match (text(1).as_str(), row.get(2).and_then(compact::int)) {
                ("List", Some(d)) if d > 0 => {
                    info.with_embedding += count;
                    *info.dimensions.entry(d as usize).or_default() += count;
                }
                ("Vectorf32", _) => {
                    info.with_embedding += count;
                    vectors += count;
                }
                _ => {}
            }
        }
        info.items = info.int_ids + info.str_ids;
        if vectors > 0 {
            for (d, n) in self.vector_dimensions(vectors).await? {
                *info.dimensions.entry(d).or_default() += n;
            }
        }
        self.warn_duplicates().await?;
        Ok(info)
    }

    /// `WHERE` for the items whose embedding is a `vecf32`.
    fn vecf32_items(&self) -> String {
        let (id, emb) = (self.queries.id(), self.queries.embedding());
        format!(
            "MATCH (n:{}) WHERE typeOf({emb}) = 'Vectorf32' AND typeOf({id}) IN ['Integer', 'String']",
            self.queries.label()
        )
    }

    /// How many of the `expected` `vecf32` embeddings have each dimension. Cypher cannot
    /// measure a `vecf32`, but a distance to a zero vector fails on any other dimension: one
    /// sample and one query settle the usual case; mixed dimensions are counted by reading the
    /// vectors, a chunk of internal node ids at a time.
    async fn vector_dimensions(&self, expected: u64) -> VectorResult<BTreeMap<usize, u64>> {
        let first = self
            .query(
                &format!(
                    "{} RETURN {} LIMIT 1",
                    self.vecf32_items(),
                    self.queries.embedding()
                ),
                &[],
            )
            .await?;
        let dimension = match first
            .first()
            .and_then(|r| r.first())
            .map(compact::embedding)
        {
            Some(Embedding::Vector(v)) => v.len(),
            _ => 0,
        };
        if dimension > 0 {
            let zeros = vec!["0.0"; dimension].join(",");
            let check = format!(
                "{} RETURN count(vec.euclideanDistance({}, vecf32([{zeros}])))",
                self.vecf32_items(),
                self.queries.embedding()
            );
            if let Ok(rows) = self.query(&check, &[]).await {
                let n = rows.first().and_then(|r| r.first()).and_then(compact::int);
                if n == Some(expected as i64) {
                    return Ok(BTreeMap::from([(dimension, expected)]));
                }
            }
        }
        self.scan_vector_dimensions().await
    }

    /// Reads every `vecf32` embedding to count its dimension.
    async fn scan_vector_dimensions(&self) -> VectorResult<BTreeMap<usize, u64>> {
        let label = self.queries.label();
        let max = self
            .query(&format!("MATCH (n:{label}) RETURN max(ID(n))"), &[])
            .await?
            .first()
            .and_then(|r| r.first())
            .and_then(compact::int)
            .unwrap_or(-1);
        let read = format!(
            "{} AND ID(n) > $after AND ID(n) <= $upto RETURN {}",
            self.vecf32_items(),
            self.queries.embedding()
        );
        let mut dimensions = BTreeMap::new();
        let mut after: i64 = -1;
        while after < max {
            let upto = after.saturating_add(SCAN_CHUNK);
            let params = [("after", Param::Int(after)), ("upto", Param::Int(upto))];
            for row in self.query(&read, &params).await? {
                let len = match row.first().map(compact::embedding) {
                    Some(Embedding::Vector(v)) => v.len(),
                    _ => 0,
                };
                *dimensions.entry(len).or_default() += 1;
            }
            after = upto;
        }
        dimensions.remove(&0);
        Ok(dimensions)
    }

    /// Warns when nodes share an id: a target keeps one of them.
    async fn warn_duplicates(&self) -> VectorResult<()> {
        let rows = self.query(&self.queries.distinct(), &[]).await?;
        let count = |i: usize| rows.first().and_then(|r| r.get(i)).and_then(compact::int);
        if let (Some(ids), Some(distinct)) = (count(0), count(1)) {
            crate::graph_vectors::warn_shared_ids(ids, distinct);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(t: &str) -> Value {
        Value::BulkString(t.as_bytes().to_vec())
    }

    #[test]
    fn the_graph_module_version_is_found_in_either_protocol() {
        let resp2 = Value::Array(vec![
            Value::Array(vec![s("name"), s("vectorset"), s("ver"), Value::Int(1)]),
            Value::Array(vec![s("name"), s("graph"), s("ver"), Value::Int(41603)]),
        ]);
        assert_eq!(
            graph_module(&resp2).map(module_version).as_deref(),
            Some("4.16.3")
        );
        let resp3 = Value::Array(vec![Value::Map(vec![
            (s("name"), s("graph")),
            (s("ver"), Value::Int(20412)),
        ])]);
        assert_eq!(
            graph_module(&resp3).map(module_version).as_deref(),
            Some("2.4.12")
        );
        assert_eq!(graph_module(&Value::Array(vec![])), None);
    }
}
