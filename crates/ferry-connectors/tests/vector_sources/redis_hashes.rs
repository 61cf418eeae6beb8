//! Redis hashes: keys matching a glob, ids after the literal prefix, FLOAT32 blob fields.

use ferry_connectors::redis::RedisHashVectorSource;
use ferry_core::error::{Classify, ErrorClass};
use ferry_core::jobs::vectors::{Embedding, IdKind, VectorId, VectorSource};
use ferry_testkit::RedisServer;
use redis::Commands;

use crate::{by_id, ids, invalid_with, walk};

fn blob(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

const INTS: &[i64] = &[
    i64::MIN,
    -1000,
    -5,
    -1,
    0,
    1,
    2,
    3,
    7,
    100,
    1 << 53,
    i64::MAX,
];
/// Strings, among them texts that look like integers but are not canonical.
const STRS: &[&str] = &[
    "042", "+5", "-0", "", "a", "A", "a b", "a\"b", "a\nb", "é", "𝄞", "x:y", "bad", "nan",
    "nofield", "string", "wide",
];

fn vector_of(i: usize) -> Vec<f32> {
    vec![i as f32 / 4.0, 0.5, -1.25]
}

fn build(c: &mut redis::Connection) {
    let texts = INTS.iter().map(|i| i.to_string());
    for (i, id) in texts.chain(STRS.iter().map(|s| s.to_string())).enumerate() {
        let key = format!("media:{id}");
        let written: redis::RedisResult<()> = match id.as_str() {
            "bad" => c.hset(&key, "embedding", &[1u8, 2, 3, 4, 5][..]),
            "nan" => c.hset(&key, "embedding", blob(&[1.0, f32::NAN])),
            "nofield" => c.hset(&key, "other", "x"),
            "string" => c.set(&key, blob(&[1.0])),
            "wide" => c.hset(&key, "embedding", blob(&[1.0, 2.0, 3.0, 4.0])),
            _ => c.hset(&key, "embedding", blob(&vector_of(i))),
        };
        written.unwrap();
    }
    let _: () = c
        .hset(&b"media:\xff"[..], "embedding", blob(&[1.0]))
        .unwrap();
    let _: () = c.hset("other:1", "embedding", blob(&[1.0])).unwrap();
}

fn expected() -> (Vec<VectorId>, Vec<VectorId>) {
    let ints = INTS.iter().map(|&i| VectorId::Int(i)).collect();
    let mut strs: Vec<VectorId> = STRS.iter().map(|&s| VectorId::from(s)).collect();
    strs.sort();
    (ints, strs)
}

#[tokio::test]
async fn redis_hashes_are_read_once_in_order() {
    let server = RedisServer::start();
    let mut c = server.conn();
    build(&mut c);
    let source = RedisHashVectorSource::open(&server.url(), "media:*", "embedding")
        .await
        .unwrap();
    let (ints, strs) = expected();
    for (cut_every, limit) in [(1, 1), (3, 2), (5, 4), (100, 100)] {
        assert_eq!(
            ids(&walk(&source, IdKind::Int, cut_every, limit).await),
            ints
        );
        assert_eq!(
            ids(&walk(&source, IdKind::Str, cut_every, limit).await),
            strs
        );
    }
    let items = by_id(walk(&source, IdKind::Str, 2, 3).await);
    assert!(invalid_with(
        &items[&VectorId::from("bad")],
        "multiple of 4"
    ));
    assert!(invalid_with(&items[&VectorId::from("nan")], "component 1"));
    assert_eq!(items[&VectorId::from("nofield")], Embedding::Missing);
    assert!(invalid_with(
        &items[&VectorId::from("string")],
        "not a hash"
    ));
    assert_eq!(
        items[&VectorId::from("wide")],
        Embedding::Vector(vec![1.0, 2.0, 3.0, 4.0])
    );
    let items = by_id(walk(&source, IdKind::Int, 2, 3).await);
    assert_eq!(items[&VectorId::Int(-5)], Embedding::Vector(vector_of(2)));

    let info = source.describe().await.unwrap();
    assert_eq!(info.store, "redis");
    assert!(info.version.starts_with("redis "), "{}", info.version);
    let n = (INTS.len() + STRS.len()) as u64;
    assert_eq!(
        (info.items, info.int_ids, info.str_ids, info.bad_ids),
        (n, INTS.len() as u64, STRS.len() as u64, 1)
    );
    // Not embeddings: 5 bytes, no field, a string key.
    assert_eq!(info.with_embedding, n - 3);
    assert_eq!(info.dimensions.get(&4), Some(&1));
    assert_eq!(info.dimensions.get(&2), Some(&1));
    assert_eq!(info.dimensions.get(&3), Some(&(n - 5)));

    let got = by_id(
        source
            .get(&[
                VectorId::Int(-5),
                VectorId::from("042"),
                VectorId::from("42"),
                VectorId::from("nope"),
                VectorId::Int(999),
                VectorId::from("nofield"),
            ])
            .await
            .unwrap(),
    );
    assert_eq!(
        got.keys().cloned().collect::<Vec<_>>(),
        vec![
            VectorId::Int(-5),
            VectorId::from("042"),
            VectorId::from("nofield")
        ]
    );
    assert_eq!(got[&VectorId::from("nofield")], Embedding::Missing);
    assert_eq!(source.sample(5).await.unwrap().len(), 5);
    assert_eq!(source.sample(1000).await.unwrap().len() as u64, n);

    // A key deleted after the keys were listed is no item (not a missing embedding).
    let _: () = c.del("media:7").unwrap();
    let read = ids(&walk(&source, IdKind::Int, 100, 100).await);
    assert!(!read.contains(&VectorId::Int(7)) && read.len() == INTS.len() - 1);
    assert!(source.get(&[VectorId::Int(7)]).await.unwrap().is_empty());
}

#[tokio::test]
async fn redis_ids_come_after_the_literal_prefix_of_the_pattern() {
    let server = RedisServer::start();
    let mut c = server.conn();
    for key in ["vec:1:e", "vec:2:e", "vec:3:f", "vec:[x]:e"] {
        let _: () = c.hset(key, "v", blob(&[1.0])).unwrap();
    }
    let source = RedisHashVectorSource::open(&server.url(), "vec:*:e", "v")
        .await
        .unwrap();
    let read = ids(&walk(&source, IdKind::Str, 1, 1).await);
    assert_eq!(
        read,
        vec![
            VectorId::from("1:e"),
            VectorId::from("2:e"),
            VectorId::from("[x]:e")
        ]
    );
    assert!(walk(&source, IdKind::Int, 1, 1).await.is_empty());
    let got = source
        .get(&[VectorId::from("3:f"), VectorId::from("2:e")])
        .await
        .unwrap();
    assert_eq!(ids(&got), vec![VectorId::from("2:e")]);
}

#[tokio::test]
async fn redis_clusters_and_empty_names_are_refused_clearly() {
    let refused = |url: String, pattern: &'static str| async move {
        let e = RedisHashVectorSource::open(&url, pattern, "embedding")
            .await
            .unwrap_err();
        assert_eq!(e.class(), ErrorClass::User, "{e}");
        e.to_string()
    };
    let e = refused("redis+cluster://127.0.0.1:1".into(), "media:*").await;
    assert!(e.contains("not a Cluster"), "{e}");
    let node = RedisServer::start_with(&["--cluster-enabled", "yes"]);
    let e = refused(node.url(), "media:*").await;
    assert!(e.contains("Cluster node"), "{e}");
    let server = RedisServer::start();
    let e = refused(server.url(), "").await;
    assert!(e.contains("key pattern"), "{e}");
    let e = RedisHashVectorSource::open("redis://127.0.0.1:1", "m:*", "e")
        .await
        .unwrap_err();
    assert_eq!(e.class(), ErrorClass::External, "{e}");
}
