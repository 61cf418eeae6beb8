//! A Redis, an event store and a config file for the tier job's tests, and writing captions.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{SystemTime, UNIX_EPOCH};

use ferry_testkit::{RedisServer, output_text as text};
use redis::Connection;
use serde_json::Value;

/// One hour in milliseconds.
pub const HOUR: i64 = 3_600_000;

/// The wall clock in Unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A test's Redis, event store and config file (`ferry.toml` in a temporary directory).
pub struct TierSetup {
    /// The captions' Redis.
    pub redis: RedisServer,
    /// The temporary directory of the config file, the SQLite store and the runs.
    pub dir: tempfile::TempDir,
    /// The config file.
    pub config: PathBuf,
}

impl TierSetup {
    /// Lexical similarity, SQLite in the temp dir, `extra` TOML lines appended to `[tier]`.
    pub fn new(extra: &str) -> Self {
        Self::with_store(None, extra)
    }

    /// [`TierSetup::new`] with the event store `store` (a URL) instead of SQLite when given.
    pub fn with_store(store: Option<&str>, extra: &str) -> Self {
        let redis = RedisServer::start();
        let dir = tempfile::tempdir().unwrap();
        let store = store
            .map(str::to_string)
            .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("events.db").display()));
        let config = dir.path().join("ferry.toml");
        std::fs::write(
            &config,
            format!(
                "[tier]\nredis = \"{}\"\nstore = \"{store}\"\nsimilarity = \"lexical\"\n{extra}\n",
                redis.url()
            ),
        )
        .unwrap();
        TierSetup { redis, dir, config }
    }

    /// A connection to the captions' Redis.
    pub fn conn(&self) -> Connection {
        self.redis.conn()
    }

    /// The command `ferry --config <config> ARGS…`, run in the temp dir with a 1 s lease and
    /// without the failpoint, pausepoint, store and Redis variables of the environment.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_ferry"));
        c.arg("--config")
            .arg(&self.config)
            .args(args)
            .current_dir(self.dir.path())
            .env("FERRY_LEASE_TTL_MS", "1000")
            .env_remove("FERRY_FAILPOINT")
            .env_remove("FERRY_PAUSEPOINT")
            .env_remove("FERRY_STORE")
            .env_remove("FERRY_REDIS");
        c
    }

    /// Runs `ferry --config <config> ARGS…`.
    pub fn ferry(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run ferry")
    }

    /// Runs `ferry --config <config> ARGS…` and asserts that it exits 0.
    pub fn run_ok(&self, args: &[&str]) -> Output {
        let out = self.ferry(args);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        out
    }

    /// Every stored event (`tier events --json`), sorted by camera and start.
    pub fn events(&self) -> Vec<Value> {
        let out = self.run_ok(&["tier", "events", "--limit", "100000", "--json"]);
        let mut events: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
        events.sort_by_key(|e| {
            (
                e["camera_id"].as_str().unwrap().to_string(),
                e["start_ms"].as_i64(),
            )
        });
        events
    }

    /// The run history (`tier history --json`).
    pub fn history(&self) -> Vec<Value> {
        let out = self.run_ok(&["tier", "history", "--limit", "1000", "--json"]);
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// The stored watermark of `camera` (`tier status --json`; the camera must still have
    /// captions in Redis to be listed).
    pub fn watermark(&self, camera: &str) -> Value {
        let out = self.run_ok(&["tier", "status", "--json"]);
        let status: Value = serde_json::from_slice(&out.stdout).unwrap();
        status["cameras"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["camera_id"] == camera)
            .map(|c| c["watermark"].clone())
            .unwrap_or_else(|| panic!("{camera} not in the status: {status}"))
    }
}

/// Appends a caption to `captions:{camera}` with entry id `{ms}-{seq}`.
pub fn xadd(conn: &mut Connection, camera: &str, ms: i64, seq: u64, caption: &str) {
    let _: String = redis::cmd("XADD")
        .arg(format!("captions:{camera}"))
        .arg(format!("{ms}-{seq}"))
        .arg("caption")
        .arg(caption)
        .query(conn)
        .unwrap();
}

/// `n` captions of scene `texts`, one every 10 s from `start`; returns the next free time.
pub fn scene(conn: &mut Connection, camera: &str, start: i64, n: usize, texts: &[&str]) -> i64 {
    for i in 0..n {
        xadd(
            conn,
            camera,
            start + i as i64 * 10_000,
            0,
            texts[i % texts.len()],
        );
    }
    start + n as i64 * 10_000
}
