//! Milvus Lite for tests: `milvus-lite server` (PyPI `milvus-lite`, installed into the
//! repository's `.venv` by `scripts/setup.sh`) serving the Milvus gRPC API on a free port, with
//! its data in a temporary directory; killed with its children on drop.

use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs the server (`"$@"`) and kills it when its standard input, a pipe from the test process,
/// reaches its end: so a server held in a `static` (never dropped) or left by a killed test
/// process does not outlive it. The shell exits with the server.
const WATCHDOG: &str = r#"exec 3<&0
"$@" &
pid=$!
{ cat <&3 >/dev/null; kill -KILL "$pid" 2>/dev/null; } &
wait "$pid""#;

/// Path of `milvus-lite`: `$FERRY_MILVUS_LITE`, else the one in `.venv` (PyPI `milvus-lite`).
///
/// # Panics
///
/// When neither exists, with a message naming `make test-setup`.
pub fn milvus_lite_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("FERRY_MILVUS_LITE").filter(|v| !v.is_empty()) {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "FERRY_MILVUS_LITE={} does not exist: run `make test-setup` (scripts/setup.sh) or unset it",
            p.display()
        );
        return p;
    }
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/milvus-lite");
    if bin.is_file() {
        return bin;
    }
    panic!(
        "milvus-lite was not found in .venv (PyPI package milvus-lite): run `make test-setup` (scripts/setup.sh) to install it, or set FERRY_MILVUS_LITE"
    )
}

/// A Milvus Lite server on a free port of 127.0.0.1, killed (with its children) on drop, or
/// when the test process ends if it is never dropped (a server shared through a `static`).
#[derive(Debug)]
pub struct MilvusServer {
    child: Option<Child>,
    /// The watchdog's standard input: closing it (dropping it, or the process ending) kills
    /// the server.
    lifeline: Option<ChildStdin>,
    port: u16,
    data: tempfile::TempDir,
    log: tempfile::NamedTempFile,
}

impl MilvusServer {
    /// Starts one and waits until it accepts connections.
    pub fn start() -> Self {
        let mut server = MilvusServer {
            child: None,
            lifeline: None,
            port: 0,
            data: tempfile::tempdir().expect("a temporary data directory"),
            log: tempfile::NamedTempFile::new().expect("a temporary log file"),
        };
        let mut last = String::new();
        for _ in 0..5 {
            server.port = free_port();
            match server.launch() {
                Ok(()) => return server,
                Err(e) => {
                    last = format!("{e}\n{}", server.log_text());
                    server.kill();
                }
            }
        }
        panic!("Milvus Lite did not start five times; last attempt: {last}")
    }

    fn launch(&mut self) -> Result<(), String> {
        let bin = milvus_lite_bin();
        let data = self.data.path().to_str().expect("UTF-8 temporary path");
        // A fresh log for this start: readiness is read from it.
        self.log.as_file().set_len(0).expect("truncate the log");
        let mut child = Command::new("sh")
            .args(["-c", WATCHDOG, "milvus-lite-watchdog"])
            .arg(&bin)
            .args(["server", "--data-dir", data, "--host", "127.0.0.1"])
            .args(["--port", &self.port.to_string()])
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::piped())
            .stdout(self.log.reopen().expect("log file"))
            .stderr(self.log.reopen().expect("log file"))
            // Its own process group, so that drop can kill whatever it starts as well.
            .process_group(0)
            .spawn()
            .map_err(|e| format!("could not start {}: {e}", bin.display()))?;
        self.lifeline = child.stdin.take();
        self.child = Some(child);
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let child = self.child.as_mut().expect("a running server");
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("milvus-lite exited with {status}"));
            }
            // The server prints its line once it serves; a connection alone could reach a
            // previous server on the same port that is still going away.
            if self.log_text().contains("listening on")
                && TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "milvus-lite did not listen within {READY_TIMEOUT:?}"
                ));
            }
            sleep(Duration::from_millis(50));
        }
    }

    /// `milvus://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("milvus://127.0.0.1:{}", self.port)
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its data directory (kept across [`MilvusServer::stop`] and [`MilvusServer::restart`]).
    pub fn data_dir(&self) -> &Path {
        self.data.path()
    }

    /// What the server printed.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// Kills the server, keeping its data: clients now find nothing on the port.
    pub fn stop(&mut self) {
        self.kill();
    }

    /// Starts the server again on the same port with the same data.
    ///
    /// # Panics
    ///
    /// When it does not come back, with its log.
    pub fn restart(&mut self) {
        self.kill();
        if let Err(e) = self.launch() {
            panic!("Milvus Lite did not restart: {e}\n{}", self.log_text());
        }
    }

    fn kill(&mut self) {
        self.lifeline = None;
        if let Some(mut child) = self.child.take() {
            // The server leads its process group: SIGKILL the whole group.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .stderr(Stdio::null())
                .status();
            let _ = child.kill();
            let _ = child.wait();
            // The server is a grandchild: wait until its port is closed.
            let deadline = Instant::now() + Duration::from_secs(10);
            while TcpStream::connect(("127.0.0.1", self.port)).is_ok() && Instant::now() < deadline
            {
                sleep(Duration::from_millis(20));
            }
        }
    }
}

impl Drop for MilvusServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}
