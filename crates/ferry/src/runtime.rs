//! Running jobs: graceful shutdown and the run lease.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ferry_core::checkpoint::{CheckpointStore, Lease, StoreError};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A token cancelled on Ctrl-C or SIGTERM; jobs stop after their current batch, save their
/// checkpoint and exit.
pub fn shutdown_token() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(_) => {
                        let _ = ctrl_c.await;
                        t.cancel();
                        return;
                    }
                };
            tokio::select! {
                _ = ctrl_c => {},
                _ = term.recv() => {},
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::warn!("stop requested: finishing the current batch and saving the checkpoint");
        t.cancel();
    });
    token
}

/// How long a run lease lasts without renewal: 30 s, or `FERRY_LEASE_TTL_MS`. A run that dies
/// without releasing its lease blocks the next one for this long, unless it ran on this machine
/// and its process is surely gone (see [`holder_process_gone`]): then the lease is taken over at
/// once.
pub fn lease_ttl() -> Duration {
    std::env::var("FERRY_LEASE_TTL_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|&ms| ms >= 100)
        .map(Duration::from_millis)
        .unwrap_or(Duration::from_secs(30))
}

/// Holds a run lease: renews it in the background and cancels `stop` if it is lost.
#[derive(Debug)]
pub struct LeaseGuard<S: CheckpointStore + 'static> {
    store: Arc<S>,
    lease: Lease,
    renewer: JoinHandle<()>,
    lost: CancellationToken,
}

impl<S: CheckpointStore + 'static> LeaseGuard<S> {
    /// Takes the lease on `scope` or fails when another run holds it. The lease's owner is
    /// `host:pid:ms` (ms: when it was taken). A lease held by a process of this host that is
    /// gone (killed, crashed) is taken over at once instead of waiting for it to expire.
    pub async fn acquire(
        store: Arc<S>,
        scope: &str,
        stop: CancellationToken,
    ) -> Result<Self, StoreError> {
        let host = hostname();
        let owner = format!(
            "{host}:{}:{}",
            std::process::id(),
            ferry_core::checkpoint::now_ms()
        );
        let ttl = lease_ttl();
        let lease = match store.acquire_lease(scope, &owner, ttl).await {
            Err(StoreError::LeaseHeld { holder, .. }) if holder_process_gone(&holder, &host) => {
                tracing::warn!(
                    scope,
                    %holder,
                    "taking over the run lease of {holder}: its process is gone"
                );
                store.take_over_lease(scope, &holder, &owner, ttl).await?
            }
            other => other?,
        };
        let lost = CancellationToken::new();
        let renewer = {
            let store = store.clone();
            let lease = lease.clone();
            let lost = lost.clone();
            tokio::spawn(async move {
                let mut failures = 0;
                loop {
                    tokio::time::sleep(ttl / 3).await;
                    match store.renew_lease(&lease, ttl).await {
                        Ok(()) => failures = 0,
                        Err(StoreError::LeaseLost { .. }) => {
                            tracing::error!(
                                scope = %lease.scope,
                                "run lease lost (expired, or taken over by a newer run); stopping"
                            );
                            lost.cancel();
                            stop.cancel();
                            return;
                        }
                        Err(e) => {
                            failures += 1;
                            tracing::warn!(error = %e, "could not renew the run lease");
                            if failures >= 2 {
                                lost.cancel();
                                stop.cancel();
                                return;
                            }
                        }
                    }
                }
            })
        };
        Ok(Self {
            store,
            lease,
            renewer,
            lost,
        })
    }

    /// The held lease (its fencing token goes with every write that must not outlive it).
    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    /// Whether the lease was lost while running.
    pub fn is_lost(&self) -> bool {
        self.lost.is_cancelled()
    }

    /// Stops renewing and gives the lease up.
    pub async fn release(self) {
        self.renewer.abort();
        if let Err(e) = self.store.release_lease(&self.lease).await {
            tracing::warn!(error = %e, "could not release the run lease; it expires by itself");
        }
    }
}

/// This machine's host name (for lease owners and consumer names).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "localhost".to_string())
}

/// A process started this long after a lease was taken cannot be its holder (the pid was
/// reused). Generous, for the coarse clocks involved.
const PID_REUSE_SLACK_MS: i64 = 2000;

/// Whether the process holding a lease as `holder` (`host:pid:ms`, see [`LeaseGuard::acquire`])
/// is surely gone: it ran on `this_host`, and its pid is free now, or belongs to a zombie, to a
/// process started after the lease was taken (the pid was reused), or to another program than
/// this one (compared by executable name). Anything uncertain counts as alive: another host, a
/// malformed holder, no `/proc`, an unreadable process.
pub fn holder_process_gone(holder: &str, this_host: &str) -> bool {
    let mut parts = holder.rsplitn(3, ':');
    let (Some(ms), Some(pid), Some(host)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let (Ok(taken_ms), Ok(pid)) = (ms.parse::<i64>(), pid.parse::<u32>()) else {
        return false;
    };
    if host != this_host || pid == 0 || !Path::new("/proc/self/stat").exists() {
        return false;
    }
    match std::fs::metadata(format!("/proc/{pid}")) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return true,
        Err(_) => return false,
        Ok(_) => {}
    }
    if let Some((state, started_ms)) = process_state_and_start(pid)
        && (state == 'Z' || state == 'X' || started_ms > taken_ms + PID_REUSE_SLACK_MS)
    {
        return true;
    }
    same_program(pid) == Some(false)
}

/// The state letter of process `pid` and when it started (ms since the Unix epoch), from
/// `/proc/<pid>/stat` and `/proc/uptime`.
fn process_state_and_start(pid: u32) -> Option<(char, i64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces and parentheses): state is the
    // first, the start time in clock ticks after boot the 20th.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let start_ticks: u64 = fields.get(19)?.parse().ok()?;
    let uptime = std::fs::read_to_string("/proc/uptime").ok()?;
    let uptime_s: f64 = uptime.split_whitespace().next()?.parse().ok()?;
    let age_ms = uptime_s * 1000.0 - (start_ticks as f64) * 1000.0 / clock_ticks_per_second();
    Some((state, ferry_core::checkpoint::now_ms() - age_ms as i64))
}

/// The kernel's clock ticks per second for `/proc` times (`AT_CLKTCK` in `/proc/self/auxv`;
/// 100 when unreadable, its value on every common Linux platform).
fn clock_ticks_per_second() -> f64 {
    const AT_CLKTCK: usize = 17;
    const WORD: usize = std::mem::size_of::<usize>();
    let word = |b: &[u8]| usize::from_ne_bytes(b.try_into().expect("one word"));
    std::fs::read("/proc/self/auxv")
        .ok()
        .and_then(|auxv| {
            auxv.chunks_exact(2 * WORD).find_map(|pair| {
                let (key, value) = pair.split_at(WORD);
                (word(key) == AT_CLKTCK).then(|| word(value))
            })
        })
        .filter(|&hz| hz > 0)
        .unwrap_or(100) as f64
}

/// Whether process `pid` runs the same program as this one (same executable name, so another
/// install or an upgraded binary still counts), or `None` when that cannot be read.
fn same_program(pid: u32) -> Option<bool> {
    let name = |p: &Path| {
        let n = p.file_name()?.to_string_lossy().into_owned();
        Some(n.trim_end_matches(" (deleted)").to_string())
    };
    let theirs = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    let ours = std::env::current_exe().ok()?;
    Some(name(&theirs)? == name(&ours)?)
}

/// Crash-test hook: when `FERRY_FAILPOINT` names this point, says so on stderr and stops dead
/// (the test then SIGKILLs the process), so that a kill lands exactly between two steps.
///
/// The points are the `fail` crate's: the first hook reached configures the point named by
/// `FERRY_FAILPOINT` (see `configure_failpoint`), then every hook evaluates its own. Without
/// the `failpoints` feature (see `Cargo.toml`) the hooks compile to nothing.
pub fn failpoint(name: &str) {
    #[cfg(feature = "failpoints")]
    {
        static CONFIGURED: std::sync::Once = std::sync::Once::new();
        CONFIGURED.call_once(configure_failpoint);
        fail::fail_point!(name);
    }
    #[cfg(not(feature = "failpoints"))]
    let _ = name;
}

/// Configures the point `FERRY_FAILPOINT` names, if any, to say so on stderr and block its
/// thread for good — after letting `FERRY_FAILPOINT_SKIP` hits (default 0) pass, so a crash
/// test can stop a run in its middle.
#[cfg(feature = "failpoints")]
fn configure_failpoint() {
    let Ok(point) = std::env::var("FERRY_FAILPOINT") else {
        return;
    };
    let skip: u64 = std::env::var("FERRY_FAILPOINT_SKIP")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let hits = std::sync::atomic::AtomicU64::new(0);
    let name = point.clone();
    let stop_dead = move || {
        if hits.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < skip {
            return;
        }
        eprintln!("failpoint {name} reached");
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    };
    if let Err(e) = fail::cfg_callback(point, stop_dead) {
        eprintln!("cannot set FERRY_FAILPOINT: {e}");
    }
}

/// Fencing-test hook: the first time `FERRY_PAUSEPOINT` names this point, says so on stderr
/// and stops the whole process (SIGSTOP) until something sends it SIGCONT. Unlike
/// [`failpoint`], the process goes on afterwards, as after a long GC or VM pause: its lease
/// renewal was frozen too, so another run may have taken its work over meanwhile, or an
/// application may have written what it is working on.
///
/// Hand-written rather than a `fail` point: `fail`'s `pause` action blocks only the thread that
/// reaches the point, while the lease-renewal tasks on other threads must freeze with it.
pub fn pausepoint(name: &str) {
    static PAUSED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if std::env::var("FERRY_PAUSEPOINT").is_ok_and(|p| p == name)
        && !PAUSED.swap(true, std::sync::atomic::Ordering::SeqCst)
    {
        eprintln!("pausepoint {name} reached");
        let stopped = std::process::Command::new("kill")
            .args(["-STOP", &std::process::id().to_string()])
            .status();
        eprintln!("pausepoint {name} continued ({stopped:?})");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_core::checkpoint::now_ms;

    fn holder(host: &str, pid: u32, ms: i64) -> String {
        format!("{host}:{pid}:{ms}")
    }

    #[test]
    fn this_process_is_alive() {
        let h = holder(&hostname(), std::process::id(), now_ms());
        assert!(!holder_process_gone(&h, &hostname()));
    }

    #[test]
    fn a_finished_process_is_gone() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(holder_process_gone(&holder("box", pid, now_ms()), "box"));
    }

    #[test]
    fn another_program_is_not_the_holder() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        // Give the child time to exec `sleep` (before that, it is still a copy of this one).
        std::thread::sleep(Duration::from_millis(200));
        let gone = holder_process_gone(&holder("box", child.id(), now_ms()), "box");
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(gone);
    }

    #[test]
    fn a_pid_reused_after_the_lease_was_taken_is_not_the_holder() {
        // This process started long after 1970: it cannot have taken that lease.
        let h = holder("box", std::process::id(), 1000);
        assert!(holder_process_gone(&h, "box"));
    }

    #[test]
    fn other_hosts_and_malformed_holders_count_as_alive() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(!holder_process_gone(
            &holder("elsewhere", pid, now_ms()),
            "box"
        ));
        assert!(!holder_process_gone("a concurrent run", "box"));
        assert!(!holder_process_gone("box:notapid:1", "box"));
        assert!(!holder_process_gone("box:0:1", "box"));
    }

    #[test]
    fn host_names_with_colons_parse_from_the_right() {
        let h = holder("fe80::1", std::process::id(), now_ms());
        assert!(!holder_process_gone(&h, "fe80::1"));
        let h = holder("fe80::1", std::process::id(), 1000);
        assert!(holder_process_gone(&h, "fe80::1"));
    }
}
