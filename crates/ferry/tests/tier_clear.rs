//! `ferry tier clear --discard`: it drains a camera like a pass does — under the camera's lease,
//! deleting exactly the entries it read — only without storing them.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ferry_testkit::output_text as text;
use redis::Connection;

mod common;
use common::tier::{HOUR, TierSetup, now_ms, scene, xadd};

const SCENE: [&str; 2] = ["a man in the fields", "red car parked at the gate"];

fn ids(conn: &mut Connection, camera: &str) -> Vec<String> {
    let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(format!("captions:{camera}"))
        .arg("-")
        .arg("+")
        .query(conn)
        .unwrap();
    entries.into_iter().map(|(id, _)| id).collect()
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The one-letter state of a process (`T` = stopped), from `/proc/<pid>/stat`.
fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Kills a child left behind by a failed assertion.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Starts `ferry ARGS` with the pausepoint `point` and a lease TTL of `lease_ttl_ms`, and waits
/// until it has stopped there (SIGSTOP by itself).
fn paused(s: &TierSetup, args: &[&str], point: &str, lease_ttl_ms: u64) -> Reaped {
    let child = s
        .command(args)
        .env("FERRY_PAUSEPOINT", point)
        .env("FERRY_LEASE_TTL_MS", lease_ttl_ms.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = Reaped(child);
    let pid = child.0.id();
    wait_for(
        &format!("ferry {} to stop at {point}", args.join(" ")),
        Duration::from_secs(60),
        || {
            assert!(
                child.0.try_wait().unwrap().is_none(),
                "ferry {} ended without stopping at {point}",
                args.join(" ")
            );
            process_state(pid) == Some('T')
        },
    );
    child
}

#[test]
fn discard_refuses_while_another_run_holds_the_cameras_lease() {
    let s = TierSetup::new("");
    let mut c = s.conn();
    scene(&mut c, "cam1", now_ms() - 3 * HOUR, 5, &SCENE);
    let _: () = redis::cmd("SET")
        .arg("ferry:{tier/cam1}:lease")
        .arg("other-host:1:1")
        .arg("PX")
        .arg(60_000)
        .query(&mut c)
        .unwrap();
    let out = s.ferry(&["tier", "clear", "--camera", "cam1", "--discard", "-y"]);
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("other-host:1:1"), "{}", text(&out));
    assert_eq!(
        ids(&mut c, "cam1").len(),
        5,
        "nothing is dropped while another run drains the camera"
    );

    let _: () = redis::cmd("DEL")
        .arg("ferry:{tier/cam1}:lease")
        .query(&mut c)
        .unwrap();
    s.run_ok(&["tier", "clear", "--camera", "cam1", "--discard", "-y"]);
    assert!(ids(&mut c, "cam1").is_empty());
}

#[test]
fn discard_deletes_only_the_entries_it_read_and_holds_the_lease_meanwhile() {
    let s = TierSetup::new("");
    let mut c = s.conn();
    scene(&mut c, "cam1", now_ms() - 3 * HOUR, 5, &SCENE);
    // Stopped, it cannot renew its lease: a TTL long enough to outlast the checks below.
    let mut child = paused(
        &s,
        &["tier", "clear", "--camera", "cam1", "--discard", "-y"],
        "tier-discard-before-delete",
        60_000,
    );
    let pid = child.0.id();
    // While it is paused the camera is leased: a pass skips it.
    let out = s.run_ok(&["tier", "run", "--all"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 busy elsewhere"),
        "{}",
        text(&out)
    );
    // A caption written after the read must survive the delete.
    let late = now_ms();
    xadd(&mut c, "cam1", late, 0, "a late caption");

    let ok = Command::new("kill")
        .args(["-CONT", &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "SIGCONT {pid}");
    let mut status = None;
    wait_for(
        "the resumed discard to end",
        Duration::from_secs(60),
        || {
            status = child.0.try_wait().unwrap();
            status.is_some()
        },
    );
    let mut stderr = String::new();
    child
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.unwrap().code(), Some(0), "{stderr}");
    assert_eq!(ids(&mut c, "cam1"), vec![format!("{late}-0")]);
    assert!(s.events().is_empty(), "discarded captions are not stored");
}

/// A pass paused before its commit loses the camera to a discard (its lease expired): resumed,
/// it must not store the captions the discard dropped.
#[test]
fn a_pass_that_lost_the_camera_to_a_discard_stores_nothing() {
    let s = TierSetup::new("");
    let mut c = s.conn();
    scene(&mut c, "cam1", now_ms() - 3 * HOUR, 12, &SCENE);
    let mut child = paused(
        &s,
        &["tier", "run", "--camera", "cam1"],
        "tier-before-commit",
        1_500,
    );
    let pid = child.0.id();
    // Stopped, the pass cannot renew its lease; once it expired the discard takes the camera.
    let start = Instant::now();
    loop {
        let out = s.ferry(&["tier", "clear", "--camera", "cam1", "--discard", "-y"]);
        if out.status.success() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the discard never got the camera: {}",
            text(&out)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(ids(&mut c, "cam1").is_empty());
    let ok = Command::new("kill")
        .args(["-CONT", &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "SIGCONT {pid}");
    wait_for("the resumed pass to end", Duration::from_secs(60), || {
        child.0.try_wait().unwrap().is_some()
    });
    assert!(
        s.events().is_empty(),
        "the stale pass stored dropped captions: {:?}",
        s.events()
    );
}
