//! The dashboard's API against a real `ferry serve` (real Redis and PostgreSQL): pausing the
//! relay holds events in the outbox until resumed, pausing the tier scheduler skips its
//! passes, the keys job's runs and a verify started through the API, the metric history, an
//! overview that answers while a store is down, and hostile parameters.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::keys::{OLD_TO_NEW_RULES, write_rules};
use common::serve::{self, Serve};
use common::tier::{TierSetup, now_ms, scene};
use ferry_testkit::{PgDatabase, output_text};
use serde_json::{Value, json};

const ADMIN: &str = "dashboard-api-admin-token";

struct Env {
    setup: TierSetup,
    _pg: PgDatabase,
    serve: Serve,
    addr: String,
}

impl Env {
    /// `ferry serve` with tier (passes every `interval` seconds), events, and `extra` TOML
    /// sections in which `__REDIS__` stands for the setup's Redis URL.
    fn start(interval: &str, extra: &str) -> Self {
        let pg = PgDatabase::create();
        let setup = TierSetup::new("");
        let url = setup.redis.url();
        let extra = extra.replace("__REDIS__", &url);
        let config = std::fs::read_to_string(&setup.config).unwrap();
        std::fs::write(
            &setup.config,
            format!(
                "{config}\n[events]\npostgres = \"{}\"\nredis = \"{url}\"\n\n[serve]\nhistory_interval_s = 0.5\n\n{extra}\n",
                pg.url()
            ),
        )
        .unwrap();
        let serve = Serve::start(
            setup
                .command(&["serve", "--listen", "127.0.0.1:0", "--interval", interval])
                .env("FERRY_SERVE_TOKEN", ADMIN)
                .env_remove("FERRY_SERVE_READ_TOKEN")
                .env_remove("FERRY_LISTEN")
                .env_remove("FERRY_EVENTS_POSTGRES")
                .env_remove("FERRY_EVENTS_REDIS")
                .stderr(Stdio::null()),
            "ferry serve prints its address",
        );
        let addr = serve.loopback();
        Env {
            setup,
            _pg: pg,
            serve,
            addr,
        }
    }

    fn call(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        let (status, text) = serve::request(
            &self.addr,
            method,
            path,
            Some(ADMIN),
            body,
            Duration::from_secs(20),
        );
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    fn get(&self, path: &str) -> Value {
        let (status, body) = self.call("GET", path, None);
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    /// Waits until `check` holds for `GET path`.
    fn wait(&self, path: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let body = self.get(path);
            if check(&body) {
                return body;
            }
            assert!(Instant::now() < deadline, "{what}: {body}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn card(&self, id: &str) -> Value {
        let overview = self.get("/api/v1/overview");
        overview["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("no card {id}: {overview}"))
    }
}

/// `[keys]` watching `__REDIS__` with `rules` (written into `dir`): the config's keys section.
fn keys_section(dir: &std::path::Path) -> (std::path::PathBuf, String) {
    let rules = write_rules(dir, OLD_TO_NEW_RULES);
    let extra = format!(
        "[keys]\nsource = \"__REDIS__\"\nrules = \"{}\"\n",
        rules.display()
    );
    (rules, extra)
}

/// `n` keys `old:0…` for the rules to rename.
fn seed_old_keys(conn: &mut redis::Connection, n: usize) {
    for i in 0..n {
        let _: () = redis::cmd("SET")
            .arg(format!("old:{i}"))
            .arg(i)
            .query(conn)
            .unwrap();
    }
}

/// `ferry keys ACTION --source SRC --rules RULES EXTRA…`, without the run-name and checkpoint
/// variables of the environment.
fn keys(
    action: &str,
    source: &str,
    rules: &std::path::Path,
    extra: &[&str],
) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["keys", action, "--source", source, "--rules"])
        .arg(rules)
        .args(extra)
        .env_remove("FERRY_RUN_NAME")
        .env_remove("FERRY_CHECKPOINT")
        .output()
        .unwrap()
}

#[test]
fn a_paused_relay_leaves_events_in_the_outbox_until_resumed() {
    let env = Env::start("3600", "");
    let (status, body) = env.call("POST", "/api/v1/jobs/events/pause", None);
    assert_eq!((status, &body["paused"]), (200, &json!(true)), "{body}");
    assert_eq!(
        body["stopped"], true,
        "the relay has stopped when the pause answers: {body}"
    );
    assert_eq!(env.card("events")["state"], "paused");
    let event = r#"[{"event_type":"motion","camera_id":"cam-p"},{"event_type":"person","camera_id":"cam-p"}]"#;
    let (status, body) = env.call("POST", "/api/v1/events", Some(event));
    assert_eq!(status, 201, "{body}");
    // Saving works while paused; publishing waits.
    std::thread::sleep(Duration::from_secs(2));
    let stats = env.get("/api/v1/events/stats");
    assert_eq!(stats["unpublished"], 2, "{stats}");
    let metrics = serve::request(
        &env.addr,
        "GET",
        "/metrics",
        Some(ADMIN),
        None,
        Duration::from_secs(10),
    )
    .1;
    assert!(
        metrics.contains("ferry_serve_job_paused{job=\"events\"} 1"),
        "{metrics}"
    );
    let (status, _) = env.call("POST", "/api/v1/jobs/events/resume", None);
    assert_eq!(status, 200);
    env.wait(
        "/api/v1/events/stats",
        "the outbox drains after resume",
        |s| s["unpublished"] == 0,
    );
    assert_eq!(env.card("events")["state"], "running");
    // A job that does not run here is refused, naming those that do.
    let (status, body) = env.call("POST", "/api/v1/jobs/keys/pause", None);
    assert_eq!(status, 404, "{body}");
    assert!(body["error"].as_str().unwrap().contains("events"), "{body}");
    for hostile in ["%00", "..%2Ftier", "tier%0A"] {
        let (status, _) = env.call("POST", &format!("/api/v1/jobs/{hostile}/pause"), None);
        assert_eq!(status, 404, "{hostile}");
    }
}

#[test]
fn a_paused_tier_scheduler_runs_no_pass_until_resumed() {
    let env = Env::start("1", "");
    env.wait("/api/v1/tier/history", "the first pass", |h| {
        !h.as_array().unwrap().is_empty()
    });
    let (status, _) = env.call("POST", "/api/v1/jobs/tier/pause", None);
    assert_eq!(status, 200);
    // A pass that was running may still finish; after that, none.
    std::thread::sleep(Duration::from_millis(1500));
    let before = env
        .get("/api/v1/tier/history?limit=1000")
        .as_array()
        .unwrap()
        .len();
    let mut conn = env.setup.conn();
    scene(
        &mut conn,
        "cam-t",
        now_ms() - 3 * 3_600_000,
        6,
        &["a dog sleeps in the sun"],
    );
    std::thread::sleep(Duration::from_secs(3));
    let after = env
        .get("/api/v1/tier/history?limit=1000")
        .as_array()
        .unwrap()
        .len();
    assert_eq!(before, after, "a paused scheduler ran a pass");
    let card = env.card("tier");
    assert_eq!(card["state"], "paused", "{card}");
    let hot = env.get("/api/v1/tier/hot?camera_id=cam-t");
    assert_eq!(hot["entries"], 6, "{hot}");
    assert_eq!(hot["captions"][0]["caption"], "a dog sleeps in the sun");
    env.call("POST", "/api/v1/jobs/tier/resume", None);
    env.wait(
        "/api/v1/tier/events?camera_id=cam-t",
        "a pass after resume",
        |e| !e.as_array().unwrap().is_empty(),
    );
    let (status, _) = env.call("GET", "/api/v1/tier/hot", None);
    assert_eq!(status, 400, "the camera is required");
    let (status, _) = env.call("GET", "/api/v1/tier/hot?camera_id=a%00b", None);
    assert_eq!(status, 400, "a NUL in the camera id");
}

#[test]
fn keys_runs_and_a_verify_through_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let (rules, keys_toml) = keys_section(dir.path());
    let extra = format!(
        "{keys_toml}\n[vectors]\nstate = \"__REDIS__\"\nname = \"media\"\nvector_set = \"media\"\n"
    );
    let env = Env::start("3600", &extra);
    let url = env.setup.redis.url();
    seed_old_keys(&mut env.setup.conn(), 30);
    for run in ["run-a", "run-b"] {
        let out = keys("apply", &url, &rules, &["--run-name", run, "-y"]);
        assert!(out.status.success(), "{}", output_text(&out));
    }
    let runs = env.get("/api/v1/keys/runs");
    let names: Vec<&str> = runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["run_name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["run-b", "run-a"], "newest first: {runs}");
    let one = env.get("/api/v1/keys/runs/run-a");
    assert_eq!(one["run"]["state"]["state"], "completed", "{one}");
    assert_eq!(one["run"]["state"]["stats"]["migrated"], 30, "{one}");
    let (status, body) = env.call("POST", "/api/v1/keys/runs/run-a/verify", None);
    assert_eq!(status, 202, "{body}");
    let done = env.wait("/api/v1/keys/runs/run-a", "the verify finishes", |r| {
        r["run"]["verify"]["state"] == "done"
    });
    assert_eq!(done["run"]["verify"]["outcome"]["ok"], 30, "{done}");
    for (path, want) in [
        ("/api/v1/keys/runs/nope", 404),
        ("/api/v1/keys/runs/..%2Fx", 400),
        ("/api/v1/keys/runs/a%00b", 400),
    ] {
        let (status, body) = env.call("GET", path, None);
        assert_eq!(status, want, "{path}: {body}");
    }
    let (status, body) = env.call("POST", "/api/v1/keys/runs/nope/verify", None);
    assert_eq!(status, 404, "{body}");
    let plan = env.get("/api/v1/keys/plan");
    assert!(plan["computed_at"].is_string(), "{plan}");
    let vectors = env.get("/api/v1/vectors");
    assert_eq!(vectors["status"]["state"], "not started", "{vectors}");
    let card = env.card("keys");
    assert_eq!(card["state"], "idle", "{card}");
    assert_eq!(
        card["progress"]["done"], card["progress"]["total"],
        "{card}"
    );
}

#[test]
fn the_overview_answers_while_a_store_is_down_and_the_history_draws_counters() {
    // The keys job's source is a port nothing listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (_rules, extra) = keys_section(dir.path());
    let extra = extra.replace("__REDIS__", &format!("redis://{dead}"));
    let env = Env::start("3600", &extra);
    let started = Instant::now();
    let card = env.card("keys");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the overview waited on a dead store"
    );
    assert_eq!(card["state"], "failing", "{card}");
    assert!(
        card["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{card}"
    );
    assert_eq!(env.card("tier")["state"], "idle");
    let (status, _) = env.call(
        "POST",
        "/api/v1/events",
        Some(r#"{"event_type":"motion","camera_id":"cam-h"}"#),
    );
    assert_eq!(status, 201);
    let history = env.wait(
        "/api/v1/metrics/history?metrics=ferry_events_saved_total,ferry_events_published_total&minutes=5",
        "the saved and published counters in the history",
        |h| {
            let series = h["series"].as_array().unwrap();
            series.iter().any(|s| s["metric"] == "ferry_events_saved_total")
                && series.iter().any(|s| s["metric"] == "ferry_events_published_total")
        },
    );
    assert_eq!(history["interval_s"], 0.5, "{history}");
    for bad in [
        "/api/v1/metrics/history",
        "/api/v1/metrics/history?metrics=nope_total",
        "/api/v1/metrics/history?metrics=ferry_events_saved_total&minutes=0",
        "/api/v1/metrics/history?metrics=ferry_events_saved_total&minutes=99999",
        "/api/v1/metrics/history?metrics=ferry_events_saved_total&extra=1",
    ] {
        let (status, body) = env.call("GET", bad, None);
        assert_eq!(status, 400, "{bad}: {body}");
    }
    drop(env.serve);
}

#[test]
fn the_jobs_come_back_after_redis_restarts_and_live_viewers_share_one_subscription() {
    let dir = tempfile::tempdir().unwrap();
    let (_rules, extra) = keys_section(dir.path());
    let mut env = Env::start("1", &extra);
    env.wait("/api/v1/overview", "every card healthy", |o| {
        o["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["state"] != "failing")
    });
    // Three live viewers: one Redis subscription between them.
    let viewers: Vec<std::net::TcpStream> = (0..3)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(&env.addr).unwrap();
            use std::io::Write;
            write!(
                s,
                "GET /api/v1/events/live HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\n\r\n"
            )
            .unwrap();
            s
        })
        .collect();
    let mut conn = env.setup.conn();
    let deadline = Instant::now() + Duration::from_secs(10);
    let pubsub_clients = |conn: &mut redis::Connection| -> usize {
        let list: String = redis::cmd("CLIENT")
            .arg("LIST")
            .arg("TYPE")
            .arg("pubsub")
            .query(conn)
            .unwrap();
        list.lines().count()
    };
    while pubsub_clients(&mut conn) == 0 {
        assert!(Instant::now() < deadline, "no live subscription");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        pubsub_clients(&mut conn),
        1,
        "one subscription for three viewers"
    );
    let mut viewers = viewers;
    let mut watching = viewers.pop().unwrap();
    drop(viewers);

    // Redis goes away and comes back (empty): the tier job, the keys card and healthz recover.
    env.setup.redis.restart();
    env.wait(
        "/api/v1/overview",
        "the cards recover after the restart",
        |o| {
            o["jobs"]
                .as_array()
                .unwrap()
                .iter()
                .all(|c| c["state"] != "failing")
        },
    );
    let before = env
        .get("/api/v1/tier/history?limit=1000")
        .as_array()
        .unwrap()
        .len();
    env.wait(
        "/api/v1/tier/history?limit=1000",
        "a tier pass after the restart",
        |h| h.as_array().unwrap().len() > before,
    );
    let (status, body) = env.call("GET", "/healthz", None);
    assert_eq!(status, 200, "{body}");
    // The viewer that stayed was told of the gap, and that the subscription is back.
    watching
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !seen.contains("data: back") && Instant::now() < deadline {
        let mut buf = [0u8; 4096];
        if let Ok(n) = std::io::Read::read(&mut watching, &mut buf) {
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    }
    assert!(
        seen.contains("event: status\ndata: gap") && seen.contains("data: back"),
        "{seen}"
    );
    // An unknown path and a wrong method answer in the JSON error shape.
    let (status, body) = env.call("GET", "/api/v1/nothing", None);
    assert_eq!(status, 404);
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("/api/v1/nothing")),
        "{body}"
    );
    let (status, body) = env.call("DELETE", "/api/v1/overview", None);
    assert_eq!(status, 405);
    assert!(body["error"].is_string(), "{body}");
}

#[test]
fn a_killed_keys_run_shows_interrupted_and_a_verify_of_another_target_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (rules, extra) = keys_section(dir.path());
    let env = Env::start("3600", &extra);
    let url = env.setup.redis.url();
    let other = ferry_testkit::RedisServer::start();
    let mut conn = env.setup.conn();
    seed_old_keys(&mut conn, 20);
    // A run into another target, checkpoints on the watched Redis.
    let to_other = ["--target", &other.url(), "--checkpoint", &url];
    let out = keys(
        "apply",
        &url,
        &rules,
        &[&to_other[..], &["--run-name", "elsewhere", "-y"]].concat(),
    );
    assert!(out.status.success(), "{}", output_text(&out));
    let (status, body) = env.call("POST", "/api/v1/keys/runs/elsewhere/verify", None);
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("ferry keys verify"),
        "{body}"
    );
    // A run that says `running` while nobody holds its lease died.
    let state_key = "ferry:{keys/elsewhere}:state";
    let saved: String = redis::cmd("GET").arg(state_key).query(&mut conn).unwrap();
    let mut saved: Value = serde_json::from_str(&saved).unwrap();
    saved["state"] = json!("running");
    let _: () = redis::cmd("SET")
        .arg(state_key)
        .arg(saved.to_string())
        .query(&mut conn)
        .unwrap();
    let run = env.get("/api/v1/keys/runs/elsewhere");
    assert_eq!(run["run"]["status"], "interrupted", "{run}");
    assert!(run["run"]["eta_s"].is_null(), "{run}");
    let card = env.card("keys");
    assert_eq!(card["state"], "failing", "{card}");
    assert!(
        card["reason"].as_str().unwrap().contains("elsewhere"),
        "{card}"
    );
    // Run names that are only dots cannot be named in a URL or a directory.
    for name in [".", ".."] {
        let out = keys("plan", &url, &rules, &["--run-name", name]);
        assert_eq!(out.status.code(), Some(2), "{name}: {}", output_text(&out));
    }
}
