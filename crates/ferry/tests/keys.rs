//! The keys job against real redis-server processes (started by ferry-testkit).

use std::process::{Command, Stdio};

use ferry_testkit::{RedisCluster, RedisServer};
use redis::{Commands, Connection, Value};

mod common;
use common::keys::{
    assert_output_has, digest, ferry, fill_seed, keys, keys_with_prefix, read_report,
    seed_key_mapper, seed_rules, send_signal, spawn_apply, wait_until_running,
};
use ferry_testkit::output_text as text;

const OLD: &str = "josancamon:rayban-meta-glasses-api:";

fn dump(conn: &mut Connection, key: &[u8]) -> Option<Vec<u8>> {
    redis::cmd("DUMP").arg(key).query(conn).unwrap()
}

/// The value of a key in a form independent of its encoding (hash tables iterate in a
/// per-server order, so DUMP payloads of equal sets or hashes may differ between servers).
fn contents(conn: &mut Connection, key: &[u8]) -> Vec<Vec<u8>> {
    let kind: String = redis::cmd("TYPE").arg(key).query(conn).unwrap();
    let mut items: Vec<Vec<u8>> = match kind.as_str() {
        "string" => vec![conn.get(key).unwrap()],
        "hash" => {
            let pairs: Vec<(Vec<u8>, Vec<u8>)> = conn.hgetall(key).unwrap();
            pairs
                .into_iter()
                .map(|(k, v)| [k, b"=".to_vec(), v].concat())
                .collect()
        }
        "set" => conn.smembers(key).unwrap(),
        "list" => conn.lrange(key, 0, -1).unwrap(),
        "zset" => {
            let v: Vec<(Vec<u8>, f64)> = conn.zrange_withscores(key, 0, -1).unwrap();
            v.into_iter()
                .map(|(m, s)| [m, s.to_string().into_bytes()].concat())
                .collect()
        }
        "stream" => {
            let v: Value = redis::cmd("XRANGE")
                .arg(key)
                .arg("-")
                .arg("+")
                .query(conn)
                .unwrap();
            vec![format!("{v:?}").into_bytes()]
        }
        "none" => return Vec::new(),
        other => panic!("unexpected type {other}"),
    };
    if kind != "list" {
        items.sort();
    }
    items.insert(0, kind.into_bytes());
    items
}

fn pttl(conn: &mut Connection, key: &[u8]) -> i64 {
    conn.pttl(key).unwrap()
}

/// Every source key under the old prefix has a twin under its new name with the same value
/// (equal DUMP payloads, or else equal contents) and a TTL within 1 s.
fn assert_migrated_exactly(src: &mut Connection, dst: &mut Connection) -> usize {
    let rules = seed_key_mapper();
    let keys = keys_with_prefix(src, OLD);
    assert!(!keys.is_empty());
    for k in &keys {
        let new = rules.new_key(k).expect("seed keys all match");
        if dump(src, k) != dump(dst, &new) {
            assert_eq!(
                contents(src, k),
                contents(dst, &new),
                "value of {}",
                String::from_utf8_lossy(&new)
            );
        }
        let (a, b) = (pttl(src, k), pttl(dst, &new));
        assert!(
            (a == -1 && b == -1) || (a >= 0 && b >= 0 && (a - b).abs() <= 1000),
            "ttl {a} vs {b} for {}",
            String::from_utf8_lossy(&new)
        );
    }
    keys.len()
}

fn six_types(conn: &mut Connection, prefix: &[u8]) -> Vec<Vec<u8>> {
    let key = |s: &str| [prefix, s.as_bytes()].concat();
    let names: Vec<Vec<u8>> = [
        "reminder:str",
        "reminder:hash",
        "reminder:list",
        "reminder:set",
        "reminder:zset",
        "reminder:stream",
    ]
    .iter()
    .map(|s| key(s))
    .collect();
    let _: () = conn.set(&names[0], b"\x00binary\xffvalue").unwrap();
    let _: () = conn
        .hset_multiple(&names[1], &[("a", "1"), ("b", "2")])
        .unwrap();
    let _: () = conn.rpush(&names[2], &["x", "y", "z"]).unwrap();
    let _: () = conn.sadd(&names[3], &["m1", "m2"]).unwrap();
    let _: () = conn
        .zadd_multiple(&names[4], &[(1.5, "one"), (2.25, "two")])
        .unwrap();
    let _: String = redis::cmd("XADD")
        .arg(&names[5])
        .arg("1-1")
        .arg("f")
        .arg("v")
        .query(conn)
        .unwrap();
    let _: String = redis::cmd("XADD")
        .arg(&names[5])
        .arg("2-1")
        .arg("f")
        .arg("w")
        .query(conn)
        .unwrap();
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&names[5])
        .arg("g")
        .arg("0")
        .query(conn)
        .unwrap();
    let _: Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("g")
        .arg("c1")
        .arg("COUNT")
        .arg(1)
        .arg("STREAMS")
        .arg(&names[5])
        .arg(">")
        .query(conn)
        .unwrap();
    for (i, n) in names.iter().enumerate() {
        if i % 2 == 0 {
            let _: () = conn.pexpire(n, 3_600_000 + i as i64).unwrap();
        }
    }
    names
}

#[test]
fn all_six_types_keep_value_and_ttl_on_one_server() {
    let server = RedisServer::start();
    let mut c = server.conn();
    six_types(&mut c, OLD.as_bytes());
    let url = server.url();
    let o = keys("apply", &url, &["-y"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(assert_migrated_exactly(&mut c, &mut server.conn()), 6);
    let group: Vec<Value> = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg("meta-glasses:reminder:event:stream")
        .query(&mut c)
        .unwrap();
    assert_eq!(group.len(), 1, "consumer group copied");
}

#[test]
fn all_six_types_keep_value_and_ttl_between_servers() {
    let (a, b) = (RedisServer::start(), RedisServer::start());
    six_types(&mut a.conn(), OLD.as_bytes());
    let (src, dst) = (a.url(), b.url());
    let o = keys("apply", &src, &["-y", "--target", &dst]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(assert_migrated_exactly(&mut a.conn(), &mut b.conn()), 6);
}

#[test]
fn binary_key_names_are_migrated() {
    let server = RedisServer::start();
    let mut c = server.conn();
    let key = [OLD.as_bytes(), b"reminder:\x00\xff\xfe\x01"].concat();
    let _: () = c.set(&key, "v").unwrap();
    let rules = seed_rules();
    let url = server.url();
    let o = keys("apply", &url, &["-y"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v: Option<String> = c
        .get(b"meta-glasses:reminder:event:\x00\xff\xfe\x01")
        .unwrap();
    assert_eq!(v.as_deref(), Some("v"));
    // test-rules takes \xNN escapes for the same bytes.
    let o = ferry(&[
        "keys",
        "test-rules",
        "--rules",
        rules.to_str().unwrap(),
        "josancamon:rayban-meta-glasses-api:reminder:\\x00\\xff",
        "other:key",
    ]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("meta-glasses:reminder:event:\\u{0}\\xff"),
        "{out}"
    );
    assert!(out.contains("other:key -> unmatched"), "{out}");
}

#[test]
fn plan_and_analyze_write_nothing() {
    let server = RedisServer::start();
    let mut c = server.conn();
    fill_seed(&mut c, 2000);
    let before = digest(&mut c);
    let url = server.url();
    let report = tempfile::NamedTempFile::new().unwrap();
    for action in ["plan", "analyze"] {
        let o = keys(action, &url, &["--report", report.path().to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let r = read_report(report.path());
        assert_eq!(r["dry_run"], true);
        assert!(r["stats"]["matched"].as_u64().unwrap() > 1800, "{r}");
    }
    assert_eq!(digest(&mut c), before, "plan/analyze changed the data");
}

#[test]
fn conflict_policies_skip_overwrite_and_fail() {
    for (policy, expect_code, expect_value) in [
        ("skip", 0, "existing"),
        ("fail", 1, "existing"),
        ("overwrite", 0, "source"),
    ] {
        let server = RedisServer::start();
        let mut c = server.conn();
        let _: () = c.set(format!("{OLD}user_profile:1"), "source").unwrap();
        let _: () = c.set("meta-glasses:user:profile:1", "existing").unwrap();
        let _: () = c.set(format!("{OLD}user_profile:2"), "two").unwrap();
        let url = server.url();
        let report = tempfile::NamedTempFile::new().unwrap();
        let o = keys(
            "apply",
            &url,
            &[
                "-y",
                "--on-conflict",
                policy,
                "--report",
                report.path().to_str().unwrap(),
            ],
        );
        assert_eq!(o.status.code(), Some(expect_code), "{policy}: {}", text(&o));
        let v: String = c.get("meta-glasses:user:profile:1").unwrap();
        assert_eq!(v, expect_value, "{policy}");
        let v: String = c.get("meta-glasses:user:profile:2").unwrap();
        assert_eq!(v, "two", "{policy}: the other key is migrated anyway");
        let r = read_report(report.path());
        match policy {
            "skip" => assert_eq!(r["stats"]["skipped_existing"], 1, "{r}"),
            "fail" => assert_eq!(r["stats"]["failed"], 1, "{r}"),
            _ => assert_eq!(r["stats"]["overwritten"], 1, "{r}"),
        }
        assert!(
            r["per_rule"]["profile"]["migrated"].as_u64().unwrap() >= 1,
            "{r}"
        );
    }
}

#[test]
fn values_too_big_for_one_payload_are_copied_in_chunks() {
    let (a, b) = (RedisServer::start(), RedisServer::start());
    let mut c = a.conn();
    let names = six_types(&mut c, OLD.as_bytes());
    let big_hash = format!("{OLD}reminder:bighash");
    for i in 0..50 {
        let fields: Vec<(String, String)> = (0..100)
            .map(|j| (format!("f{i}-{j}"), "v".repeat(50)))
            .collect();
        let _: () = c.hset_multiple(&big_hash, &fields).unwrap();
    }
    let big_string = format!("{OLD}reminder:bigstring");
    let _: () = c.set(&big_string, "s".repeat(3 * 1024 * 1024)).unwrap();
    let _: () = c.pexpire(&big_string, 7_200_000).unwrap();
    let (src, dst) = (a.url(), b.url());
    let report = tempfile::NamedTempFile::new().unwrap();
    let o = keys(
        "apply",
        &src,
        &[
            "-y",
            "--target",
            &dst,
            "--max-payload",
            "1",
            "--chunk-size",
            "64",
            "--report",
            report.path().to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let r = read_report(report.path());
    assert_eq!(r["stats"]["chunked"], (names.len() + 2) as u64, "{r}");
    let mut d = b.conn();
    let h: std::collections::HashMap<String, String> =
        d.hgetall("meta-glasses:reminder:event:bighash").unwrap();
    assert_eq!(h.len(), 5000);
    let s: String = d.get("meta-glasses:reminder:event:bigstring").unwrap();
    assert_eq!(s.len(), 3 * 1024 * 1024);
    assert!(
        (pttl(&mut d, b"meta-glasses:reminder:event:bigstring")
            - pttl(&mut c, big_string.as_bytes()))
        .abs()
            < 1000
    );
    // verify compares contents when payloads differ.
    let o = keys("verify", &src, &["--target", &dst]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_output_has(&o, "ok 8");
}

#[test]
fn sigkill_mid_apply_then_resume_is_exact() {
    sigkill_then_resume_ends_exact(false);
}

#[test]
fn sigkill_mid_apply_between_servers_then_resume_is_exact() {
    sigkill_then_resume_ends_exact(true);
}

/// Kills an apply mid-run, resumes it and checks every key is exact, none was counted as
/// pre-existing, verify passes and rollback restores the prior content of the target.
fn sigkill_then_resume_ends_exact(two_servers: bool) {
    let source = RedisServer::start();
    let target = two_servers.then(RedisServer::start);
    let mut s = source.conn();
    let mut t = target.as_ref().unwrap_or(&source).conn();
    fill_seed(&mut s, 30_000);
    // A key under the new prefix that no old key maps to: rollback must leave it alone.
    let () = t.set("meta-glasses:user:profile:kept", "app").unwrap();
    let before = digest(&mut t);
    let url = source.url();
    let target_url = target.as_ref().map(|t| t.url());
    let mut extra = vec!["--rate", "6000", "--batch-size", "200"];
    let mut to: Vec<&str> = Vec::new();
    if let Some(u) = &target_url {
        to = vec!["--target", u];
    }
    extra.extend(&to);
    let mut child = spawn_apply(&url, &extra, Stdio::piped);
    wait_until_running(&mut t, 3000);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let partial = keys_with_prefix(&mut t, "meta-glasses:").len();
    assert!(
        partial > 0 && partial < 28_000,
        "killed mid-run: {partial} keys copied"
    );
    // Status shows the killed run; its lease is taken over at once (its process is gone).
    let o = keys("status", &url, &to);
    assert_output_has(&o, "running");
    let report = tempfile::NamedTempFile::new().unwrap();
    let o = keys(
        "apply",
        &url,
        &[
            &["-y", "--report", report.path().to_str().unwrap()][..],
            &to,
        ]
        .concat(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let r = read_report(report.path());
    assert_eq!(r["resumed"], true, "{r}");
    let n = assert_migrated_exactly(&mut s, &mut t);
    assert_eq!(
        keys_with_prefix(&mut t, "meta-glasses:").len(),
        n + 1,
        "no extra keys"
    );
    // The keys the killed attempt wrote are known as this run's: redone, not skipped.
    assert_eq!(r["stats"]["skipped_existing"], 0, "{r}");
    assert_eq!(r["stats"]["migrated"], n, "{r}");
    let o = keys("verify", &url, &to);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // The ledger is exact across the kill: rollback removes every key the run created, and
    // only those.
    let o = keys("rollback", &url, &[&["-y"][..], &to].concat());
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(
        digest(&mut t),
        before,
        "rollback restores the prior content"
    );
}

/// A SCAN cursor means nothing on a server that restarted (its hash table has a new seed): a
/// run resumed after its source restarted scans that master again instead of skipping keys.
#[test]
fn a_run_resumed_after_its_source_restarted_scans_the_source_again() {
    let mut source = RedisServer::start();
    let target = RedisServer::start();
    let mut s = source.conn();
    let mut t = target.conn();
    fill_seed(&mut s, 30_000);
    let (url, target_url) = (source.url(), target.url());
    let to = ["--target", target_url.as_str()];
    let mut child = spawn_apply(
        &url,
        &[&["--rate", "6000", "--batch-size", "200"][..], &to].concat(),
        Stdio::piped,
    );
    wait_until_running(&mut t, 3000);
    // Until the run has saved a position in the source's keyspace.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let saved: Option<String> = t.get("ferry:{keys/default}:state").unwrap();
        let state: serde_json::Value =
            serde_json::from_str(&saved.unwrap_or_default()).unwrap_or_default();
        let cursors = state["cursors"].as_object().cloned().unwrap_or_default();
        if cursors.values().any(|c| c.as_u64().is_some_and(|c| c != 0)) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no position saved: {state}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // The source restarts with its data (saved, then loaded from its dump): a new run_id.
    let _: () = redis::cmd("SAVE").query(&mut s).unwrap();
    source.restart();
    let mut s = source.conn();
    let o = keys("apply", &url, &[&["-y"][..], &to].concat());
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("scanning it again from the start"),
        "{}",
        text(&o)
    );
    let n = assert_migrated_exactly(&mut s, &mut t);
    assert_eq!(
        keys_with_prefix(&mut t, "meta-glasses:").len(),
        n,
        "every key copied"
    );
}

#[test]
fn a_second_apply_while_one_runs_is_refused() {
    let server = RedisServer::start();
    fill_seed(&mut server.conn(), 20_000);
    let url = server.url();
    let mut first = spawn_apply(&url, &["--rate", "2000"], Stdio::piped);
    wait_until_running(&mut server.conn(), 1);
    let o = keys("apply", &url, &["-y"]);
    first.kill().unwrap();
    first.wait().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert_output_has(&o, "in progress");
}

#[test]
fn verify_catches_a_changed_value_a_missing_key_and_a_wrong_ttl() {
    let server = RedisServer::start();
    let mut c = server.conn();
    for i in 0..10 {
        let _: () = c
            .set_ex(format!("{OLD}user_profile:{i}"), format!("p{i}"), 3600)
            .unwrap();
    }
    let url = server.url();
    let o = keys("apply", &url, &["-y"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let ok = keys("verify", &url, &[]);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok));
    let _: () = c
        .set_ex("meta-glasses:user:profile:1", "changed", 3600)
        .unwrap();
    let _: () = c.del("meta-glasses:user:profile:2").unwrap();
    let _: () = c.expire("meta-glasses:user:profile:3", 60).unwrap();
    let report = tempfile::NamedTempFile::new().unwrap();
    let o = keys(
        "verify",
        &url,
        &["--report", report.path().to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let r = read_report(report.path());
    assert_eq!(r["stats"]["missing"], 1, "{r}");
    assert_eq!(r["stats"]["mismatched_value"], 1, "{r}");
    assert_eq!(r["stats"]["mismatched_ttl"], 1, "{r}");
    assert_eq!(r["errors_total"], 3, "{r}");
}

#[test]
fn rollback_returns_the_server_to_its_exact_prior_content() {
    for extra in [
        &[][..],
        &["--on-conflict", "overwrite"][..],
        &["--delete-source"][..],
    ] {
        let server = RedisServer::start();
        let mut c = server.conn();
        fill_seed(&mut c, 3000);
        six_types(&mut c, OLD.as_bytes());
        // A key that existed before under a new name must survive (or come back) untouched.
        let _: () = c.set("meta-glasses:user:profile:pre", "mine").unwrap();
        let _: () = c.set(format!("{OLD}user_profile:pre"), "theirs").unwrap();
        let _: () = c.set(format!("{OLD}user_profile:ttl"), "t").unwrap();
        let _: () = c
            .pexpire_at(format!("{OLD}user_profile:ttl"), 4_000_000_000_000i64)
            .unwrap();
        let before = digest(&mut c);
        let url = server.url();
        let o = keys("apply", &url, &[&["-y"][..], extra].concat());
        assert_eq!(o.status.code(), Some(0), "{extra:?}: {}", text(&o));
        assert_ne!(digest(&mut c), before);
        let dry = keys("rollback", &url, &[]);
        assert_output_has(&dry, "pass -y");
        let o = keys("rollback", &url, &["-y"]);
        assert_eq!(o.status.code(), Some(0), "{extra:?}: {}", text(&o));
        assert_eq!(
            digest(&mut c),
            before,
            "{extra:?}: rollback left the server different"
        );
    }
}

#[test]
fn cluster_to_cluster_and_standalone_to_cluster() {
    let rules = seed_rules();
    let src_cluster = RedisCluster::start();
    let dst_cluster = RedisCluster::start();
    let standalone = RedisServer::start();
    {
        let mut cc = src_cluster.client().get_connection().unwrap();
        for i in 0..3000 {
            let _: () = cc
                .set(format!("{OLD}user_profile:{i}"), format!("v{i}"))
                .unwrap();
            if i % 3 == 0 {
                let _: () = cc
                    .pexpire(format!("{OLD}user_profile:{i}"), 3_600_000)
                    .unwrap();
            }
        }
        let _: () = cc.hset(format!("{OLD}reminder:h"), "f", "v").unwrap();
    }
    fill_seed(&mut standalone.conn(), 3000);
    let standalone_keys = keys_with_prefix(&mut standalone.conn(), OLD).len();
    for (src, expected) in [
        (src_cluster.url(), 3001usize),
        (standalone.url(), standalone_keys),
    ] {
        let dst = dst_cluster.url();
        let o = keys(
            "apply",
            &src,
            &[
                "-y",
                "--target",
                &dst,
                "--run-name",
                if src.contains("cluster") {
                    "c2c"
                } else {
                    "s2c"
                },
            ],
        );
        assert_eq!(o.status.code(), Some(0), "{src}: {}", text(&o));
        assert_output_has(&o, &format!("migrated {expected}"));
        let v = ferry(&[
            "keys",
            "verify",
            "--source",
            &src,
            "--target",
            &dst,
            "--rules",
            rules.to_str().unwrap(),
            "--run-name",
            if src.contains("cluster") {
                "c2c"
            } else {
                "s2c"
            },
        ]);
        assert_eq!(v.status.code(), Some(0), "{}", text(&v));
    }
    let mut dc = dst_cluster.client().get_connection().unwrap();
    let v: String = dc.get("meta-glasses:user:profile:42").unwrap();
    assert_eq!(v, "v42");
    let t: i64 = dc.pttl("meta-glasses:user:profile:3").unwrap();
    assert!(t > 3_500_000, "ttl kept across the cluster: {t}");
}

#[test]
fn same_cluster_rename_routes_every_key() {
    let cluster = RedisCluster::start();
    let mut cc = cluster.client().get_connection().unwrap();
    for i in 0..1000 {
        let _: () = cc.set(format!("{OLD}cancellation:wa:{i}"), i).unwrap();
    }
    let url = cluster.url();
    let o = keys("apply", &url, &["-y"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_output_has(&o, "migrated 1000");
    let v: i64 = cc.get("meta-glasses:state:cancellation:wa:999").unwrap();
    assert_eq!(v, 999);
}

#[test]
fn wrong_password_and_unreachable_server_exit_2_with_a_clear_message() {
    let server = RedisServer::start_with(&["--requirepass", "s3cret"]);
    let rules = seed_rules();
    let wrong = format!("redis://:nope@127.0.0.1:{}/0", server.port());
    let o = keys("analyze", &wrong, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("refused the credentials") && !err.contains("nope"),
        "{err}"
    );
    let none = format!("redis://127.0.0.1:{}/0", server.port());
    let o = keys("analyze", &none, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    // The password may come from the environment instead of the URL.
    let o = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args([
            "keys",
            "analyze",
            "--source",
            &none,
            "--rules",
            rules.to_str().unwrap(),
        ])
        .env("FERRY_SOURCE_PASSWORD", "s3cret")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let o = keys("plan", &format!("redis://127.0.0.1:{port}/0"), &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert_output_has(&o, "cannot connect");
}

#[test]
fn malformed_rules_are_reported_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad-rules.toml");
    std::fs::write(
        &path,
        "[[rule]]\nname = \"a\"\nfrom = \"old:{id}\"\nto = \"new:{nope}\"\n",
    )
    .unwrap();
    let o = ferry(&[
        "keys",
        "test-rules",
        "--rules",
        path.to_str().unwrap(),
        "old:1",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("bad-rules.toml:4"), "{err}");
}

#[test]
fn keys_expiring_mid_run_are_counted_vanished() {
    let (a, b) = (RedisServer::start(), RedisServer::start());
    let mut c = a.conn();
    for i in 0..3000 {
        let _: () = c
            .pset_ex(
                format!("{OLD}user_profile:{i}"),
                "x",
                400 + (i % 5) as u64 * 150,
            )
            .unwrap();
    }
    let (src, dst) = (a.url(), b.url());
    let report = tempfile::NamedTempFile::new().unwrap();
    let o = keys(
        "apply",
        &src,
        &[
            "-y",
            "--target",
            &dst,
            "--rate",
            "3000",
            "--batch-size",
            "100",
            "--report",
            report.path().to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let r = read_report(report.path());
    assert_eq!(r["stats"]["failed"], 0, "{r}");
    let (migrated, scanned) = (
        r["stats"]["migrated"].as_u64().unwrap(),
        r["stats"]["scanned"].as_u64().unwrap(),
    );
    let vanished = r["stats"]["vanished"].as_u64().unwrap();
    assert!(migrated < 3000, "{r}");
    assert_eq!(migrated + vanished, scanned, "{r}");
}

#[test]
fn file_checkpoint_store_supports_apply_status_and_rollback() {
    let server = RedisServer::start();
    let mut c = server.conn();
    fill_seed(&mut c, 500);
    let before = digest(&mut c);
    let dir = tempfile::tempdir().unwrap();
    let store = format!("file://{}", dir.path().display());
    let url = server.url();
    let o = keys("apply", &url, &["-y", "--checkpoint", &store]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = keys("status", &url, &["--checkpoint", &store]);
    assert_output_has(&o, "completed");
    let o = keys("rollback", &url, &["-y", "--checkpoint", &store]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(digest(&mut c), before);
}

#[test]
fn tls_source_over_rediss() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let ok = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl is installed by scripts/setup.sh");
    assert!(ok.success());
    let tls_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = RedisServer::start_with(&[
        "--tls-port",
        &tls_port.to_string(),
        "--tls-cert-file",
        cert.to_str().unwrap(),
        "--tls-key-file",
        key.to_str().unwrap(),
        "--tls-ca-cert-file",
        cert.to_str().unwrap(),
        "--tls-auth-clients",
        "no",
    ]);
    let _: () = server
        .conn()
        .set(format!("{OLD}user_profile:tls"), "secure")
        .unwrap();
    let url = format!("rediss://127.0.0.1:{tls_port}/0#insecure");
    let o = keys("apply", &url, &["-y"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v: String = server.conn().get("meta-glasses:user:profile:tls").unwrap();
    assert_eq!(v, "secure");
}

#[test]
fn applications_read_new_keys_and_fall_back_to_old_ones() {
    let server = RedisServer::start();
    let mut c = server.conn();
    let _: () = c.set(format!("{OLD}user_profile:1"), "old-1").unwrap();
    let _: () = c.set("meta-glasses:user:profile:2", "new-2").unwrap();
    let mapper = seed_key_mapper();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = redis::Client::open(server.url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        use ferry::compat::{Served, get_with_fallback};
        let one = get_with_fallback(&mut conn, &mapper, b"meta-glasses:user:profile:1")
            .await
            .unwrap();
        assert_eq!(one, Some((b"old-1".to_vec(), Served::Old)));
        let two = get_with_fallback(&mut conn, &mapper, b"meta-glasses:user:profile:2")
            .await
            .unwrap();
        assert_eq!(two, Some((b"new-2".to_vec(), Served::New)));
        let none = get_with_fallback(&mut conn, &mapper, b"meta-glasses:user:profile:3")
            .await
            .unwrap();
        assert_eq!(none, None);
    });
}

#[test]
fn payloads_an_older_target_refuses_are_copied_in_chunks() {
    // DUMP payloads of Redis 8 carry an RDB version that Redis 7 refuses with "DUMP payload
    // version or checksum are wrong": every type must still arrive, element by element.
    let newer = RedisServer::start_with_binary(&ferry_testkit::redis8_server_bin(), &[]);
    let older = RedisServer::start();
    six_types(&mut newer.conn(), OLD.as_bytes());
    let (src, dst) = (newer.url(), older.url());
    let report = tempfile::NamedTempFile::new().unwrap();
    let o = keys(
        "apply",
        &src,
        &[
            "-y",
            "--target",
            &dst,
            "--report",
            report.path().to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let r = read_report(report.path());
    assert_eq!(r["stats"]["chunked"], 6, "{r}");
    assert_eq!(
        assert_migrated_exactly(&mut newer.conn(), &mut older.conn()),
        6
    );
    let v = keys("verify", &src, &["--target", &dst]);
    assert_eq!(v.status.code(), Some(0), "{}", text(&v));
}

#[test]
fn sigterm_saves_the_checkpoint_and_a_rerun_resumes() {
    let server = RedisServer::start();
    let mut c = server.conn();
    fill_seed(&mut c, 20_000);
    let url = server.url();
    let child = spawn_apply(
        &url,
        &["--rate", "5000", "--batch-size", "200"],
        Stdio::piped,
    );
    wait_until_running(&mut c, 2000);
    send_signal(&child, "-TERM");
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert_output_has(&o, "run the same command again to resume");
    let s = keys("status", &url, &[]);
    assert_output_has(&s, "interrupted");
    // The lease was released on the way out: the rerun starts at once and resumes.
    let o = keys("apply", &url, &["-y"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_output_has(&o, "(resumed)");
    assert_migrated_exactly(&mut c, &mut server.conn());
}

#[test]
fn options_come_from_the_environment_and_the_config_file() {
    let server = RedisServer::start();
    let _: () = server
        .conn()
        .set(format!("{OLD}user_profile:env"), "e")
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(seed_rules(), dir.path().join("rules.toml")).unwrap();
    let config = dir.path().join("ferry.toml");
    std::fs::write(&config, format!("[log]\nformat = \"json\"\n\n[keys]\nsource = \"{}\"\nrules = \"rules.toml\"\nrun_name = \"from-config\"\n", server.url())).unwrap();
    let o = ferry(&["--config", config.to_str().unwrap(), "keys", "apply", "-y"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v: String = server.conn().get("meta-glasses:user:profile:env").unwrap();
    assert_eq!(v, "e");
    // FERRY_* variables override the file.
    let o = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["--config", config.to_str().unwrap(), "keys", "status"])
        .env("FERRY_RUN_NAME", "other")
        .output()
        .unwrap();
    assert_output_has(&o, "run `other`: no apply recorded");
    let o = ferry(&["--config", config.to_str().unwrap(), "keys", "status"]);
    assert_output_has(&o, "run `from-config`: completed");
    // A mistyped option names the file and the line.
    std::fs::write(&config, "[keys]\nsource = \"redis://x\"\nbatchsize = 5\n").unwrap();
    let o = ferry(&["--config", config.to_str().unwrap(), "keys", "status"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("ferry.toml") && err.contains("line 3") && err.contains("batchsize"),
        "{err}"
    );
}
