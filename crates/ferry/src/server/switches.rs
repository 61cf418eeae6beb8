//! Pause switches: one per job `ferry serve` runs (`tier`, `events`, `bridge:NAME`), flipped by
//! `POST /api/v1/jobs/{job}/pause|resume` and read by the job's loop before each unit of work.
//! A pause cancels the run of a long-running loop (the relay, a bridge) before it answers; the
//! tier scheduler finishes a pass that runs and starts no other.
//!
//! A switch lives in this process only: a paused job runs again after a restart, and each
//! replica has its own switches (pause the job on each, or stop the replica).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The switches of the jobs this server runs, by job id.
#[derive(Debug, Default)]
pub struct JobSwitches {
    switches: Mutex<BTreeMap<String, Arc<Switch>>>,
    next_runs: Mutex<BTreeMap<String, DateTime<Utc>>>,
}

/// One job's switch: the flag its loop waits on, and the token of the run going on, which a
/// pause cancels before it answers (so nothing the job starts after the answer runs).
#[derive(Debug)]
struct Switch {
    paused: watch::Sender<bool>,
    run: Mutex<Option<CancellationToken>>,
    /// Whether a run (a pass, the relay, a bridge) is going on.
    active: watch::Sender<bool>,
}

/// One job's switch, as its loop holds it: cheap to clone.
#[derive(Debug, Clone)]
pub struct JobSwitch {
    switch: Arc<Switch>,
}

impl JobSwitches {
    /// Registers `job` (running) and returns its switch; registering twice returns the same one.
    pub fn register(&self, job: &str) -> JobSwitch {
        let mut all = self.switches.lock().unwrap_or_else(|e| e.into_inner());
        let switch = all.entry(job.to_string()).or_insert_with(|| {
            super::metrics::set_job_paused(job, false);
            Arc::new(Switch {
                paused: watch::channel(false).0,
                run: Mutex::new(None),
                active: watch::channel(false).0,
            })
        });
        JobSwitch {
            switch: switch.clone(),
        }
    }

    /// Sets `job` paused or running; `None` when no job of that id runs here. A pause cancels
    /// the run going on before it returns.
    pub fn set(&self, job: &str, paused: bool) -> Option<bool> {
        let switch = {
            let all = self.switches.lock().unwrap_or_else(|e| e.into_inner());
            all.get(job)?.clone()
        };
        switch.paused.send_replace(paused);
        if paused {
            let run = switch.run.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(token) = &*run {
                token.cancel();
            }
        }
        super::metrics::set_job_paused(job, paused);
        Some(paused)
    }

    /// [`set`](Self::set), then, for a pause, waits up to `patience` until the run going on has
    /// ended: `Some((paused, stopped))`, `stopped` telling whether nothing runs any more.
    pub async fn set_and_wait(
        &self,
        job: &str,
        paused: bool,
        patience: std::time::Duration,
    ) -> Option<(bool, bool)> {
        let switch = {
            let all = self.switches.lock().unwrap_or_else(|e| e.into_inner());
            all.get(job)?.clone()
        };
        self.set(job, paused)?;
        if !paused {
            return Some((false, false));
        }
        let mut active = switch.active.subscribe();
        let ended = tokio::time::timeout(patience, active.wait_for(|a| !a)).await;
        Some((true, ended.is_ok_and(|r| r.is_ok())))
    }

    /// Whether `job` is paused (`false` for a job that is not registered).
    pub fn is_paused(&self, job: &str) -> bool {
        let all = self.switches.lock().unwrap_or_else(|e| e.into_inner());
        all.get(job).is_some_and(|s| *s.paused.borrow())
    }

    /// Notes that `job`'s next run starts in `after` (a scheduled job, for its card).
    pub fn note_next_run(&self, job: &str, after: std::time::Duration) {
        let at = Utc::now() + chrono::Duration::from_std(after).unwrap_or_default();
        let mut all = self.next_runs.lock().unwrap_or_else(|e| e.into_inner());
        all.insert(job.to_string(), at);
    }

    /// When `job`'s next scheduled run starts, if it is scheduled.
    pub fn next_run(&self, job: &str) -> Option<DateTime<Utc>> {
        let all = self.next_runs.lock().unwrap_or_else(|e| e.into_inner());
        all.get(job).copied()
    }

    /// The ids of the registered jobs.
    pub fn jobs(&self) -> Vec<String> {
        let all = self.switches.lock().unwrap_or_else(|e| e.into_inner());
        all.keys().cloned().collect()
    }
}

impl JobSwitch {
    /// Whether the job is paused now.
    pub fn is_paused(&self) -> bool {
        *self.switch.paused.borrow()
    }

    /// Returns at once when running, else when resumed; `false` when `stop` came first.
    pub async fn wait_running(&self, stop: &CancellationToken) -> bool {
        let mut rx = self.switch.paused.subscribe();
        tokio::select! {
            r = rx.wait_for(|paused| !paused) => r.is_ok(),
            _ = stop.cancelled() => false,
        }
    }

    /// Marks a run (a pass) as going on; [`ended`](Self::ended) marks it over.
    pub fn begin(&self) {
        self.switch.active.send_replace(true);
    }

    /// Marks the run going on as over (a pause waits for this).
    pub fn ended(&self) {
        self.switch.active.send_replace(false);
    }

    /// A token cancelled when `stop` is, or when the job is paused (already, or later): a
    /// long-running loop (the relay, a bridge) runs under it and stops at its next safe point;
    /// the run counts as going on until [`ended`](Self::ended).
    pub fn run_token(&self, stop: &CancellationToken) -> CancellationToken {
        self.begin();
        let token = stop.child_token();
        let mut run = self.switch.run.lock().unwrap_or_else(|e| e.into_inner());
        *run = Some(token.clone());
        // A pause that came before the token was stored.
        if self.is_paused() {
            token.cancel();
        }
        token
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_paused_job_waits_and_its_run_token_is_cancelled() {
        let switches = JobSwitches::default();
        let switch = switches.register("events");
        let stop = CancellationToken::new();
        assert!(switch.wait_running(&stop).await);
        let run = switch.run_token(&stop);
        assert_eq!(switches.set("events", true), Some(true));
        tokio::time::timeout(Duration::from_secs(2), run.cancelled())
            .await
            .expect("pausing cancels the run token");
        assert!(switches.is_paused("events") && switch.is_paused());
        let waiter = {
            let (switch, stop) = (switch.clone(), stop.clone());
            tokio::spawn(async move { switch.wait_running(&stop).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "a paused job does not run");
        switches.set("events", false);
        assert!(waiter.await.unwrap());
        assert_eq!(switches.set("nope", true), None);
        switches.set("events", true);
        stop.cancel();
        assert!(!switch.wait_running(&stop).await, "stop ends the wait");
    }
}
