//! The Cypher that the graph vector sources (FalkorDB, Neo4j) share: which nodes hold the
//! items, and the query text that reads them in id order, by keyset pagination.
//!
//! Names (label, id and embedding properties) are validated and back-quoted, never pasted in
//! raw; values always travel as query parameters (`$after`, `$upto`, `$limit`, `$ids`, `$n`).
//! A node is an item when its id is an integer or a string; nodes whose id is anything else
//! (a float, a list, missing) are counted by `describe` and never read.

use ferry_core::jobs::vectors::{
    Embedding, IdKind, SourceItem, VectorError, VectorId, VectorResult,
};

/// Which nodes hold the items of a graph source, and where their ids and embeddings are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphVectorOptions {
    /// The label of the item nodes (`Media` by default).
    pub label: String,
    /// The property holding an item's id (`id` by default).
    pub id_property: String,
    /// The property holding an item's embedding (`embedding` by default).
    pub embedding_property: String,
}

impl Default for GraphVectorOptions {
    fn default() -> Self {
        GraphVectorOptions {
            label: "Media".into(),
            id_property: "id".into(),
            embedding_property: "embedding".into(),
        }
    }
}

/// The Cypher dialect of a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// FalkorDB: `typeOf()` names types; names cannot hold a backquote; integer comparisons
    /// overflow across signs and its range index compares through doubles (see [`RangeShape`]).
    FalkorDb,
    /// Neo4j 5.10 or later: type predicates (`x IS :: INTEGER NOT NULL`); a backquote in a
    /// name is written twice.
    Neo4j,
}

/// The sign of the integer ids a FalkorDB query reads.
///
/// FalkorDB compares two integers by subtracting them, so `9223372036854775807 > -5` is false;
/// a query that compares ids of one sign only is exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sign {
    /// Ids below zero.
    Negative,
    /// Ids from zero up.
    NonNegative,
}

/// The shape of one keyset query: `after < id <= upto` of one kind, in id order, at most
/// `$limit` rows of `id` (and `embedding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RangeShape {
    /// The kind of ids read.
    pub kind: IdKind,
    /// Whether the query has the exclusive lower bound `$after`.
    pub after: bool,
    /// Whether the query has the inclusive upper bound `$upto`.
    pub upto: bool,
    /// Only ids of this sign (integer ranges).
    pub sign: Option<Sign>,
    /// FalkorDB with a range index on the id property: also bound the property itself,
    /// inclusively (`n.id >= $after AND n.id <= $upto`), so that the index narrows the scan.
    /// The index compares through doubles (ids above 2^53 blur, strings compare wrongly), so
    /// this is a superset that the exact conditions then cut; strings never use it.
    pub index_prefilter: bool,
    /// Whether the rows carry the embedding.
    pub embeddings: bool,
}

/// The query texts of one source: its names, checked and quoted once.
#[derive(Debug, Clone)]
pub struct GraphQueries {
    dialect: Dialect,
    label: String,
    id: String,
    embedding: String,
}

/// `name` back-quoted for `dialect`, or a [`VectorError::Config`] saying why it cannot be
/// used (`what` names the option in the message).
pub fn quote_name(name: &str, dialect: Dialect, what: &str) -> VectorResult<String> {
    if name.is_empty() {
        return Err(VectorError::Config(format!(
            "the {what} is empty: name one"
        )));
    }
    if let Some(c) = name.chars().find(|c| c.is_control()) {
        return Err(VectorError::Config(format!(
            "the {what} {name:?} holds the control character {c:?}: graph names cannot be written with it"
        )));
    }
    match dialect {
        Dialect::FalkorDb if name.contains('`') => Err(VectorError::Config(format!(
            "the {what} {name:?} holds a backquote, which FalkorDB's Cypher cannot quote: rename it"
        ))),
        Dialect::FalkorDb => Ok(format!("`{name}`")),
        Dialect::Neo4j => Ok(format!("`{}`", name.replace('`', "``"))),
    }
}

impl GraphQueries {
    /// Checks and quotes the names of `options`.
    pub fn new(options: &GraphVectorOptions, dialect: Dialect) -> VectorResult<Self> {
        Ok(GraphQueries {
            dialect,
            label: quote_name(&options.label, dialect, "label")?,
            id: quote_name(&options.id_property, dialect, "id property")?,
            embedding: quote_name(&options.embedding_property, dialect, "embedding property")?,
        })
    }

    /// The quoted label.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// `n.<id property>`.
    pub fn id(&self) -> String {
        format!("n.{}", self.id)
    }

    /// `n.<embedding property>`.
    pub fn embedding(&self) -> String {
        format!("n.{}", self.embedding)
    }

    /// A predicate: `expr` is a non-null value of `ty` (`Integer`, `String`, `List`).
    fn is(&self, expr: &str, ty: &str) -> String {
        match self.dialect {
            Dialect::FalkorDb => format!("typeOf({expr}) = '{ty}'"),
            Dialect::Neo4j => {
                let ty = match ty {
                    "Integer" => "INTEGER",
                    "String" => "STRING",
                    _ => "LIST<ANY>",
                };
                format!("{expr} IS :: {ty} NOT NULL")
            }
        }
    }

    /// The type of `expr` as FalkorDB's `typeOf` names it (`Integer`, `String`, `List`,
    /// `Vectorf32`, `Null`, ...; Neo4j: `Other` for the rest).
    fn type_name(&self, expr: &str) -> String {
        match self.dialect {
            Dialect::FalkorDb => format!("typeOf({expr})"),
            Dialect::Neo4j => format!(
                "CASE WHEN {expr} IS NULL THEN 'Null' WHEN {} THEN 'Integer' WHEN {} THEN 'String' WHEN {} THEN 'List' ELSE 'Other' END",
                self.is(expr, "Integer"),
                self.is(expr, "String"),
                self.is(expr, "List")
            ),
        }
    }

    fn type_of_kind(kind: IdKind) -> &'static str {
        match kind {
            IdKind::Int => "Integer",
            IdKind::Str => "String",
        }
    }

    /// A keyset page: the ids (and embeddings) of one range in id order.
    pub fn range(&self, shape: &RangeShape) -> String {
        let id = self.id();
        let ty = Self::type_of_kind(shape.kind);
        let mut returned = "k AS id".to_string();
        if shape.embeddings {
            returned.push_str(&format!(", {} AS embedding", self.embedding()));
        }
        // The sign and bounds of `subject`; `after_op` is `>`, or `>=` for a superset.
        let bounds = |subject: &str, after_op: &str| {
            let mut c = Vec::new();
            match shape.sign {
                Some(Sign::Negative) => c.push(format!("{subject} < 0")),
                Some(Sign::NonNegative) => c.push(format!("{subject} >= 0")),
                None => {}
            }
            if shape.after {
                c.push(format!("{subject} {after_op} $after"));
            }
            if shape.upto {
                c.push(format!("{subject} <= $upto"));
            }
            c
        };
        match self.dialect {
            Dialect::Neo4j => {
                // Exact comparisons on the property itself, so that an index serves them.
                let mut wheres = vec![self.is(&id, ty)];
                wheres.extend(bounds(&id, ">"));
                format!(
                    "MATCH (n:{}) WHERE {} WITH n, {id} AS k RETURN {returned} ORDER BY k LIMIT $limit",
                    self.label,
                    wheres.join(" AND ")
                )
            }
            Dialect::FalkorDb => {
                let pre = match shape.index_prefilter && shape.kind == IdKind::Int {
                    true => bounds(&id, ">="),
                    false => Vec::new(),
                };
                let pre = match pre.is_empty() {
                    true => String::new(),
                    false => format!(" WHERE {}", pre.join(" AND ")),
                };
                let mut exact = vec!["k IS NOT NULL".to_string()];
                exact.extend(bounds("k", ">"));
                format!(
                    "MATCH (n:{}){pre} WITH n, CASE WHEN {} THEN {id} END AS k WHERE {} RETURN {returned} ORDER BY k LIMIT $limit",
                    self.label,
                    self.is(&id, ty),
                    exact.join(" AND ")
                )
            }
        }
    }

    /// The items of one kind among the ids `$ids`. FalkorDB's index serves integers through
    /// doubles (callers keep only the ids they asked for) and misses some strings (control
    /// characters), so FalkorDB compares strings without it.
    pub fn get(&self, kind: IdKind) -> String {
        let (id, emb) = (self.id(), self.embedding());
        let is_kind = self.is(&id, Self::type_of_kind(kind));
        match (self.dialect, kind) {
            (Dialect::FalkorDb, IdKind::Str) => format!(
                "MATCH (n:{}) WITH n, CASE WHEN {is_kind} THEN {id} END AS k WHERE k IN $ids RETURN k AS id, {emb} AS embedding",
                self.label
            ),
            _ => format!(
                "MATCH (n:{}) WHERE {id} IN $ids AND {is_kind} RETURN {id} AS id, {emb} AS embedding",
                self.label
            ),
        }
    }

    /// Up to `$n` ids picked at random.
    pub fn sample(&self) -> String {
        let id = self.id();
        format!(
            "MATCH (n:{}) WHERE {} OR {} RETURN {id} AS id ORDER BY rand() LIMIT $n",
            self.label,
            self.is(&id, "Integer"),
            self.is(&id, "String")
        )
    }

    /// What the label holds: rows of (id type, embedding type, list length or null, count).
    pub fn describe(&self) -> String {
        let (id, emb) = (self.id(), self.embedding());
        format!(
            "MATCH (n:{}) RETURN {} AS id_type, {} AS embedding_type, size(CASE WHEN {} THEN {emb} END) AS dimension, count(*) AS items",
            self.label,
            self.type_name(&id),
            self.type_name(&emb),
            self.is(&emb, "List")
        )
    }

    /// How many items there are and how many distinct ids they have (two nodes with one id
    /// are one item to a target).
    pub fn distinct(&self) -> String {
        let id = self.id();
        format!(
            "MATCH (n:{}) WHERE {} OR {} RETURN count({id}) AS ids, count(DISTINCT {id}) AS distinct_ids",
            self.label,
            self.is(&id, "Integer"),
            self.is(&id, "String")
        )
    }
}

/// Warns when `nodes` nodes have only `distinct` ids between them: a target keeps one vector
/// per id, from any of them.
pub fn warn_shared_ids(nodes: i64, distinct: i64) {
    if distinct < nodes {
        tracing::warn!(
            nodes,
            distinct_ids = distinct,
            "several nodes share an id: a target keeps one vector per id, from any of them; give each node its own id"
        );
    }
}

/// Rows of ids and embeddings (`None`: the property is absent) as source items.
pub fn into_items(rows: Vec<(VectorId, Option<Embedding>)>) -> Vec<SourceItem> {
    rows.into_iter()
        .map(|(id, embedding)| SourceItem {
            id,
            embedding: embedding.unwrap_or(Embedding::Missing),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queries(dialect: Dialect) -> GraphQueries {
        GraphQueries::new(&GraphVectorOptions::default(), dialect).unwrap()
    }

    fn shape(kind: IdKind) -> RangeShape {
        RangeShape {
            kind,
            after: true,
            upto: true,
            sign: None,
            index_prefilter: false,
            embeddings: true,
        }
    }

    #[test]
    fn names_are_back_quoted_or_refused() {
        let fdb = Dialect::FalkorDb;
        assert_eq!(quote_name("Mé dia", fdb, "label").unwrap(), "`Mé dia`");
        assert_eq!(
            quote_name("p}) RETURN 1 //", fdb, "label").unwrap(),
            "`p}) RETURN 1 //`"
        );
        let e = quote_name("a`b", fdb, "label").unwrap_err().to_string();
        assert!(e.contains("backquote") && e.contains("\"a`b\""), "{e}");
        assert_eq!(
            quote_name("a`) DETACH DELETE n //", Dialect::Neo4j, "label").unwrap(),
            "`a``) DETACH DELETE n //`"
        );
        for bad in ["", "a\nb", "a\0b"] {
            assert!(
                quote_name(bad, Dialect::Neo4j, "id property").is_err(),
                "{bad:?}"
            );
        }
        let options = GraphVectorOptions {
            embedding_property: "x`y".into(),
            ..GraphVectorOptions::default()
        };
        let e = GraphQueries::new(&options, fdb).unwrap_err().to_string();
        assert!(e.contains("embedding property"), "{e}");
    }

    #[test]
    fn falkordb_pages_compare_exactly_and_let_the_index_narrow_integer_scans() {
        let q = queries(Dialect::FalkorDb);
        assert_eq!(
            q.range(&shape(IdKind::Str)),
            "MATCH (n:`Media`) WITH n, CASE WHEN typeOf(n.`id`) = 'String' THEN n.`id` END AS k \
             WHERE k IS NOT NULL AND k > $after AND k <= $upto \
             RETURN k AS id, n.`embedding` AS embedding ORDER BY k LIMIT $limit"
        );
        let ints = RangeShape {
            sign: Some(Sign::Negative),
            index_prefilter: true,
            embeddings: false,
            upto: false,
            ..shape(IdKind::Int)
        };
        assert_eq!(
            q.range(&ints),
            "MATCH (n:`Media`) WHERE n.`id` < 0 AND n.`id` >= $after \
             WITH n, CASE WHEN typeOf(n.`id`) = 'Integer' THEN n.`id` END AS k \
             WHERE k IS NOT NULL AND k < 0 AND k > $after RETURN k AS id ORDER BY k LIMIT $limit"
        );
        // Strings never go through FalkorDB's index: it compares them wrongly.
        let strings = RangeShape {
            index_prefilter: true,
            ..shape(IdKind::Str)
        };
        assert!(q.range(&strings).starts_with("MATCH (n:`Media`) WITH n"));
    }

    #[test]
    fn neo4j_pages_compare_the_property_itself() {
        let q = queries(Dialect::Neo4j);
        assert_eq!(
            q.range(&shape(IdKind::Int)),
            "MATCH (n:`Media`) WHERE n.`id` IS :: INTEGER NOT NULL AND n.`id` > $after AND n.`id` <= $upto \
             WITH n, n.`id` AS k RETURN k AS id, n.`embedding` AS embedding ORDER BY k LIMIT $limit"
        );
        let open = RangeShape {
            after: false,
            upto: false,
            embeddings: false,
            ..shape(IdKind::Str)
        };
        assert_eq!(
            q.range(&open),
            "MATCH (n:`Media`) WHERE n.`id` IS :: STRING NOT NULL WITH n, n.`id` AS k RETURN k AS id ORDER BY k LIMIT $limit"
        );
    }

    #[test]
    fn lookups_samples_and_counts_name_every_type() {
        let options = GraphVectorOptions {
            label: "My Label".into(),
            id_property: "key".into(),
            embedding_property: "vec".into(),
        };
        let q = GraphQueries::new(&options, Dialect::Neo4j).unwrap();
        assert_eq!(
            q.get(IdKind::Str),
            "MATCH (n:`My Label`) WHERE n.`key` IN $ids AND n.`key` IS :: STRING NOT NULL RETURN n.`key` AS id, n.`vec` AS embedding"
        );
        assert!(
            q.sample().ends_with("ORDER BY rand() LIMIT $n"),
            "{}",
            q.sample()
        );
        let f = GraphQueries::new(&options, Dialect::FalkorDb).unwrap();
        assert!(
            f.get(IdKind::Int)
                .contains("WHERE n.`key` IN $ids AND typeOf(n.`key`) = 'Integer'")
        );
        assert!(
            f.get(IdKind::Str)
                .contains("THEN n.`key` END AS k WHERE k IN $ids")
        );
        let d = q.describe();
        assert!(
            d.contains("WHEN n.`vec` IS :: LIST<ANY> NOT NULL THEN 'List'")
                && d.contains("size(CASE WHEN n.`vec` IS :: LIST<ANY> NOT NULL THEN n.`vec` END)"),
            "{d}"
        );
        assert_eq!(
            f.describe(),
            "MATCH (n:`My Label`) RETURN typeOf(n.`key`) AS id_type, typeOf(n.`vec`) AS embedding_type, \
             size(CASE WHEN typeOf(n.`vec`) = 'List' THEN n.`vec` END) AS dimension, count(*) AS items"
        );
        assert!(f.distinct().contains("count(DISTINCT n.`key`)"));
    }
}
