//! FalkorDB: nodes of one label, integer and string ids, `vecf32` and list embeddings.

use ferry_connectors::falkordb::FalkorDbVectorSource;
use ferry_connectors::graph_vectors::GraphVectorOptions;
use ferry_core::error::{Classify, ErrorClass};
use ferry_core::jobs::vectors::{Embedding, IdKind, VectorId, VectorSource};
use ferry_testkit::FalkorDbServer;

use crate::{by_id, ids, invalid_with, walk};

const BIG: i64 = 1 << 53;

/// Integer ids: both ends of i64, both sides of zero, neighbours that doubles cannot tell
/// apart, and a dense run.
fn int_ids() -> Vec<i64> {
    let mut v = vec![
        i64::MIN,
        i64::MIN + 1,
        -BIG - 1,
        -1000,
        -5,
        -1,
        0,
        1,
        2,
        3,
        7,
        100,
        BIG,
        BIG + 1,
        BIG + 2,
        i64::MAX - 1,
        i64::MAX,
    ];
    v.extend(1000..1041);
    v.sort();
    v
}

/// String ids: quotes, backslash, control characters, case, unicode, the empty string.
const STR_IDS: &[&str] = &[
    "", "A", "Z", "a", "a b", "a,b", "a|b", "a\"b", "a\\b", "a\u{1}b", "a\nb", "ab", "é", "ÿ", "€",
    "𝄞", "日本", "it's", "media:7", "`tick`",
];

fn conn(server: &FalkorDbServer) -> redis::Connection {
    redis::Client::open(format!("redis://127.0.0.1:{}", server.port()))
        .unwrap()
        .get_connection()
        .unwrap()
}

fn graph_query(c: &mut redis::Connection, graph: &str, query: impl AsRef<[u8]>) {
    let _: redis::Value = redis::cmd("GRAPH.QUERY")
        .arg(graph)
        .arg(query.as_ref())
        .query(c)
        .unwrap_or_else(|e| panic!("{}: {e}", String::from_utf8_lossy(query.as_ref())));
}

/// A Cypher string literal.
fn lit(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The embedding the fixture gives an id that has no special case.
fn vector_of(i: usize) -> Vec<f32> {
    vec![i as f32 / 4.0, 0.5, -1.25]
}

/// Builds the `media` graph: every id above, the special embeddings, and four nodes whose
/// ids are not ids.
fn build(c: &mut redis::Connection) {
    let special = |id: &str| -> Option<&str> {
        Some(match id {
            "2" => "null",
            "3" => "'text'",
            "7" => "[]",
            "100" => "[1, 2, 3, 4]",
            "\"ab\"" => "[1, 'x', 2]",
            "\"é\"" => "[1.0, 1e300, 0]",
            "\"A\"" => "vecf32([1.0, 2.0, 3.0, 4.0])",
            "-5" => "[1, 2.5, -3]",
            _ => return None,
        })
    };
    let ints = int_ids().into_iter().map(|i| i.to_string());
    let strs = STR_IDS.iter().map(|s| lit(s));
    for (i, id) in ints.chain(strs).enumerate() {
        let v = vector_of(i);
        let embedding = special(&id)
            .map(str::to_string)
            .unwrap_or_else(|| format!("vecf32([{:?}, {:?}, {:?}])", v[0], v[1], v[2]));
        graph_query(
            c,
            "media",
            format!("CREATE (:Media {{id: {id}, embedding: {embedding}, n: {i}}})"),
        );
    }
    for bad in ["2.5", "[1, 2]", "true"] {
        graph_query(
            c,
            "media",
            format!("CREATE (:Media {{id: {bad}, embedding: [1.0, 2.0, 3.0]}})"),
        );
    }
    graph_query(c, "media", "CREATE (:Media {embedding: [1.0, 2.0, 3.0]})");
    graph_query(c, "media", "CREATE (:Other {id: 1})");
}

fn expected_ids() -> (Vec<VectorId>, Vec<VectorId>) {
    let ints = int_ids().into_iter().map(VectorId::Int).collect();
    let mut strs: Vec<VectorId> = STR_IDS.iter().map(|&s| VectorId::from(s)).collect();
    strs.sort();
    (ints, strs)
}

async fn check_walks(source: &FalkorDbVectorSource) {
    let (ints, strs) = expected_ids();
    for (cut_every, limit) in [(1, 1), (3, 2), (7, 5), (100, 50), (1000, 1000)] {
        let read = walk(source, IdKind::Int, cut_every, limit).await;
        assert_eq!(
            ids(&read),
            ints,
            "integers, cut every {cut_every}, pages of {limit}"
        );
        let read = walk(source, IdKind::Str, cut_every, limit).await;
        assert_eq!(
            ids(&read),
            strs,
            "strings, cut every {cut_every}, pages of {limit}"
        );
    }
    let items = by_id(walk(source, IdKind::Int, 5, 4).await);
    let (all_ints, _) = expected_ids();
    let position = |id: &VectorId| all_ints.iter().position(|x| x == id).unwrap();
    let id = VectorId::Int(BIG + 1);
    assert_eq!(items[&id], Embedding::Vector(vector_of(position(&id))));
    assert_eq!(
        items[&VectorId::Int(-5)],
        Embedding::Vector(vec![1.0, 2.5, -3.0])
    );
    assert_eq!(items[&VectorId::Int(2)], Embedding::Missing);
    assert!(invalid_with(&items[&VectorId::Int(3)], "string"));
    assert!(invalid_with(&items[&VectorId::Int(7)], "empty"));
    assert_eq!(
        items[&VectorId::Int(100)],
        Embedding::Vector(vec![1.0, 2.0, 3.0, 4.0])
    );
    let items = by_id(walk(source, IdKind::Str, 4, 3).await);
    assert!(invalid_with(
        &items[&VectorId::from("ab")],
        "component 1 is a string"
    ));
    assert!(invalid_with(&items[&VectorId::from("é")], "component 1"));
    assert_eq!(
        items[&VectorId::from("A")],
        Embedding::Vector(vec![1.0, 2.0, 3.0, 4.0])
    );
}

async fn check_describe_get_sample(source: &FalkorDbVectorSource) {
    let info = source.describe().await.unwrap();
    let (ints, strs) = expected_ids();
    let items = (ints.len() + strs.len()) as u64;
    assert_eq!(info.store, "falkordb");
    assert!(
        info.version.starts_with("redis 8.") && info.version.contains("FalkorDB 4."),
        "{}",
        info.version
    );
    assert_eq!(
        (info.int_ids, info.str_ids, info.bad_ids),
        (ints.len() as u64, strs.len() as u64, 4)
    );
    assert_eq!(info.items, items);
    // Not embeddings: null, 'text', []. Lists of the wrong components still have a dimension.
    assert_eq!(info.with_embedding, items - 3);
    assert_eq!(info.dimensions.get(&4), Some(&2));
    assert_eq!(info.dimensions.get(&3), Some(&(items - 5)));
    assert_eq!(info.dimension(), None);

    let wanted = [
        VectorId::Int(BIG + 1),
        VectorId::Int(424_242),
        VectorId::from("a\"b"),
        VectorId::from("a\u{1}b"),
        VectorId::from("nope"),
        VectorId::Int(2),
    ];
    let got = by_id(source.get(&wanted).await.unwrap());
    let keys: Vec<&VectorId> = got.keys().collect();
    assert_eq!(
        keys,
        vec![&wanted[5], &wanted[0], &wanted[3], &wanted[2]],
        "exact ids only, the neighbour 2^53 left out"
    );
    assert_eq!(got[&VectorId::Int(2)], Embedding::Missing);

    let sample = source.sample(5).await.unwrap();
    assert_eq!(sample.len(), 5);
    let every = source.sample(10_000).await.unwrap();
    assert_eq!(every.len() as u64, items);
    for id in sample {
        assert!(ints.contains(&id) || strs.contains(&id), "{id:?}");
    }
}

#[tokio::test]
async fn falkordb_items_are_read_once_in_order_with_and_without_an_index() {
    let server = FalkorDbServer::start();
    let mut c = conn(&server);
    build(&mut c);
    let url = format!("{}/media", server.url());
    let source = FalkorDbVectorSource::open(&url, GraphVectorOptions::default())
        .await
        .unwrap();
    assert!(!source.indexed());
    check_walks(&source).await;
    check_describe_get_sample(&source).await;

    // The index compares through doubles and strings wrongly: the results must not change.
    graph_query(&mut c, "media", "CREATE INDEX FOR (n:Media) ON (n.id)");
    for _ in 0..100 {
        let status: redis::Value = redis::cmd("GRAPH.RO_QUERY")
            .arg("media")
            .arg("CALL db.indexes() YIELD status RETURN status")
            .query(&mut c)
            .unwrap();
        if format!("{status:?}").contains("OPERATIONAL") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let source = FalkorDbVectorSource::open(&url, GraphVectorOptions::default())
        .await
        .unwrap();
    assert!(source.indexed());
    check_walks(&source).await;
    check_describe_get_sample(&source).await;
}

#[tokio::test]
async fn falkordb_string_ids_that_are_not_utf8_are_skipped_without_stalling() {
    let server = FalkorDbServer::start();
    let mut c = conn(&server);
    for id in [&b"a"[..], b"b\xff", b"b\xfe", b"c"] {
        let mut q = b"CREATE (:Media {id: \"".to_vec();
        q.extend_from_slice(id);
        q.extend_from_slice(b"\", embedding: [1.0]})");
        graph_query(&mut c, "g", q);
    }
    let source = FalkorDbVectorSource::open(
        &format!("{}/g", server.url()),
        GraphVectorOptions::default(),
    )
    .await
    .unwrap();
    for limit in [1, 2, 10] {
        let read = walk(&source, IdKind::Str, 1, limit).await;
        assert_eq!(
            ids(&read),
            vec![VectorId::from("a"), VectorId::from("c")],
            "pages of {limit}"
        );
    }
}

#[tokio::test]
async fn falkordb_hostile_names_work_or_are_refused_clearly() {
    let server = FalkorDbServer::start();
    let mut c = conn(&server);
    graph_query(
        &mut c,
        "my graph",
        "CREATE (:`Mé dia) RETURN 1 //` {`i d`: 'x', `emb \"é'`: [0.5, 1]}), (:`Mé dia) RETURN 1 //` {`i d`: 1, `emb \"é'`: vecf32([2.0])})",
    );
    let url = format!("{}/my%20graph", server.url());
    let options = GraphVectorOptions {
        label: "Mé dia) RETURN 1 //".into(),
        id_property: "i d".into(),
        embedding_property: "emb \"é'".into(),
    };
    let source = FalkorDbVectorSource::open(&url, options.clone())
        .await
        .unwrap();
    let read = by_id(walk(&source, IdKind::Str, 1, 10).await);
    assert_eq!(
        read[&VectorId::from("x")],
        Embedding::Vector(vec![0.5, 1.0])
    );
    let read = by_id(walk(&source, IdKind::Int, 1, 10).await);
    assert_eq!(read[&VectorId::Int(1)], Embedding::Vector(vec![2.0]));
    let info = source.describe().await.unwrap();
    assert_eq!((info.items, info.with_embedding), (2, 2));
    assert_eq!(
        info.dimensions.into_iter().collect::<Vec<_>>(),
        vec![(1, 1), (2, 1)]
    );

    let refused = |options: GraphVectorOptions, url: String| async move {
        let e = FalkorDbVectorSource::open(&url, options).await.unwrap_err();
        assert_eq!(e.class(), ErrorClass::User, "{e}");
        e.to_string()
    };
    let backquote = GraphVectorOptions {
        label: "a`b".into(),
        ..options.clone()
    };
    let e = refused(backquote, url.clone()).await;
    assert!(e.contains("backquote"), "{e}");
    let e = refused(GraphVectorOptions::default(), url.clone()).await;
    assert!(
        e.contains("no nodes labelled \"Media\"") && e.contains("Mé dia"),
        "{e}"
    );
    let e = refused(options.clone(), format!("{}/nope", server.url())).await;
    assert!(e.contains("no graph \"nope\""), "{e}");
    let e = refused(options.clone(), server.url()).await;
    assert!(e.contains("name the graph"), "{e}");
    let _: () = redis::cmd("SET").arg("str").arg("x").query(&mut c).unwrap();
    let e = refused(options, format!("{}/str", server.url())).await;
    assert!(e.contains("not a FalkorDB graph"), "{e}");
}
