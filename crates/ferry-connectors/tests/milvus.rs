//! The Milvus target against a real Milvus Lite server (`milvus-lite server`, started per test
//! binary by ferry-testkit).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use ferry_connectors::milvus::{MilvusIndex, MilvusMetric, MilvusOptions, MilvusTarget};
use ferry_core::jobs::vectors::{IdKind, Quantization, VectorError, VectorId, VectorTarget};
use ferry_testkit::{MilvusServer, test_vector, unique_name};

/// One server for the binary: each test uses its own collection.
fn server() -> &'static MilvusServer {
    static SERVER: OnceLock<MilvusServer> = OnceLock::new();
    SERVER.get_or_init(MilvusServer::start)
}

fn collection(prefix: &str) -> String {
    unique_name(prefix).replace('-', "_")
}

async fn target(name: &str) -> MilvusTarget {
    MilvusTarget::open(&server().url(), name, MilvusOptions::default())
        .await
        .expect("open the Milvus target")
}

fn items(ids: &[VectorId], dim: usize) -> Vec<(VectorId, Vec<f32>)> {
    ids.iter()
        .enumerate()
        .map(|(i, id)| (id.clone(), test_vector(i as u64 + 1, dim)))
        .collect()
}

#[tokio::test]
async fn integer_ids_round_trip_exactly() {
    let t = target(&collection("ints")).await;
    t.prepare(8, IdKind::Int).await.unwrap();
    let ids: Vec<VectorId> = [-5_i64, 0, 1, 42, i64::MAX]
        .into_iter()
        .map(VectorId::Int)
        .collect();
    let written = items(&ids, 8);
    assert!(t.upsert(&written).await.unwrap().is_empty());
    let mut asked = ids.clone();
    asked.push(VectorId::Int(7));
    let got = t.get(&asked).await.unwrap();
    for ((_, v), g) in written.iter().zip(&got) {
        assert_eq!(g.as_ref(), Some(v), "bit-exact floats");
    }
    assert_eq!(got[5], None, "an id never written");
    let info = t.describe().await.unwrap();
    assert!(info.exists);
    assert_eq!(info.store, "milvus");
    assert!(!info.version.is_empty());
    assert_eq!(info.dimension, Some(8));
    assert_eq!(info.id_kind, Some(IdKind::Int));
    assert_eq!(info.metric.as_deref(), Some("cosine"));
    assert_eq!(info.quantization, Some(Quantization::NoQuant));
    assert_eq!(info.items, 5);
    assert_eq!(t.quantization(), Quantization::NoQuant);
    t.drop_all().await.unwrap();
}

#[tokio::test]
async fn string_ids_with_quotes_backslashes_and_unicode_round_trip() {
    let t = target(&collection("strs")).await;
    t.prepare(4, IdKind::Str).await.unwrap();
    let ids: Vec<VectorId> = [
        "plain",
        r#"say "hi""#,
        r"back\slash",
        r#"\"#,
        r#"\""#,
        "it's",
        "tab\there",
        "line\nbreak",
        "é☃ 日本語 🚀",
        "",
        "id in [1]",
    ]
    .into_iter()
    .map(VectorId::from)
    .collect();
    let written = items(&ids, 4);
    assert!(t.upsert(&written).await.unwrap().is_empty());
    let got = t.get(&ids).await.unwrap();
    for ((id, v), g) in written.iter().zip(&got) {
        assert_eq!(g.as_ref(), Some(v), "{id:?}");
    }
    let mut all = t.ids(IdKind::Str).await.unwrap();
    all.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(all, expected);
    assert_eq!(t.delete(&ids[1..4]).await.unwrap(), 3);
    let got = t.get(&ids).await.unwrap();
    assert_eq!(got.iter().filter(|g| g.is_none()).count(), 3);
    assert!(got[1].is_none() && got[2].is_none() && got[3].is_none());
    t.drop_all().await.unwrap();
}

#[tokio::test]
async fn upserting_twice_keeps_one_row_per_id_with_the_last_vector() {
    let t = target(&collection("twice")).await;
    t.prepare(4, IdKind::Int).await.unwrap();
    let ids: Vec<VectorId> = (0..100).map(VectorId::Int).collect();
    let first = items(&ids, 4);
    assert!(t.upsert(&first).await.unwrap().is_empty());
    let second: Vec<_> = ids
        .iter()
        .map(|id| (id.clone(), vec![0.5, 0.25, 0.125, 1.0]))
        .collect();
    assert!(t.upsert(&second).await.unwrap().is_empty());
    // The same id twice in one batch: the last one wins.
    let dup = vec![
        (VectorId::Int(3), vec![1.0, 0.0, 0.0, 0.0]),
        (VectorId::Int(3), vec![0.0, 1.0, 0.0, 0.0]),
    ];
    assert!(t.upsert(&dup).await.unwrap().is_empty());
    assert_eq!(t.describe().await.unwrap().items, 100);
    let got = t.get(&[VectorId::Int(3), VectorId::Int(4)]).await.unwrap();
    assert_eq!(got[0], Some(vec![0.0, 1.0, 0.0, 0.0]));
    assert_eq!(got[1], Some(vec![0.5, 0.25, 0.125, 1.0]));
    t.drop_all().await.unwrap();
}

#[tokio::test]
async fn delete_counts_only_ids_that_existed() {
    let t = target(&collection("delete")).await;
    t.prepare(3, IdKind::Int).await.unwrap();
    let ids: Vec<VectorId> = (1..=10).map(VectorId::Int).collect();
    t.upsert(&items(&ids, 3)).await.unwrap();
    let gone = [VectorId::Int(2), VectorId::Int(5), VectorId::Int(99)];
    assert_eq!(t.delete(&gone).await.unwrap(), 2);
    assert_eq!(t.delete(&gone).await.unwrap(), 0);
    assert_eq!(t.describe().await.unwrap().items, 8);
    let left = t.ids(IdKind::Int).await.unwrap();
    assert_eq!(left.len(), 8);
    assert!(!left.contains(&VectorId::Int(2)) && !left.contains(&VectorId::Int(5)));
    t.drop_all().await.unwrap();
}

#[tokio::test]
async fn ids_walk_more_than_one_page_in_order() {
    let t = target(&collection("pages")).await;
    t.prepare(2, IdKind::Int).await.unwrap();
    // Integer pages hold 16384 ids: write more than two pages, out of order.
    let n = 40_000_i64;
    let ids: Vec<VectorId> = (0..n)
        .map(|i| VectorId::Int((i * 7919) % n - 100))
        .collect();
    let written: Vec<_> = ids.iter().map(|id| (id.clone(), vec![1.0, 0.5])).collect();
    for chunk in written.chunks(10_000) {
        assert!(t.upsert(chunk).await.unwrap().is_empty());
    }
    let all = t.ids(IdKind::Int).await.unwrap();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(all, expected, "every id once, in order");
    let sample = t.sample(50, IdKind::Int).await.unwrap();
    assert_eq!(sample.len(), 50);
    let mut distinct = sample.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 50);
    assert!(sample.iter().all(|id| expected.binary_search(id).is_ok()));
    t.drop_all().await.unwrap();
}

#[tokio::test]
async fn string_ids_walk_more_than_one_page() {
    let t = target(&collection("strpages")).await;
    t.prepare(2, IdKind::Str).await.unwrap();
    // String pages hold about 6000 ids.
    let ids: Vec<VectorId> = (0..13_000)
        .map(|i| VectorId::Str(format!("item:{i:05}:\"q\"")))
        .collect();
    let written: Vec<_> = ids.iter().map(|id| (id.clone(), vec![0.1, 0.2])).collect();
    assert!(t.upsert(&written).await.unwrap().is_empty());
    assert_eq!(t.ids(IdKind::Str).await.unwrap(), ids);
    t.drop_all().await.unwrap();
}

#[tokio::test]
async fn prepare_refuses_a_collection_that_does_not_fit() {
    let name = collection("mismatch");
    let t = target(&name).await;
    t.prepare(4, IdKind::Int).await.unwrap();
    t.prepare(4, IdKind::Int)
        .await
        .expect("the same layout again is fine");
    match t.prepare(8, IdKind::Int).await {
        Err(VectorError::Mismatch(m)) => {
            assert!(
                m.contains("4-dimensional") && m.contains("8-dimensional"),
                "{m}"
            )
        }
        other => panic!("a dimension mismatch: {other:?}"),
    }
    match t.prepare(4, IdKind::Str).await {
        Err(VectorError::Mismatch(m)) => assert!(m.contains("string"), "{m}"),
        other => panic!("an id kind mismatch: {other:?}"),
    }
    let options = MilvusOptions {
        metric: MilvusMetric::L2,
        ..MilvusOptions::default()
    };
    let l2 = MilvusTarget::open(&server().url(), &name, options)
        .await
        .unwrap();
    match l2.prepare(4, IdKind::Int).await {
        Err(VectorError::Mismatch(m)) => assert!(m.contains("cosine"), "{m}"),
        other => panic!("a metric mismatch: {other:?}"),
    }
    t.drop_all().await.unwrap();
}

#[tokio::test]
async fn items_that_do_not_fit_are_item_failures() {
    let t = target(&collection("failures")).await;
    t.prepare(3, IdKind::Int).await.unwrap();
    let batch = vec![
        (VectorId::Int(1), vec![1.0, 0.0, 0.0]),
        (VectorId::Int(2), vec![1.0, 0.0]),
        (VectorId::Int(3), vec![f32::INFINITY, 0.0, 0.0]),
        (VectorId::from("four"), vec![0.0, 0.0, 1.0]),
        (VectorId::Int(5), vec![0.0, 1.0, 0.0]),
    ];
    let failures = t.upsert(&batch).await.unwrap();
    let failed: Vec<_> = failures.iter().map(|f| f.id.clone()).collect();
    assert_eq!(
        failed,
        vec![VectorId::Int(2), VectorId::Int(3), VectorId::from("four")]
    );
    assert!(
        failures[0].error.contains("2 dimensions"),
        "{}",
        failures[0].error
    );
    assert_eq!(t.describe().await.unwrap().items, 2);
    t.drop_all().await.unwrap();
}

#[tokio::test]
async fn search_finds_the_item_itself_first() {
    let t = target(&collection("search")).await;
    t.prepare(16, IdKind::Int).await.unwrap();
    let ids: Vec<VectorId> = (0..200).map(VectorId::Int).collect();
    let written = items(&ids, 16);
    t.upsert(&written).await.unwrap();
    for probe in [0_usize, 57, 199] {
        let hits = t.search(&written[probe].1, 5, IdKind::Int).await.unwrap();
        assert_eq!(hits.len(), 5);
        assert_eq!(hits[0].0, written[probe].0);
        assert!(
            (hits[0].1 - 1.0).abs() < 1e-4,
            "cosine of itself: {}",
            hits[0].1
        );
        assert!(hits.windows(2).all(|w| w[0].1 >= w[1].1), "best first");
    }
    assert!(matches!(
        t.search(&[1.0, 2.0], 3, IdKind::Int).await,
        Err(VectorError::Mismatch(_))
    ));
    t.drop_all().await.unwrap();
}

#[tokio::test]
async fn an_hnsw_index_for_l2_ranks_the_item_itself_first() {
    let options = MilvusOptions {
        metric: MilvusMetric::L2,
        index: MilvusIndex::Hnsw {
            m: 16,
            ef_construction: 200,
        },
        ..MilvusOptions::default()
    };
    let t = MilvusTarget::open(&server().url(), &collection("hnsw"), options)
        .await
        .unwrap();
    t.prepare(8, IdKind::Str).await.unwrap();
    let ids: Vec<VectorId> = (0..300).map(|i| VectorId::Str(format!("n{i}"))).collect();
    let written = items(&ids, 8);
    t.upsert(&written).await.unwrap();
    let hits = t.search(&written[123].1, 3, IdKind::Str).await.unwrap();
    assert_eq!(hits[0].0, VectorId::from("n123"));
    assert!(
        hits[0].1.abs() < 1e-4,
        "L2 distance to itself: {}",
        hits[0].1
    );
    assert!(hits.windows(2).all(|w| w[0].1 <= w[1].1), "closest first");
    assert_eq!(t.describe().await.unwrap().metric.as_deref(), Some("l2"));
    t.drop_all().await.unwrap();
}

#[tokio::test]
async fn drop_all_removes_the_collection() {
    let t = target(&collection("dropped")).await;
    t.prepare(4, IdKind::Int).await.unwrap();
    t.upsert(&items(&[VectorId::Int(1)], 4)).await.unwrap();
    t.drop_all().await.unwrap();
    let info = t.describe().await.unwrap();
    assert!(!info.exists);
    assert_eq!((info.dimension, info.items), (None, 0));
    assert!(t.ids(IdKind::Int).await.unwrap().is_empty());
    assert_eq!(t.get(&[VectorId::Int(1)]).await.unwrap(), vec![None]);
    t.drop_all().await.expect("dropping twice is fine");
    // A new layout in the same name.
    t.prepare(2, IdKind::Str).await.unwrap();
    assert_eq!(t.describe().await.unwrap().id_kind, Some(IdKind::Str));
    t.drop_all().await.unwrap();
}

#[tokio::test]
async fn an_unreachable_server_is_named_without_its_password() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let options = MilvusOptions {
        connect_timeout: Duration::from_secs(2),
        ..MilvusOptions::default()
    };
    let url = format!("milvus://root:hunter2@127.0.0.1:{port}");
    let started = Instant::now();
    match MilvusTarget::open(&url, "items", options).await {
        Err(e @ VectorError::Unreachable { .. }) => {
            let text = e.to_string();
            assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
            assert!(!text.contains("hunter2"), "{text}");
            assert!(text.contains("check that Milvus runs"), "{text}");
        }
        other => panic!("unreachable: {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(30));
    for bad in ["redis://127.0.0.1:1", "milvus://127.0.0.1:1/a/b"] {
        assert!(matches!(
            MilvusTarget::open(bad, "items", MilvusOptions::default()).await,
            Err(VectorError::Config(_))
        ));
    }
    assert!(matches!(
        MilvusTarget::open(&server().url(), "bad-name", MilvusOptions::default()).await,
        Err(VectorError::Config(_))
    ));
}

#[tokio::test]
async fn a_server_that_goes_away_is_unreachable_then_back() {
    let mut own = MilvusServer::start();
    let options = MilvusOptions {
        retry_timeout: Duration::from_secs(2),
        ..MilvusOptions::default()
    };
    let t = MilvusTarget::open(&own.url(), "restarts", options)
        .await
        .unwrap();
    t.prepare(2, IdKind::Int).await.unwrap();
    t.upsert(&items(&[VectorId::Int(1)], 2)).await.unwrap();
    own.stop();
    match t.upsert(&items(&[VectorId::Int(2)], 2)).await {
        Err(VectorError::Unreachable { store, .. }) => {
            assert!(store.contains(&own.port().to_string()))
        }
        other => panic!("unreachable after stop: {other:?}"),
    }
    own.restart();
    let back = t.get(&[VectorId::Int(1)]).await.unwrap();
    assert!(back[0].is_some(), "the data survived the restart");
}
