//! Running jobs: graceful shutdown and the run lease.

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
/// without releasing its lease blocks the next one for this long.
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
    /// Takes the lease on `scope` or fails when another run holds it.
    pub async fn acquire(
        store: Arc<S>,
        scope: &str,
        stop: CancellationToken,
    ) -> Result<Self, StoreError> {
        let owner = format!(
            "{}:{}:{}",
            hostname(),
            std::process::id(),
            ferry_core::checkpoint::now_ms()
        );
        let ttl = lease_ttl();
        let lease = store.acquire_lease(scope, &owner, ttl).await?;
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
                            tracing::error!(scope = %lease.scope, "run lease lost; stopping");
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

/// Crash-test hook: when `FERRY_FAILPOINT` names this point, says so on stderr and stops dead
/// (the test then SIGKILLs the process), so that a kill lands exactly between two steps.
pub fn failpoint(name: &str) {
    if std::env::var("FERRY_FAILPOINT").is_ok_and(|f| f == name) {
        eprintln!("failpoint {name} reached");
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
}
