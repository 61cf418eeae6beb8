//! `ferry demo`: the keys, tier, events, bridge and vectors jobs end to end on generated seed-style data (each
//! job's part is in its folder: `jobs/<job>/demo.rs`).
//!
//! Starts a throwaway `redis-server` (unless `--redis` names one), fills it with keys in the old
//! naming scheme, then runs analyze → plan → apply → verify with the example rules and writes a
//! report; then fills caption streams of a few cameras and drains them with one tier pass into
//! a throwaway SQLite store, printing the events; then saves analytics events in a throwaway
//! PostgreSQL database and publishes them on Redis Pub/Sub through the outbox relay; then
//! bridges camera frames from a throwaway Kafka-protocol broker to a Redis Stream as Protocol
//! Buffers with recompressed images; then moves embeddings from a throwaway FalkorDB into a Redis
//! vector set; and ends by serving the dashboard over the demo's stores until Ctrl-C.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ferry_connectors::redis::RedisEndpoint;
use ferry_core::secret::SecretUrl;

use crate::jobs;

mod dashboard;

pub use crate::jobs::keys::demo::{SEED_RULES, seed_commands};

/// A `redis-server` process that lives as long as this value.
#[derive(Debug)]
pub struct LocalRedis {
    child: Child,
    port: u16,
}

impl LocalRedis {
    /// Starts `redis-server` on a free port with nothing persisted.
    pub fn start(dir: &Path) -> anyhow::Result<Self> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                anyhow::anyhow!("cannot start redis-server ({e}); install it with `make demo` (scripts/setup.sh) or pass --redis URL")
            })?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                anyhow::bail!("redis-server did not start on port {port}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Self { child, port })
    }

    /// `redis://127.0.0.1:PORT/0`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
}

impl Drop for LocalRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Options of `ferry demo`.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// A Redis to use instead of a throwaway one (its db gets demo keys).
    pub redis: Option<SecretUrl>,
    /// Keys to generate.
    pub keys: usize,
    /// Where to write the report.
    pub report: PathBuf,
    /// PostgreSQL server (`postgres://user@host:port`) for the events part.
    pub postgres: SecretUrl,
    /// End by serving the dashboard over the demo's stores until Ctrl-C.
    pub serve: bool,
    /// Where the dashboard listens (another free port when this one is taken).
    pub listen: std::net::SocketAddr,
}

/// Runs the demo and prints what each step did.
pub async fn run(opts: DemoOptions) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("ferry-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let local = match &opts.redis {
        Some(_) => None,
        None => Some(LocalRedis::start(&dir)?),
    };
    let url = opts
        .redis
        .as_ref()
        .map(|r| r.expose().to_string())
        .or_else(|| local.as_ref().map(LocalRedis::url))
        .expect("a Redis URL");
    println!(
        "ferry demo: Redis at {}",
        ferry_core::report::display_key(ferry_core::secret::redact(&url).as_bytes())
    );

    let endpoint = RedisEndpoint::connect(&url, None).await?;
    // Each job's part lives in its folder (`jobs/<job>/demo.rs`).
    jobs::keys::demo::part(&endpoint, &url, &dir, &opts).await?;
    jobs::tier::demo::part(&endpoint, &url, &dir).await?;
    jobs::events::demo::part(&url, opts.postgres.expose()).await?;
    jobs::bridge::demo::part(&url).await?;
    jobs::vectors::demo::part().await?;
    let served = if opts.serve {
        dashboard::part(&url, &dir, &opts).await
    } else {
        println!(
            "\n== dashboard: not started (--no-serve); `ferry demo` serves it at the end, and \
             `ferry serve` does over your own stores"
        );
        Ok(())
    };
    let _ = std::fs::remove_dir_all(&dir);
    served
}
