//! The event log's own tests: the schema's keys, the upgrade from version 1, and what the
//! server refuses.

use ferry_core::error::{Classify, ErrorClass};
use ferry_core::jobs::events::NewEvent;

use super::sql::{IN_FLIGHT_LOCK, RELAY_LOCK};
use super::*;

#[test]
fn the_triggers_and_the_horizon_use_one_in_flight_key() {
    let current = MIGRATIONS.last().unwrap();
    assert_eq!(
        current.matches(&IN_FLIGHT_LOCK.to_string()).count(),
        4,
        "the lock, the decoding and the range of the in-flight keys"
    );
    assert_ne!(IN_FLIGHT_LOCK, RELAY_LOCK);
}

/// A database at schema version 1 with an application transaction that inserted an event
/// and is still open.
async fn version_1_with_an_open_writer(db: &ferry_testkit::PgDatabase) -> tokio_postgres::Client {
    let (app, conn) = tokio_postgres::connect(&db.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    app.batch_execute(MIGRATIONS[0]).await.unwrap();
    // Committed first (a BEGIN later in the same query string would take these statements into
    // the open transaction).
    app.batch_execute(
        "CREATE TABLE ferry_schema (component text PRIMARY KEY, version bigint NOT NULL);
         INSERT INTO ferry_schema VALUES ('events', 1);",
    )
    .await
    .unwrap();
    app.batch_execute(
        "BEGIN;
         INSERT INTO events (event_type, camera_id) VALUES ('sql', 'cam-a');",
    )
    .await
    .unwrap();
    app
}

async fn publish_all(log: &EventLog) -> Vec<i64> {
    let mut ids = Vec::new();
    loop {
        let mut batch_ids = Vec::new();
        let done = log
            .publish_pending(100, |b| {
                batch_ids.extend(b.events.iter().map(|e| e.id));
                async { Ok::<(), String>(()) }
            })
            .await
            .unwrap();
        ids.extend(batch_ids);
        if done.events == 0 && !done.held_back {
            return ids;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upgrade_from_version_1_waits_for_open_writers_and_never_fails_them() {
    let db = ferry_testkit::PgDatabase::create();
    let app = version_1_with_an_open_writer(&db).await;
    let upgrade = tokio::spawn({
        let url = db.url();
        async move { EventLog::open(&url, 2).await }
    });
    // Past PostgreSQL's deadlock_timeout (1 s): the application writes again while the
    // upgrade waits for it, and must not be the one aborted.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !upgrade.is_finished(),
        "the upgrade waits for the open writer"
    );
    app.batch_execute("INSERT INTO events (event_type, camera_id) VALUES ('sql', 'cam-a'); COMMIT")
        .await
        .expect("the application's transaction is never broken by the upgrade");
    let log = upgrade.await.unwrap().expect("the upgrade completes");
    log.save(&NewEvent::new("sql", "cam-a")).await.unwrap();
    assert_eq!(publish_all(&log).await, [1, 2, 3]);
}

#[tokio::test]
async fn a_cached_sequence_is_refused_with_the_fix() {
    let db = ferry_testkit::PgDatabase::create();
    let log = EventLog::open(&db.url(), 2).await.unwrap();
    log.save(&NewEvent::new("sql", "cam-a")).await.unwrap();
    let client = log.client().await.unwrap();
    client
        .batch_execute("ALTER SEQUENCE events_id_seq CACHE 20")
        .await
        .unwrap();
    let err = log
        .publish_pending(10, |_| async { Ok::<(), String>(()) })
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("ALTER SEQUENCE events_id_seq CACHE 1"),
        "{err}"
    );
    assert_eq!(log.stats().await.map(|s| s.unpublished).ok(), None);
}

#[tokio::test]
async fn a_row_an_application_trigger_refuses_is_refused_data_not_an_outage() {
    let db = ferry_testkit::PgDatabase::create();
    let log = EventLog::open(&db.url(), 2).await.unwrap();
    log.client()
        .await
        .unwrap()
        .batch_execute(
            "CREATE FUNCTION app_check() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
                 IF NEW.event_data ? 'bad' THEN RAISE EXCEPTION 'app refuses it'; END IF;
                 RETURN NEW; END $$;
             CREATE TRIGGER app_check BEFORE INSERT ON events
                 FOR EACH ROW EXECUTE FUNCTION app_check();",
        )
        .await
        .unwrap();
    let err = log
        .save(&NewEvent::new("sql", "cam-a").with_data(serde_json::json!({"bad": 1})))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, EventLogError::Refused { sqlstate, .. } if sqlstate == "P0001"),
        "{err:?}"
    );
    assert_eq!(err.class(), ErrorClass::User);
}

/// The tier store and the event log share `ferry_schema`: created by both at once on a new
/// database, neither may fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tier_store_and_the_event_log_can_create_their_schemas_at_once() {
    for _ in 0..10 {
        let db = ferry_testkit::PgDatabase::create();
        let url = db.url();
        let (store, log) = tokio::join!(
            async {
                let store = crate::postgres::PostgresEventStore::open(&url).await?;
                ferry_core::jobs::tier::EventStore::migrate(&store).await
            },
            EventLog::open(&url, 2)
        );
        store.expect("the tier store's schema");
        log.expect("the event log's schema");
    }
}
