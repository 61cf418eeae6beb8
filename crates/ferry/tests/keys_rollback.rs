//! `ferry keys rollback`: entries it cannot undo stay listed across interrupted and crashed
//! rollbacks, against a real redis-server (started by ferry-testkit).

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use ferry_testkit::RedisServer;
use ferry_testkit::output_text as text;
use redis::{Commands, Connection};

mod common;
use common::keys::{OLD_TO_NEW_RULES, keys_command, send_signal, write_rules};

/// Keys migrated, and every FAIL_EVERY-th of them made impossible to undo.
const KEYS: usize = 30_000;
const FAIL_EVERY: usize = 30;
const LEDGER: &str = "ferry:{keys/default}:ledger:created";

fn ferry_cmd(action: &str, url: &str, rules: &Path, extra: &[&str]) -> Command {
    let mut c = keys_command(action, url, rules, extra);
    // A killed run's lease expires after 2 s instead of 30 s.
    c.env("FERRY_LEASE_TTL_MS", "2000");
    c
}

fn ferry(action: &str, url: &str, rules: &Path, extra: &[&str]) -> Output {
    ferry_cmd(action, url, rules, extra).output().unwrap()
}

fn fill(conn: &mut Connection, n: usize) {
    for start in (0..n).step_by(1000) {
        let mut p = redis::pipe();
        for i in start..(start + 1000).min(n) {
            p.set(format!("old:{i}"), format!("value-{i}")).ignore();
        }
        let () = p.query(conn).unwrap();
    }
}

fn ledger_len(conn: &mut Connection) -> usize {
    conn.hlen(LEDGER).unwrap()
}

/// Waits until the running rollback has handled `handled` entries, then stops it with
/// `signal`.
fn stop_midway(child: &mut Child, conn: &mut Connection, handled: usize, signal: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while ledger_len(conn) > KEYS - handled {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the rollback ended before it could be stopped midway"
        );
        assert!(Instant::now() < deadline, "the rollback did not get going");
        std::thread::sleep(Duration::from_millis(20));
    }
    send_signal(child, signal);
}

/// Applies with `--delete-source`, deletes some new keys by hand (their sources cannot be
/// re-created), stops a rollback midway with `signal`, and rolls back again: every failure is
/// still reported, and still listed for a later rollback.
fn failures_survive_a_stopped_rollback(signal: &str) {
    let server = RedisServer::start();
    let mut c = server.conn();
    let dir = tempfile::tempdir().unwrap();
    let rules = write_rules(dir.path(), OLD_TO_NEW_RULES);
    let url = server.url();
    fill(&mut c, KEYS);
    let o = ferry("apply", &url, &rules, &["-y", "--delete-source"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let failing: Vec<String> = (0..KEYS)
        .step_by(FAIL_EVERY)
        .map(|i| format!("new:{i}"))
        .collect();
    let () = c.del(&failing).unwrap();
    // `status` folds apply's journal into the ledger hash, which the test watches.
    let o = ferry("status", &url, &rules, &[]);
    assert!(
        text(&o).contains(&format!("{KEYS} keys in the ledger")),
        "{}",
        text(&o)
    );
    assert_eq!(ledger_len(&mut c), KEYS);

    let mut child = ferry_cmd("rollback", &url, &rules, &["-y", "--batch-size", "100"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A third of the way, about a third of the failures have been met.
    stop_midway(&mut child, &mut c, KEYS / 3, signal);
    let o = child.wait_with_output().unwrap();
    if signal == "-TERM" {
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        assert!(text(&o).contains("interrupted"), "{}", text(&o));
    } else {
        assert_eq!(o.status.code(), None, "killed: {}", text(&o));
        // The killed run's lease must expire first.
        std::thread::sleep(Duration::from_millis(2500));
    }
    assert!(ledger_len(&mut c) < KEYS, "the stopped rollback undid some");

    for round in 0..2 {
        let report = dir.path().join(format!("rollback-{round}.json"));
        let o = ferry(
            "rollback",
            &url,
            &rules,
            &["-y", "--report", report.to_str().unwrap()],
        );
        assert_eq!(o.status.code(), Some(1), "round {round}: {}", text(&o));
        let out = text(&o);
        assert!(
            out.contains(&format!("{} failed", failing.len())),
            "round {round}: every failure is reported, the ones the stopped rollback met too:\n{out}"
        );
        let r: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
        assert_eq!(r["errors_total"], failing.len(), "{r}");
        let first = r["errors"][0]["error"].as_str().unwrap_or_default();
        assert!(first.contains("cannot restore the deleted source"), "{r}");
        assert_eq!(
            ledger_len(&mut c),
            failing.len(),
            "round {round}: the failures stay listed for a later rollback"
        );
    }
    // Everything else was undone.
    let new_left: usize = c.scan_match::<_, String>("new:*").unwrap().count();
    assert_eq!(new_left, 0);
    let old: usize = c.scan_match::<_, String>("old:*").unwrap().count();
    assert_eq!(old, KEYS - failing.len());
    let v: String = c.get("old:1").unwrap();
    assert_eq!(v, "value-1");
}

#[test]
fn failures_stay_listed_after_an_interrupted_rollback() {
    failures_survive_a_stopped_rollback("-TERM");
}

#[test]
fn failures_stay_listed_after_a_killed_rollback() {
    failures_survive_a_stopped_rollback("-KILL");
}
