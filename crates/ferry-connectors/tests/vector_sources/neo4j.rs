//! Neo4j: no server can be installed on Ferry's build machines, so this wire test runs only
//! where `FERRY_TEST_NEO4J_URI` names a disposable database
//! (`neo4j://neo4j:password@host:7687`) and says so when it is skipped. The query text it
//! sends is unit-tested in `graph_vectors.rs`.

use ferry_connectors::graph_vectors::GraphVectorOptions;
use ferry_connectors::neo4j::Neo4jVectorSource;
use ferry_core::jobs::vectors::{Embedding, IdKind, VectorId, VectorSource};
use ferry_testkit::unique_name;
use neo4rs::{BoltType, ConfigBuilder, Graph, query};

use crate::{by_id, ids, invalid_with, walk};

async fn connect(url: &str) -> Graph {
    let u = url::Url::parse(url).unwrap();
    let mut config = ConfigBuilder::default()
        .uri(format!(
            "{}:{}",
            u.host_str().unwrap(),
            u.port().unwrap_or(7687)
        ))
        .user(if u.username().is_empty() {
            "neo4j"
        } else {
            u.username()
        })
        .password(u.password().unwrap_or(""));
    let db = u.path().trim_start_matches('/');
    if !db.is_empty() {
        config = config.db(db);
    }
    Graph::connect(config.build().unwrap()).await.unwrap()
}

#[tokio::test]
async fn neo4j_items_are_read_once_in_order() {
    let Ok(url) = std::env::var("FERRY_TEST_NEO4J_URI") else {
        eprintln!(
            "SKIPPED neo4j_items_are_read_once_in_order: FERRY_TEST_NEO4J_URI is not set (no Neo4j server here)"
        );
        return;
    };
    let graph = connect(&url).await;
    // A label of its own, with a backquote and a space (written twice-quoted in Cypher).
    let label = format!("{} `x y`", unique_name("FerryVectors"));
    let quoted = format!("`{}`", label.replace('`', "``"));
    let ints: Vec<i64> = vec![
        i64::MIN,
        -(1 << 53) - 1,
        -5,
        0,
        1,
        2,
        3,
        (1 << 53) + 1,
        i64::MAX,
    ];
    let strs = ["", "A", "a", "a\"b", "a`b", "é", "𝄞", "it's"];
    let create = format!("CREATE (n:{quoted}) SET n.id = $id, n.embedding = $embedding");
    let vector = |i: usize| BoltType::from(vec![i as f64 / 4.0, 0.5, -1.25]);
    for (i, id) in ints.iter().enumerate() {
        let embedding = match *id {
            1 => BoltType::Null(neo4rs::BoltNull),
            2 => BoltType::from("text"),
            3 => BoltType::from(vec!["a", "b"]),
            _ => vector(i),
        };
        let q = query(&create)
            .param("id", *id)
            .param("embedding", embedding);
        graph.run(q).await.unwrap();
    }
    for (i, id) in strs.iter().enumerate() {
        let q = query(&create)
            .param("id", *id)
            .param("embedding", vector(i));
        graph.run(q).await.unwrap();
    }
    for bad in [BoltType::from(2.5_f64), BoltType::from(vec![1_i64, 2])] {
        let q = query(&create)
            .param("id", bad)
            .param("embedding", vector(0));
        graph.run(q).await.unwrap();
    }

    let options = GraphVectorOptions {
        label: label.clone(),
        ..GraphVectorOptions::default()
    };
    let source = Neo4jVectorSource::open(&url, options).await.unwrap();
    let want_ints: Vec<VectorId> = ints.iter().map(|&i| VectorId::Int(i)).collect();
    let mut want_strs: Vec<VectorId> = strs.iter().map(|&s| VectorId::from(s)).collect();
    want_strs.sort();
    for (cut_every, limit) in [(1, 1), (2, 3), (100, 100)] {
        assert_eq!(
            ids(&walk(&source, IdKind::Int, cut_every, limit).await),
            want_ints
        );
        assert_eq!(
            ids(&walk(&source, IdKind::Str, cut_every, limit).await),
            want_strs
        );
    }
    let items = by_id(walk(&source, IdKind::Int, 3, 2).await);
    assert_eq!(items[&VectorId::Int(1)], Embedding::Missing);
    assert!(invalid_with(&items[&VectorId::Int(2)], "string"));
    assert!(invalid_with(
        &items[&VectorId::Int(3)],
        "component 0 is a string"
    ));
    assert_eq!(
        items[&VectorId::Int(i64::MAX)],
        Embedding::Vector(vec![2.0, 0.5, -1.25])
    );

    let info = source.describe().await.unwrap();
    let n = (ints.len() + strs.len()) as u64;
    assert_eq!((info.items, info.bad_ids), (n, 2));
    assert_eq!(
        (info.int_ids, info.str_ids),
        (ints.len() as u64, strs.len() as u64)
    );
    assert_eq!(info.with_embedding, n - 2);
    let got = source
        .get(&[
            VectorId::Int((1 << 53) + 1),
            VectorId::from("a`b"),
            VectorId::Int(7),
        ])
        .await
        .unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(source.sample(3).await.unwrap().len(), 3);

    graph
        .run(query(&format!("MATCH (n:{quoted}) DETACH DELETE n")))
        .await
        .unwrap();
}
