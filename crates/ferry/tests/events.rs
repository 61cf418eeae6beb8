//! The events job against real PostgreSQL and Redis: crash safety of the relay and of stream
//! ingest, per-camera order with several producers and relays, Redis down then up, PostgreSQL
//! down, and bad input.

mod common;

use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use ferry::jobs::events::{self, EventsContext, EventsOptions, NewEvent};
use ferry::jobs::tier::{Backend, Layout, TierContext, TierOptions};
use ferry::server::{AppState, ServeOptions, app};
use ferry_testkit::{PgDatabase, RedisServer, kill_at_failpoint, output_text};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

const HISTORY: &str = "events:history";

struct Env {
    redis: RedisServer,
    db: PgDatabase,
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        Env {
            redis: RedisServer::start(),
            db: PgDatabase::create(),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn options(&self) -> EventsOptions {
        EventsOptions {
            postgres: self.db.url().into(),
            redis: self.redis.url().into(),
            history_stream: Some(HISTORY.into()),
            rescan_interval: Duration::from_millis(200),
            connections: 4,
            ..EventsOptions::default()
        }
    }

    async fn context(&self) -> EventsContext {
        EventsContext::connect(self.options())
            .await
            .expect("connect the events job")
    }

    /// `ferry events ARGS --postgres … --redis …`, environment cleared of FERRY_* options.
    fn ferry(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_ferry"));
        c.arg("events")
            .args(args)
            .args(["--postgres", &self.db.url(), "--redis", &self.redis.url()])
            .env_remove("FERRY_FAILPOINT")
            .env_remove("FERRY_CONFIG")
            .env_remove("FERRY_EVENTS_POSTGRES")
            .env_remove("FERRY_EVENTS_REDIS");
        c
    }

    /// The router of `ferry serve` with the events job (tier on a throwaway SQLite).
    async fn router(&self, options: EventsOptions, serve: ServeOptions) -> axum::Router {
        let tier = TierContext::connect(TierOptions {
            redis: self.redis.url().into(),
            store: format!("sqlite://{}", self.dir.path().join("tier.db").display()).into(),
            layout: Layout::Stream,
            similarity: Backend::Lexical,
            ..TierOptions::default()
        })
        .await
        .expect("tier context");
        let events = EventsContext::connect(options)
            .await
            .expect("events context");
        let state = AppState::new(Some(tier), serve, None, CancellationToken::new())
            .with_events(Arc::new(events));
        app(Arc::new(state))
    }

    /// `ferry events relay ARGS` with the history Stream (from a config file).
    fn relay_command(&self, args: &[&str]) -> Command {
        let config = self.dir.path().join("relay.toml");
        std::fs::write(
            &config,
            format!("[events]\nhistory_stream = \"{HISTORY}\"\nrescan_interval_s = 0.2\n"),
        )
        .unwrap();
        let mut c = self.ferry(&["relay"]);
        c.args(args).env("FERRY_CONFIG", &config);
        c
    }

    /// [`Env::relay_command`] running as a child process.
    fn relay_process(&self) -> Child {
        self.relay_command(&[])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    fn history_ids(&self) -> Vec<i64> {
        let entries: Vec<(String, HashMap<String, String>)> = redis::cmd("XRANGE")
            .arg(HISTORY)
            .arg("-")
            .arg("+")
            .query(&mut self.redis.conn())
            .unwrap();
        entries
            .iter()
            .map(|(_, f)| f["id"].parse().unwrap())
            .collect()
    }
}

/// A Pub/Sub subscriber running on its own thread.
struct Subscriber {
    received: Arc<Mutex<Vec<Value>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Subscriber {
    fn start(redis: &RedisServer, channel: &str) -> Self {
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let client = redis.client();
        let channel = channel.to_string();
        let thread = {
            let received = received.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut conn = client.get_connection().unwrap();
                let mut pubsub = conn.as_pubsub();
                pubsub.subscribe(&channel).unwrap();
                pubsub
                    .set_read_timeout(Some(Duration::from_millis(100)))
                    .unwrap();
                ready_tx.send(()).unwrap();
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(msg) = pubsub.get_message() {
                        let payload: String = msg.get_payload().unwrap();
                        received
                            .lock()
                            .unwrap()
                            .push(serde_json::from_str(&payload).unwrap());
                    }
                }
            })
        };
        ready_rx.recv().unwrap();
        Subscriber {
            received,
            stop,
            thread: Some(thread),
        }
    }

    fn count(&self) -> usize {
        self.received.lock().unwrap().len()
    }

    /// Waits until `n` messages arrived; returns them.
    fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        while self.count() < n {
            assert!(
                Instant::now() < deadline,
                "subscriber got {} of {n} events",
                self.count()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.received.lock().unwrap().clone()
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Checks that each camera's events arrived in increasing id order; returns the distinct ids.
fn assert_camera_order(events: &[Value]) -> HashSet<i64> {
    let mut last: HashMap<String, i64> = HashMap::new();
    let mut ids = HashSet::new();
    for e in events {
        let id = e["id"].as_i64().unwrap();
        let camera = e["camera_id"].as_str().unwrap().to_string();
        if ids.insert(id) {
            let prev = last.insert(camera.clone(), id).unwrap_or(0);
            assert!(
                prev < id,
                "camera {camera}: event {id} arrived after {prev}"
            );
        }
    }
    ids
}

fn batch(n: usize, cameras: usize, tag: &str) -> Vec<NewEvent> {
    (0..n)
        .map(|i| {
            let mut e = NewEvent::new(
                ["tracking", "motion", "anpr"][i % 3],
                format!("cam-{}", i % cameras),
            )
            .with_data(json!({"tag": tag, "i": i}));
            e.frame_number = Some(i as i64);
            e
        })
        .collect()
}

async fn call(
    router: &axum::Router,
    method: &str,
    uri: &str,
    body: Option<&str>,
) -> (StatusCode, Value) {
    common::call(router, method, uri, body, None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_killed_between_commit_and_publish_publishes_everything_after_restart() {
    let env = Env::new();
    let ctx = env.context().await;
    let saved = ctx.log.save_batch(&batch(50, 3, "a")).await.unwrap();
    let sub = Subscriber::start(&env.redis, "events");

    kill_at_failpoint(env.ferry(&["relay"]), "events-relay-before-publish");
    assert_eq!(sub.count(), 0, "nothing was published before the kill");
    assert_eq!(ctx.log.stats().await.unwrap().unpublished, 50);

    let out = env.ferry(&["relay", "--once"]).output().unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    let got = sub.wait_for(50, Duration::from_secs(20));
    let ids = assert_camera_order(&got);
    assert_eq!(ids, saved.iter().map(|s| s.id).collect());
    assert_eq!(got.len(), 50, "published exactly once");
    let stats = ctx.log.stats().await.unwrap();
    assert_eq!((stats.events, stats.unpublished), (50, 0));
    // Every column is published, times in RFC 3339.
    let first = &got[0];
    for field in [
        "id",
        "event_type",
        "camera_id",
        "timestamp",
        "frame_number",
        "snapshot_path",
        "event_data",
        "created_at",
    ] {
        assert!(first.get(field).is_some(), "published JSON lacks {field}");
    }
    assert!(chrono::DateTime::parse_from_rfc3339(first["created_at"].as_str().unwrap()).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_killed_after_publishing_publishes_again_and_the_table_keeps_one_row() {
    let env = Env::new();
    let ctx = env.context().await;
    ctx.log.save_batch(&batch(40, 4, "b")).await.unwrap();
    let sub = Subscriber::start(&env.redis, "events");

    kill_at_failpoint(env.ferry(&["relay"]), "events-relay-after-publish");
    // Each of the relay's loops may have published its cameras before the first one stopped.
    sub.wait_for(1, Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(300));
    let before_restart = sub.count();
    assert_eq!(
        ctx.log.stats().await.unwrap().unpublished,
        40,
        "not marked published: Redis took them but the commit never happened"
    );
    let out = env.ferry(&["relay", "--once"]).output().unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    let got = sub.wait_for(before_restart + 40, Duration::from_secs(20));
    // At-least-once: consumers dedupe by id.
    assert_eq!(assert_camera_order(&got).len(), 40);
    let stats = ctx.log.stats().await.unwrap();
    assert_eq!((stats.events, stats.unpublished), (40, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_producer_reaches_a_subscriber_in_camera_order() {
    let env = Env::new();
    let ctx = Arc::new(env.context().await);
    let router = env.router(env.options(), ServeOptions::default()).await;
    let sub = Subscriber::start(&env.redis, "events");
    let stop = CancellationToken::new();
    let relay = {
        let ctx = ctx.clone();
        let stop = stop.clone();
        tokio::spawn(async move { events::relay(&ctx, false, stop).await })
    };

    let mut producers = Vec::new();
    for p in 0..3 {
        let ctx = ctx.clone();
        producers.push(tokio::spawn(async move {
            for b in 0..10 {
                ctx.log
                    .save_batch(&batch(20, 5, &format!("lib-{p}-{b}")))
                    .await
                    .unwrap();
            }
        }));
    }
    let api = {
        let router = router.clone();
        tokio::spawn(async move {
            for i in 0..30 {
                let body = json!({"event_type": "motion", "camera_id": format!("cam-{}", i % 5), "frame_number": i});
                let (status, v) =
                    call(&router, "POST", "/api/v1/events", Some(&body.to_string())).await;
                assert_eq!(status, StatusCode::CREATED, "{v}");
            }
        })
    };
    let (client, conn) = tokio_postgres::connect(&env.db.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    for i in 0..20 {
        client
            .execute(
                "INSERT INTO events (event_type, camera_id, event_data) VALUES ('anpr', $1, '{\"sql\": true}')",
                &[&format!("cam-{}", i % 5)],
            )
            .await
            .unwrap();
    }
    for p in producers {
        p.await.unwrap();
    }
    api.await.unwrap();
    let total = 3 * 10 * 20 + 30 + 20;
    let got = tokio::task::spawn_blocking(move || {
        let got = sub.wait_for(total, Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(sub.count(), total, "no event published twice");
        got
    })
    .await
    .unwrap();
    assert_eq!(assert_camera_order(&got).len(), total);
    stop.cancel();
    relay.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relay_processes_neither_skip_nor_reorder_a_camera() {
    let env = Env::new();
    let ctx = Arc::new(env.context().await);
    let sub = Subscriber::start(&env.redis, "events");
    let mut relays: Vec<Child> = (0..2)
        .map(|_| {
            env.ferry(&["relay"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut producers = Vec::new();
    for p in 0..4 {
        let ctx = ctx.clone();
        producers.push(tokio::spawn(async move {
            for b in 0..25 {
                ctx.log
                    .save_batch(&batch(20, 8, &format!("p{p}-{b}")))
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    for p in producers {
        p.await.unwrap();
    }
    let total = 4 * 25 * 20;
    let got = tokio::task::spawn_blocking(move || sub.wait_for(total, Duration::from_secs(60)))
        .await
        .unwrap();
    for r in &mut relays {
        r.kill().unwrap();
        r.wait().unwrap();
    }
    assert_eq!(got.len(), total, "no event published twice");
    assert_eq!(assert_camera_order(&got).len(), total);
    assert_eq!(ctx.log.stats().await.unwrap().unpublished, 0);
}

fn xadd_event(redis: &RedisServer, stream: &str, camera: &str, i: usize) -> String {
    let data = json!({"event_type": "tracking", "camera_id": camera, "timestamp": "2024-10-11T12:00:00.5", "frame_number": i, "event_data": {"track": i}});
    redis::cmd("XADD")
        .arg(stream)
        .arg("*")
        .arg("data")
        .arg(data.to_string())
        .query(&mut redis.conn())
        .unwrap()
}

fn pending(redis: &RedisServer, stream: &str, group: &str) -> u64 {
    let v: (u64, Value2, Value2, Value2) = redis::cmd("XPENDING")
        .arg(stream)
        .arg(group)
        .query(&mut redis.conn())
        .unwrap();
    v.0
}

type Value2 = redis::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_ingest_acknowledges_only_after_the_commit() {
    let env = Env::new();
    let ctx = env.context().await;
    for i in 0..30 {
        xadd_event(&env.redis, "stream:events", &format!("cam-{}", i % 3), i);
    }
    let _: String = redis::cmd("XADD")
        .arg("stream:events")
        .arg("*")
        .arg("data")
        .arg(r#"{"camera_id": "cam-1"}"#)
        .query(&mut env.redis.conn())
        .unwrap();
    let args = ["ingest", "--once", "--consumer", "ferry-test"];
    kill_at_failpoint(env.ferry(&args), "events-ingest-after-commit");
    assert_eq!(ctx.log.stats().await.unwrap().events, 30, "committed");
    assert_eq!(
        pending(&env.redis, "stream:events", "ferry"),
        31,
        "killed before XACK: every entry still pending"
    );

    let out = env.ferry(&args).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "one entry is not an event: {}",
        output_text(&out)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("stored 0, already stored 30, rejected 1"),
        "{text}"
    );
    assert_eq!(ctx.log.stats().await.unwrap().events, 30, "stored once");
    assert_eq!(pending(&env.redis, "stream:events", "ferry"), 0);
    let dead: Vec<(String, HashMap<String, String>)> = redis::cmd("XRANGE")
        .arg("stream:events:dead")
        .arg("-")
        .arg("+")
        .query(&mut env.redis.conn())
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0].1["ferry_error"].contains("event_type"),
        "{:?}",
        dead[0].1
    );
    assert_eq!(dead[0].1["data"], r#"{"camera_id": "cam-1"}"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_ingest_takes_over_a_dead_consumers_pending_entries() {
    let env = Env::new();
    let ctx = env.context().await;
    let mut conn = env.redis.conn();
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg("stream:events")
        .arg("ferry")
        .arg("0")
        .arg("MKSTREAM")
        .query(&mut conn)
        .unwrap();
    for i in 0..20 {
        xadd_event(&env.redis, "stream:events", "cam-7", i);
    }
    // A worker reads everything and dies without acknowledging.
    let _: Value2 = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("ferry")
        .arg("worker-that-died")
        .arg("COUNT")
        .arg(100)
        .arg("STREAMS")
        .arg("stream:events")
        .arg(">")
        .query(&mut conn)
        .unwrap();
    assert_eq!(pending(&env.redis, "stream:events", "ferry"), 20);
    std::thread::sleep(Duration::from_millis(300));
    let out = env
        .ferry(&["ingest", "--once", "--claim-idle", "0.2"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("taken over 20"),
        "{}",
        output_text(&out)
    );
    assert_eq!(pending(&env.redis, "stream:events", "ferry"), 0);
    let page = ctx
        .log
        .query(&events::EventQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.events.len(), 20);
    assert_eq!(
        page.events[0].timestamp.to_rfc3339(),
        "2024-10-11T12:00:00.500+00:00",
        "a timestamp without offset is UTC"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_stored_while_redis_is_down_and_published_when_it_returns() {
    let mut env = Env::new();
    let ctx = Arc::new(env.context().await);
    let router = env.router(env.options(), ServeOptions::default()).await;
    let stop = CancellationToken::new();
    let relay = {
        let ctx = ctx.clone();
        let stop = stop.clone();
        tokio::spawn(async move { events::relay(&ctx, false, stop).await })
    };
    env.redis.stop();
    for i in 0..20 {
        let body = json!({"event_type": "motion", "camera_id": format!("cam-{}", i % 2)});
        let (status, v) = call(&router, "POST", "/api/v1/events", Some(&body.to_string())).await;
        assert_eq!(
            status,
            StatusCode::CREATED,
            "stored although Redis is down: {v}"
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(ctx.log.stats().await.unwrap().unpublished, 20);
    env.redis.restart();
    let deadline = Instant::now() + Duration::from_secs(30);
    while ctx.log.stats().await.unwrap().unpublished > 0 {
        assert!(
            Instant::now() < deadline,
            "not published after Redis returned"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ids = env.history_ids();
    assert_eq!(ids.len(), 20);
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    stop.cancel();
    relay.await.unwrap().unwrap();
}

/// A TCP proxy to PostgreSQL that can be cut, to take the database away from Ferry.
struct Proxy {
    port: u16,
    tasks: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(target: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let tasks: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let target = target.to_string();
        let accept = {
            let tasks = tasks.clone();
            tokio::spawn(async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    let target = target.clone();
                    let task = tokio::spawn(async move {
                        if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                    tasks.lock().unwrap().push(task);
                }
            })
        };
        tasks.lock().unwrap().push(accept);
        Proxy { port, tasks }
    }

    /// Closes the listener and every connection.
    fn cut(&self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_down_answers_503_and_publishes_nothing() {
    let env = Env::new();
    let proxy = Proxy::start("127.0.0.1:5432").await;
    let db_name = env.db.url().rsplit('/').next().unwrap().to_string();
    let options = EventsOptions {
        postgres: format!("postgres://postgres@127.0.0.1:{}/{db_name}", proxy.port).into(),
        ..env.options()
    };
    let router = env.router(options, ServeOptions::default()).await;
    let body = json!({"event_type": "motion", "camera_id": "cam-1"}).to_string();
    let (status, _) = call(&router, "POST", "/api/v1/events", Some(&body)).await;
    assert_eq!(status, StatusCode::CREATED);

    proxy.cut();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let sub = Subscriber::start(&env.redis, "events");
    let (status, v) = call(&router, "POST", "/api/v1/events", Some(&body)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert!(v["error"].as_str().unwrap().contains("unavailable"), "{v}");
    let (status, _) = call(&router, "GET", "/api/v1/events", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let (status, v) = call(&router, "GET", "/healthz", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sub.count(), 0, "nothing published");
    // The one event stored before the cut is all the table holds.
    let ctx = env.context().await;
    assert_eq!(ctx.log.stats().await.unwrap().events, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_a_4xx_naming_the_field_and_store_nothing() {
    let env = Env::new();
    let options = EventsOptions {
        allowed_types: vec!["tracking".into(), "motion".into(), "anpr".into()],
        max_batch: 3,
        ..env.options()
    };
    let serve = ServeOptions {
        max_body_bytes: 2048,
        token: Some("s3cret".into()),
        ..ServeOptions::default()
    };
    let router = env.router(options, serve).await;
    let post = |body: String| {
        let router = router.clone();
        async move {
            common::call(
                &router,
                "POST",
                "/api/v1/events",
                Some(&body),
                Some("s3cret"),
            )
            .await
        }
    };
    let cases: Vec<(String, StatusCode, Option<&str>)> = vec![
        (json!({"event_type": "motion"}).to_string(), StatusCode::UNPROCESSABLE_ENTITY, Some("camera_id")),
        (json!({"event_type": "motion", "camera_id": "c", "frame_number": "x"}).to_string(), StatusCode::UNPROCESSABLE_ENTITY, Some("frame_number")),
        (json!({"event_type": "motion", "camera_id": "c", "event_data": [1]}).to_string(), StatusCode::UNPROCESSABLE_ENTITY, Some("event_data")),
        (json!({"event_type": "teleport", "camera_id": "c"}).to_string(), StatusCode::UNPROCESSABLE_ENTITY, Some("event_type")),
        (json!([{"event_type": "motion", "camera_id": "c"}, {"event_type": "teleport", "camera_id": "c"}]).to_string(), StatusCode::UNPROCESSABLE_ENTITY, Some("[1].event_type")),
        (json!([{"event_type": "motion", "camera_id": "c"}, {"event_type": "motion"}]).to_string(), StatusCode::UNPROCESSABLE_ENTITY, Some("[1]")),
        (json!({"event_type": "motion", "camera_id": "c", "color": "red"}).to_string(), StatusCode::UNPROCESSABLE_ENTITY, Some("color")),
        (json!({"event_type": "motion", "camera_id": "c", "timestamp": "noon"}).to_string(), StatusCode::UNPROCESSABLE_ENTITY, Some("timestamp")),
        ("{not json".to_string(), StatusCode::UNPROCESSABLE_ENTITY, None),
        (String::new(), StatusCode::BAD_REQUEST, None),
        (Value::Array(vec![json!({"event_type": "motion", "camera_id": "c"}); 4]).to_string(), StatusCode::PAYLOAD_TOO_LARGE, None),
        (json!({"event_type": "motion", "camera_id": "c", "snapshot_path": "x".repeat(4000)}).to_string(), StatusCode::PAYLOAD_TOO_LARGE, None),
    ];
    for (body, status, field) in cases {
        let (got, v) = post(body.clone()).await;
        assert_eq!(got, status, "{body:.80}: {v}");
        assert!(v["error"].is_string(), "a JSON error for {body:.80}: {v}");
        if let Some(f) = field {
            let named = v["field"].as_str().unwrap_or_default();
            assert!(
                named.starts_with(f),
                "{body:.80}: field {named:?}, wanted {f}: {v}"
            );
        }
    }
    let body = json!({"event_type": "motion", "camera_id": "c"}).to_string();
    let (status, v) = call(&router, "POST", "/api/v1/events", Some(&body)).await;
    assert_eq!(
        (status, v["field"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("authorization"))
    );
    for (uri, field) in [
        ("/api/v1/events?camera=c", "camera"),
        ("/api/v1/events?cursor=abc", "cursor"),
        ("/api/v1/events?since=yesterday", "since"),
        ("/api/v1/events?limit=0", "limit"),
        ("/api/v1/events/live?color=red", "color"),
        ("/api/v1/events?camera_id=a%00b", "camera_id"),
        ("/api/v1/events?event_type=%00", "event_type"),
        ("/api/v1/events/live?camera_id=a%00b", "camera_id"),
    ] {
        // With a token set, reads need one too (the read token would do).
        let (status, v) = common::call(&router, "GET", uri, None, Some("s3cret")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {v}");
        assert_eq!(v["field"], field, "{uri}: {v}");
    }
    let (status, v) =
        common::call(&router, "GET", "/api/v1/events/stats", None, Some("s3cret")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["events"], 0, "nothing stored: {v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_saves_batches_pages_history_and_streams_the_live_view() {
    let env = Env::new();
    let ctx = Arc::new(env.context().await);
    let router = env.router(env.options(), ServeOptions::default()).await;

    let live = Request::builder()
        .uri("/api/v1/events/live?camera_id=cam-1")
        .body(Body::empty())
        .unwrap();
    let resp = router.clone().oneshot(live).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()[header::CONTENT_TYPE], "text/event-stream");
    let mut body = resp.into_body();

    let events: Vec<Value> = (0..6)
        .map(|i| json!({"event_type": "motion", "camera_id": format!("cam-{}", i % 2), "frame_number": i, "idempotency_key": format!("k{i}")}))
        .collect();
    let (status, v) = call(
        &router,
        "POST",
        "/api/v1/events",
        Some(&Value::Array(events.clone()).to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let ids: Vec<i64> = v["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_i64().unwrap())
        .collect();
    assert_eq!(ids.len(), 6);
    let (status, again) = call(
        &router,
        "POST",
        "/api/v1/events",
        Some(&events[2].to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        (again["ids"][0].as_i64(), again["duplicates"].as_u64()),
        (Some(ids[2]), Some(1))
    );

    let out = events::relay(&ctx, true, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(out.published, 6);
    let mut text = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while text.matches("data:").count() < 3 {
        let frame = tokio::time::timeout_at(deadline.into(), body.frame())
            .await
            .expect("live events in time")
            .unwrap()
            .unwrap();
        if let Ok(data) = frame.into_data() {
            text.push_str(&String::from_utf8_lossy(&data));
        }
    }
    assert!(!text.contains("\"cam-0\""), "filtered by camera: {text}");
    assert!(text.contains(&format!("id: {}", ids[1])), "{text}");

    let (status, page) = call(
        &router,
        "GET",
        "/api/v1/events?camera_id=cam-0&limit=2",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let frames: Vec<i64> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["frame_number"].as_i64().unwrap())
        .collect();
    assert_eq!(frames, vec![4, 2]);
    let cursor = page["next_cursor"].as_i64().unwrap();
    let (_, page) = call(
        &router,
        "GET",
        &format!("/api/v1/events?camera_id=cam-0&limit=2&cursor={cursor}"),
        None,
    )
    .await;
    assert_eq!(page["events"][0]["frame_number"], 0);
    assert_eq!(page["next_cursor"], Value::Null);
    let (_, stats) = call(&router, "GET", "/api/v1/events/stats", None).await;
    assert_eq!(
        (stats["events"].as_i64(), stats["unpublished"].as_i64()),
        (Some(6), Some(0))
    );
}

/// Only the events job configured: `ferry serve` relays, answers its routes, says the tier job
/// is not configured, and loads no model (a model directory that does not exist would fail a
/// MiniLM load).
#[test]
fn ferry_serve_with_only_events_configured_starts_no_tier_job() {
    let env = Env::new();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let ctx = runtime.block_on(env.context());
    let sub = Subscriber::start(&env.redis, "events");
    let mut command = Command::new(env!("CARGO_BIN_EXE_ferry"));
    command
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args([
            "--events-postgres",
            &env.db.url(),
            "--events-redis",
            &env.redis.url(),
        ])
        .env_remove("FERRY_CONFIG")
        .env_remove("FERRY_REDIS")
        .env_remove("FERRY_STORE")
        .env("FERRY_MODEL_DIR", env.dir.path().join("no-model-here"))
        .current_dir(env.dir.path())
        .stderr(Stdio::null());
    let serve = common::serve::Serve::start(&mut command, "ferry serve prints its address");
    let addr = serve.loopback();
    let timeout = Duration::from_secs(10);
    let (status, body) = common::serve::request(&addr, "GET", "/healthz", None, None, timeout);
    assert_eq!(status, 200, "{body}");
    let health: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["events_postgres"], "ok", "{body}");
    assert!(
        health.get("store").is_none(),
        "no tier store is checked: {body}"
    );
    let (status, body) =
        common::serve::request(&addr, "GET", "/api/v1/tier/status", None, None, timeout);
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("tier job is not configured"), "{body}");
    let (status, _) = common::serve::request(&addr, "GET", "/api/v1/events", None, None, timeout);
    assert_eq!(status, 200);
    let saved = runtime
        .block_on(ctx.log.save_batch(&batch(4, 2, "events-only")))
        .unwrap();
    let got = sub.wait_for(4, Duration::from_secs(30));
    assert_eq!(
        assert_camera_order(&got),
        saved.iter().map(|s| s.id).collect()
    );
    assert!(
        !env.dir.path().join("ferry.db").exists(),
        "no default tier store was created"
    );
}

#[test]
fn ferry_serve_runs_the_relay_when_events_are_configured() {
    let env = Env::new();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let ctx = runtime.block_on(env.context());
    let sub = Subscriber::start(&env.redis, "events");
    let mut serve = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--similarity",
            "lexical",
        ])
        .args(["--redis", &env.redis.url()])
        .arg("--store")
        .arg(format!(
            "sqlite://{}",
            env.dir.path().join("t.db").display()
        ))
        .args([
            "--events-postgres",
            &env.db.url(),
            "--events-redis",
            &env.redis.url(),
        ])
        .env_remove("FERRY_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let saved = runtime
        .block_on(ctx.log.save_batch(&batch(5, 2, "serve")))
        .unwrap();
    let got = sub.wait_for(5, Duration::from_secs(30));
    serve.kill().unwrap();
    serve.wait().unwrap();
    assert_eq!(
        assert_camera_order(&got),
        saved.iter().map(|s| s.id).collect()
    );
}

/// A small deterministic pseudo-random sequence (xorshift), so a failure can be replayed.
struct Dice(u64);

impl Dice {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// What one plain-SQL producer committed, and the errors its transactions met.
#[derive(Default)]
struct SqlProducer {
    committed: Vec<i64>,
    rolled_back: Vec<i64>,
    errors: Vec<String>,
}

/// An application that knows nothing of Ferry: `transactions` transactions on one connection,
/// each inserting 1–8 events over random cameras with `INSERT` statements (single and
/// multi-row), some undone by `ROLLBACK TO SAVEPOINT`, one in eight rolled back.
async fn plain_sql_producer(url: String, seed: u64, transactions: usize) -> SqlProducer {
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut dice = Dice(seed);
    let mut out = SqlProducer::default();
    let insert = "INSERT INTO events (event_type, camera_id, event_data) VALUES ('sql', $1, $2::text::jsonb) RETURNING id";
    for t in 0..transactions {
        let result: Result<(), tokio_postgres::Error> = async {
            client.batch_execute("BEGIN").await?;
            let mut ids = Vec::new();
            let mut undone = Vec::new();
            for i in 0..=dice.below(8) {
                let camera = format!("cam-{}", dice.below(6));
                let data = json!({"seed": seed, "t": t, "i": i}).to_string();
                match dice.below(6) {
                    0 => {
                        client.batch_execute("SAVEPOINT s").await?;
                        let row = client.query_one(insert, &[&camera, &data]).await?;
                        undone.push(row.get::<_, i64>(0));
                        client.batch_execute("ROLLBACK TO SAVEPOINT s").await?;
                    }
                    1 => {
                        // Two cameras in one statement, in an order of its own.
                        let other = format!("cam-{}", dice.below(6));
                        let rows = client
                            .query(
                                "INSERT INTO events (event_type, camera_id) VALUES ('sql', $1), ('sql', $2) RETURNING id",
                                &[&other, &camera],
                            )
                            .await?;
                        ids.extend(rows.iter().map(|r| r.get::<_, i64>(0)));
                    }
                    _ => {
                        let row = client.query_one(insert, &[&camera, &data]).await?;
                        ids.push(row.get(0));
                    }
                }
                if dice.below(3) == 0 {
                    tokio::task::yield_now().await;
                }
            }
            if dice.below(8) == 0 {
                client.batch_execute("ROLLBACK").await?;
                out.rolled_back.extend(ids);
            } else {
                client.batch_execute("COMMIT").await?;
                out.committed.extend(ids);
            }
            out.rolled_back.extend(undone);
            Ok(())
        }
        .await;
        if let Err(e) = result {
            out.errors.push(e.to_string());
            let _ = client.batch_execute("ROLLBACK").await;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_sql_transactions_over_several_cameras_never_fail_and_sigkilled_relays_lose_nothing()
{
    let env = Env::new();
    let ctx = env.context().await;
    let mut relays: Vec<Child> = vec![env.relay_process(), env.relay_process()];
    let producers: Vec<_> = (0..4u64)
        .map(|p| tokio::spawn(plain_sql_producer(env.db.url(), 0x9E37_79B9 + p, 300)))
        .collect();
    // SIGKILL the relays one after the other while the producers run, and start new ones.
    for round in 0..4 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let victim = round % 2;
        relays[victim].kill().unwrap();
        relays[victim].wait().unwrap();
        relays[victim] = env.relay_process();
    }
    let mut committed = HashSet::new();
    let mut rolled_back = HashSet::new();
    let mut errors = Vec::new();
    for p in producers {
        let p = p.await.unwrap();
        committed.extend(p.committed);
        rolled_back.extend(p.rolled_back);
        errors.extend(p.errors);
    }
    assert!(
        errors.is_empty(),
        "{} application transactions failed, e.g. {}",
        errors.len(),
        errors[0]
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while ctx.log.stats().await.unwrap().unpublished > 0 {
        assert!(
            Instant::now() < deadline,
            "the relays did not drain the outbox"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for r in &mut relays {
        r.kill().unwrap();
        r.wait().unwrap();
    }
    // The history Stream holds each publication in order (duplicates from killed relays
    // included): every committed event, nothing rolled back, each camera in id order.
    let entries: Vec<(String, HashMap<String, String>)> = redis::cmd("XRANGE")
        .arg(HISTORY)
        .arg("-")
        .arg("+")
        .query(&mut env.redis.conn())
        .unwrap();
    let published: Vec<Value> = entries
        .iter()
        .map(|(_, f)| serde_json::from_str(&f["data"]).unwrap())
        .collect();
    let ids = assert_camera_order(&published);
    assert!(
        ids.is_disjoint(&rolled_back),
        "rolled-back events were published"
    );
    assert_eq!(
        ids.len(),
        committed.len(),
        "published once each, none missing"
    );
    assert_eq!(ids, committed);
    assert!(committed.len() > 2000, "{} events", committed.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_application_transaction_holds_back_later_ids_until_it_ends() {
    let env = Env::new();
    let ctx = env.context().await;
    let connect = || async {
        let (client, conn) = tokio_postgres::connect(&env.db.url(), tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        client
    };
    let (open, other) = (connect().await, connect().await);
    for end in ["COMMIT", "ROLLBACK"] {
        open.batch_execute(
            "BEGIN; INSERT INTO events (event_type, camera_id) VALUES ('sql', 'cam-1')",
        )
        .await
        .unwrap();
        // A later id of the same camera commits first; it must wait for the open one.
        tokio::time::timeout(
            Duration::from_secs(5),
            other.batch_execute(
                "INSERT INTO events (event_type, camera_id) VALUES ('sql', 'cam-1'), ('sql', 'cam-2')",
            ),
        )
        .await
        .expect("a producer never waits for another")
        .unwrap();
        // `--once` waits a few seconds for the open transaction, then stops leaving both queued.
        let out = env.relay_command(&["--once"]).output().unwrap();
        assert!(out.status.success(), "{}", output_text(&out));
        let stats = ctx.log.stats().await.unwrap();
        assert_eq!((stats.held_back, stats.in_flight_transactions), (2, 1));
        open.batch_execute(end).await.unwrap();
        let out = env.relay_command(&["--once"]).output().unwrap();
        assert!(out.status.success(), "{}", output_text(&out));
        assert_eq!(ctx.log.stats().await.unwrap().unpublished, 0);
    }
    let ids = env.history_ids();
    // COMMIT: the open transaction's id first; ROLLBACK: only the other two.
    assert_eq!(ids.len(), 5, "{ids:?}");
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
}
