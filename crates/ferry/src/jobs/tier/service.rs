//! What the tier job runs inside `ferry serve`: a pass on a schedule and a statistics sampler.

use std::sync::Arc;
use std::time::Duration;

use ferry_core::retry::Backoff;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::PassRequest;
use crate::jobs::tier::metrics::TierMetric;
use crate::server::{AppState, ServeOptions};

/// The job's id for its pause switch and its dashboard card.
pub const JOB: &str = "tier";

/// Starts the scheduler and the sampler when the tier job is configured.
pub fn spawn(
    state: &Arc<AppState>,
    options: &ServeOptions,
    stop: &CancellationToken,
) -> Vec<JoinHandle<()>> {
    if state.jobs.tier.is_none() {
        return Vec::new();
    }
    vec![
        tokio::spawn(schedule(state.clone(), options.interval, stop.clone())),
        tokio::spawn(sample_stats(
            state.clone(),
            options.stats_interval,
            stop.clone(),
        )),
    ]
}

/// One tier pass every `interval`; a failed pass is retried with exponential backoff (1 s,
/// 2 s, … up to the interval).
async fn schedule(state: Arc<AppState>, interval: Duration, stop: CancellationToken) {
    let Some(tier) = state.jobs.tier.as_ref() else {
        return;
    };
    let mut backoff = pass_backoff(interval);
    let switch = state.switches.register(JOB);
    loop {
        // A paused job waits here, between passes (a pass that runs finishes first).
        if !switch.wait_running(&stop).await {
            return;
        }
        switch.begin();
        // A pause that came after the wait: no pass.
        if switch.is_paused() {
            switch.ended();
            continue;
        }
        let wait = {
            let _pass = state.jobs.tier_passes.lock().await;
            let request = PassRequest {
                trigger: "serve".into(),
                ..PassRequest::default()
            };
            match super::run_pass(tier, request, stop.child_token()).await {
                Ok(outcome) if outcome.failed() == 0 => {
                    backoff.reset();
                    tracing::info!(
                        events = outcome.run.events_written,
                        captions = outcome.run.captions_migrated,
                        deleted = outcome.run.entries_deleted,
                        "tier pass done"
                    );
                    interval
                }
                Ok(outcome) => {
                    tracing::warn!(failed = outcome.failed(), error = ?outcome.run.error, "tier pass had failures; retrying");
                    backoff.next().min(interval)
                }
                Err(e) => {
                    tracing::error!(error = %e, "tier pass failed; retrying");
                    metrics::counter!(TierMetric::PassesTotal.name(), "outcome" => "failed")
                        .increment(1);
                    backoff.next().min(interval)
                }
            }
        };
        switch.ended();
        state.switches.note_next_run(JOB, wait);
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Sets the gauges of captions waiting in Redis and of the oldest one's age.
pub fn record_pending(s: &super::TierStatus) {
    metrics::gauge!(TierMetric::CaptionsPending.name()).set(s.pending_captions as f64);
    let oldest = s.cameras.iter().filter_map(|c| c.oldest_age_ms).max();
    metrics::gauge!(TierMetric::OldestPendingSeconds.name())
        .set(oldest.unwrap_or(0) as f64 / 1000.0);
}

/// The pauses before retrying a failed pass: 1 s doubling up to the interval (but at least
/// 1 s); each wait is also capped at the interval.
fn pass_backoff(interval: Duration) -> Backoff {
    let min = Duration::from_secs(1);
    Backoff::new(min, interval.max(min))
}

/// Samples captions pending in Redis and the store's counts every `every`.
async fn sample_stats(state: Arc<AppState>, every: Duration, stop: CancellationToken) {
    let Some(tier) = state.jobs.tier.as_ref() else {
        return;
    };
    loop {
        match super::status(tier).await {
            Ok(s) => {
                record_pending(&s);
                tracing::info!(
                    cameras = s.cameras.len(),
                    pending = s.pending_captions,
                    events = s.counts.events,
                    "tier statistics"
                );
            }
            Err(e) => tracing::warn!(error = %e, "tier statistics failed"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}
