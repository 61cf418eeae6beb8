//! PostgreSQL: a table with integer or text ids and a `real[]` / `double precision[]` column.

use ferry_connectors::postgres::vectors::PgVectorSource;
use ferry_core::error::{Classify, ErrorClass};
use ferry_core::jobs::vectors::{Embedding, IdKind, VectorId, VectorSource};
use ferry_testkit::PgDatabase;

use crate::{by_id, ids, invalid_with, walk};

async fn client(db: &PgDatabase) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(&db.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
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
    4,
    5,
    6,
    7,
    100,
    1 << 53,
    i64::MAX,
];

#[tokio::test]
async fn postgres_integer_ids_are_read_once_in_order() {
    let db = PgDatabase::create();
    let c = client(&db).await;
    c.batch_execute(
        "CREATE TABLE items (id bigint, embedding real[], note text); CREATE INDEX ON items (id)",
    )
    .await
    .unwrap();
    for &id in INTS {
        let embedding = match id {
            1 => "NULL",
            2 => "'{}'",
            3 => "'{{1,2},{3,4}}'",
            4 => "'{1,NULL,3}'",
            5 => "'{1,NaN,3}'",
            6 => "'{1,2,3,4}'",
            7 => "'[0:2]={7,8,9}'",
            _ => "ARRAY[0.5, -1.25, 2]::real[]",
        };
        c.execute(
            &format!("INSERT INTO items VALUES ($1, {embedding})"),
            &[&id],
        )
        .await
        .unwrap();
    }
    c.batch_execute("INSERT INTO items VALUES (NULL, '{1,2,3}'), (NULL, NULL)")
        .await
        .unwrap();
    let source = PgVectorSource::open(&db.url(), "ITEMS", "Id", "embedding")
        .await
        .unwrap();
    assert_eq!(source.id_kind(), IdKind::Int);
    let want: Vec<VectorId> = INTS.iter().map(|&i| VectorId::Int(i)).collect();
    for (cut_every, limit) in [(1, 1), (3, 2), (4, 5), (100, 100)] {
        assert_eq!(
            ids(&walk(&source, IdKind::Int, cut_every, limit).await),
            want
        );
    }
    assert!(walk(&source, IdKind::Str, 1, 10).await.is_empty());
    let items = by_id(walk(&source, IdKind::Int, 2, 3).await);
    assert_eq!(items[&VectorId::Int(1)], Embedding::Missing);
    assert!(invalid_with(&items[&VectorId::Int(2)], "empty"));
    assert!(invalid_with(&items[&VectorId::Int(3)], "2-dimensional"));
    assert!(invalid_with(
        &items[&VectorId::Int(4)],
        "component 1 is NULL"
    ));
    assert!(invalid_with(&items[&VectorId::Int(5)], "component 1"));
    assert_eq!(
        items[&VectorId::Int(6)],
        Embedding::Vector(vec![1.0, 2.0, 3.0, 4.0])
    );
    assert_eq!(
        items[&VectorId::Int(7)],
        Embedding::Vector(vec![7.0, 8.0, 9.0])
    );
    assert_eq!(
        items[&VectorId::Int(i64::MIN)],
        Embedding::Vector(vec![0.5, -1.25, 2.0])
    );

    let info = source.describe().await.unwrap();
    let n = INTS.len() as u64;
    assert!(info.version.starts_with("PostgreSQL "), "{}", info.version);
    assert_eq!(
        (info.items, info.int_ids, info.str_ids, info.bad_ids),
        (n, n, 0, 2)
    );
    // Not embeddings: NULL, '{}', a 2-dimensional array.
    assert_eq!(info.with_embedding, n - 3);
    assert_eq!(info.dimensions.get(&4), Some(&1));
    assert_eq!(info.dimensions.get(&3), Some(&(n - 4)));

    let got = by_id(
        source
            .get(&[
                VectorId::Int(1 << 53),
                VectorId::Int(42),
                VectorId::from("1"),
                VectorId::Int(1),
            ])
            .await
            .unwrap(),
    );
    assert_eq!(
        got.keys().cloned().collect::<Vec<_>>(),
        vec![VectorId::Int(1), VectorId::Int(1 << 53)]
    );
    assert_eq!(source.sample(4).await.unwrap().len(), 4);
    assert_eq!(source.sample(100).await.unwrap().len() as u64, n);
}

#[tokio::test]
async fn postgres_text_ids_are_read_in_byte_order_from_hostile_names() {
    let db = PgDatabase::create();
    let c = client(&db).await;
    c.batch_execute(
        "CREATE SCHEMA \"Mé dia\"; CREATE TABLE \"Mé dia\".\"it\"\"ems; --\" (\"Key\" varchar(40) PRIMARY KEY, \"emb vec\" double precision[])",
    )
    .await
    .unwrap();
    let strs = [
        "", "A", "Z", "a", "a b", "a\"b", "a'b", "a\\b", "ab", "é", "ÿ", "€", "𝄞", "it's", "10",
        "9",
    ];
    for s in strs {
        let e: Vec<f64> = if s == "€" {
            vec![1.0, 1e300]
        } else {
            vec![0.25, 0.5]
        };
        c.execute(
            "INSERT INTO \"Mé dia\".\"it\"\"ems; --\" VALUES ($1, $2)",
            &[&s, &e],
        )
        .await
        .unwrap();
    }
    let source = PgVectorSource::open(
        &db.url(),
        "\"Mé dia\".\"it\"\"ems; --\"",
        "\"Key\"",
        "emb vec",
    )
    .await
    .unwrap();
    assert_eq!(source.id_kind(), IdKind::Str);
    let mut want: Vec<VectorId> = strs.iter().map(|&s| VectorId::from(s)).collect();
    want.sort();
    for (cut_every, limit) in [(1, 1), (3, 2), (100, 100)] {
        assert_eq!(
            ids(&walk(&source, IdKind::Str, cut_every, limit).await),
            want
        );
    }
    let items = by_id(walk(&source, IdKind::Str, 5, 4).await);
    assert!(invalid_with(&items[&VectorId::from("€")], "component 1"));
    assert_eq!(
        items[&VectorId::from("a'b")],
        Embedding::Vector(vec![0.25, 0.5])
    );
    let got = source
        .get(&[
            VectorId::from("a\"b"),
            VectorId::from("x\0y"),
            VectorId::Int(9),
        ])
        .await
        .unwrap();
    assert_eq!(ids(&got), vec![VectorId::from("a\"b")]);
    let info = source.describe().await.unwrap();
    assert_eq!(
        (info.items, info.str_ids, info.with_embedding),
        (16, 16, 16)
    );
    assert_eq!(info.dimension(), Some(2));
}

#[tokio::test]
async fn postgres_tables_and_columns_that_do_not_fit_are_refused_clearly() {
    let db = PgDatabase::create();
    let c = client(&db).await;
    c.batch_execute(
        "CREATE TABLE t (id bigint, u uuid, e real[], s text, n numeric); CREATE VIEW v AS SELECT id, e FROM t",
    )
    .await
    .unwrap();
    let refused = |table: &'static str, id: &'static str, emb: &'static str| {
        let url = db.url();
        async move {
            let e = PgVectorSource::open(&url, table, id, emb)
                .await
                .unwrap_err();
            assert_eq!(e.class(), ErrorClass::User, "{e}");
            e.to_string()
        }
    };
    let e = refused("nope", "id", "e").await;
    assert!(e.contains("no table \"nope\""), "{e}");
    let e = refused("t\"", "id", "e").await;
    assert!(
        e.contains("no table \"t\\\"\"") || e.contains("not a table name"),
        "{e}"
    );
    let e = refused("t", "u", "e").await;
    assert!(e.contains("uuid") && e.contains("integers"), "{e}");
    let e = refused("t", "n", "e").await;
    assert!(e.contains("numeric"), "{e}");
    let e = refused("t", "id", "s").await;
    assert!(e.contains("real[]") && e.contains("text"), "{e}");
    let e = refused("t", "idx", "e").await;
    assert!(
        e.contains("no id column \"idx\"") && e.contains("id, u, e"),
        "{e}"
    );
    // A view is a table to read.
    PgVectorSource::open(&db.url(), "public.v", "id", "e")
        .await
        .unwrap();
    let e = PgVectorSource::open("postgres://postgres@127.0.0.1:1/x", "t", "id", "e")
        .await
        .unwrap_err();
    assert_eq!(e.class(), ErrorClass::External, "{e}");
}
