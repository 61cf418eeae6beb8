//! `ferry agentdb migrate` against a real Redis (and Redis Cluster) and PostgreSQL: lists and
//! Streams of experiences, Q-value hashes and policies moved and validated; re-runs add
//! nothing twice and pick up what is new; SIGKILL inside and after a batch's transaction then
//! a re-run ends exact; --skip-history; --dry-run writes nothing; bad records, keys of the
//! wrong type and binary key names are reported while the run goes on; an unreachable
//! PostgreSQL, a run already in progress and a foreign table are clear errors.

use std::path::PathBuf;
use std::process::{Command, Output};

use ferry_testkit::{PgDatabase, RedisCluster, RedisServer, kill_at_failpoint, output_text};
use redis::Commands;
use serde_json::{Value, json};

/// The run lock of `postgres::agentdb` ("ferryagd").
const RUN_LOCK: i64 = 0x6665_7272_7961_6764;

struct Env {
    redis_url: String,
    db: PgDatabase,
    dir: tempfile::TempDir,
}

impl Env {
    fn new(redis_url: String) -> Self {
        Env {
            redis_url,
            db: PgDatabase::create(),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn report_path(&self) -> PathBuf {
        self.dir.path().join("report.json")
    }

    /// `ferry agentdb migrate --redis … --postgres … --report … EXTRA…`, environment cleared.
    fn command(&self, extra: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_ferry"));
        c.args(["agentdb", "migrate", "--redis", &self.redis_url])
            .args(["--postgres", &self.db.url(), "--report"])
            .arg(self.report_path())
            .args(extra)
            .env_remove("FERRY_FAILPOINT")
            .env_remove("FERRY_CONFIG")
            .env_remove("FERRY_AGENTDB_REDIS")
            .env_remove("FERRY_AGENTDB_POSTGRES");
        c
    }

    /// Runs the migration; its output and report.
    fn migrate(&self, extra: &[&str]) -> (Output, Value) {
        let _ = std::fs::remove_file(self.report_path());
        let out = self.command(extra).output().expect("run ferry");
        let report = std::fs::read_to_string(self.report_path())
            .map(|t| serde_json::from_str(&t).expect("the report is JSON"))
            .unwrap_or(Value::Null);
        (out, report)
    }

    /// Runs the migration and expects `code`.
    fn migrate_ok(&self, extra: &[&str], code: i32) -> Value {
        let (out, report) = self.migrate(extra);
        assert_eq!(out.status.code(), Some(code), "{}", output_text(&out));
        report
    }

    async fn pg(&self) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.db.url(), tokio_postgres::NoTls)
            .await
            .expect("connect to the test database");
        tokio::spawn(conn);
        client
    }
}

/// Experience `i` of an agent as JSON.
fn experience(i: usize) -> Value {
    json!({
        "state": {"pos": i},
        "action": format!("a{}", i % 4),
        "reward": i as f64 * 0.5,
        "next_state": {"pos": i + 1},
        "done": i % 10 == 9,
        "timestamp": 1_700_000_000 + i,
        "episode": i / 10,
    })
}

fn push_list(c: &mut redis::Connection, key: &str, range: std::ops::Range<usize>) {
    for i in range {
        let _: () = c.rpush(key, experience(i).to_string()).unwrap();
    }
}

/// Appends experiences to a Stream: even ones as one JSON field, odd ones one field per column.
fn push_stream(c: &mut redis::Connection, key: &str, range: std::ops::Range<usize>) {
    for i in range {
        let e = experience(i);
        let fields: Vec<(String, String)> = if i % 2 == 0 {
            vec![("data".into(), e.to_string())]
        } else {
            e.as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().map_or(v.to_string(), str::to_string)))
                .collect()
        };
        let _: String = c.xadd(key, "*", &fields).unwrap();
    }
}

fn set_q_values(c: &mut redis::Connection, agent: &str, n: usize) {
    let pairs: Vec<(String, f64)> = (0..n)
        .map(|i| (format!("s{}|a{}", i / 4, i % 4), i as f64 / 8.0))
        .collect();
    let _: () = c
        .hset_multiple(format!("agent:{agent}:q_values"), &pairs)
        .unwrap();
}

fn set_policy(c: &mut redis::Connection, agent: &str) {
    let policy = json!({"type": "epsilon_greedy", "epsilon": 0.1, "agent": agent});
    let _: () = c
        .set(format!("agent:{agent}:policy"), policy.to_string())
        .unwrap();
}

/// The agent's experiences are exactly `0..n`, in order, with their columns.
async fn assert_experiences(pg: &tokio_postgres::Client, agent: &str, n: usize) {
    let rows = pg
        .query(
            "SELECT seq, state, action, reward, next_state, done, ts, metadata FROM rl_experiences WHERE agent_id = $1 ORDER BY seq",
            &[&agent],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), n, "{agent}: rows");
    for (i, r) in rows.iter().enumerate() {
        let e = experience(i);
        assert_eq!(r.get::<_, i64>(0), i as i64, "{agent}: seq");
        assert_eq!(r.get::<_, Value>(1), e["state"], "{agent} #{i}: state");
        assert_eq!(r.get::<_, String>(2), e["action"].as_str().unwrap());
        assert_eq!(r.get::<_, f64>(3), i as f64 * 0.5);
        assert_eq!(r.get::<_, Value>(4), e["next_state"]);
        assert_eq!(r.get::<_, bool>(5), i % 10 == 9);
        let ts: chrono::DateTime<chrono::Utc> = r.get(6);
        assert_eq!(ts.timestamp(), 1_700_000_000 + i as i64);
        assert_eq!(r.get::<_, Value>(7), json!({"episode": i / 10}));
    }
}

async fn count(pg: &tokio_postgres::Client, table: &str, agent: &str) -> i64 {
    let sql = format!("SELECT count(*) FROM {table} WHERE agent_id = $1");
    pg.query_one(&sql, &[&agent]).await.unwrap().get(0)
}

fn stat(report: &Value, kind: &str, what: &str) -> u64 {
    report["stats"][kind][what]
        .as_u64()
        .unwrap_or_else(|| panic!("stats.{kind}.{what} in {report}"))
}

/// Agents a1 (list, 25), a2 (stream, 23), a3 (list, 0 items but Q-values), Q-values for all
/// three (a3: 300 fields, a hash HSCAN reads in several steps), policies for a1 and a2.
fn seed_agents(c: &mut redis::Connection) {
    push_list(c, "agent:a1:experiences", 0..25);
    push_stream(c, "agent:a2:experiences", 0..23);
    set_q_values(c, "a1", 8);
    set_q_values(c, "a2", 12);
    set_q_values(c, "a3", 300);
    set_policy(c, "a1");
    set_policy(c, "a2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_move_with_lists_streams_q_values_and_policies_and_reruns_add_only_what_is_new() {
    let redis = RedisServer::start();
    let env = Env::new(redis.url());
    let mut c = redis.conn();
    seed_agents(&mut c);
    let report = env.migrate_ok(&["--batch", "10"], 0);
    assert_eq!(report["job"], "agentdb");
    assert_eq!(report["action"], "migrate");
    assert_eq!(report["dry_run"], false);
    assert_eq!(report["errors_total"], 0, "{report}");
    assert_eq!(report["stats"]["agents"], 3);
    assert_eq!(report["stats"]["mismatched"], 0);
    assert_eq!(stat(&report, "experiences", "rows_written"), 48);
    assert_eq!(stat(&report, "experiences", "validated"), 2);
    assert_eq!(stat(&report, "q_values", "rows_written"), 320);
    assert_eq!(stat(&report, "q_values", "validated"), 3);
    assert_eq!(stat(&report, "policies", "rows_written"), 2);
    let pg = env.pg().await;
    assert_experiences(&pg, "a1", 25).await;
    assert_experiences(&pg, "a2", 23).await;
    let ids: Vec<Option<String>> = pg
        .query(
            "SELECT source_id FROM rl_experiences WHERE agent_id = 'a2' ORDER BY seq",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let stream_ids: Vec<(String, Vec<Vec<u8>>)> = c.xrange_all("agent:a2:experiences").unwrap();
    let want: Vec<Option<String>> = stream_ids.into_iter().map(|(id, _)| Some(id)).collect();
    assert_eq!(ids, want, "each row names its Stream entry");
    let v: f64 = pg
        .query_one(
            "SELECT value FROM rl_q_values WHERE agent_id = 'a3' AND state = 's74' AND action = 'a3'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(v, 299.0 / 8.0);
    assert_eq!(count(&pg, "rl_q_values", "a3").await, 300);
    let policy: Value = pg
        .query_one("SELECT policy FROM rl_policies WHERE agent_id = 'a2'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(policy["agent"], "a2");

    // A re-run writes nothing new and validates again.
    let again = env.migrate_ok(&["--batch", "10"], 0);
    assert_eq!(stat(&again, "experiences", "rows_written"), 0, "{again}");
    assert_eq!(stat(&again, "experiences", "already_moved"), 48);
    assert_eq!(
        stat(&again, "q_values", "rows_written"),
        0,
        "unchanged values are not rewritten"
    );
    assert_eq!(stat(&again, "policies", "rows_written"), 0);
    assert_eq!(stat(&again, "q_values", "validated"), 3);
    assert_experiences(&pg, "a1", 25).await;

    // New experiences, a changed Q-value and a changed policy: only those are written.
    push_list(&mut c, "agent:a1:experiences", 25..31);
    push_stream(&mut c, "agent:a2:experiences", 23..27);
    let _: () = c.hset("agent:a1:q_values", "s0|a0", 42.5).unwrap();
    let _: () = c.set("agent:a2:policy", r#"{"type": "greedy"}"#).unwrap();
    let more = env.migrate_ok(&["--batch", "10"], 0);
    assert_eq!(stat(&more, "experiences", "rows_written"), 10, "{more}");
    assert_eq!(stat(&more, "q_values", "rows_written"), 1);
    assert_eq!(stat(&more, "policies", "rows_written"), 1);
    assert_experiences(&pg, "a1", 31).await;
    assert_experiences(&pg, "a2", 27).await;
    let v: f64 = pg
        .query_one("SELECT value FROM rl_q_values WHERE agent_id = 'a1' AND state = 's0' AND action = 'a0'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(v, 42.5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lpush_lists_keep_their_order_as_they_grow() {
    let redis = RedisServer::start();
    let env = Env::new(redis.url());
    let mut c = redis.conn();
    for i in 0..13 {
        let _: () = c
            .lpush("agent:l:experiences", experience(i).to_string())
            .unwrap();
    }
    env.migrate_ok(&["--batch", "5", "--list-push", "lpush"], 0);
    for i in 13..20 {
        let _: () = c
            .lpush("agent:l:experiences", experience(i).to_string())
            .unwrap();
    }
    env.migrate_ok(&["--batch", "5", "--list-push", "lpush"], 0);
    assert_experiences(&env.pg().await, "l", 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_is_scanned_on_every_master() {
    let cluster = RedisCluster::start();
    let env = Env::new(cluster.url());
    let mut c = cluster.client().get_connection().unwrap();
    for agent in ["c1", "c2", "c3", "c4", "c5", "c6"] {
        let key = format!("agent:{agent}:experiences");
        for i in 0..7 {
            let _: () = c.rpush(&key, experience(i).to_string()).unwrap();
        }
        set_q_values_cluster(&mut c, agent);
    }
    let report = env.migrate_ok(&["--batch", "4"], 0);
    assert_eq!(report["stats"]["agents"], 6, "{report}");
    let pg = env.pg().await;
    for agent in ["c1", "c2", "c3", "c4", "c5", "c6"] {
        assert_experiences(&pg, agent, 7).await;
        assert_eq!(count(&pg, "rl_q_values", agent).await, 4);
    }
}

fn set_q_values_cluster(c: &mut redis::cluster::ClusterConnection, agent: &str) {
    let pairs: Vec<(String, f64)> = (0..4).map(|i| (format!("s|a{i}"), i as f64)).collect();
    let _: () = c
        .hset_multiple(format!("agent:{agent}:q_values"), &pairs)
        .unwrap();
}

/// Five agents, each with a list (120) or a Stream (90) and 40 Q-values.
fn seed_many(c: &mut redis::Connection) {
    for n in 0..5 {
        let agent = format!("k{n}");
        let key = format!("agent:{agent}:experiences");
        if n % 2 == 0 {
            push_list(c, &key, 0..120);
        } else {
            push_stream(c, &key, 0..90);
        }
        set_q_values(c, &agent, 40);
        set_policy(c, &agent);
    }
}

async fn assert_many(env: &Env) {
    let pg = env.pg().await;
    for n in 0..5 {
        let agent = format!("k{n}");
        assert_experiences(&pg, &agent, if n % 2 == 0 { 120 } else { 90 }).await;
        assert_eq!(count(&pg, "rl_q_values", &agent).await, 40);
        assert_eq!(count(&pg, "rl_policies", &agent).await, 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_inside_or_after_a_batch_then_a_rerun_ends_exact() {
    let redis = RedisServer::start();
    let mut c = redis.conn();
    seed_many(&mut c);
    for point in ["agentdb-before-commit-5", "agentdb-after-commit-5"] {
        let env = Env::new(redis.url());
        kill_at_failpoint(env.command(&["--batch", "30"]), point);
        let pg = env.pg().await;
        let moved: i64 = pg
            .query_one("SELECT count(*) FROM rl_experiences", &[])
            .await
            .unwrap()
            .get(0);
        let want = if point.contains("before") { 120 } else { 150 };
        assert_eq!(moved, want, "{point}: the committed batches only");
        let report = env.migrate_ok(&["--batch", "30"], 0);
        assert_eq!(report["errors_total"], 0, "{point}: {report}");
        assert_eq!(
            stat(&report, "experiences", "already_moved"),
            want as u64,
            "{point}: resumed from the checkpoints"
        );
        assert_many(&env).await;
        let total: i64 = pg
            .query_one("SELECT count(*) FROM rl_experiences", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(total, 3 * 120 + 2 * 90, "{point}: nothing doubled");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_history_moves_q_values_and_policies_only() {
    let redis = RedisServer::start();
    let env = Env::new(redis.url());
    seed_agents(&mut redis.conn());
    let report = env.migrate_ok(&["--skip-history"], 0);
    assert_eq!(report["stats"]["skip_history"], true);
    assert_eq!(stat(&report, "experiences", "keys"), 0, "{report}");
    assert_eq!(stat(&report, "q_values", "rows_written"), 320);
    let pg = env.pg().await;
    let n: i64 = pg
        .query_one("SELECT count(*) FROM rl_experiences", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
    assert_eq!(count(&pg, "rl_policies", "a1").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_counts_and_writes_nothing() {
    let redis = RedisServer::start();
    let env = Env::new(redis.url());
    seed_agents(&mut redis.conn());
    let _: () = redis
        .conn()
        .rpush("agent:a3:experiences", "{broken")
        .unwrap();
    let report = env.migrate_ok(&["--dry-run"], 1);
    assert_eq!(report["dry_run"], true);
    assert_eq!(stat(&report, "experiences", "items_read"), 49, "{report}");
    assert_eq!(stat(&report, "experiences", "rows"), 48);
    assert_eq!(stat(&report, "q_values", "items_read"), 320);
    assert_eq!(stat(&report, "experiences", "rows_written"), 0);
    assert_eq!(
        report["errors_total"], 1,
        "the bad record is shown by the dry run too"
    );
    let pg = env.pg().await;
    let tables: i64 = pg
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE tablename IN ('rl_experiences', 'rl_q_values', 'rl_policies', 'ferry_agentdb_progress', 'ferry_schema')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(tables, 0, "a dry run creates nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_records_wrong_types_and_binary_names_are_failed_items_and_the_run_goes_on() {
    let redis = RedisServer::start();
    let env = Env::new(redis.url());
    let mut c = redis.conn();
    push_list(&mut c, "agent:bad:experiences", 0..3);
    let _: () = c.rpush("agent:bad:experiences", "{not json").unwrap();
    let _: () = c
        .rpush("agent:bad:experiences", r#"{"action": "x", "reward": NaN}"#)
        .unwrap();
    let _: () = c
        .rpush("agent:bad:experiences", experience(5).to_string())
        .unwrap();
    let _: () = c.hset("agent:bad:q_values", "s1|up", "0.5").unwrap();
    let _: () = c.hset("agent:bad:q_values", "nobar", "1").unwrap();
    let _: () = c.hset("agent:bad:q_values", "s2|up", "nan").unwrap();
    let _: () = c.set("agent:bad:policy", "{oops").unwrap();
    let _: () = c.set("agent:wrong:q_values", "not a hash").unwrap();
    let _: () = c.sadd("agent:wrong:experiences", "a set").unwrap();
    let binary: &[u8] = b"agent:\xff\xfe:experiences";
    let _: () = c.rpush(binary, experience(0).to_string()).unwrap();
    let _: () = c.set(&b"agent:ok\xff:policy"[..], "{}").unwrap();
    push_list(&mut c, "agent:good:experiences", 0..4);

    let report = env.migrate_ok(&["--batch", "2"], 1);
    let errors: Vec<(String, String)> = report["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["item"].as_str().unwrap().to_string(),
                e["error"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let has = |item: &str, says: &str| {
        assert!(
            errors.iter().any(|(i, e)| i == item && e.contains(says)),
            "no `{item}`: `{says}` in {errors:#?}"
        )
    };
    has("agent:bad:experiences[3]", "invalid JSON");
    has("agent:bad:experiences[4]", "NaN");
    has("agent:bad:q_values[nobar]", "`|`");
    has("agent:bad:q_values[s2|up]", "NaN");
    has("agent:bad:policy", "invalid JSON");
    has("agent:wrong:q_values", "is a string");
    has("agent:wrong:experiences", "is a set");
    has("agent:\\xff\\xfe:experiences", "not UTF-8");
    has("agent:ok\\xff:policy", "not UTF-8");
    assert_eq!(report["errors_total"], 9, "{errors:#?}");
    assert_eq!(
        report["stats"]["mismatched"], 0,
        "failed items count in the validation"
    );
    let pg = env.pg().await;
    assert_experiences(&pg, "good", 4).await;
    let seqs: Vec<i64> = pg
        .query(
            "SELECT seq FROM rl_experiences WHERE agent_id = 'bad' ORDER BY seq",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(seqs, [0, 1, 2, 5], "good records keep their positions");
    assert_eq!(count(&pg, "rl_q_values", "bad").await, 1);

    // A re-run does not read the experiences again; the rest is read again and still bad.
    let again = env.migrate_ok(&["--batch", "2"], 1);
    let items: Vec<&str> = again["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["item"].as_str().unwrap())
        .collect();
    assert!(!items.contains(&"agent:bad:experiences[3]"), "{items:?}");
    assert!(items.contains(&"agent:bad:q_values[nobar]"), "{items:?}");
    assert_eq!(again["stats"]["mismatched"], 0, "{again}");
}

#[test]
fn an_unreachable_postgres_or_redis_is_a_clear_error() {
    let redis = RedisServer::start();
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["agentdb", "migrate", "--redis", &redis.url()])
        .args([
            "--postgres",
            "postgres://postgres:hunter2@127.0.0.1:1/nowhere",
        ])
        .env_remove("FERRY_AGENTDB_POSTGRES")
        .output()
        .unwrap();
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains("PostgreSQL at") && text.contains("unavailable"),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "{text}");

    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args([
            "agentdb",
            "migrate",
            "--redis",
            "redis://:hunter2@127.0.0.1:1",
        ])
        .env_remove("FERRY_AGENTDB_POSTGRES")
        .output()
        .unwrap();
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("cannot connect to Redis"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_and_a_foreign_table_are_refused() {
    let redis = RedisServer::start();
    let env = Env::new(redis.url());
    set_policy(&mut redis.conn(), "a1");
    let pg = env.pg().await;
    pg.execute("SELECT pg_advisory_lock($1)", &[&RUN_LOCK])
        .await
        .unwrap();
    let (out, _) = env.migrate(&[]);
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains("another `ferry agentdb migrate` is running"),
        "{text}"
    );
    pg.execute("SELECT pg_advisory_unlock($1)", &[&RUN_LOCK])
        .await
        .unwrap();

    let other = Env::new(redis.url());
    let pg = other.pg().await;
    pg.batch_execute(
        "CREATE TABLE rl_experiences (id BIGSERIAL PRIMARY KEY, agent_id VARCHAR(100), state JSONB, action VARCHAR(100), reward FLOAT, next_state JSONB, done BOOLEAN, timestamp TIMESTAMPTZ)",
    )
    .await
    .unwrap();
    let (out, _) = other.migrate(&[]);
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains("rl_experiences") && text.contains("does not fit"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patterns_come_from_the_config_file_and_a_key_that_changed_type_is_refused() {
    let redis = RedisServer::start();
    let env = Env::new(redis.url());
    let config = env.dir.path().join("ferry.toml");
    std::fs::write(
        &config,
        "[agentdb]\nexperiences_pattern = \"rl/{agent}/exp\"\nq_values_pattern = \"rl/{agent}/q\"\npolicy_pattern = \"rl/{agent}/policy\"\nbatch = 3\n",
    )
    .unwrap();
    let mut c = redis.conn();
    push_list(&mut c, "rl/p1/exp", 0..7);
    let _: () = c.hset("rl/p1/q", "s|a", 1.5).unwrap();
    push_list(&mut c, "agent:ignored:experiences", 0..2);
    let with_config = |env: &Env| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry"));
        cmd.arg("--config").arg(&config);
        let migrate = env.command(&[]);
        cmd.args(migrate.get_args()).env_remove("FERRY_FAILPOINT");
        cmd.output().unwrap()
    };
    let out = with_config(&env);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let pg = env.pg().await;
    assert_experiences(&pg, "p1", 7).await;
    assert_eq!(count(&pg, "rl_q_values", "p1").await, 1);
    assert_eq!(count(&pg, "rl_experiences", "ignored").await, 0);

    let _: () = c.del("rl/p1/exp").unwrap();
    push_stream(&mut c, "rl/p1/exp", 0..3);
    let out = with_config(&env);
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("rl/p1/exp") && text.contains("was a list"),
        "{text}"
    );
    assert_experiences(&pg, "p1", 7).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_that_differ_are_reported_and_exit_1() {
    let redis = RedisServer::start();
    let env = Env::new(redis.url());
    let mut c = redis.conn();
    seed_agents(&mut c);
    env.migrate_ok(&[], 0);
    let pg = env.pg().await;
    pg.execute(
        "DELETE FROM rl_experiences WHERE agent_id = 'a1' AND seq >= 20",
        &[],
    )
    .await
    .unwrap();
    let _: () = c.hdel("agent:a2:q_values", "s0|a0").unwrap();
    let report = env.migrate_ok(&[], 1);
    assert_eq!(report["stats"]["mismatched"], 2, "{report}");
    assert_eq!(stat(&report, "experiences", "mismatched"), 1);
    assert_eq!(stat(&report, "q_values", "mismatched"), 1);
    let errors = report["errors"].to_string();
    assert!(
        errors.contains("agent:a1:experiences")
            && errors.contains("Redis holds 25 experiences, PostgreSQL 20 rows"),
        "{errors}"
    );
    assert!(
        errors.contains("agent:a2:q_values") && errors.contains("PostgreSQL holds more"),
        "{errors}"
    );
}
