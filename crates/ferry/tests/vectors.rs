//! `ferry vectors` against real servers: FalkorDB (graph source) and Redis 8 vector sets
//! (target and state), PostgreSQL and Redis hashes as sources, Milvus Lite as a target.
//! Resume after SIGKILL, validation catching a changed vector, a missing id and an orphan,
//! `--fix`, rollback, the storage mode, preflight refusing a dimension mismatch, and bad input.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use ferry_testkit::{
    FalkorDbServer, RedisServer, kill_at_failpoint, output_text, redis8_server_bin, unique_name,
};
use redis::Connection;
use serde_json::Value;

/// A FalkorDB server with a graph of items, and a Redis 8 for the vector set and the state.
struct Env {
    graph_server: FalkorDbServer,
    target: RedisServer,
    graph: String,
    set: String,
    dir: tempfile::TempDir,
}

/// A deterministic embedding for item `i`.
fn embedding(i: i64, dim: usize) -> Vec<f32> {
    let mut x = (i as u64)
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..dim)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((x >> 33) as f32 / (1u64 << 31) as f32) - 0.5
        })
        .collect()
}

fn list(v: &[f32]) -> String {
    let parts: Vec<String> = v.iter().map(|x| format!("{x:?}")).collect();
    format!("[{}]", parts.join(","))
}

impl Env {
    fn new() -> Self {
        Env {
            graph_server: FalkorDbServer::start(),
            target: RedisServer::start_with_binary(&redis8_server_bin(), &[]),
            graph: unique_name("g").replace('-', "_"),
            set: unique_name("vs"),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn query(&self, cypher: &str) -> Value {
        let mut c = self.graph_server.conn();
        let reply: redis::Value = redis::cmd("GRAPH.QUERY")
            .arg(&self.graph)
            .arg(cypher)
            .query(&mut c)
            .unwrap_or_else(|e| panic!("{cypher}: {e}"));
        Value::String(format!("{reply:?}"))
    }

    /// Items `0..n` with `dim`-dimensional vecf32 embeddings (integer ids), in batches.
    fn load(&self, n: i64, dim: usize) {
        self.query("CREATE INDEX FOR (m:Media) ON (m.id)");
        for start in (0..n).step_by(500) {
            let rows: Vec<String> = (start..(start + 500).min(n))
                .map(|i| format!("{{id: {i}, e: {}}}", list(&embedding(i, dim))))
                .collect();
            self.query(&format!(
                "UNWIND [{}] AS r CREATE (:Media {{id: r.id, embedding: vecf32(r.e)}})",
                rows.join(",")
            ));
        }
    }

    fn source(&self) -> String {
        format!("{}/{}", self.graph_server.url(), self.graph)
    }

    fn args(&self, action: &str, extra: &[&str]) -> Vec<String> {
        let mut a: Vec<String> = vec!["vectors".into(), action.into()];
        if action.starts_with("mode") {
            a = vec!["vectors".into(), "mode".into()];
        }
        a.extend(
            [
                "--source",
                &self.source(),
                "--target",
                &self.target.url(),
                "--vector-set",
                &self.set,
            ]
            .iter()
            .map(|s| s.to_string()),
        );
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    }

    fn command(&self, action: &str, extra: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_ferry"));
        c.args(self.args(action, extra))
            .env("FERRY_LEASE_TTL_MS", "2000");
        c
    }

    fn ferry(&self, action: &str, extra: &[&str]) -> Output {
        self.command(action, extra).output().expect("run ferry")
    }

    fn ok(&self, action: &str, extra: &[&str]) -> Output {
        let o = self.ferry(action, extra);
        assert!(o.status.success(), "{action}: {}", output_text(&o));
        o
    }

    fn report(&self, action: &str, extra: &[&str]) -> (Output, Value) {
        let path = self
            .dir
            .path()
            .join(format!("{}.json", unique_name(action)));
        let mut all = extra.to_vec();
        let p = path.to_str().unwrap().to_string();
        all.extend(["--report", &p]);
        let o = self.ferry(action, &all);
        let report = read_json(&path).unwrap_or_else(|| panic!("no report: {}", output_text(&o)));
        (o, report)
    }

    fn vset(&self) -> Connection {
        self.target.conn()
    }

    fn card(&self) -> i64 {
        redis::cmd("VCARD")
            .arg(&self.set)
            .query(&mut self.vset())
            .unwrap()
    }
}

/// Runs `ferry vectors ACTION COMMON… EXTRA…`.
fn vectors(action: &str, common: &[&str], extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["vectors", action])
        .args(common)
        .args(extra)
        .output()
        .unwrap()
}

fn read_json(path: &Path) -> Option<Value> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

fn stat(report: &Value, name: &str) -> i64 {
    report["stats"][name]
        .as_i64()
        .unwrap_or_else(|| panic!("stats.{name} in {report}"))
}

#[test]
fn migrates_a_graph_into_a_vector_set_and_validates_every_item() {
    let env = Env::new();
    env.load(1200, 16);
    env.query("CREATE (:Media {id: 5000}), (:Media {id: 5001, embedding: ['x', 1]})");
    let (o, report) = env.report(
        "migrate",
        &["--quant", "noquant", "--batch", "100", "--workers", "3"],
    );
    assert_eq!(
        o.status.code(),
        Some(1),
        "one invalid item: {}",
        output_text(&o)
    );
    assert_eq!(stat(&report, "read"), 1202);
    assert_eq!(stat(&report, "written"), 1200);
    assert_eq!(stat(&report, "missing_embedding"), 1);
    assert_eq!(stat(&report, "failed"), 1);
    assert_eq!(report["errors"][0]["item"], "5001");
    assert_eq!(env.card(), 1200);
    let (o, report) = env.report("validate", &["--full", "--quant", "noquant"]);
    assert!(o.status.success(), "{}", output_text(&o));
    assert_eq!(stat(&report, "matched"), 1200);
    assert_eq!(
        stat(&report, "missing") + stat(&report, "orphans") + stat(&report, "mismatched"),
        0
    );
    // A rerun of a finished migration copies nothing again.
    let (o, report) = env.report("migrate", &["--quant", "noquant"]);
    assert!(o.status.success(), "{}", output_text(&o));
    assert_eq!(stat(&report, "read"), 0);
    let status = env.ok("status", &[]);
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("complete"),
        "{}",
        output_text(&status)
    );
}

#[test]
fn a_migration_killed_mid_run_resumes_with_nothing_missed_or_doubled() {
    let env = Env::new();
    env.load(3000, 8);
    let mut first = env.command(
        "migrate",
        &["--quant", "noquant", "--batch", "200", "--workers", "2"],
    );
    first.env("FERRY_FAILPOINT_SKIP", "4");
    kill_at_failpoint(first, "vectors-after-upsert");
    let partial = env.card();
    assert!(partial > 0 && partial < 3000, "killed mid-run: {partial}");
    let (o, report) = env.report(
        "migrate",
        &["--quant", "noquant", "--batch", "200", "--workers", "2"],
    );
    assert!(o.status.success(), "{}", output_text(&o));
    assert_eq!(report["stats"]["resumed"], true);
    assert_eq!(env.card(), 3000);
    let total = &report["stats"]["total"];
    assert_eq!(
        total["read"], 3000,
        "every item counted once over both runs: {report}"
    );
    assert_eq!(total["ranges_done"], total["ranges"]);
    let (o, report) = env.report("validate", &["--full", "--quant", "noquant"]);
    assert!(o.status.success(), "{}", output_text(&o));
    assert_eq!(stat(&report, "matched"), 3000);
}

#[test]
fn validation_finds_a_changed_vector_a_missing_id_and_an_orphan_and_fix_repairs_them() {
    let env = Env::new();
    env.load(150, 8);
    env.ok("migrate", &["--quant", "noquant"]);
    let mut c = env.vset();
    let _: i64 = redis::cmd("VADD")
        .arg(&env.set)
        .arg("VALUES")
        .arg(8)
        .arg(&[9.0_f32, 9.0, 9.0, 9.0, 9.0, 9.0, 9.0, -9.0][..])
        .arg("7")
        .arg("NOQUANT")
        .query(&mut c)
        .unwrap();
    let _: i64 = redis::cmd("VREM")
        .arg(&env.set)
        .arg("8")
        .query(&mut c)
        .unwrap();
    let _: i64 = redis::cmd("VADD")
        .arg(&env.set)
        .arg("VALUES")
        .arg(8)
        .arg(&[1.0_f32; 8][..])
        .arg("999999")
        .arg("NOQUANT")
        .query(&mut c)
        .unwrap();
    let (o, report) = env.report("validate", &["--full", "--quant", "noquant"]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "3 of 151 wrong is under 99 %: {}",
        output_text(&o)
    );
    assert_eq!(stat(&report, "mismatched"), 1);
    assert_eq!(stat(&report, "missing"), 1);
    assert_eq!(stat(&report, "orphans"), 1);
    let found: Vec<String> = report["discrepancies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| format!("{}:{}", d["kind"].as_str().unwrap(), d["id"]))
        .collect();
    for want in ["mismatch:7", "missing:8", "orphan:999999"] {
        assert!(found.contains(&want.to_string()), "{found:?}");
    }
    let (o, report) = env.report("validate", &["--full", "--quant", "noquant", "--fix"]);
    assert!(o.status.success(), "{}", output_text(&o));
    assert_eq!(stat(&report, "recopied"), 2);
    assert_eq!(stat(&report, "deleted"), 1);
    let (o, report) = env.report("validate", &["--full", "--quant", "noquant"]);
    assert!(o.status.success(), "{}", output_text(&o));
    assert_eq!(stat(&report, "matched"), 150);
    assert_eq!(env.card(), 150);
}

#[test]
fn quantised_copies_validate_within_their_own_tolerance() {
    let env = Env::new();
    env.load(300, 32);
    env.ok("migrate", &["--quant", "q8"]);
    let (o, report) = env.report("validate", &["--sample", "100", "--quant", "q8"]);
    assert!(
        o.status.success(),
        "q8 rounding is within tolerance: {}",
        output_text(&o)
    );
    assert_eq!(stat(&report, "mismatched"), 0);
    assert_eq!(report["stats"]["quantization"], "q8");
    assert!(
        report["stats"]["max_l2"].as_f64().unwrap() > 0.0,
        "q8 copies are not exact"
    );
    // Validation judges by how the set really stores vectors, whatever --quant says.
    let (o, report) = env.report("validate", &["--sample", "100", "--quant", "noquant"]);
    assert!(o.status.success(), "{}", output_text(&o));
    assert_eq!(report["stats"]["quantization"], "q8");
}

#[test]
fn preflight_reports_versions_counts_and_refuses_a_dimension_mismatch() {
    let env = Env::new();
    env.load(50, 16);
    env.query("CREATE (:Media {id: 100})");
    let (o, report) = env.report("preflight", &["--quant", "noquant"]);
    assert!(o.status.success(), "{}", output_text(&o));
    let p = &report["preflight"];
    assert_eq!(p["ready"], true);
    assert_eq!(p["source"]["items"], 51);
    assert_eq!(p["source"]["with_embedding"], 50);
    assert!(p["estimate"]["memory_bytes"].as_u64().unwrap() > 0, "{p}");
    assert!(p["estimate"]["seconds"].as_f64().unwrap() > 0.0);
    assert_eq!(
        env.card(),
        0,
        "the sample went to a scratch set, not the target"
    );
    let _: i64 = redis::cmd("VADD")
        .arg(&env.set)
        .arg("VALUES")
        .arg(3)
        .arg(&[1.0_f32, 2.0, 3.0][..])
        .arg("x")
        .arg("NOQUANT")
        .query(&mut env.vset())
        .unwrap();
    let o = env.ferry("preflight", &["--quant", "noquant"]);
    assert_eq!(o.status.code(), Some(1), "{}", output_text(&o));
    let text = output_text(&o);
    assert!(
        text.contains("NOT READY") && text.contains("3-dimensional"),
        "{text}"
    );
    let o = env.ferry("migrate", &["--quant", "noquant"]);
    assert_eq!(o.status.code(), Some(2), "{}", output_text(&o));
    assert!(output_text(&o).contains("dimension"), "{}", output_text(&o));
}

#[test]
fn rollback_returns_to_primary_only_and_drops_the_target_only_when_asked() {
    let env = Env::new();
    env.load(40, 4);
    env.ok("migrate", &[]);
    env.ok("mode", &["set", "dual_write"]);
    let o = env.ok("mode", &["get"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "dual_write");
    let o = env.ferry("mode", &["set", "hybrid"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(output_text(&o).contains("primary_only, dual_write, shadow_read or cutover"));
    env.ok("rollback", &["--drop-target"]);
    assert_eq!(env.card(), 40, "without -y nothing changes");
    let o = env.ok("mode", &["get"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "dual_write");
    env.ok("rollback", &["-y"]);
    let o = env.ok("mode", &["get"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "primary_only");
    assert_eq!(env.card(), 40, "the target is kept without --drop-target");
    env.ok("rollback", &["-y", "--drop-target"]);
    assert_eq!(env.card(), 0);
    let o = env.ok("status", &[]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("not started"),
        "{}",
        output_text(&o)
    );
    assert_eq!(
        env.query("MATCH (m:Media) RETURN count(m)")
            .as_str()
            .map(|s| s.contains("40")),
        Some(true),
        "the source is untouched"
    );
}

#[test]
fn string_ids_with_hostile_characters_keep_their_names() {
    let env = Env::new();
    let ids = ["a\"b", "back\\slash", "ünï", "sp ace", "'quote'"];
    for (i, id) in ids.iter().enumerate() {
        let escaped = id.replace('\\', "\\\\").replace('\'', "\\'");
        env.query(&format!(
            "CREATE (:Media {{id: '{escaped}', embedding: vecf32({})}})",
            list(&embedding(i as i64, 4))
        ));
    }
    env.ok("migrate", &["--quant", "noquant", "--batch", "2"]);
    let mut names: Vec<String> = redis::cmd("VRANDMEMBER")
        .arg(&env.set)
        .arg(100)
        .query(&mut env.vset())
        .unwrap();
    names.sort();
    let mut want: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(names, want);
    env.ok("validate", &["--full", "--quant", "noquant"]);
}

#[test]
fn mixed_id_kinds_and_bad_options_are_refused_with_clear_errors() {
    let env = Env::new();
    env.query("CREATE (:Media {id: 1, embedding: vecf32([1.0, 2.0])}), (:Media {id: '1', embedding: vecf32([1.0, 2.0])})");
    let o = env.ferry("migrate", &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        output_text(&o).contains("mix integers"),
        "{}",
        output_text(&o)
    );
    assert_eq!(env.card(), 0);
    let o = env.ferry("migrate", &["--workers", "0"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(output_text(&o).contains("--workers"), "{}", output_text(&o));
    let o = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args([
            "vectors",
            "migrate",
            "--source",
            "falkordb://127.0.0.1:1/g",
            "--target",
            &env.target.url(),
            "--vector-set",
            "x",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        output_text(&o).to_lowercase().contains("connect"),
        "{}",
        output_text(&o)
    );
    let o = env.ferry("validate", &["--threshold", "120"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn a_dry_run_reads_everything_and_writes_nothing() {
    let env = Env::new();
    env.load(120, 4);
    let (o, report) = env.report("migrate", &["--dry-run"]);
    assert!(o.status.success(), "{}", output_text(&o));
    assert_eq!(report["dry_run"], true);
    assert_eq!(stat(&report, "read"), 120);
    assert_eq!(env.card(), 0);
    let o = env.ok("status", &[]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("not started"));
}

#[test]
fn redis_hashes_in_the_redisearch_layout_migrate_and_validate() {
    let env = Env::new();
    let mut c = env.target.conn();
    for i in 0..300_i64 {
        let blob: Vec<u8> = embedding(i, 12)
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let _: () = redis::cmd("HSET")
            .arg(format!("media:{i}"))
            .arg("embedding")
            .arg(blob)
            .arg("title")
            .arg(format!("clip {i}"))
            .query(&mut c)
            .unwrap();
    }
    let _: () = redis::cmd("HSET")
        .arg("media:bad")
        .arg("embedding")
        .arg("xyz")
        .query(&mut c)
        .unwrap();
    let source = env.target.url();
    let common = [
        "--source",
        source.as_str(),
        "--key-pattern",
        "media:*",
        "--target",
        source.as_str(),
        "--vector-set",
        "hash_vectors",
        "--quant",
        "noquant",
    ];
    let run = |action: &str, extra: &[&str]| vectors(action, &common, extra);
    let o = run("migrate", &[]);
    let text = output_text(&o);
    assert!(
        text.contains("mix integers") || o.status.code() == Some(1),
        "{text}"
    );
    // `media:bad` has a string id among integer ones: the run is refused before writing.
    if text.contains("mix integers") {
        let _: () = redis::cmd("DEL").arg("media:bad").query(&mut c).unwrap();
        let _: () = redis::cmd("HSET")
            .arg("media:300")
            .arg("embedding")
            .arg("xyz")
            .query(&mut c)
            .unwrap();
        let o = run("migrate", &[]);
        assert_eq!(
            o.status.code(),
            Some(1),
            "one invalid blob: {}",
            output_text(&o)
        );
    }
    let card: i64 = redis::cmd("VCARD")
        .arg("hash_vectors")
        .query(&mut c)
        .unwrap();
    assert_eq!(card, 300);
    let o = run("validate", &["--full"]);
    assert!(o.status.success(), "{}", output_text(&o));
}

#[test]
fn a_postgres_table_with_a_real_array_column_migrates_and_validates() {
    let env = Env::new();
    let db = ferry_testkit::PgDatabase::create();
    let sql = "CREATE TABLE media (id bigint PRIMARY KEY, title text, embedding real[]); \
               INSERT INTO media SELECT g, 'clip ' || g, ARRAY[sin(g), cos(g), g / 1000.0, 1]::real[] FROM generate_series(1, 400) g; \
               INSERT INTO media VALUES (401, 'no vector', NULL);";
    let out = Command::new("psql")
        .args([db.url().as_str(), "-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    let source = db.url();
    let target = env.target.url();
    let common = [
        "--source",
        source.as_str(),
        "--table",
        "media",
        "--target",
        target.as_str(),
        "--vector-set",
        "pg_vectors",
        "--quant",
        "noquant",
    ];
    let run = |action: &str, extra: &[&str]| vectors(action, &common, extra);
    let o = run("migrate", &["--workers", "3", "--batch", "50"]);
    assert!(o.status.success(), "{}", output_text(&o));
    let card: i64 = redis::cmd("VCARD")
        .arg("pg_vectors")
        .query(&mut env.vset())
        .unwrap();
    assert_eq!(card, 400);
    let o = run("validate", &["--full"]);
    assert!(o.status.success(), "{}", output_text(&o));
    let o = run("preflight", &[]);
    assert!(o.status.success(), "{}", output_text(&o));
    assert!(output_text(&o).contains("without"), "{}", output_text(&o));
}

#[test]
fn a_graph_migrates_into_milvus_resumes_and_validates() {
    let env = Env::new();
    env.load(1500, 24);
    let milvus = ferry_testkit::MilvusServer::start();
    let source = env.source();
    let state = env.target.url();
    let common = [
        "--source",
        source.as_str(),
        "--target",
        &milvus.url(),
        "--collection",
        "media_vectors",
        "--state",
        state.as_str(),
    ];
    let command = |action: &str, extra: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_ferry"));
        c.args(["vectors", action])
            .args(common)
            .args(extra)
            .env("FERRY_LEASE_TTL_MS", "2000");
        c
    };
    let o = command("preflight", &[]).output().unwrap();
    assert!(o.status.success(), "{}", output_text(&o));
    let mut first = command("migrate", &["--batch", "100", "--workers", "2"]);
    first.env("FERRY_FAILPOINT_SKIP", "3");
    kill_at_failpoint(first, "vectors-after-upsert");
    let path = env.dir.path().join("milvus.json");
    let o = command(
        "migrate",
        &[
            "--batch",
            "100",
            "--workers",
            "2",
            "--report",
            path.to_str().unwrap(),
        ],
    )
    .output()
    .unwrap();
    assert!(o.status.success(), "{}", output_text(&o));
    let report = read_json(&path).unwrap();
    assert_eq!(report["stats"]["resumed"], true);
    assert_eq!(report["stats"]["total"]["read"], 1500);
    let path = env.dir.path().join("milvus-validate.json");
    let o = command("validate", &["--full", "--report", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", output_text(&o));
    let report = read_json(&path).unwrap();
    assert_eq!(stat(&report, "matched"), 1500);
    assert_eq!(stat(&report, "orphans"), 0);
    let o = command("migrate", &["--quant", "q8"]).output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(2),
        "Milvus stores floats: {}",
        output_text(&o)
    );
    let o = command("rollback", &["-y", "--drop-target"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", output_text(&o));
    let o = command("preflight", &[]).output().unwrap();
    assert!(
        output_text(&o).contains("does not exist yet"),
        "{}",
        output_text(&o)
    );
}

#[test]
fn rollback_sets_primary_only_even_when_the_target_is_down_or_the_mode_unreadable() {
    let env = Env::new();
    let state = env.target.url();
    let common = ["--state", state.as_str(), "--name", "rb"];
    let o = vectors("mode", &common, &["set", "cutover"]);
    assert!(o.status.success(), "{}", output_text(&o));
    let dead = [
        "--target",
        "redis://127.0.0.1:1",
        "--vector-set",
        "rb",
        "-y",
    ];
    let o = vectors("rollback", &common, &dead);
    assert!(o.status.success(), "{}", output_text(&o));
    let mode: String = redis::cmd("GET")
        .arg("ferry:vectors:rb:mode")
        .query(&mut env.vset())
        .unwrap();
    assert_eq!(mode, "primary_only");
    let _: () = redis::cmd("SET")
        .arg("ferry:vectors:rb:mode")
        .arg("garbage")
        .query(&mut env.vset())
        .unwrap();
    let o = vectors("rollback", &common, &["-y"]);
    assert!(o.status.success(), "{}", output_text(&o));
    assert!(
        output_text(&o).contains("unknown -> primary_only"),
        "{}",
        output_text(&o)
    );
}

#[test]
fn non_canonical_integer_names_and_unusable_ids_are_not_hidden() {
    let env = Env::new();
    env.load(20, 4);
    env.query("CREATE (:Media {id: 3.5, embedding: vecf32([1.0, 2.0, 3.0, 4.0])})");
    let (o, report) = env.report("migrate", &["--quant", "noquant"]);
    assert_eq!(o.status.code(), Some(1), "{}", output_text(&o));
    assert_eq!(stat(&report, "unusable_ids"), 1);
    for name in ["007", "-0"] {
        let _: i64 = redis::cmd("VADD")
            .arg(&env.set)
            .arg("VALUES")
            .arg(4)
            .arg(&[1.0_f32, 1.0, 1.0, 1.0][..])
            .arg(name)
            .arg("NOQUANT")
            .query(&mut env.vset())
            .unwrap();
    }
    let (_, report) = env.report("validate", &["--full", "--fix"]);
    assert_eq!(stat(&report, "orphans"), 2, "{report}");
    assert_eq!(stat(&report, "deleted"), 2);
    assert_eq!(env.card(), 20);
}
