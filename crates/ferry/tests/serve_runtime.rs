//! `ferry serve` keeps answering while a MiniLM pass runs (issue 12): the HTTP API, the relay
//! and lease renewals share the runtime with the tier pass, so the embedding must not hold the
//! threads that answer requests.
//!
//! Needs the MiniLM model (scripts/setup.sh installs it).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::tier::{HOUR, TierSetup, now_ms, xadd};
use serde_json::Value;

const TOKEN: &str = "runtime-test-admin-token";

/// `ferry serve` started from a [`TierSetup`]'s config, killed on drop.
struct Serve {
    child: Child,
    addr: String,
}

impl Serve {
    fn start(setup: &TierSetup) -> Self {
        let mut child = setup
            .command(&["serve", "--listen", "127.0.0.1:0", "--interval", "3600"])
            .env("FERRY_SERVE_TOKEN", TOKEN)
            .env_remove("FERRY_SERVE_READ_TOKEN")
            .env_remove("FERRY_LISTEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start ferry serve");
        let stdout = child.stdout.take().unwrap();
        let addr = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find_map(|l| l.strip_prefix("listening on http://").map(str::to_string))
            .expect("ferry serve prints its address (is the MiniLM model installed? run scripts/setup.sh)");
        Serve { child, addr }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One request on a new connection; the status and the body.
fn request(addr: &str, method: &str, path: &str, body: &str, timeout: Duration) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect to ferry serve");
    s.set_read_timeout(Some(timeout)).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer)
        .unwrap_or_else(|e| panic!("{method} {path}: no answer within {timeout:?}: {e}"));
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer}"));
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body.to_string())
}

/// Distinct captions (nothing for the embedding cache to reuse), scenes of a few minutes.
fn caption(i: usize) -> String {
    const WHO: [&str; 6] = [
        "a man",
        "a woman",
        "two children",
        "a cyclist",
        "a courier",
        "an old couple",
    ];
    const DOES: [&str; 5] = [
        "walking",
        "waiting",
        "carrying boxes",
        "talking on a phone",
        "running",
    ];
    const WHERE: [&str; 4] = [
        "by the gate",
        "near the loading dock",
        "across the car park",
        "at the entrance",
    ];
    format!(
        "{} {} {} in frame {i}",
        WHO[(i / 30) % WHO.len()],
        DOES[(i / 7) % DOES.len()],
        WHERE[(i / 11) % WHERE.len()]
    )
}

#[test]
fn healthz_answers_within_100_ms_while_a_minilm_pass_runs() {
    let setup = TierSetup::new("");
    // MiniLM instead of the setup's lexical similarity.
    let config = std::fs::read_to_string(&setup.config)
        .unwrap()
        .replace("similarity = \"lexical\"", "similarity = \"minilm\"");
    std::fs::write(&setup.config, config).unwrap();
    let serve = Serve::start(&setup);

    // Captions of the last hour for three cameras: not due yet, so the scheduler's passes leave
    // them alone and the pass below, triggered with `all`, is the one that embeds them.
    const CAMERAS: usize = 3;
    const PER_CAMERA: usize = 150;
    let mut conn = setup.conn();
    let t0 = now_ms() - HOUR;
    for cam in 0..CAMERAS {
        for i in 0..PER_CAMERA {
            let text = caption(cam * PER_CAMERA + i);
            xadd(
                &mut conn,
                &format!("cam{cam}"),
                t0 + i as i64 * 3_000,
                0,
                &text,
            );
        }
    }

    let addr = serve.addr.clone();
    let started = Instant::now();
    let pass = std::thread::spawn(move || {
        let answer = request(
            &addr,
            "POST",
            "/api/v1/tier/migrate",
            r#"{"all": true}"#,
            Duration::from_secs(600),
        );
        (answer, started.elapsed())
    });

    let mut latencies = Vec::new();
    while !pass.is_finished() && started.elapsed() < Duration::from_secs(600) {
        let t = Instant::now();
        let (status, body) = request(&serve.addr, "GET", "/healthz", "", Duration::from_secs(30));
        latencies.push(t.elapsed());
        assert_eq!(status, 200, "{body}");
        std::thread::sleep(Duration::from_millis(25));
    }
    let ((status, body), pass_took) = pass.join().unwrap();
    assert_eq!(status, 200, "{body}");
    let outcome: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        outcome["run"]["captions_migrated"],
        (CAMERAS * PER_CAMERA) as u64,
        "{outcome}"
    );
    // The pass must be long enough for the polls to mean something.
    assert!(
        pass_took >= Duration::from_secs(2) && latencies.len() >= 20,
        "the MiniLM pass took only {pass_took:?} ({} polls): give it more captions",
        latencies.len()
    );
    // Every answer within 100 ms, allowing 1 in 20 for a 2-core machine the pass itself keeps
    // busy (the scheduler may run the pass's threads first); none may wait for the pass.
    let slow: Vec<_> = latencies
        .iter()
        .filter(|l| **l > Duration::from_millis(100))
        .collect();
    let max = latencies.iter().max().unwrap();
    assert!(
        slow.len() * 20 <= latencies.len() && *max < Duration::from_secs(1),
        "{} of {} /healthz requests took over 100 ms (max {max:?}) during a {pass_took:?} pass",
        slow.len(),
        latencies.len()
    );
    eprintln!(
        "{} /healthz requests during a {pass_took:?} MiniLM pass, slowest {max:?}",
        latencies.len()
    );
}
