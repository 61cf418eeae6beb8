//! The run lease of `ferry keys apply` end to end: a killed holder is taken over at once, and a
//! paused holder whose lease was taken over stops without writing.

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use ferry_testkit::RedisServer;
use ferry_testkit::output_text as text;
use redis::{Commands, Connection};

mod common;
use common::keys::{
    LEASE_KEY, fill_seed, keys_command, seed_rules, send_signal, wait_until_running,
};

const STATE_KEY: &str = "ferry:{keys/default}:state";
const LEDGER_KEY: &str = "ferry:{keys/default}:ledger:created";
const JOURNAL_KEY: &str = "ferry:{keys/default}:journal:created";

/// `ferry keys ACTION --source SRC --rules <seed rules> EXTRA...`, with the default lease TTL.
fn ferry_keys(action: &str, src: &str, extra: &[&str]) -> Command {
    let mut c = keys_command(action, src, &seed_rules(), extra);
    c.env_remove("FERRY_LEASE_TTL_MS");
    c
}

fn run(mut c: Command) -> Output {
    c.output().expect("run ferry")
}

fn spawn(mut c: Command) -> Child {
    c.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ferry")
}

/// The saved state and the sorted entries of the `created` ledger.
type StoreContents = (Option<Vec<u8>>, Vec<(Vec<u8>, Vec<u8>)>);

/// The saved state and the `created` ledger (its journal folded in by `ferry keys status`).
fn store_contents(conn: &mut Connection, url: &str) -> StoreContents {
    let o = run(ferry_keys("status", url, &[]));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let journal: usize = conn.llen(JOURNAL_KEY).unwrap();
    assert_eq!(journal, 0, "status folds the journal");
    let state: Option<Vec<u8>> = conn.get(STATE_KEY).unwrap();
    let mut ledger: Vec<(Vec<u8>, Vec<u8>)> = conn.hgetall(LEDGER_KEY).unwrap();
    ledger.sort();
    (state, ledger)
}

#[test]
fn a_restart_after_sigkill_takes_the_dead_runs_lease_over_at_once() {
    let server = RedisServer::start();
    let mut c = server.conn();
    fill_seed(&mut c, 20_000);
    let url = server.url();
    // The default 30 s lease: without the take-over the restart would be refused.
    let mut first = spawn(ferry_keys(
        "apply",
        &url,
        &["-y", "--rate", "4000", "--batch-size", "200"],
    ));
    wait_until_running(&mut c, 1000);
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    let holder: String = c.get(LEASE_KEY).unwrap();
    assert!(
        holder.contains(&format!(":{}:", first.id())),
        "the dead run still holds the lease: {holder}"
    );

    let started = Instant::now();
    let o = run(ferry_keys("apply", &url, &["-y"]));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = text(&o);
    assert!(
        out.contains(&format!(
            "taking over the run lease of {holder}: its process is gone"
        )),
        "{out}"
    );
    assert!(out.contains("(resumed)"), "{out}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "did not wait for the lease to expire"
    );
    let lease: bool = c.exists(LEASE_KEY).unwrap();
    assert!(!lease, "the lease was released at the end");
    let o = run(ferry_keys("verify", &url, &[]));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let state: String = c.get(STATE_KEY).unwrap();
    assert!(state.contains("\"completed\""), "{state}");
}

#[test]
fn a_paused_run_whose_lease_was_taken_over_stops_without_writing() {
    let server = RedisServer::start();
    let mut c = server.conn();
    fill_seed(&mut c, 50_000);
    let url = server.url();
    let mut paused = ferry_keys(
        "apply",
        &url,
        &["-y", "--rate", "4000", "--batch-size", "200"],
    );
    paused.env("FERRY_LEASE_TTL_MS", "1000");
    let first = spawn(paused);
    wait_until_running(&mut c, 2000);
    send_signal(&first, "-STOP");
    // Past the paused run's lease (1 s after its last renewal).
    std::thread::sleep(Duration::from_millis(2500));
    let lease: bool = c.exists(LEASE_KEY).unwrap();
    assert!(!lease, "the paused run's lease expired");

    // A second run takes the lease (the paused process is alive: no take-over) and finishes.
    let o = run(ferry_keys("apply", &url, &["-y"]));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(!text(&o).contains("taking over"), "{}", text(&o));
    let after_second = store_contents(&mut c, &url);
    let state = String::from_utf8_lossy(after_second.0.as_deref().unwrap()).into_owned();
    assert!(state.contains("\"completed\""), "{state}");
    assert!(!after_second.1.is_empty());

    // The paused run wakes up: it must notice, stop with exit 2 and write nothing.
    send_signal(&first, "-CONT");
    let o = first.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("the lease on `keys/default`"), "{out}");
    assert!(
        out.contains("taken over by a newer run") || out.contains("was lost"),
        "{out}"
    );
    assert_eq!(
        store_contents(&mut c, &url),
        after_second,
        "the paused run changed the saved state or the ledger"
    );
    let o = run(ferry_keys("verify", &url, &[]));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

const BIG_RULES: &str = r#"
[[rule]]
name = "hash"
from = "old:h:{id}"
to = "new:h:{id}"

[[rule]]
name = "string"
from = "old:a:{id}"
to = "new:a:{id}"
"#;

/// A chunked copy with `--delete-source` between two servers, paused (SIGSTOP) past its 1 s
/// lease while its temporary key fills; then `second` runs to completion on the same run and
/// the first is resumed. Regression: the resumed run put a partial copy in place and deleted
/// the source (after a rollback: half a hash lost), or wrote into the temporary key of the run
/// that took over.
fn paused_chunked_copy_then(second: &str, store_elsewhere: bool) {
    let src = RedisServer::start();
    let dst = RedisServer::start();
    let store = RedisServer::start();
    let store_url = store.url();
    let (mut s, mut t) = (src.conn(), dst.conn());
    for j in (0..200_000).step_by(1000) {
        let fields: Vec<(String, String)> = (j..j + 1000)
            .map(|i| (format!("f{i}"), format!("v{i}")))
            .collect();
        let () = s.hset_multiple("old:h:1", &fields).unwrap();
    }
    for i in 0..20 {
        let () = s.set(format!("old:a:{i}"), format!("s{i}")).unwrap();
    }
    let digest: Vec<String> = redis::cmd("DEBUG")
        .arg("DIGEST-VALUE")
        .arg("old:h:1")
        .query(&mut s)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rules = common::keys::write_rules(dir.path(), BIG_RULES);
    let target = dst.url();
    let apply_args = [
        "-y",
        "--target",
        &target,
        "--delete-source",
        "--max-payload",
        "1",
        "--chunk-size",
        "50",
    ];
    let command = |action: &str, extra: &[&str]| {
        let mut c = keys_command(action, &src.url(), &rules, extra);
        if store_elsewhere {
            c.args(["--checkpoint", &store_url]);
        }
        c.env("FERRY_LEASE_TTL_MS", "1000");
        c
    };
    let first = spawn(command("apply", &apply_args));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let tmp = common::keys::keys_matching(&mut t, "new:h:1:ferry-tmp:*");
        let filled: usize = tmp.first().map_or(0, |k| t.hlen(k).unwrap_or(0));
        if filled > 20_000 {
            break;
        }
        assert!(Instant::now() < deadline, "the chunked copy did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    send_signal(&first, "-STOP");
    std::thread::sleep(Duration::from_millis(2500));
    let args: &[&str] = if second == "rollback" {
        &["-y", "--target", &target]
    } else {
        &apply_args
    };
    let other = spawn(command(second, args));
    if second == "apply" {
        // Resume the first while the second is copying into its own temporary key.
        let deadline = Instant::now() + Duration::from_secs(60);
        while common::keys::keys_matching(&mut t, "new:h:1:ferry-tmp:*").is_empty() {
            assert!(Instant::now() < deadline, "the second apply did not start");
            std::thread::sleep(Duration::from_millis(5));
        }
        send_signal(&first, "-CONT");
        let o = other.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{second}: {}", text(&o));
    } else {
        let o = other.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{second}: {}", text(&o));
        send_signal(&first, "-CONT");
    }
    let o = first.wait_with_output().unwrap();
    assert_ne!(
        o.status.code(),
        Some(0),
        "the paused run must not succeed: {}",
        text(&o)
    );
    // Nothing lost, nothing half-copied.
    if second == "rollback" {
        let back: Vec<String> = redis::cmd("DEBUG")
            .arg("DIGEST-VALUE")
            .arg("old:h:1")
            .query(&mut s)
            .unwrap();
        assert_eq!(back, digest, "the source hash is back whole");
        assert!(!t.exists::<_, bool>("new:h:1").unwrap(), "{}", text(&o));
        for i in 0..20 {
            assert!(s.exists::<_, bool>(format!("old:a:{i}")).unwrap());
        }
    } else {
        let n: usize = t.hlen("new:h:1").unwrap();
        assert_eq!(n, 200_000, "the new hash is whole: {}", text(&o));
        assert!(!s.exists::<_, bool>("old:h:1").unwrap());
        let o = command("verify", &["--target", &target]).output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    }
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        common::keys::keys_matching(&mut t, "*ferry-tmp*").is_empty(),
        "temporary keys left"
    );
}

#[test]
fn a_paused_chunked_copy_writes_nothing_after_a_rollback_took_over() {
    paused_chunked_copy_then("rollback", false);
    // The store on a third server: the fence is read just before the rename.
    paused_chunked_copy_then("rollback", true);
}

#[test]
fn a_paused_chunked_copy_never_touches_the_copy_of_the_run_that_took_over() {
    paused_chunked_copy_then("apply", false);
}
