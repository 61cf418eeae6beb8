//! The events job's PostgreSQL log against a real server: ids, idempotency, the outbox and its
//! triggers, the relays' camera locks, queries and the schema guard.

#![cfg(feature = "postgres")]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ferry_connectors::postgres::events::{EventLog, EventLogError, EventQuery, PublishError};
use ferry_core::jobs::events::{NewEvent, StoredEvent};
use ferry_testkit::PgDatabase;
use serde_json::json;

async fn open(db: &PgDatabase) -> EventLog {
    EventLog::open(&db.url(), 4).await.expect("open event log")
}

/// Publishes everything queued into `out`, batch by batch; returns how many.
async fn drain(log: &EventLog, out: &Mutex<Vec<StoredEvent>>) -> usize {
    let mut total = 0;
    loop {
        let n = log
            .publish_pending(100, |batch| async move {
                out.lock().unwrap().extend(batch.events.iter().cloned());
                Ok::<(), String>(())
            })
            .await
            .expect("publish")
            .events;
        if n == 0 {
            return total;
        }
        total += n;
    }
}

#[tokio::test]
async fn saved_events_get_increasing_ids_and_idempotency_keys_store_once() {
    let db = PgDatabase::create();
    let log = open(&db).await;
    let mut keyed = NewEvent::new("anpr", "cam-1").with_data(json!({"plate": "AB-123"}));
    keyed.idempotency_key = Some("worker-1/77".into());
    let batch = vec![
        NewEvent::new("motion", "cam-1"),
        keyed.clone(),
        NewEvent::new("tracking", "cam-2"),
        keyed.clone(),
    ];
    let saved = log.save_batch(&batch).await.unwrap();
    assert_eq!(saved.len(), 4);
    assert!(saved[0].id < saved[1].id && saved[1].id < saved[2].id);
    assert_eq!(saved[3].id, saved[1].id, "one key, one event");
    assert!(!saved[1].duplicate && saved[3].duplicate);
    let again = log.save(&keyed).await.unwrap();
    assert_eq!((again.id, again.duplicate), (saved[1].id, true));
    let stats = log.stats().await.unwrap();
    assert_eq!(stats.events, 3);
    assert_eq!(stats.unpublished, 3);

    let out = Mutex::new(Vec::new());
    assert_eq!(drain(&log, &out).await, 3);
    let published = out.into_inner().unwrap();
    assert_eq!(
        published.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![saved[0].id, saved[1].id, saved[2].id]
    );
    assert_eq!(published[1].event_data, json!({"plate": "AB-123"}));
    assert_eq!(log.stats().await.unwrap().unpublished, 0);
}

#[tokio::test]
async fn an_invalid_event_stores_nothing_of_its_batch() {
    let db = PgDatabase::create();
    let log = open(&db).await;
    let batch = vec![
        NewEvent::new("motion", "cam-1"),
        NewEvent::new("teleport", "cam-1"),
    ];
    let err = log
        .save_batch_checked(&batch, &["motion".to_string()])
        .await
        .unwrap_err();
    match err {
        EventLogError::Invalid { index, source } => {
            assert_eq!((index, source.field), (1, "event_type"))
        }
        other => panic!("unexpected {other}"),
    }
    assert_eq!(log.stats().await.unwrap().events, 0);
}

#[tokio::test]
async fn rows_inserted_with_plain_sql_are_queued_too() {
    let db = PgDatabase::create();
    let log = open(&db).await;
    let (client, conn) = tokio_postgres::connect(&db.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .batch_execute(
            "INSERT INTO events (event_type, camera_id, event_data) VALUES ('motion', 'cam-9', '{\"zone\": 2}');
             INSERT INTO events (event_type, camera_id) VALUES ('motion', 'cam-9'), ('anpr', 'cam-8');",
        )
        .await
        .unwrap();
    let out = Mutex::new(Vec::new());
    assert_eq!(drain(&log, &out).await, 3);
    assert_eq!(out.lock().unwrap()[0].event_data, json!({"zone": 2}));
}

#[tokio::test]
async fn rows_with_times_rfc_3339_cannot_carry_do_not_hold_back_the_relay() {
    // A plain SQL INSERT can store what the API refuses: a Unix time in milliseconds read as
    // seconds (year 57971) or a year BC. The relay must publish them and everything after.
    let db = PgDatabase::create();
    let log = open(&db).await;
    let (client, conn) = tokio_postgres::connect(&db.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .batch_execute(
            "INSERT INTO events (event_type, camera_id, \"timestamp\")
                 VALUES ('motion', 'cam-1', to_timestamp(1767225700000));
             INSERT INTO events (event_type, camera_id, \"timestamp\")
                 VALUES ('motion', 'cam-1', '4714-11-24 00:00:00+00 BC');
             INSERT INTO events (event_type, camera_id) VALUES ('motion', 'cam-1'), ('anpr', 'cam-2');",
        )
        .await
        .unwrap();
    let out = Mutex::new(Vec::new());
    assert_eq!(drain(&log, &out).await, 4);
    let out = out.into_inner().unwrap();
    assert_eq!(out[0].timestamp.timestamp(), 1_767_225_700_000);
    // 4714-11-24 BC, PostgreSQL's first instant (ISO year -4713).
    assert_eq!(out[1].timestamp.timestamp(), -210_866_803_200);
    assert!(
        out[0]
            .to_json()
            .contains("\"timestamp\":\"+57971-02-26T03:46:40Z\""),
        "{}",
        out[0].to_json()
    );
    assert_eq!(log.stats().await.unwrap().unpublished, 0);
}

#[tokio::test]
async fn a_failed_publish_marks_nothing_published() {
    let db = PgDatabase::create();
    let log = open(&db).await;
    log.save(&NewEvent::new("motion", "cam-1")).await.unwrap();
    let err = log
        .publish_pending(10, |_| async { Err::<(), _>("redis is down") })
        .await
        .unwrap_err();
    assert!(matches!(err, PublishError::Publisher("redis is down")));
    assert_eq!(log.stats().await.unwrap().unpublished, 1);
    let out = Mutex::new(Vec::new());
    assert_eq!(drain(&log, &out).await, 1);
}

#[tokio::test]
async fn a_camera_being_published_is_skipped_by_a_second_relay() {
    let db = PgDatabase::create();
    let log = open(&db).await;
    log.save_batch(&[
        NewEvent::new("motion", "cam-a"),
        NewEvent::new("motion", "cam-b"),
    ])
    .await
    .unwrap();
    let (held_tx, held_rx) = tokio::sync::oneshot::channel::<()>();
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let first = {
        let log = log.clone();
        tokio::spawn(async move {
            log.publish_pending(1, |batch| async move {
                let _ = held_tx.send(());
                let _ = release_rx.await;
                Ok::<_, String>(batch.events.len()).map(|_| ())
            })
            .await
            .unwrap()
        })
    };
    held_rx.await.unwrap();
    // The first relay holds cam-a; the second may only take cam-b.
    let out = Mutex::new(Vec::new());
    assert_eq!(drain(&log, &out).await, 1);
    assert_eq!(out.lock().unwrap()[0].camera_id, "cam-b");
    release_tx.send(()).unwrap();
    assert_eq!(first.await.unwrap().events, 1);
    assert_eq!(log.stats().await.unwrap().unpublished, 0);
}

#[tokio::test]
async fn concurrent_producers_and_relays_keep_each_cameras_id_order() {
    let db = PgDatabase::create();
    let log = open(&db).await;
    let published = Arc::new(Mutex::new(Vec::new()));
    let mut producers = Vec::new();
    for p in 0..4 {
        let log = log.clone();
        producers.push(tokio::spawn(async move {
            for b in 0..25 {
                let batch: Vec<NewEvent> = (0..8)
                    .map(|i| {
                        NewEvent::new("tracking", format!("cam-{}", (p + b + i) % 5))
                            .with_data(json!({"producer": p, "batch": b, "i": i}))
                    })
                    .collect();
                log.save_batch(&batch).await.unwrap();
            }
        }));
    }
    let mut relays = Vec::new();
    for _ in 0..2 {
        let log = log.clone();
        let published = published.clone();
        relays.push(tokio::spawn(async move {
            for _ in 0..400 {
                let published = published.clone();
                log.publish_pending(16, |batch| async move {
                    published
                        .lock()
                        .unwrap()
                        .extend(batch.events.iter().cloned());
                    Ok::<(), String>(())
                })
                .await
                .unwrap();
                tokio::task::yield_now().await;
            }
        }));
    }
    for p in producers {
        p.await.unwrap();
    }
    for r in relays {
        r.await.unwrap();
    }
    let rest = Mutex::new(Vec::new());
    drain(&log, &rest).await;
    let mut all = published.lock().unwrap().clone();
    all.extend(rest.into_inner().unwrap());
    assert_eq!(all.len(), 4 * 25 * 8, "every event published exactly once");
    let mut last: HashMap<String, i64> = HashMap::new();
    for e in &all {
        let prev = last.insert(e.camera_id.clone(), e.id).unwrap_or(0);
        assert!(
            prev < e.id,
            "camera {} published {} after {prev}",
            e.camera_id,
            e.id
        );
    }
}

#[tokio::test]
async fn queries_filter_and_page_newest_first() {
    let db = PgDatabase::create();
    let log = open(&db).await;
    let base = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
        .unwrap()
        .to_utc();
    let batch: Vec<NewEvent> = (0..30)
        .map(|i| {
            let mut e = NewEvent::new(
                if i % 3 == 0 { "anpr" } else { "motion" },
                format!("cam-{}", i % 2),
            );
            e.timestamp = Some(base + chrono::Duration::seconds(i));
            e.frame_number = Some(i);
            e
        })
        .collect();
    log.save_batch(&batch).await.unwrap();
    let mut q = EventQuery {
        camera_id: Some("cam-0".into()),
        limit: 4,
        ..EventQuery::default()
    };
    let mut seen = Vec::new();
    loop {
        let page = log.query(&q).await.unwrap();
        seen.extend(page.events.iter().map(|e| e.frame_number.unwrap()));
        match page.next_cursor {
            Some(c) => q.before_id = Some(c),
            None => break,
        }
    }
    let expected: Vec<i64> = (0..30).rev().filter(|i| i % 2 == 0).collect();
    assert_eq!(seen, expected);
    let q = EventQuery {
        event_type: Some("anpr".into()),
        since: Some(base + chrono::Duration::seconds(10)),
        until: Some(base + chrono::Duration::seconds(20)),
        limit: 100,
        ..EventQuery::default()
    };
    let frames: Vec<i64> = log
        .query(&q)
        .await
        .unwrap()
        .events
        .iter()
        .map(|e| e.frame_number.unwrap())
        .collect();
    assert_eq!(frames, vec![18, 15, 12]);
}

#[tokio::test]
async fn a_newer_schema_or_a_foreign_events_table_is_refused() {
    let db = PgDatabase::create();
    let (client, conn) = tokio_postgres::connect(&db.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .batch_execute("CREATE TABLE events (id serial PRIMARY KEY, payload text)")
        .await
        .unwrap();
    let err = EventLog::open(&db.url(), 1).await.unwrap_err().to_string();
    assert!(err.contains("did not create"), "{err}");
    client
        .batch_execute(
            "DROP TABLE events; CREATE TABLE ferry_schema (component text PRIMARY KEY, version bigint NOT NULL);
             INSERT INTO ferry_schema VALUES ('events', 99)",
        )
        .await
        .unwrap();
    let err = EventLog::open(&db.url(), 1).await.unwrap_err().to_string();
    assert!(err.contains("upgrade Ferry"), "{err}");
}

#[tokio::test]
async fn an_unreachable_server_is_reported_as_unavailable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = EventLog::connect(&format!("postgres://ferry:secret@127.0.0.1:{port}/x"), 1).unwrap();
    let err = log.healthcheck().await.unwrap_err();
    assert!(matches!(err, EventLogError::Unavailable { .. }), "{err}");
    assert!(!err.to_string().contains("secret"), "{err}");
}
