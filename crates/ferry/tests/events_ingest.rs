//! `ferry events ingest` with entries that are not events, against a real Redis and PostgreSQL:
//! poison entries (NUL characters, timestamps PostgreSQL cannot hold, not JSON, no camera) are
//! dead-lettered and never block the good ones, a batch PostgreSQL refuses is split until the
//! bad entries are alone, and pending entries deleted from the Stream are acknowledged. Also
//! `ferry serve`'s answer (422 naming the field) for each value PostgreSQL would refuse.

mod common;

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::serve::{Serve, request};
use ferry_testkit::{PgDatabase, RedisServer, output_text};
use serde_json::{Value, json};

const STREAM: &str = "stream:events";
const DEAD: &str = "stream:events:dead";

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

    fn ingest_once(&self, extra: &[&str]) -> Output {
        let mut args = vec!["ingest", "--once", "--consumer", "ferry-test"];
        args.extend_from_slice(extra);
        self.ferry(&args).output().unwrap()
    }

    /// One value of a query (`psql -At`).
    fn sql(&self, query: &str) -> String {
        let out = Command::new("psql")
            .arg(self.db.url())
            .args(["-v", "ON_ERROR_STOP=1", "-Atc", query])
            .output()
            .expect("psql runs");
        assert!(out.status.success(), "{query}: {}", output_text(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn count(&self, query: &str) -> u64 {
        self.sql(query).parse().unwrap()
    }

    /// Events stored, and distinct idempotency keys among them.
    fn stored(&self) -> (u64, u64) {
        if self.sql("SELECT to_regclass('events') IS NULL") == "t" {
            return (0, 0); // the schema is not created yet
        }
        match self.sql("SELECT count(*) || ' ' || count(DISTINCT source_key) FROM events") {
            s if s.is_empty() => (0, 0),
            s => {
                let (a, b) = s.split_once(' ').unwrap();
                (a.parse().unwrap(), b.parse().unwrap())
            }
        }
    }

    fn xadd(&self, fields: &[(&str, &[u8])]) -> String {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(STREAM).arg("*");
        for (k, v) in fields {
            cmd.arg(*k).arg(*v);
        }
        cmd.query(&mut self.redis.conn()).unwrap()
    }

    fn pending(&self) -> u64 {
        let v: (u64, redis::Value, redis::Value, redis::Value) = redis::cmd("XPENDING")
            .arg(STREAM)
            .arg("ferry")
            .query(&mut self.redis.conn())
            .unwrap();
        v.0
    }

    fn dead_letters(&self) -> Vec<HashMap<String, Vec<u8>>> {
        let entries: Vec<(String, HashMap<String, Vec<u8>>)> = redis::cmd("XRANGE")
            .arg(DEAD)
            .arg("-")
            .arg("+")
            .query(&mut self.redis.conn())
            .unwrap();
        entries.into_iter().map(|(_, f)| f).collect()
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A good event in the old producers' format (a `data` field holding the JSON).
fn good(i: usize) -> Value {
    let mut e = json!({
        "event_type": "tracking",
        "camera_id": format!("cam-{}", i % 7),
        "timestamp": "2024-10-11T12:00:00.5",
        "frame_number": i,
        "snapshot_path": format!("snapshots/{i}.jpg"),
        "event_data": {"track": i, "boxes": [{"label": "car", "note": "\u{1}ok"}]},
    });
    // Edge values PostgreSQL does hold.
    match i {
        1 => e["timestamp"] = json!("-4713-11-24T00:00:00"), // its first instant
        2 => e["timestamp"] = json!(-210_866_803_200i64),
        3 => e["idempotency_key"] = json!("k".repeat(1024)),
        _ => {}
    }
    e
}

/// The poison entries of the issue, in four kinds; `None` is "not JSON". Each with the words
/// its dead letter's reason must hold.
fn poison(n: usize) -> (Vec<u8>, &'static str) {
    let base = |i: usize| good(100_000 + i);
    let nul = "A\u{0}B";
    let json = |v: Value| v.to_string().into_bytes();
    match n % 15 {
        // NUL characters (12)
        0 => {
            let mut e = base(n);
            e["event_data"]["plate"] = json!(nul);
            (json(e), "NUL")
        }
        1 => {
            let mut e = base(n);
            e["event_data"]["boxes"][0] = json!({ nul: 1 });
            (json(e), "NUL")
        }
        2 => {
            let mut e = base(n);
            e["snapshot_path"] = json!(nul);
            (json(e), "snapshot_path")
        }
        3 => {
            let mut e = base(n);
            e["idempotency_key"] = json!(format!("key-{n}-{nul}"));
            (json(e), "idempotency_key")
        }
        4 | 5 => {
            let mut e = base(n);
            e["event_data"] = json!({"deep": [[{"x": [nul]}]]});
            (json(e), "NUL")
        }
        // Timestamps PostgreSQL cannot hold (6)
        6 => {
            let mut e = base(n);
            e["timestamp"] = json!(-300_000_000_000i64);
            (json(e), "timestamp")
        }
        7 => {
            let mut e = base(n);
            e["timestamp"] = json!("-4713-11-23T23:59:59.999999");
            (json(e), "timestamp")
        }
        8 => {
            let mut e = base(n);
            e["timestamp"] = json!("-5000-01-01T00:00:00");
            (json(e), "timestamp")
        }
        // Not JSON (6)
        9 => (b"not json".to_vec(), "data"),
        10 => (
            br#"{"event_type": "tracking", "camera_id": "cam-1""#.to_vec(),
            "data",
        ),
        11 => (vec![0xff, 0xfe, b'{'], "data"),
        // No camera (6)
        12 | 13 => {
            let mut e = base(n);
            e.as_object_mut().unwrap().remove("camera_id");
            (json(e), "camera_id")
        }
        _ => {
            let mut e = base(n);
            e["camera_id"] = json!("");
            (json(e), "camera_id")
        }
    }
}

/// The issue's stream: 3,000 entries in the old format, every 100th of them poison (30, of the
/// four kinds). Returns the poison entries' ids with the words their reasons must hold.
fn poisoned_stream(env: &Env) -> HashMap<String, &'static str> {
    let mut bad = HashMap::new();
    for i in 0..3000 {
        if i % 100 == 50 {
            let (data, reason) = poison(i / 100);
            bad.insert(env.xadd(&[("data", data.as_slice())]), reason);
        } else {
            env.xadd(&[("data", good(i).to_string().as_bytes())]);
        }
    }
    assert_eq!(bad.len(), 30);
    bad
}

fn assert_dead_letters(env: &Env, bad: &HashMap<String, &'static str>) {
    let dead = env.dead_letters();
    assert_eq!(dead.len(), bad.len(), "one dead letter per poison entry");
    let mut seen = HashSet::new();
    for d in &dead {
        let source = text(&d["ferry_source_id"]);
        let reason = text(&d["ferry_error"]);
        let wanted = bad
            .get(&source)
            .unwrap_or_else(|| panic!("{source} is not a poison entry: {reason}"));
        assert!(
            reason.contains(wanted),
            "{source}: the reason {reason:?} should name {wanted}"
        );
        assert!(d.contains_key("data"), "the original fields are kept");
        assert!(seen.insert(source), "each poison entry dead-lettered once");
    }
}

/// Issue 12, §5: one bad entry failed its whole batch (stored 0, left 500 pending, exit 2).
#[test]
fn poison_entries_are_dead_lettered_and_the_good_ones_stored_once() {
    let env = Env::new();
    let bad = poisoned_stream(&env);
    let out = env.ingest_once(&[]);
    let report = output_text(&out);
    assert_eq!(out.status.code(), Some(1), "dead letters exit 1: {report}");
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("read 3000, stored 2970, already stored 0, rejected 30"),
        "{report}"
    );
    assert_eq!(env.stored(), (2970, 2970), "every good event once");
    assert_eq!(
        env.count("SELECT count(DISTINCT frame_number) FROM events WHERE frame_number < 3000"),
        2970
    );
    assert_eq!(env.pending(), 0, "{report}");
    assert_dead_letters(&env, &bad);
    // The edge values PostgreSQL holds were stored as sent.
    assert_eq!(
        env.sql(
            "SELECT string_agg(extract(epoch FROM \"timestamp\")::bigint::text, ',') \
             FROM events WHERE frame_number IN (1, 2)"
        ),
        "-210866803200,-210866803200",
        "4714-11-24 00:00:00 BC, PostgreSQL's first instant"
    );
    assert_eq!(
        env.count("SELECT count(*) FROM events WHERE length(source_key) = 1024"),
        1
    );

    // Nothing is left: a second run reads nothing and stores nothing.
    let again = env.ingest_once(&[]);
    assert_eq!(again.status.code(), Some(0), "{}", output_text(&again));
    assert!(String::from_utf8_lossy(&again.stdout).contains("read 0, stored 0"));
    assert_eq!(env.stored(), (2970, 2970));
    assert_eq!(env.dead_letters().len(), 30);
}

fn terminate(child: &mut Child) -> Output {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "ingest did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut stdout = String::new();
    let mut stderr = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    Output {
        status: child.wait().unwrap(),
        stdout: stdout.into_bytes(),
        stderr: stderr.into_bytes(),
    }
}

/// Issue 12, §5: without `--once` one bad entry was retried forever.
#[test]
fn without_once_a_poisoned_backlog_is_drained_and_never_retried() {
    let env = Env::new();
    let bad = poisoned_stream(&env);
    let mut child = env
        .ferry(&["ingest", "--consumer", "ferry-test"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let drained = loop {
        let done = env.stored().0 == 2970 && env.pending() == 0 && env.dead_letters().len() == 30;
        if done || Instant::now() > deadline {
            break done;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    // Still running after it drained the backlog: it waits for new entries, and takes them.
    std::thread::sleep(Duration::from_millis(500));
    let running = child.try_wait().unwrap().is_none();
    let late = env.xadd(&[("data", good(5000).to_string().as_bytes())]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while drained && env.stored().0 < 2971 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = terminate(&mut child);
    let report = output_text(&out);
    assert!(
        drained,
        "the backlog was not drained: stored {:?}, pending {}, dead letters {}: {report}",
        env.stored(),
        env.pending(),
        env.dead_letters().len()
    );
    assert!(running, "{report}");
    assert_eq!(env.stored(), (2971, 2971), "{late}: {report}");
    assert_eq!(env.pending(), 0);
    assert_dead_letters(&env, &bad);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("read 3001, stored 2971, already stored 0, rejected 30"),
        "{report}"
    );
    assert!(
        stdout.contains("retries 0"),
        "nothing was retried: {report}"
    );
    assert_eq!(out.status.code(), Some(1), "dead letters exit 1: {report}");
}

/// What validation cannot know (here a site's own CHECK constraint) PostgreSQL refuses: the
/// batch is split until each refused entry is alone; the rest is stored once, in order.
#[test]
fn a_batch_postgresql_refuses_is_split_until_the_bad_entries_are_alone() {
    let env = Env::new();
    // Create the schema, then add the site's rule.
    let out = env.ingest_once(&[]);
    assert!(out.status.success(), "{}", output_text(&out));
    env.sql(
        "ALTER TABLE events ADD CONSTRAINT site_no_test_cameras \
         CHECK (camera_id NOT LIKE 'test-%')",
    );
    let mut refused = HashSet::new();
    for i in 0..1000 {
        let mut e = good(i);
        if [0, 1, 2, 150, 499, 500, 998].contains(&i) {
            e["camera_id"] = json!(format!("test-{i}"));
            refused.insert(env.xadd(&[("data", e.to_string().as_bytes())]));
        } else {
            env.xadd(&[("data", e.to_string().as_bytes())]);
        }
    }
    let out = env.ingest_once(&["--batch", "250"]);
    let report = output_text(&out);
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("read 1000, stored 993, already stored 0, rejected 7"),
        "{report}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("retries 0"));
    assert_eq!(env.stored(), (993, 993));
    assert_eq!(env.pending(), 0);
    let dead = env.dead_letters();
    assert_eq!(dead.len(), 7);
    for d in &dead {
        let reason = text(&d["ferry_error"]);
        assert!(refused.contains(&text(&d["ferry_source_id"])), "{reason}");
        assert!(
            reason.contains("23514") && reason.contains("site_no_test_cameras"),
            "{reason}"
        );
    }
    // Each camera's events got ids in Stream order.
    assert_eq!(
        env.count(
            "SELECT count(*) FROM (SELECT frame_number < lag(frame_number) \
             OVER (PARTITION BY camera_id ORDER BY id) AS back FROM events) AS t WHERE back"
        ),
        0
    );
}

fn read_as(env: &Env, consumer: &str) {
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("ferry")
        .arg(consumer)
        .arg("COUNT")
        .arg(1000)
        .arg("STREAMS")
        .arg(STREAM)
        .arg(">")
        .query(&mut env.redis.conn())
        .unwrap();
}

fn xdel(env: &Env, ids: &[String]) {
    let n: u64 = redis::cmd("XDEL")
        .arg(STREAM)
        .arg(ids)
        .query(&mut env.redis.conn())
        .unwrap();
    assert_eq!(n, ids.len() as u64);
}

/// Entries deleted from the Stream while pending — another consumer's (XAUTOCLAIM reports them
/// as deleted) or this consumer's own (read back as an id without fields) — are acknowledged
/// and counted, never stored, dead-lettered or left pending.
#[test]
fn pending_entries_deleted_from_the_stream_are_acknowledged() {
    let env = Env::new();
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(STREAM)
        .arg("ferry")
        .arg("0")
        .arg("MKSTREAM")
        .query(&mut env.redis.conn())
        .unwrap();
    let ids: Vec<String> = (0..10)
        .map(|i| env.xadd(&[("data", good(i).to_string().as_bytes())]))
        .collect();
    // A worker reads them all and dies; three are deleted meanwhile.
    read_as(&env, "worker-that-died");
    xdel(&env, &ids[2..5]);
    std::thread::sleep(Duration::from_millis(300));
    let out = env.ingest_once(&["--claim-idle", "0.2"]);
    let report = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("taken over 7, deleted 3"),
        "{report}"
    );
    assert_eq!(env.pending(), 0, "{report}");
    assert_eq!(env.stored(), (7, 7));

    // This consumer's own pending entries, two deleted before it comes back.
    let ids: Vec<String> = (10..20)
        .map(|i| env.xadd(&[("data", good(i).to_string().as_bytes())]))
        .collect();
    read_as(&env, "ferry-test");
    xdel(&env, &ids[0..2]);
    let out = env.ingest_once(&[]);
    let report = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("read 10, stored 8, already stored 0, rejected 0"),
        "{report}"
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("deleted 2"),
        "{report}"
    );
    assert_eq!(env.pending(), 0, "{report}");
    assert_eq!(env.stored(), (15, 15));
    assert!(env.dead_letters().is_empty(), "{:?}", env.dead_letters());
}

const TOKEN: &str = "t0ken-for-tests";

/// `ferry serve` on a free port with the events job, its admin token set.
fn start_serve(env: &Env) -> Serve {
    Serve::start(
        Command::new(env!("CARGO_BIN_EXE_ferry"))
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
            .env("FERRY_SERVE_TOKEN", TOKEN)
            .stderr(Stdio::null()),
        "ferry serve prints its address",
    )
}

/// `POST /api/v1/events` with `body`; the status and the JSON answer.
fn post(serve: &Serve, body: &str) -> (u16, Value) {
    let (status, body) = request(
        &serve.addr,
        "POST",
        "/api/v1/events",
        Some(TOKEN),
        Some(body),
        Duration::from_secs(30),
    );
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// Issue 12: a NUL character in `event_data`, `snapshot_path` or `idempotency_key` answered
/// 503; every value PostgreSQL would refuse is a 422 naming the field.
#[test]
fn values_postgresql_would_refuse_get_422_naming_the_field() {
    let env = Env::new();
    let serve = start_serve(&env);
    let nul = "x\u{0}y";
    let event = |change: &dyn Fn(&mut Value)| {
        let mut e =
            json!({"event_type": "anpr", "camera_id": "gate-1", "event_data": {"plate": "AB-123"}});
        change(&mut e);
        e
    };
    let cases: Vec<(Value, &str)> = vec![
        (
            event(&|e| e["event_data"]["plate"] = json!(nul)),
            "event_data",
        ),
        (
            event(&|e| e["event_data"]["boxes"] = json!([{"labels": {nul: 1}}])),
            "event_data",
        ),
        (
            event(&|e| e["event_data"] = json!({ nul: "x" })),
            "event_data",
        ),
        (event(&|e| e["snapshot_path"] = json!(nul)), "snapshot_path"),
        (
            event(&|e| e["idempotency_key"] = json!(nul)),
            "idempotency_key",
        ),
        (
            event(&|e| e["idempotency_key"] = json!("k".repeat(1025))),
            "idempotency_key",
        ),
        (event(&|e| e["camera_id"] = json!(nul)), "camera_id"),
        (event(&|e| e["event_type"] = json!(nul)), "event_type"),
        (
            event(&|e| e["timestamp"] = json!(-300_000_000_000i64)),
            "timestamp",
        ),
        (
            event(&|e| e["timestamp"] = json!("-4713-11-23T23:59:59.999999")),
            "timestamp",
        ),
        (
            json!([event(&|_| {}), event(&|e| e["snapshot_path"] = json!(nul))]),
            "[1].snapshot_path",
        ),
    ];
    for (body, field) in &cases {
        let (status, answer) = post(&serve, &body.to_string());
        assert_eq!(status, 422, "{body}: {answer}");
        assert_eq!(answer["field"], *field, "{body}: {answer}");
        assert!(answer["error"].is_string(), "{answer}");
    }
    assert_eq!(
        env.stored(),
        (0, 0),
        "nothing of a refused request is stored"
    );
    // The limits themselves are accepted.
    let edge = event(&|e| {
        e["timestamp"] = json!("-4713-11-24T00:00:00");
        e["idempotency_key"] = json!("k".repeat(1024));
        e["event_data"]["note"] = json!("\u{1}");
    });
    let (status, answer) = post(&serve, &edge.to_string());
    assert_eq!(status, 201, "{answer}");
    assert_eq!(env.stored(), (1, 1));
}

/// A field name that is not UTF-8 made the whole read fail to parse (retried forever, like a
/// poison entry): it is a dead letter keeping the original bytes.
#[test]
fn an_entry_whose_field_name_is_not_utf8_is_a_dead_letter() {
    let env = Env::new();
    env.xadd(&[("data", good(0).to_string().as_bytes())]);
    let mut cmd = redis::cmd("XADD");
    cmd.arg(STREAM)
        .arg("*")
        .arg(&b"\xffname"[..])
        .arg(&b"\xfevalue"[..]);
    let bad: String = cmd.query(&mut env.redis.conn()).unwrap();
    env.xadd(&[("data", good(1).to_string().as_bytes())]);
    let out = env.ingest_once(&[]);
    let report = output_text(&out);
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("read 3, stored 2, already stored 0, rejected 1"),
        "{report}"
    );
    assert_eq!(env.pending(), 0);
    let dead: Vec<RawEntry> = redis::cmd("XRANGE")
        .arg(DEAD)
        .arg("-")
        .arg("+")
        .query(&mut env.redis.conn())
        .unwrap();
    assert_eq!(dead.len(), 1);
    let fields: HashMap<Vec<u8>, Vec<u8>> = dead[0].1.iter().cloned().collect();
    assert_eq!(fields[&b"ferry_source_id"[..]], bad.as_bytes());
    assert!(text(&fields[&b"ferry_error"[..]]).contains("not UTF-8"));
    assert_eq!(fields[&b"\xffname"[..]], b"\xfevalue");
}

/// A Stream entry as XRANGE returns it, field names and values as bytes.
type RawEntry = (String, Vec<(Vec<u8>, Vec<u8>)>);

#[test]
fn a_command_redis_refuses_is_reported_as_refused_not_as_an_unreachable_server() {
    // A stream name that holds a string, and a start id Redis cannot read: Redis is up and
    // answers, so the error must say what it refused instead of asking whether it is running.
    let env = Env::new();
    let _: () = redis::cmd("SET")
        .arg("not-a-stream")
        .arg("x")
        .query(&mut env.redis.conn())
        .unwrap();
    for extra in [
        &["--stream", "not-a-stream"][..],
        &["--stream", "fresh-stream", "--start-id", "not-an-id"][..],
    ] {
        let out = env.ingest_once(extra);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {stderr}");
        assert!(stderr.contains("refused a command"), "{extra:?}: {stderr}");
        assert!(!stderr.contains("is it running"), "{extra:?}: {stderr}");
    }
}
