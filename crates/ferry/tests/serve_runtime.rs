//! `ferry serve` keeps answering while a MiniLM pass runs (issue 12): the HTTP API, the relay
//! and lease renewals share the runtime with the tier pass, so the embedding must not hold the
//! threads that answer requests.
//!
//! Needs the MiniLM model (scripts/setup.sh installs it).

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::serve::{self, Serve};
use common::tier::{HOUR, TierSetup, now_ms, xadd};
use serde_json::Value;

const TOKEN: &str = "runtime-test-admin-token";

/// `ferry serve` started from a [`TierSetup`]'s config, killed on drop.
fn start_serve(setup: &TierSetup) -> Serve {
    Serve::start(
        setup
            .command(&["serve", "--listen", "127.0.0.1:0", "--interval", "3600"])
            .env("FERRY_SERVE_TOKEN", TOKEN)
            .env_remove("FERRY_SERVE_READ_TOKEN")
            .env_remove("FERRY_LISTEN")
            .stderr(Stdio::inherit()),
        "ferry serve prints its address (is the MiniLM model installed? run scripts/setup.sh)",
    )
}

/// One request with the admin token on a new connection; the status and the body.
fn request(addr: &str, method: &str, path: &str, body: &str, timeout: Duration) -> (u16, String) {
    serve::request(addr, method, path, Some(TOKEN), Some(body), timeout)
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
    let serve = start_serve(&setup);

    // Captions of the last hour for three cameras: not due yet, so the scheduler's passes leave
    // them alone and the pass below, triggered with `all`, is the one that embeds them.
    // Enough for a pass of several seconds on a fast machine (about 4 ms a caption there).
    const CAMERAS: usize = 3;
    const PER_CAMERA: usize = 400;
    let mut conn = setup.conn();
    let t0 = now_ms() - HOUR;
    for cam in 0..CAMERAS {
        for i in 0..PER_CAMERA {
            let text = caption(cam * PER_CAMERA + i);
            xadd(
                &mut conn,
                &format!("cam{cam}"),
                t0 + i as i64 * 1_000,
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
        pass_took >= Duration::from_secs(1) && latencies.len() >= 20,
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

/// A free loopback port (bound, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn a_closed_standard_output_neither_stops_serve_nor_keeps_it_from_a_clean_sigterm_exit() {
    let setup = TierSetup::new("");
    let (reader, writer) = std::io::pipe().expect("a pipe");
    // Nobody reads what serve prints: the pipe is closed before serve starts.
    drop(reader);
    let addr = format!("127.0.0.1:{}", free_port());
    let mut child = setup
        .command(&["serve", "--listen", &addr, "--interval", "0.05"])
        .env("FERRY_SERVE_TOKEN", TOKEN)
        .env_remove("FERRY_SERVE_READ_TOKEN")
        .env_remove("FERRY_LISTEN")
        .stdout(writer)
        .stderr(Stdio::null())
        .spawn()
        .expect("start ferry serve");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("ferry serve stopped by itself with a closed stdout: {status}");
        }
        if std::net::TcpStream::connect(&addr).is_ok()
            && serve::request(&addr, "GET", "/healthz", None, None, Duration::from_secs(5)).0 == 200
        {
            break;
        }
        assert!(Instant::now() < deadline, "ferry serve never answered");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Some passes run on the short interval, then SIGTERM.
    std::thread::sleep(Duration::from_millis(500));
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("ferry serve did not stop within 20 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "ferry serve exited with {status}");
}
