//! The dashboard as a person uses it: a real `ferry serve` (tier, events, keys and vectors
//! configured, real Redis and PostgreSQL) and headless Debian Chromium driven by selenium
//! (`tests/browser/dashboard.py`). Screenshots of each screen land in
//! `target/tmp/dashboard-screenshots/`; `FERRY_UPDATE_SCREENSHOTS=1` also copies them to
//! `docs/img/`.
//!
//! Needs `chromium`, `chromium-driver` and the venv's selenium: `make test-setup`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::keys::{OLD_TO_NEW_RULES, write_rules};
use common::serve::{self, Serve};
use common::tier::TierSetup;
use ferry_testkit::{PgDatabase, output_text};

const ADMIN: &str = "dashboard-test-admin-token";
const READ: &str = "dashboard-test-read-token";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The venv's Python, or a failure naming the setup command.
fn python() -> PathBuf {
    let py = repo().join(".venv/bin/python");
    let ok = Command::new(&py)
        .args(["-c", "import selenium, redis"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "{} cannot import selenium: run `make test-setup` (scripts/setup.sh installs it, with \
         chromium and chromium-driver)",
        py.display()
    );
    py
}

/// Waits until `GET path` (admin token) answers 200 with a body for which `done` holds.
fn wait_for(addr: &str, path: &str, what: &str, done: impl Fn(&serde_json::Value) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = serve::request(
            addr,
            "GET",
            path,
            Some(ADMIN),
            None,
            Duration::from_secs(10),
        );
        let json: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        if status == 200 && done(&json) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {status} {body}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_person_watches_and_acts_on_every_job_from_the_dashboard() {
    let python = python();
    let pg = PgDatabase::create();
    let keys_dir = tempfile::tempdir().unwrap();
    let rules = write_rules(keys_dir.path(), OLD_TO_NEW_RULES);
    let setup = TierSetup::new("");
    let redis_url = setup.redis.url();
    // The keys job's run: `old:N` → `new:N` on the tier's Redis, checkpoints beside them.
    {
        let mut conn = setup.conn();
        for i in 0..40 {
            let _: () = redis::cmd("SET")
                .arg(format!("old:{i}"))
                .arg(format!("value {i}"))
                .query(&mut conn)
                .unwrap();
        }
    }
    let applied = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["keys", "apply", "--source", &redis_url, "--rules"])
        .arg(&rules)
        .args(["--run-name", "browser-run", "-y"])
        .env_remove("FERRY_SOURCE_PASSWORD")
        .env_remove("FERRY_TARGET_PASSWORD")
        .env_remove("FERRY_RUN_NAME")
        .env_remove("FERRY_CHECKPOINT")
        .output()
        .unwrap();
    assert!(applied.status.success(), "{}", output_text(&applied));
    let config = std::fs::read_to_string(&setup.config).unwrap();
    std::fs::write(
        &setup.config,
        format!(
            "{config}\n[events]\npostgres = \"{pg}\"\nredis = \"{redis_url}\"\n\n\
             [keys]\nsource = \"{redis_url}\"\nrules = \"{rules}\"\n\n\
             [vectors]\nstate = \"{redis_url}\"\nname = \"media\"\nvector_set = \"media\"\n\n\
             [serve]\nhistory_interval_s = 1\n",
            pg = pg.url(),
            rules = rules.display(),
        ),
    )
    .unwrap();
    let serve = Serve::start(
        setup
            .command(&["serve", "--listen", "127.0.0.1:0", "--interval", "3600"])
            .env("FERRY_SERVE_TOKEN", ADMIN)
            .env("FERRY_SERVE_READ_TOKEN", READ)
            .env_remove("FERRY_LISTEN")
            .env_remove("FERRY_EVENTS_POSTGRES")
            .env_remove("FERRY_EVENTS_REDIS")
            .stderr(Stdio::inherit()),
        "ferry serve prints its address",
    );
    let addr = serve.loopback();
    // The scheduler's first pass runs at start; the page's pass must be the one that finds the
    // captions the browser script writes.
    wait_for(&addr, "/api/v1/tier/history", "the first tier pass", |h| {
        h.as_array().is_some_and(|runs| !runs.is_empty())
    });

    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots");
    let out = Command::new(&python)
        .arg(repo().join("crates/ferry/tests/browser/dashboard.py"))
        .args(["--url", &format!("http://{addr}")])
        .args(["--admin-token", ADMIN, "--read-token", READ])
        .args(["--redis", &redis_url])
        .arg("--shots")
        .arg(&shots)
        .env("SE_OFFLINE", "true")
        .output()
        .expect("run the browser script");
    let text = output_text(&out);
    println!("{text}");
    assert!(out.status.success(), "the browser steps failed:\n{text}");
    assert!(text.contains("all steps passed"), "{text}");

    if std::env::var_os("FERRY_UPDATE_SCREENSHOTS").is_some() {
        let img = repo().join("docs/img");
        std::fs::create_dir_all(&img).unwrap();
        for entry in std::fs::read_dir(&shots).unwrap().flatten() {
            let name = entry.file_name();
            if !name.to_string_lossy().starts_with("failure") {
                std::fs::copy(entry.path(), img.join(name)).unwrap();
            }
        }
    }
    drop(serve);
}
