//! The three event stores against real servers: one set of checks, run on each.

#![cfg(all(
    feature = "sqlite",
    feature = "postgres",
    feature = "falkordb",
    feature = "neo4j"
))]

use ferry_connectors::falkordb::FalkorDbEventStore;
use ferry_connectors::neo4j::Neo4jEventStore;
use ferry_connectors::postgres::PostgresEventStore;
use ferry_connectors::sqlite::SqliteEventStore;
use ferry_core::error::{Classify, ErrorClass};
use ferry_core::jobs::tier::grouping::{DistinctCaption, OpenEventState};
use ferry_core::jobs::tier::store::Fence;
use ferry_core::jobs::tier::{
    CameraState, CaptionCount, EntryId, EventStatus, EventStore, EventStoreError, RunRecord,
    TierEvent, event_id,
};
use ferry_testkit::{FalkorDbServer, PgDatabase, unique_name};

fn event(camera: &str, first: u64, frames: u64, previous: Option<String>) -> TierEvent {
    TierEvent {
        id: event_id(camera, EntryId::new(first, 0)),
        camera_id: camera.to_string(),
        caption: "a man in \"the\" field\nünïcode \\ ok".to_string(),
        start_ms: first as i64,
        end_ms: first as i64 + 5_000,
        frame_count: frames,
        captions: vec![CaptionCount {
            text: "man in fields".into(),
            count: frames,
        }],
        centroid: vec![0.25, -0.5, 1e-7],
        previous_event_id: previous,
        run_id: "run-1".into(),
        status: EventStatus::Closed,
        first_entry: EntryId::new(first, 0),
        last_entry: EntryId::new(first + 5_000, 3),
    }
}

/// Every behaviour the tier job relies on, on one store.
async fn check<S: EventStore>(store: &S) {
    store.migrate().await.unwrap();
    store.migrate().await.expect("migrating twice is fine");
    store.healthcheck().await.unwrap();

    // Upserts by id: the second commit replaces fields and adds no rows.
    let a = event("cam1", 1_000, 3, None);
    let b = event("cam1", 10_000, 2, Some(a.id.clone()));
    let open = OpenEventState {
        id: b.id.clone(),
        camera_id: "cam1".into(),
        first_entry: b.first_entry,
        last_entry: b.last_entry,
        start_ms: b.start_ms,
        end_ms: b.end_ms,
        frame_count: 2,
        sum: vec![1.0, 2.0],
        embedded: 2,
        distinct: vec![DistinctCaption {
            text: "x".into(),
            norm: "x".into(),
            count: 2,
            embedding: vec![0.5, 0.5],
            outlier_only: false,
        }],
        previous_event_id: Some(a.id.clone()),
    };
    let state = CameraState {
        camera_id: "cam1".into(),
        watermark: Some(b.last_entry),
        open: Some(open),
    };
    store
        .commit(&[a.clone(), b.clone()], &state, None)
        .await
        .unwrap();
    let mut b2 = b.clone();
    b2.frame_count = 7;
    b2.status = EventStatus::Open;
    store.commit(&[b2.clone()], &state, None).await.unwrap();
    let events = store.events(Some("cam1"), 10).await.unwrap();
    assert_eq!(
        events,
        vec![b2.clone(), a.clone()],
        "newest first, replaced in place"
    );
    assert!(store.events(Some("other"), 10).await.unwrap().is_empty());
    assert_eq!(store.events(None, 1).await.unwrap(), vec![b2]);
    assert_eq!(store.camera_state("cam1").await.unwrap(), Some(state));
    assert_eq!(store.camera_state("cam2").await.unwrap(), None);

    // Many events in one commit.
    let many: Vec<TierEvent> = (0..300)
        .map(|i| event("cam2", 100_000 + i * 10_000, 1, None))
        .collect();
    let state2 = CameraState {
        camera_id: "cam2".into(),
        watermark: Some(many[299].last_entry),
        open: None,
    };
    store.commit(&many, &state2, None).await.unwrap();
    let counts = store.counts().await.unwrap();
    assert_eq!(
        (counts.events, counts.cameras, counts.frames),
        (302, 2, 310)
    );

    // History: upsert by run id, newest first, limited.
    for i in 0..3 {
        let run = RunRecord {
            run_id: format!("run-{i}"),
            trigger: "cli".into(),
            started_ms: 1_000 + i,
            finished_ms: 2_000 + i,
            captions_migrated: i as u64,
            ..RunRecord::default()
        };
        store.record_run(&run).await.unwrap();
        store.record_run(&run).await.unwrap();
    }
    let history = store.history(2).await.unwrap();
    assert_eq!(
        history
            .iter()
            .map(|r| r.run_id.as_str())
            .collect::<Vec<_>>(),
        ["run-2", "run-1"]
    );
}

fn fence(camera: &str, token: u64) -> Fence {
    Fence::of(format!("tier/{camera}"), token).unwrap()
}

fn watermark_state(camera: &str, ms: u64) -> CameraState {
    CameraState {
        camera_id: camera.to_string(),
        watermark: Some(EntryId::new(ms, 0)),
        open: None,
    }
}

/// Fencing: the store keeps the highest token per scope, in the commit's transaction, and a
/// commit with a lower one (a pass that lost its lease to a newer run) writes nothing.
async fn check_fencing<S: EventStore>(store: &S) {
    store.migrate().await.unwrap();
    // Unique cameras: a Neo4j test database may be reused, and fences never go back.
    let cam = &unique_name("fenced");
    let other_cam = &unique_name("other");
    let e5 = event(cam, 5_000, 1, None);
    store
        .commit(
            std::slice::from_ref(&e5),
            &watermark_state(cam, 5_000),
            Some(&fence(cam, 5)),
        )
        .await
        .expect("token 5 commits");

    // Token 4: refused, nothing written (no event, the camera state unchanged).
    let mut e5_stale = e5.clone();
    e5_stale.run_id = "stale-run".into();
    e5_stale.frame_count = 99;
    let e4 = event(cam, 4_000, 1, None);
    let err = store
        .commit(
            &[e4.clone(), e5_stale],
            &watermark_state(cam, 9_000),
            Some(&fence(cam, 4)),
        )
        .await
        .expect_err("token 4 is refused after token 5");
    match &err {
        EventStoreError::Fenced {
            scope,
            token,
            current,
            ..
        } => assert_eq!(
            (scope.as_str(), *token, *current),
            (format!("tier/{cam}").as_str(), 4, 5)
        ),
        other => panic!("expected Fenced, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("taken over by a newer run"), "{msg}");
    assert!(msg.contains("without writing"), "{msg}");
    assert_eq!(err.class(), ErrorClass::External);
    assert!(!err.retryable(), "a fenced commit must not be retried");
    assert_eq!(
        store.events(Some(cam), 10).await.unwrap(),
        vec![e5.clone()],
        "the refused commit wrote nothing"
    );
    assert_eq!(
        store.camera_state(cam).await.unwrap(),
        Some(watermark_state(cam, 5_000))
    );

    // The same token again (the same run's next chunk) and a newer one commit.
    store
        .commit(
            std::slice::from_ref(&e5),
            &watermark_state(cam, 5_000),
            Some(&fence(cam, 5)),
        )
        .await
        .expect("the same token commits again");
    let e6 = event(cam, 6_000, 2, None);
    store
        .commit(
            std::slice::from_ref(&e6),
            &watermark_state(cam, 6_000),
            Some(&fence(cam, 6)),
        )
        .await
        .expect("token 6 commits");
    assert_eq!(
        store.events(Some(cam), 10).await.unwrap(),
        vec![e6.clone(), e5.clone()]
    );
    assert_eq!(
        store.camera_state(cam).await.unwrap(),
        Some(watermark_state(cam, 6_000))
    );
    let err = store
        .commit(&[e4], &watermark_state(cam, 9_000), Some(&fence(cam, 5)))
        .await
        .expect_err("token 5 is refused after token 6");
    assert!(
        matches!(err, EventStoreError::Fenced { current: 6, .. }),
        "{err:?}"
    );

    // Fences are per scope: another camera starts at its own first token.
    let other = event(other_cam, 1_000, 1, None);
    store
        .commit(
            std::slice::from_ref(&other),
            &watermark_state(other_cam, 1_000),
            Some(&fence(other_cam, 1)),
        )
        .await
        .expect("another scope is not fenced by this one");
    assert_eq!(
        store.events(Some(other_cam), 10).await.unwrap(),
        vec![other]
    );
    assert_eq!(
        store.events(Some(cam), 10).await.unwrap(),
        vec![e6.clone(), e5.clone()]
    );

    // Raising the fence alone (a discard taking the camera): writes nothing else, refuses a
    // lower token, and from then on commits under an older token are refused.
    let err = store
        .raise_fence(&fence(cam, 5))
        .await
        .expect_err("raising to 5 after 6 is refused");
    assert!(
        matches!(err, EventStoreError::Fenced { current: 6, .. }),
        "{err:?}"
    );
    store.raise_fence(&fence(cam, 7)).await.expect("raise to 7");
    store
        .raise_fence(&fence(cam, 7))
        .await
        .expect("the same token again");
    assert_eq!(
        store.camera_state(cam).await.unwrap(),
        Some(watermark_state(cam, 6_000)),
        "raising the fence leaves the camera's state as it was"
    );
    let err = store
        .commit(
            &[event(cam, 7_000, 1, None)],
            &watermark_state(cam, 7_000),
            Some(&fence(cam, 6)),
        )
        .await
        .expect_err("token 6 is refused after the fence was raised to 7");
    assert!(
        matches!(err, EventStoreError::Fenced { current: 7, .. }),
        "{err:?}"
    );
    assert_eq!(store.events(Some(cam), 10).await.unwrap(), vec![e6, e5]);
}

async fn refuses_newer(store: impl EventStore, bump: impl FnOnce()) {
    bump();
    let err = store
        .migrate()
        .await
        .expect_err("a newer schema is refused")
        .to_string();
    assert!(err.contains("upgrade Ferry"), "{err}");
}

#[tokio::test]
async fn sqlite_store_upserts_keeps_state_and_history() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let url = format!("sqlite://{}", path.display());
    check(&SqliteEventStore::open(&url).await.unwrap()).await;
    check_fencing(&SqliteEventStore::open(&url).await.unwrap()).await;
    refuses_newer(SqliteEventStore::open(&url).await.unwrap(), || {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute(
            "UPDATE ferry_schema SET version = 99 WHERE component = 'tier'",
            [],
        )
        .unwrap();
    })
    .await;
}

/// A store created by a Ferry without fencing (schema version 1) gets the fence table by the
/// versioned migration.
#[tokio::test]
async fn sqlite_store_upgrades_a_version_1_schema_with_the_fence_table() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let url = format!("sqlite://{}", path.display());
    SqliteEventStore::open(&url)
        .await
        .unwrap()
        .migrate()
        .await
        .unwrap();
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "DROP TABLE ferry_fence; UPDATE ferry_schema SET version = 1 WHERE component = 'tier'",
        )
        .unwrap();
    }
    check_fencing(&SqliteEventStore::open(&url).await.unwrap()).await;
    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = conn
        .query_row(
            "SELECT version FROM ferry_schema WHERE component = 'tier'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(version, 2);
}

#[tokio::test]
async fn postgres_store_upserts_keeps_state_and_history() {
    let db = PgDatabase::create();
    check(&PostgresEventStore::open(&db.url()).await.unwrap()).await;
    check_fencing(&PostgresEventStore::open(&db.url()).await.unwrap()).await;
    let store = PostgresEventStore::open(&db.url()).await.unwrap();
    let url = db.url();
    refuses_newer(store, || {
        let ok = std::process::Command::new("psql")
            .arg(&url)
            .args([
                "-q",
                "-c",
                "UPDATE ferry_schema SET version = 99 WHERE component = 'tier'",
            ])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    })
    .await;
}

#[tokio::test]
async fn falkordb_store_upserts_keeps_state_and_history() {
    let server = FalkorDbServer::start();
    let url = format!("{}/events", server.url());
    check(&FalkorDbEventStore::open(&url).await.unwrap()).await;
    check_fencing(&FalkorDbEventStore::open(&url).await.unwrap()).await;
    let port = server.port();
    refuses_newer(FalkorDbEventStore::open(&url).await.unwrap(), || {
        let mut conn = redis::Client::open(format!("redis://127.0.0.1:{port}"))
            .unwrap()
            .get_connection()
            .unwrap();
        let _: redis::Value = redis::cmd("GRAPH.QUERY")
            .arg("events")
            .arg("MATCH (s:FerrySchema {component: 'tier'}) SET s.version = 99")
            .query(&mut conn)
            .unwrap();
    })
    .await;
}

#[tokio::test]
async fn unreachable_stores_fail_with_a_clear_message_and_no_password() {
    let err = PostgresEventStore::open("postgres://ferry:s3cret@127.0.0.1:1/x")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot connect to PostgreSQL"), "{err}");
    assert!(!err.contains("s3cret"), "{err}");
    let err = FalkorDbEventStore::open("falkordb://u:s3cret@127.0.0.1:1/g")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot connect to FalkorDB"), "{err}");
    assert!(!err.contains("s3cret"), "{err}");
    let err = SqliteEventStore::open("sqlite:///nonexistent-dir/x/y.db")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot open"), "{err}");
}

/// Neo4j cannot be installed on Ferry's build machines: this wire test runs where
/// `FERRY_TEST_NEO4J_URI` names a disposable database (`neo4j://neo4j:password@host:7687`) and
/// says so when it is skipped.
#[tokio::test]
async fn neo4j_store_upserts_keeps_state_and_history() {
    let Ok(url) = std::env::var("FERRY_TEST_NEO4J_URI") else {
        eprintln!(
            "SKIPPED neo4j_store_upserts_keeps_state_and_history: FERRY_TEST_NEO4J_URI is not set (no Neo4j server here)"
        );
        return;
    };
    let store = Neo4jEventStore::open(&url).await.unwrap();
    check(&store).await;
    check_fencing(&store).await;
}

#[tokio::test]
async fn an_unreachable_neo4j_fails_with_a_clear_message_and_no_password() {
    let result = match Neo4jEventStore::open("neo4j://neo4j:s3cret@127.0.0.1:1").await {
        Ok(store) => store.migrate().await,
        Err(e) => Err(e),
    };
    let err = result.unwrap_err().to_string();
    assert!(err.contains("neo4j"), "{err}");
    assert!(!err.contains("s3cret"), "{err}");
}
