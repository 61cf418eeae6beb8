//! FalkorDB as a vector source (`falkordb://[user:password@]host:port/GRAPH`): the nodes of
//! one label, read in id order by keyset pagination with read-only compact queries
//! (`GRAPH.RO_QUERY ... --compact`).
//!
//! What the queries work around, as FalkorDB 4.16 behaves:
//! - it compares two integers by subtracting them, so comparisons across signs far apart are
//!   wrong (`9223372036854775807 > -5` is false): integer ranges are read one sign at a time;
//! - its range index compares through doubles (ids above 2^53 blur) and compares strings
//!   neither by bytes nor by case: an index narrows integer scans to a superset that exact
//!   comparisons then cut, and string ranges scan the label (one pass per page);
//! - comparing values of different types gives null: every query tests the id's type;
//! - its strings need not be UTF-8: an id that is not is skipped (logged), its bytes still
//!   move the page on.

use std::collections::HashSet;

use ferry_core::jobs::vectors::{
    Embedding, IdKind, IdRange, SourceInfo, SourceItem, VectorError, VectorId, VectorResult,
    VectorSource,
};
use redis::Value;
use redis::aio::MultiplexedConnection;

use super::compact::{self, RawId};
use super::conn::FalkorUrl;

mod describe;
use crate::graph_vectors::{Dialect, GraphQueries, GraphVectorOptions, RangeShape, Sign};

const STORE: &str = "falkordb";
/// The first window of an indexed integer page spans this many ids per row wanted.
const WINDOW: i64 = 4;
/// Ids per `get` query.
const GET_CHUNK: usize = 1000;
/// Internal node ids per query when counting `vecf32` dimensions one by one.
const SCAN_CHUNK: i64 = 2000;

/// The items of one label of a FalkorDB graph: an id property (integer or string) and an
/// embedding property (a `vecf32` or a list of numbers).
#[derive(Debug, Clone)]
pub struct FalkorDbVectorSource {
    conn: MultiplexedConnection,
    graph: String,
    shown: String,
    queries: GraphQueries,
    /// Whether a range index covers the id property.
    indexed: bool,
}

/// A query parameter, written as a Cypher literal.
#[derive(Debug, Clone, PartialEq)]
enum Param {
    Int(i64),
    /// A string, byte for byte (FalkorDB strings cannot hold NUL: it ends the string, which
    /// keeps a range bound exact since no id lies between `a` and `a\0...`).
    Str(Vec<u8>),
    List(Vec<Param>),
}

impl Param {
    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Param::Int(n) => out.extend_from_slice(n.to_string().as_bytes()),
            Param::Str(s) => {
                out.push(b'"');
                for &b in s.iter().take_while(|&&b| b != 0) {
                    if b == b'"' || b == b'\\' {
                        out.push(b'\\');
                    }
                    out.push(b);
                }
                out.push(b'"');
            }
            Param::List(items) => {
                out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    item.write(out);
                }
                out.push(b']');
            }
        }
    }
}

impl From<&VectorId> for Param {
    fn from(id: &VectorId) -> Self {
        match id {
            VectorId::Int(n) => Param::Int(*n),
            VectorId::Str(s) => Param::Str(s.as_bytes().to_vec()),
        }
    }
}

/// One part of an integer range holding ids of one sign: `after < id <= upto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Segment {
    sign: Sign,
    after: Option<i64>,
    upto: Option<i64>,
}

/// The integer range `(after, upto]` cut at zero, negative part first; empty parts left out.
fn int_segments(after: Option<i64>, upto: Option<i64>) -> Vec<Segment> {
    if let (Some(a), Some(u)) = (after, upto)
        && u <= a
    {
        return Vec::new();
    }
    let mut segments = Vec::new();
    if after.is_none_or(|a| a < -1) {
        segments.push(Segment {
            sign: Sign::Negative,
            after,
            upto: upto.filter(|&u| u < -1),
        });
    }
    if upto.is_none_or(|u| u >= 0) {
        segments.push(Segment {
            sign: Sign::NonNegative,
            after: after.filter(|&a| a >= 0),
            upto,
        });
    }
    segments
}

/// The first window of a page that starts after `after`: up to `want * WINDOW` ids on, within
/// the segment; `None` when it would not be narrower than the segment.
fn window(segment: &Segment, after: i64, want: usize) -> Option<i64> {
    let width = (want as i64).saturating_mul(WINDOW);
    let mut end = after.saturating_add(width);
    if segment.sign == Sign::Negative {
        end = end.min(-1);
    }
    match segment.upto {
        Some(u) if end >= u => None,
        None if segment.sign == Sign::Negative && end == -1 => None,
        None if end == i64::MAX => None,
        _ => Some(end),
    }
}

fn bound_int(bound: &Option<VectorId>) -> VectorResult<Option<i64>> {
    match bound {
        None => Ok(None),
        Some(VectorId::Int(n)) => Ok(Some(*n)),
        Some(VectorId::Str(_)) => Err(mixed_range()),
    }
}

fn bound_str(bound: &Option<VectorId>) -> VectorResult<Option<Vec<u8>>> {
    match bound {
        None => Ok(None),
        Some(VectorId::Str(s)) => Ok(Some(s.as_bytes().to_vec())),
        Some(VectorId::Int(_)) => Err(mixed_range()),
    }
}

fn mixed_range() -> VectorError {
    VectorError::Config(
        "an id range has a bound of the other kind of id (a bug in the caller: ranges never mix kinds)"
            .into(),
    )
}

/// A read row: the id and, when asked for, the embedding.
type Row = (VectorId, Option<Embedding>);

impl FalkorDbVectorSource {
    /// Connects to the server, checks that the graph and the label exist, and warns when no
    /// range index covers the id property.
    pub async fn open(url: &str, options: GraphVectorOptions) -> VectorResult<Self> {
        let queries = GraphQueries::new(&options, Dialect::FalkorDb)?;
        let parsed = FalkorUrl::parse(url).map_err(VectorError::Config)?;
        let graph = parsed.graph.clone().ok_or_else(|| {
            VectorError::Config(format!(
                "{}: name the graph to read, falkordb://host:port/GRAPH",
                parsed.shown
            ))
        })?;
        let conn = parsed
            .connect()
            .await
            .map_err(|message| VectorError::Unreachable {
                store: STORE.into(),
                message,
            })?;
        let mut source = FalkorDbVectorSource {
            conn,
            graph,
            shown: parsed.shown,
            queries,
            indexed: false,
        };
        source.check_label(&options.label).await?;
        source.indexed = source.id_indexed(&options).await?;
        if !source.indexed {
            tracing::warn!(
                graph = %source.graph,
                label = %options.label,
                property = %options.id_property,
                "no range index on the id property: every page scans the label; \
                 CREATE INDEX FOR (n:Label) ON (n.id) speeds up integer ids"
            );
        }
        Ok(source)
    }

    /// Whether a range index covers the id property (integer pages then read a window of
    /// the index instead of scanning the label).
    pub fn indexed(&self) -> bool {
        self.indexed
    }

    fn error(&self, e: redis::RedisError) -> VectorError {
        let store = format!("FalkorDB at {}", self.shown);
        match crate::redis::is_unreachable(&e) {
            true => VectorError::Unreachable {
                store,
                message: e.to_string(),
            },
            false => VectorError::Backend {
                store,
                message: format!("graph {}: {e}", self.graph),
            },
        }
    }

    /// Runs a read-only query with parameters; returns its rows of compact cells.
    async fn query(&self, text: &str, params: &[(&str, Param)]) -> VectorResult<Vec<Vec<Value>>> {
        let mut q = Vec::with_capacity(text.len() + 64);
        if !params.is_empty() {
            q.extend_from_slice(b"CYPHER ");
            for (name, value) in params {
                q.extend_from_slice(name.as_bytes());
                q.push(b'=');
                value.write(&mut q);
                q.push(b' ');
            }
        }
        q.extend_from_slice(text.as_bytes());
        let reply: Value = redis::cmd("GRAPH.RO_QUERY")
            .arg(&self.graph)
            .arg(q)
            .arg("--compact")
            .query_async(&mut self.conn.clone())
            .await
            .map_err(|e| self.error(e))?;
        Ok(compact::rows(reply))
    }

    /// Refuses a key that is not a graph, and a label the graph does not have.
    async fn check_label(&self, label: &str) -> VectorResult<()> {
        let kind: String = redis::cmd("TYPE")
            .arg(&self.graph)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(|e| self.error(e))?;
        match kind.as_str() {
            "graphdata" => {}
            "none" => {
                return Err(VectorError::Config(format!(
                    "{} has no graph {:?}: check the graph name in the URL (falkordb://host:port/GRAPH)",
                    self.shown, self.graph
                )));
            }
            other => {
                return Err(VectorError::Config(format!(
                    "the key {:?} on {} holds a {other}, not a FalkorDB graph",
                    self.graph, self.shown
                )));
            }
        }
        let labels: Vec<String> = self
            .query("CALL db.labels() YIELD label RETURN label", &[])
            .await?
            .iter()
            .filter_map(|r| r.first().and_then(compact::text))
            .collect();
        if labels.iter().any(|l| l == label) {
            return Ok(());
        }
        Err(VectorError::Config(format!(
            "graph {:?} has no nodes labelled {label:?} (its labels: {}): check the label",
            self.graph,
            labels.join(", ")
        )))
    }

    /// Whether a range index on the label covers the id property.
    async fn id_indexed(&self, options: &GraphVectorOptions) -> VectorResult<bool> {
        let rows = self
            .query(
                "CALL db.indexes() YIELD label, types, entitytype \
                 WHERE label = $label AND entitytype = 'NODE' RETURN types[$property]",
                &[
                    ("label", Param::Str(options.label.as_bytes().to_vec())),
                    (
                        "property",
                        Param::Str(options.id_property.as_bytes().to_vec()),
                    ),
                ],
            )
            .await?;
        Ok(rows
            .iter()
            .any(|r| match r.first().and_then(compact::cell) {
                Some((compact::ARRAY, Value::Array(types))) => types
                    .iter()
                    .any(|t| compact::text(t).is_some_and(|t| t == "RANGE")),
                _ => false,
            }))
    }

    /// Runs a range query; returns its rows with their raw ids.
    async fn range_rows(
        &self,
        shape: RangeShape,
        after: Option<Param>,
        upto: Option<Param>,
        limit: usize,
    ) -> VectorResult<Vec<(RawId, Option<Embedding>)>> {
        let shape = RangeShape {
            after: after.is_some(),
            upto: upto.is_some(),
            ..shape
        };
        let mut params = Vec::with_capacity(3);
        params.extend(after.map(|a| ("after", a)));
        params.extend(upto.map(|u| ("upto", u)));
        params.push(("limit", Param::Int(limit as i64)));
        let rows = self.query(&self.queries.range(&shape), &params).await?;
        Ok(rows
            .iter()
            .map(|r| {
                let id = r.first().map_or(RawId::Other(0), compact::raw_id);
                let embedding = shape
                    .embeddings
                    .then(|| r.get(1).map_or(Embedding::Missing, compact::embedding));
                (id, embedding)
            })
            .collect())
    }

    /// Up to `limit` rows of an integer range, one sign at a time.
    async fn read_ints(
        &self,
        range: &IdRange,
        limit: usize,
        embeddings: bool,
    ) -> VectorResult<Vec<Row>> {
        let mut out = Vec::new();
        for segment in int_segments(bound_int(&range.after)?, bound_int(&range.upto)?) {
            let shape = RangeShape {
                kind: IdKind::Int,
                after: false,
                upto: false,
                sign: Some(segment.sign),
                index_prefilter: self.indexed,
                embeddings,
            };
            let mut after = segment.after;
            let mut windowed = false;
            while out.len() < limit {
                let want = limit - out.len();
                // Indexed: try a narrow window first, so that dense ids cost one page of reads.
                let end = match (self.indexed && !windowed, after) {
                    (true, Some(a)) => window(&segment, a, want),
                    _ => None,
                };
                windowed = true;
                let upto = end.or(segment.upto);
                let rows = self
                    .range_rows(shape, after.map(Param::Int), upto.map(Param::Int), want)
                    .await?;
                let full = rows.len() == want;
                out.extend(rows.into_iter().filter_map(|(id, e)| match id {
                    RawId::Int(n) => Some((VectorId::Int(n), e)),
                    _ => None,
                }));
                match (full, end) {
                    (false, Some(end)) => after = Some(end),
                    _ => break,
                }
            }
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Up to `limit` rows of a string range; ids that are not UTF-8 are skipped.
    async fn read_strs(
        &self,
        range: &IdRange,
        limit: usize,
        embeddings: bool,
    ) -> VectorResult<Vec<Row>> {
        let shape = RangeShape {
            kind: IdKind::Str,
            after: false,
            upto: false,
            sign: None,
            index_prefilter: false,
            embeddings,
        };
        let mut after = bound_str(&range.after)?;
        let upto = bound_str(&range.upto)?;
        let mut out = Vec::new();
        while out.len() < limit {
            let want = limit - out.len();
            let rows = self
                .range_rows(
                    shape,
                    after.clone().map(Param::Str),
                    upto.clone().map(Param::Str),
                    want,
                )
                .await?;
            let full = rows.len() == want;
            for (id, e) in rows {
                let RawId::Str(bytes) = id else { continue };
                match String::from_utf8(bytes) {
                    Ok(s) => {
                        after = Some(s.as_bytes().to_vec());
                        out.push((VectorId::Str(s), e));
                    }
                    Err(e) => {
                        tracing::warn!(graph = %self.graph, id = %String::from_utf8_lossy(e.as_bytes()), "skipped a node whose string id is not UTF-8");
                        after = Some(e.into_bytes());
                    }
                }
            }
            if !full {
                break;
            }
        }
        Ok(out)
    }

    async fn read(
        &self,
        range: &IdRange,
        limit: usize,
        embeddings: bool,
    ) -> VectorResult<Vec<Row>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let limit = limit.min(i64::MAX as usize);
        match range.kind {
            IdKind::Int => self.read_ints(range, limit, embeddings).await,
            IdKind::Str => self.read_strs(range, limit, embeddings).await,
        }
    }
}

impl VectorSource for FalkorDbVectorSource {
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
            let of_kind: Vec<&VectorId> = ids.iter().filter(|id| id.kind() == kind).collect();
            for chunk in of_kind.chunks(GET_CHUNK) {
                let list = Param::List(chunk.iter().map(|&id| Param::from(id)).collect());
                let rows = self
                    .query(&self.queries.get(kind), &[("ids", list)])
                    .await?;
                for row in rows {
                    let id = match row.first().map(compact::raw_id) {
                        Some(RawId::Int(n)) => VectorId::Int(n),
                        Some(RawId::Str(b)) => match String::from_utf8(b) {
                            Ok(s) => VectorId::Str(s),
                            Err(_) => continue,
                        },
                        _ => continue,
                    };
                    // FalkorDB's index matches large integers through doubles: keep exact ids.
                    if wanted.contains(&id) {
                        let embedding = row.get(1).map_or(Embedding::Missing, compact::embedding);
                        items.push(SourceItem { id, embedding });
                    }
                }
            }
        }
        Ok(items)
    }

    async fn sample(&self, n: usize) -> VectorResult<Vec<VectorId>> {
        let rows = self
            .query(&self.queries.sample(), &[("n", Param::Int(n as i64))])
            .await?;
        Ok(rows
            .iter()
            .filter_map(|r| match r.first().map(compact::raw_id) {
                Some(RawId::Int(n)) => Some(VectorId::Int(n)),
                Some(RawId::Str(b)) => String::from_utf8(b).ok().map(VectorId::Str),
                _ => None,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(sign: Sign, after: Option<i64>, upto: Option<i64>) -> Segment {
        Segment { sign, after, upto }
    }

    #[test]
    fn integer_ranges_are_read_one_sign_at_a_time() {
        use Sign::{Negative as N, NonNegative as P};
        assert_eq!(
            int_segments(None, None),
            vec![seg(N, None, None), seg(P, None, None)]
        );
        assert_eq!(
            int_segments(Some(-10), Some(10)),
            vec![seg(N, Some(-10), None), seg(P, None, Some(10))]
        );
        assert_eq!(int_segments(Some(-1), None), vec![seg(P, None, None)]);
        assert_eq!(
            int_segments(Some(-2), Some(-1)),
            vec![seg(N, Some(-2), None)]
        );
        assert_eq!(int_segments(None, Some(-5)), vec![seg(N, None, Some(-5))]);
        assert_eq!(
            int_segments(Some(3), Some(9)),
            vec![seg(P, Some(3), Some(9))]
        );
        assert!(int_segments(Some(5), Some(5)).is_empty());
        assert_eq!(
            int_segments(Some(i64::MAX), None),
            vec![seg(P, Some(i64::MAX), None)]
        );
    }

    #[test]
    fn windows_stay_inside_their_segment() {
        let pos = seg(Sign::NonNegative, Some(0), None);
        assert_eq!(window(&pos, 100, 10), Some(140));
        assert_eq!(window(&pos, i64::MAX - 5, 10), None);
        assert_eq!(
            window(&seg(Sign::NonNegative, None, Some(120)), 100, 10),
            None
        );
        let neg = seg(Sign::Negative, None, None);
        assert_eq!(window(&neg, -100, 10), Some(-60));
        assert_eq!(window(&neg, -30, 10), None);
        assert_eq!(window(&neg, i64::MIN, 10), Some(i64::MIN + 40));
    }

    #[test]
    fn string_parameters_are_written_byte_for_byte() {
        let mut out = Vec::new();
        Param::List(vec![
            Param::Str(b"a\"b\\c\n\x01\xff".to_vec()),
            Param::Int(-3),
            Param::Str(b"x\0y".to_vec()),
        ])
        .write(&mut out);
        assert_eq!(out, b"[\"a\\\"b\\\\c\n\x01\xff\",-3,\"x\"]".to_vec());
    }
}
