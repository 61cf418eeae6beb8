//! What the bridge job runs inside `ferry serve`: every `[[bridge]]` section, each restarted
//! with backoff after a failure retrying may cure.

use std::sync::Arc;

use ferry_core::error::Classify;
use ferry_core::retry::Backoff;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{BridgeOptions, BridgeStatus};
use crate::server::JobSwitch;

/// One configured bridge inside `ferry serve`: its options and live status.
#[derive(Debug)]
pub struct ServedBridge {
    /// Its options.
    pub options: BridgeOptions,
    /// What it is doing.
    pub status: BridgeStatus,
}

impl ServedBridge {
    /// A bridge not started yet.
    pub fn new(options: BridgeOptions) -> Self {
        let direction = if options.reverse {
            "stream->kafka"
        } else {
            "kafka->stream"
        };
        let status = BridgeStatus::new(&options.name, direction);
        ServedBridge { options, status }
    }
}

/// The id of a bridge for its pause switch and its dashboard card: `bridge:NAME`.
pub fn job_id(name: &str) -> String {
    format!("bridge:{name}")
}

/// Starts `bridge` until `stop`: a failure that retrying may cure restarts it after a pause;
/// any other stops it with its status `failed`. While `switch` is paused the bridge stops at
/// its next safe point (its progress committed) and starts again when resumed.
pub fn spawn(
    bridge: Arc<ServedBridge>,
    switch: JobSwitch,
    stop: &CancellationToken,
) -> JoinHandle<()> {
    let stop = stop.clone();
    tokio::spawn(async move {
        let mut backoff = Backoff::for_services();
        let mut options = bridge.options.clone();
        options.once = false;
        while !stop.is_cancelled() {
            if switch.is_paused() {
                bridge
                    .status
                    .set_state("paused", Some("paused through the API".into()));
            }
            if !switch.wait_running(&stop).await {
                break;
            }
            let run = switch.run_token(&stop);
            let outcome = if options.reverse {
                super::reverse(&options, &bridge.status, run).await
            } else {
                super::forward(&options, &bridge.status, run).await
            };
            switch.ended();
            match outcome {
                Ok(_) if switch.is_paused() && !stop.is_cancelled() => {
                    tracing::info!(bridge = %options.name, "bridge paused");
                }
                Ok(summary) => {
                    tracing::info!(bridge = %options.name, written = summary.written, "bridge stopped");
                    break;
                }
                Err(e) if e.retryable() => {
                    let delay = backoff.next();
                    tracing::warn!(bridge = %options.name, error = %e, retry_in_ms = delay.as_millis() as u64, "bridge failed; restarting");
                    bridge.status.set_state("retrying", Some(e.to_string()));
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
                Err(e) => {
                    tracing::error!(bridge = %options.name, error = %e, "bridge failed; not restarted");
                    break;
                }
            }
        }
    })
}
