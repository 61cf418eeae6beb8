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
