//! Fencing of the tier job: a pass that lost its camera's lease — paused (SIGSTOP) past the
//! lease TTL while another run took the camera over — neither commits events nor deletes
//! captions afterwards. The store refuses its commit (it has seen a newer token for the camera)
//! and Redis its delete (the camera's fence `ferry:{tier/<camera>}:fence` has moved past its
//! token).
//!
//! The end-to-end tests stop a real `ferry tier run` at a pausepoint (`FERRY_PAUSEPOINT`, the
//! process SIGSTOPs itself there), let its 1 s lease expire, take the camera over and SIGCONT it.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ferry::jobs::tier::{Backend, CaptionSource, Layout, TierContext, TierError, TierOptions};
use ferry_connectors::redis::RedisEndpoint;
use ferry_core::jobs::tier::EntryId;
use ferry_core::jobs::tier::store::Fence;
use ferry_testkit::RedisServer;
use redis::{Commands, Connection};

mod common;
use common::tier::{HOUR, TierSetup, now_ms, scene};

const SCENE_A: [&str; 3] = [
    "a man in the fields",
    "man in fields surveillance view",
    "a man walking in the field",
];
const SCENE_B: [&str; 3] = [
    "red car parked at the gate",
    "a red car parked near the gate",
    "red car parked by the gate",
];

/// Two due scenes and two recent captions (which stay in Redis) on `camera`: 22 entries.
fn captions(conn: &mut Connection, camera: &str) {
    let t0 = now_ms() - 3 * HOUR;
    let next = scene(conn, camera, t0, 10, &SCENE_A);
    scene(conn, camera, next, 10, &SCENE_B);
    scene(conn, camera, now_ms() - 20_000, 2, &SCENE_B);
}

/// Every entry of a camera's Stream: ids and fields.
fn stream(conn: &mut Connection, camera: &str) -> Vec<(String, Vec<(String, String)>)> {
    redis::cmd("XRANGE")
        .arg(format!("captions:{camera}"))
        .arg("-")
        .arg("+")
        .query(conn)
        .unwrap()
}

fn lease_key(camera: &str) -> String {
    format!("ferry:{{tier/{camera}}}:lease")
}

fn fence_key(camera: &str) -> String {
    format!("ferry:{{tier/{camera}}}:fence")
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
    // `pid (comm) S …`: the state follows the last `)`.
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// A `ferry` process stopped by itself at a pausepoint.
struct Paused {
    child: Child,
    stderr: mpsc::Receiver<String>,
    stdout: std::thread::JoinHandle<String>,
    seen: Vec<String>,
}

impl Paused {
    /// Runs `command` with `FERRY_PAUSEPOINT=point` until it says it reached the point and has
    /// stopped (SIGSTOP).
    fn start(mut command: Command, point: &str) -> Self {
        let mut child = command
            .env("FERRY_PAUSEPOINT", point)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ferry starts");
        let mut out = child.stdout.take().unwrap();
        let stdout = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = out.read_to_string(&mut s);
            s
        });
        let (tx, stderr) = mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut paused = Paused {
            child,
            stderr,
            stdout,
            seen: Vec::new(),
        };
        let wanted = format!("pausepoint {point} reached");
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            match paused.stderr.recv_timeout(Duration::from_millis(200)) {
                Ok(line) => {
                    let reached = line.contains(&wanted);
                    paused.seen.push(line);
                    if reached {
                        break;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => panic!(
                    "ferry ended before the pausepoint {point}: {:?}\nstderr:\n{}",
                    paused.child.wait(),
                    paused.seen.join("\n")
                ),
            }
            assert!(
                Instant::now() < deadline,
                "ferry did not reach the pausepoint {point}:\n{}",
                paused.seen.join("\n")
            );
        }
        let pid = paused.child.id();
        wait_for(
            "the paused process to stop",
            Duration::from_secs(10),
            || process_state(pid) == Some('T'),
        );
        paused
    }

    /// SIGCONT, then waits for the process to end: its exit code and everything it printed.
    fn resume(mut self) -> (Option<i32>, String) {
        let pid = self.child.id().to_string();
        let ok = Command::new("kill")
            .args(["-CONT", &pid])
            .status()
            .unwrap()
            .success();
        assert!(ok, "SIGCONT {pid}");
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "the resumed run did not end");
            std::thread::sleep(Duration::from_millis(50));
        };
        self.seen.extend(self.stderr.try_iter());
        // The reader thread ends with the pipe: collect what it still has.
        while let Ok(line) = self.stderr.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(line);
        }
        let stdout = std::mem::replace(&mut self.stdout, std::thread::spawn(String::new))
            .join()
            .unwrap();
        (
            status.code(),
            format!("stdout:\n{stdout}\nstderr:\n{}", self.seen.join("\n")),
        )
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        // A test that failed half-way must not leave its stopped child behind.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Regression test: a pass paused just before its store commit, whose lease expired while a
/// second pass drained the camera, must neither commit nor delete once it resumes; it reports
/// the fencing error and the store and Stream stay as the second pass left them.
///
/// Needs the lease store to hand out fencing tokens (token 0 means "no fencing").
#[test]
fn a_pass_resumed_after_a_takeover_commits_and_deletes_nothing() {
    let s = TierSetup::new("");
    let mut c = s.conn();
    captions(&mut c, "cam1");

    let paused = Paused::start(
        s.command(&["tier", "run", "--camera", "cam1"]),
        "tier-before-commit",
    );
    wait_for(
        "the paused run's lease to expire",
        Duration::from_secs(15),
        || !c.exists::<_, bool>(lease_key("cam1")).unwrap(),
    );

    // Another run takes the camera over and drains it.
    s.run_ok(&["tier", "run", "--camera", "cam1"]);
    let events = s.events();
    assert_eq!(events.len(), 2, "{events:?}");
    let left = stream(&mut c, "cam1");
    assert_eq!(left.len(), 2, "only the recent captions stay");
    let watermark = s.watermark("cam1");
    let fence: Option<String> = c.get(fence_key("cam1")).unwrap();

    let (code, output) = paused.resume();
    assert_eq!(code, Some(1), "the stale pass fails its camera:\n{output}");
    assert!(
        output.contains("event store sqlite: `tier/cam1` was taken over by a newer run"),
        "the store refused the stale commit (fence {fence:?}):\n{output}"
    );
    assert_eq!(
        s.events(),
        events,
        "the stale pass committed nothing (events, run ids included, unchanged)"
    );
    assert_eq!(s.watermark("cam1"), watermark);
    assert_eq!(
        stream(&mut c, "cam1"),
        left,
        "the stale pass deleted nothing"
    );
}

/// Regression test: a pass paused after its commit and just before deleting the captions it
/// stored, whose camera another replica then took over (the lease acquired: the fence raised),
/// deletes nothing once it resumes — the delete script sees the fence has moved. The takeover
/// is made by hand (as another replica's acquisition does it: INCR the fence, SET the lease)
/// so that the new holder has not deleted anything yet and a stale delete would show.
///
/// Needs the lease store to hand out fencing tokens (token 0 means "no fencing").
#[test]
fn a_pass_resumed_after_a_takeover_deletes_no_caption() {
    let s = TierSetup::new("");
    let mut c = s.conn();
    captions(&mut c, "cam1");
    let all = stream(&mut c, "cam1");
    assert_eq!(all.len(), 22);

    let paused = Paused::start(
        s.command(&["tier", "run", "--camera", "cam1"]),
        "tier-before-delete",
    );
    let committed = s.events();
    assert_eq!(committed.len(), 2, "the paused pass committed first");
    wait_for(
        "the paused run's lease to expire",
        Duration::from_secs(15),
        || !c.exists::<_, bool>(lease_key("cam1")).unwrap(),
    );
    let _: i64 = c.incr(fence_key("cam1"), 1).unwrap();
    let _: () = redis::cmd("SET")
        .arg(lease_key("cam1"))
        .arg("another-replica")
        .arg("PX")
        .arg(60_000)
        .query(&mut c)
        .unwrap();

    let (code, output) = paused.resume();
    assert_eq!(code, Some(1), "the stale pass fails its camera:\n{output}");
    assert!(
        output.contains("camera cam1 was taken over by a newer run")
            && output.contains("this pass stops without deleting"),
        "Redis refused the stale delete:\n{output}"
    );
    assert_eq!(stream(&mut c, "cam1"), all, "no caption was deleted");
    assert_eq!(s.events(), committed);

    // The new holder finishes (here: the lease is released and a pass runs): the stored
    // captions leave Redis, and no event changes.
    let _: () = c.del(lease_key("cam1")).unwrap();
    s.run_ok(&["tier", "run", "--camera", "cam1"]);
    assert_eq!(stream(&mut c, "cam1").len(), 2);
    let mut after = s.events();
    let mut before = committed;
    for e in after.iter_mut().chain(before.iter_mut()) {
        e.as_object_mut().unwrap().remove("run_id");
    }
    assert_eq!(after, before);
}

fn entries(conn: &mut Connection, camera: &str) -> Vec<EntryId> {
    stream(conn, camera)
        .into_iter()
        .map(|(id, _)| id.parse().unwrap())
        .collect()
}

/// The delete script itself: with the lease store on the captions' server and database, a
/// token other than the camera's fence deletes nothing (Stream and keys layouts); elsewhere
/// the delete is not fenced.
#[tokio::test]
async fn the_delete_script_deletes_only_under_the_current_fence() {
    let server = RedisServer::start();
    let mut c = server.conn();
    let url = server.url();
    let endpoint = || RedisEndpoint::connect(&url, None);
    let leases = endpoint().await.unwrap();
    let source = CaptionSource::new(
        endpoint().await.unwrap(),
        Layout::Stream,
        "captions:".into(),
    )
    .with_fences_on(Some(&leases));
    assert!(source.fences_deletes());

    scene(&mut c, "cam1", now_ms() - HOUR, 3, &SCENE_A);
    let ids = entries(&mut c, "cam1");
    let _: () = c.set(fence_key("cam1"), 7).unwrap();
    let stale = Fence::of("tier/cam1", 6).unwrap();
    let err = source
        .delete("cam1", &ids[..2], Some(&stale))
        .await
        .expect_err("a stale token deletes nothing");
    assert!(
        matches!(&err, TierError::Fenced { token: 6, current, .. } if current == "7"),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("taken over by a newer run"),
        "{err}"
    );
    assert_eq!(entries(&mut c, "cam1"), ids);

    // No fence at all (nobody ever held the lease there) is a moved fence too.
    let err = source
        .delete("cam1", &ids, Some(&Fence::of("tier/nobody", 1).unwrap()))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, TierError::Fenced { current, .. } if current == "missing"),
        "{err:?}"
    );

    let current = Fence::of("tier/cam1", 7).unwrap();
    let n = source
        .delete("cam1", &ids[..2], Some(&current))
        .await
        .unwrap();
    assert_eq!(n, 2);
    assert_eq!(entries(&mut c, "cam1"), ids[2..]);

    // The keys layout.
    let keys = CaptionSource::new(endpoint().await.unwrap(), Layout::Keys, "caption:".into())
        .with_fences_on(Some(&leases));
    let ts = [1_000u64, 2_000, 3_000];
    for t in ts {
        let _: () = c.set(format!("caption:cam1:{t}"), "{}").unwrap();
    }
    let key_ids: Vec<EntryId> = ts.iter().map(|&t| EntryId::new(t, 0)).collect();
    let err = keys
        .delete("cam1", &key_ids, Some(&stale))
        .await
        .unwrap_err();
    assert!(matches!(err, TierError::Fenced { .. }), "{err:?}");
    let left: Vec<String> = c.keys("caption:cam1:*").unwrap();
    assert_eq!(left.len(), 3, "no key deleted");
    assert_eq!(
        keys.delete("cam1", &key_ids, Some(&current)).await.unwrap(),
        3
    );
    let left: Vec<String> = c.keys("caption:cam1:*").unwrap();
    assert!(left.is_empty());

    // The lease store on another server, or in another database of this one: the script
    // could not see the fence, so only the store commit is fenced.
    let other = RedisServer::start();
    let elsewhere = RedisEndpoint::connect(&other.url(), None).await.unwrap();
    let other_db = RedisEndpoint::connect(&format!("{}/1", server.url()), None)
        .await
        .unwrap();
    for leases in [&elsewhere, &other_db] {
        let s = CaptionSource::new(
            endpoint().await.unwrap(),
            Layout::Stream,
            "captions:".into(),
        )
        .with_fences_on(Some(leases));
        assert!(!s.fences_deletes());
    }
    let unfenced = CaptionSource::new(
        endpoint().await.unwrap(),
        Layout::Stream,
        "captions:".into(),
    )
    .with_fences_on(Some(&elsewhere));
    assert_eq!(
        unfenced
            .delete("cam1", &ids[2..], Some(&stale))
            .await
            .unwrap(),
        1
    );
}

/// `TierContext::connect` fences deletes with the default lease store (the captions' Redis)
/// and not with a file store.
#[tokio::test]
async fn deletes_are_fenced_when_the_leases_live_on_the_captions_redis() {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let options = |checkpoint: Option<String>| TierOptions {
        redis: server.url().into(),
        store: format!("sqlite://{}", dir.path().join("events.db").display()).into(),
        checkpoint: checkpoint.map(Into::into),
        similarity: Backend::Lexical,
        ..TierOptions::default()
    };
    let ctx = TierContext::connect(options(None)).await.unwrap();
    assert!(ctx.source.fences_deletes());
    let ctx = TierContext::connect(options(Some(server.url())))
        .await
        .unwrap();
    assert!(ctx.source.fences_deletes(), "the same server named again");
    let file = format!("file://{}", dir.path().join("leases").display());
    let ctx = TierContext::connect(options(Some(file))).await.unwrap();
    assert!(!ctx.source.fences_deletes());
}
