//! `ferry demo`: the keys, tier and events jobs end to end on generated seed-style data.
//!
//! Starts a throwaway `redis-server` (unless `--redis` names one), fills it with keys in the old
//! naming scheme, then runs analyze → plan → apply → verify with the example rules and writes a
//! report; then fills caption streams of a few cameras and drains them with one tier pass into
//! a throwaway SQLite store, printing the events; then saves analytics events in a throwaway
//! PostgreSQL database and publishes them on Redis Pub/Sub through the outbox relay.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ferry_connectors::redis::{Cmd, RedisEndpoint, cmd};
use ferry_connectors::secret::SecretUrl;
use tokio_util::sync::CancellationToken;

use crate::jobs::keys::{self, KeysContext, KeysOptions};

/// The example rules shipped with Ferry (the seed's five mappings).
pub const SEED_RULES: &str = include_str!("../../../config/examples/seed-002-rules.toml");
const OLD: &str = "josancamon:rayban-meta-glasses-api:";

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

/// A tiny deterministic generator for demo data.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n.max(1)
    }
}

/// Commands that fill a Redis with `n` seed-style keys (cache 53 %, reminder 17 %, history
/// 13 %, profile 10 %, cancellation 3 %, plus a few keys outside the old prefix); about half
/// carry a TTL.
pub fn seed_commands(n: usize, seed: u64) -> Vec<Cmd> {
    let mut rnd = Lcg(seed);
    let mut cmds = Vec::with_capacity(n * 2);
    for i in 0..n {
        let uid = 100_000_000_000 + rnd.below(900_000_000_000);
        let kind = rnd.below(100);
        let key = if kind < 53 {
            let query = format!("weather in city {i} on day {}", rnd.below(365));
            let key = format!("{OLD}{}", BASE64.encode(query.as_bytes()));
            let answer = "x".repeat(50 + rnd.below(550) as usize);
            cmds.push(
                cmd("SET")
                    .arg(&key)
                    .arg(format!("{{\"answer\":\"{answer}\",\"i\":{i}}}"))
                    .clone(),
            );
            key
        } else if kind < 70 {
            let key = format!("{OLD}reminder:evt_{i:08}_{}", rnd.below(1_000_000));
            let text = "call mom ".repeat(1 + rnd.below(5) as usize);
            cmds.push(
                cmd("HSET")
                    .arg(&key)
                    .arg("user")
                    .arg(uid)
                    .arg("text")
                    .arg(text)
                    .arg("at")
                    .arg(1_700_000_000 + rnd.below(10_000_000))
                    .clone(),
            );
            key
        } else if kind < 83 {
            let key = format!("{OLD}conversation_history:{uid}{i}");
            let mut c = cmd("RPUSH");
            c.arg(&key);
            for _ in 0..(1 + rnd.below(11)) {
                let role = if rnd.below(2) == 0 { "user" } else { "model" };
                c.arg(format!(
                    "{{\"role\":\"{role}\",\"text\":\"{}\"}}",
                    "hi ".repeat(3 + rnd.below(37) as usize)
                ));
            }
            cmds.push(c);
            key
        } else if kind < 93 {
            let key = format!("{OLD}user_profile:{uid}{i}");
            cmds.push(
                cmd("SET")
                    .arg(&key)
                    .arg(format!("{{\"name\":\"user {i}\",\"tz\":\"UTC\"}}"))
                    .clone(),
            );
            key
        } else if kind < 96 {
            let key = format!("{OLD}cancellation:wa:{uid}{i}");
            cmds.push(cmd("SET").arg(&key).arg("1").clone());
            key
        } else {
            let key = format!("other-app:session:{i}");
            cmds.push(cmd("SET").arg(&key).arg("unrelated").clone());
            key
        };
        if rnd.below(2) == 0 {
            cmds.push(
                cmd("PEXPIRE")
                    .arg(&key)
                    .arg((3600 + rnd.below(82_800)) * 1000)
                    .clone(),
            );
        }
    }
    cmds
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
        crate::report::display_key(ferry_connectors::secret::redact(&url).as_bytes())
    );

    let endpoint = RedisEndpoint::connect(&url, None).await?;
    keys_part(&endpoint, &url, &dir, &opts).await?;
    tier_part(&endpoint, &url, &dir).await?;
    events_part(&url, opts.postgres.expose()).await?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// The keys part: `opts.keys` seed-style keys in the old naming scheme, then analyze → plan →
/// apply → verify with the example rules, and the apply report written to `opts.report`.
async fn keys_part(
    endpoint: &RedisEndpoint,
    url: &str,
    dir: &Path,
    opts: &DemoOptions,
) -> anyhow::Result<()> {
    fill_old_keys(endpoint, opts.keys).await?;
    println!(
        "1. filled {} keys in the old naming scheme (josancamon:rayban-meta-glasses-api:…)",
        opts.keys
    );

    let rules = dir.join("seed-002-rules.toml");
    std::fs::write(&rules, SEED_RULES)?;
    let ctx = KeysContext::open(KeysOptions {
        source: url.into(),
        rules,
        run_name: format!("demo-{}", std::process::id()),
        ..KeysOptions::default()
    })
    .await?;

    let analysis = keys::analyze(&ctx).await?;
    println!(
        "2. analyze: {} keys scanned, {} matched, {} left alone",
        analysis.scanned, analysis.matched, analysis.unmatched
    );
    for (rule, a) in &analysis.per_rule {
        println!(
            "     {rule:<13} {:>7} keys  e.g. {}",
            a.keys,
            a.samples
                .first()
                .map(|s| format!("{} -> {}", s[0], s[1]))
                .unwrap_or_default()
        );
    }
    let plan = keys::plan(&ctx).await?;
    println!("3. plan: {:?} (nothing written)", plan.actions);
    let applied = keys::apply(&ctx, CancellationToken::new()).await?;
    println!(
        "4. apply: {} migrated, {} skipped, {} failed, {:.0} keys/s",
        applied.stats.migrated,
        applied.stats.skipped_existing,
        applied.stats.failed,
        applied.keys_per_s
    );
    let verified = keys::verify(&ctx).await?;
    println!(
        "5. verify: {} checked, {} ok, {} differences",
        verified.checked,
        verified.ok,
        verified.failures()
    );

    let report = crate::report::Report::new(
        "keys",
        "apply",
        false,
        applied.started,
        serde_json::to_value(&applied.stats)?,
        applied.errors.clone(),
    )
    .with("per_rule", &applied.per_rule)
    .with("keys_per_s", applied.keys_per_s)
    .with("analysis", &analysis)
    .with("verify", &verified);
    report.write(&opts.report, crate::report::ReportFormat::Json)?;
    println!("report: {}", opts.report.display());
    if verified.failures() > 0 || applied.stats.failed > 0 {
        anyhow::bail!("the demo found differences; see the report");
    }
    Ok(())
}

/// Fills Redis with `n` seed-style keys (see [`seed_commands`]), 2000 commands at a time.
async fn fill_old_keys(endpoint: &RedisEndpoint, n: usize) -> anyhow::Result<()> {
    let data = seed_commands(n, 7);
    for chunk in data.chunks(2000) {
        for r in endpoint
            .run(chunk.iter().map(|c| (Vec::new(), c.clone())).collect())
            .await?
        {
            r?;
        }
    }
    Ok(())
}

/// The events part: a throwaway database on `server`, events saved by two producers (the
/// library and a plain SQL INSERT), published by the relay, received by a subscriber.
async fn events_part(redis_url: &str, server: &str) -> anyhow::Result<()> {
    let server = server.trim_end_matches('/');
    let name = format!("ferry_demo_{}", std::process::id());
    let (admin, connection) = tokio_postgres::connect(&format!("{server}/postgres"), tokio_postgres::NoTls)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot reach PostgreSQL at {} ({e}); `make demo` starts it (scripts/setup.sh), or pass --postgres",
                ferry_connectors::schema::redact_url(server)
            )
        })?;
    tokio::spawn(connection);
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await?;
    let result = events_demo(redis_url, &format!("{server}/{name}")).await;
    let _ = admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await;
    result
}

async fn events_demo(redis_url: &str, postgres: &str) -> anyhow::Result<()> {
    use crate::jobs::events::{self, EventQuery, EventsContext, EventsOptions, NewEvent};
    use futures::StreamExt;

    let ctx = EventsContext::connect(EventsOptions {
        postgres: postgres.into(),
        redis: redis_url.into(),
        connections: 2,
        ..EventsOptions::default()
    })
    .await?;
    let mut pubsub = redis::Client::open(redis_url)?.get_async_pubsub().await?;
    pubsub.subscribe("events").await?;
    let subscriber = tokio::spawn(async move {
        let mut received = Vec::new();
        let mut messages = pubsub.into_on_message();
        while let Ok(Some(msg)) =
            tokio::time::timeout(Duration::from_secs(3), messages.next()).await
        {
            received.push(msg.get_payload::<String>().unwrap_or_default());
        }
        received
    });
    let cameras = ["gate", "dock", "field-north"];
    let batch: Vec<NewEvent> = (0..24)
        .map(|i| {
            let camera = cameras[i % 3];
            let mut e = match i % 4 {
                0 => NewEvent::new("anpr", camera).with_data(
                    serde_json::json!({"plate": format!("AB-{:03}", 100 + i), "confidence": 0.97}),
                ),
                1 => NewEvent::new("motion", camera)
                    .with_data(serde_json::json!({"area_pct": 12 + i})),
                _ => NewEvent::new("tracking", camera)
                    .with_data(serde_json::json!({"track_id": i / 2, "bbox": [10, 20, 110, 220]})),
            };
            e.frame_number = Some(100 * i as i64);
            e.snapshot_path = Some(format!("snapshots/{camera}/{}.jpg", 100 * i));
            e
        })
        .collect();
    let saved = ctx.log.save_batch(&batch).await?;
    let (sql, connection) = tokio_postgres::connect(postgres, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    sql.batch_execute(
        "INSERT INTO events (event_type, camera_id, event_data) VALUES ('motion', 'gate', '{\"zone\": \"entrance\"}')",
    )
    .await?;
    let stats = ctx.log.stats().await?;
    println!(
        "8. events: {} saved in PostgreSQL ({} with EventLog::save_batch, 1 with a plain SQL INSERT), {} waiting in the outbox",
        stats.events,
        saved.len(),
        stats.unpublished
    );
    let relayed = events::relay(&ctx, true, CancellationToken::new()).await?;
    let received = subscriber.await?;
    println!(
        "9. events relay: {} published on channel `events` and marked published; a subscriber received {}",
        relayed.published,
        received.len()
    );
    let page = ctx
        .log
        .query(&EventQuery {
            camera_id: Some("gate".into()),
            limit: 4,
            ..EventQuery::default()
        })
        .await?;
    println!("   the newest events of camera gate:");
    for e in &page.events {
        println!(
            "     #{:<4} {:<9} frame {:<6} {}",
            e.id,
            e.event_type,
            e.frame_number.map_or("-".into(), |f| f.to_string()),
            e.event_data
        );
    }
    if received.len() as i64 != stats.events || ctx.log.stats().await?.unpublished != 0 {
        anyhow::bail!("the events demo did not deliver every event");
    }
    Ok(())
}

/// One scene of the tier demo: its paraphrases and how many captions it gets.
type DemoScene = (&'static [&'static str], usize);

/// Caption scenes of the tier demo, per camera.
const DEMO_CAMERAS: &[(&str, &[DemoScene])] = &[
    (
        "field-north",
        &[
            (
                &[
                    "surveillance camera view of man in fields",
                    "man in fields surveillance view",
                    "surveillance view of man in field",
                    "a man working in an agricultural field",
                ],
                24,
            ),
            (
                &[
                    "person walking away from field",
                    "a man walks away across the field",
                ],
                8,
            ),
        ],
    ),
    (
        "gate",
        &[
            (
                &[
                    "red car parked at the gate",
                    "a red car parked near the gate",
                    "red vehicle parked by the entrance gate",
                ],
                30,
            ),
            (
                &[
                    "two people talking near the door",
                    "a pair of people chatting by the entrance",
                ],
                12,
            ),
        ],
    ),
    (
        "dock",
        &[(
            &[
                "delivery truck unloading boxes at the dock",
                "workers unload a truck at the loading dock",
                "boxes carried off a delivery truck",
            ],
            40,
        )],
    ),
];

/// The tier part: caption streams of a few cameras, aged past the hot window's migration
/// point, drained in one pass into an SQLite store; the events are printed.
async fn tier_part(endpoint: &RedisEndpoint, url: &str, dir: &Path) -> anyhow::Result<()> {
    use crate::jobs::tier::{self, Backend, PassRequest, TierContext, TierOptions};
    let start = crate::jobs::tier::now_ms() - 2 * 3_600_000;
    let mut cmds = Vec::new();
    let mut total = 0;
    for (camera, scenes) in DEMO_CAMERAS {
        let mut t = start;
        for (texts, n) in *scenes {
            for i in 0..*n {
                let mut c = cmd("XADD");
                c.arg(format!("captions:{camera}"))
                    .arg(format!("{t}-0"))
                    .arg("caption")
                    .arg(texts[i % texts.len()]);
                cmds.push((format!("captions:{camera}").into_bytes(), c));
                t += 5_000;
                total += 1;
            }
        }
    }
    for r in endpoint.run(cmds).await? {
        r?;
    }
    println!(
        "6. tier: {total} captions of {} cameras in Redis streams, older than the 2 h hot window's migration point",
        DEMO_CAMERAS.len()
    );
    let backend = match ferry_connectors::embed::MiniLm::locate() {
        Ok(_) => Backend::Minilm,
        Err(e) => {
            println!("   ({e}; using the lexical backend)");
            Backend::Lexical
        }
    };
    let store = dir.join("tier-demo.db");
    let ctx = TierContext::connect(TierOptions {
        redis: url.into(),
        store: format!("sqlite://{}", store.display()).into(),
        similarity: backend,
        ..TierOptions::default()
    })
    .await?;
    let pass = tier::run_pass(
        &ctx,
        PassRequest {
            trigger: "demo".into(),
            ..PassRequest::default()
        },
        CancellationToken::new(),
    )
    .await?;
    println!(
        "7. tier run ({}): {} captions merged into {} events ({:.0} % fewer records), {} entries removed from Redis",
        backend.as_str(),
        pass.run.captions_migrated,
        pass.run.events_written,
        100.0 * (1.0 - pass.run.events_written as f64 / pass.run.captions_migrated.max(1) as f64),
        pass.run.entries_deleted
    );
    let mut events = tier::events(&ctx, None, 100).await?;
    events.sort_by(|a, b| (&a.camera_id, a.start_ms).cmp(&(&b.camera_id, b.start_ms)));
    for e in &events {
        println!(
            "     {:<12} {:>4} s {:>3} frames  {}",
            e.camera_id,
            e.duration_ms() / 1000,
            e.frame_count,
            e.caption
        );
    }
    if pass.run.failed > 0 || pass.run.captions_migrated != total {
        anyhow::bail!(
            "the tier demo did not migrate every caption: {:?}",
            pass.run.error
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn seed_data_uses_the_seed_key_shapes() {
        let cmds = super::seed_commands(200, 1);
        let keys: Vec<String> = cmds
            .iter()
            .filter_map(|c| c.args_iter().nth(1))
            .filter_map(|a| match a {
                redis::Arg::Simple(b) => Some(String::from_utf8_lossy(b).into_owned()),
                _ => None,
            })
            .collect();
        for prefix in [
            "reminder:evt_",
            "conversation_history:",
            "user_profile:",
            "cancellation:wa:",
        ] {
            assert!(
                keys.iter()
                    .any(|k| k.starts_with(&format!("{}{prefix}", super::OLD))),
                "{prefix}"
            );
        }
        // Cache keys are the base64 of "weather in city …", as in the seed.
        let cache = format!("{}d2VhdGhlciBpbiBjaXR5", super::OLD);
        assert!(keys.iter().any(|k| k.starts_with(&cache)));
    }
}
