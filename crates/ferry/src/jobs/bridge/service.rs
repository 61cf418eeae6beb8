//! What the bridge job runs inside `ferry serve`: every `[[bridge]]` section, each restarted
//! with backoff after a failure retrying may cure.

use std::sync::Arc;

use ferry_core::error::Classify;
use ferry_core::retry::Backoff;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{BridgeOptions, BridgeStatus};

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

/// Starts `bridge` until `stop`: a failure that retrying may cure restarts it after a pause;
/// any other stops it with its status `failed`.
pub fn spawn(bridge: Arc<ServedBridge>, stop: &CancellationToken) -> JoinHandle<()> {
    let stop = stop.clone();
    tokio::spawn(async move {
        let mut backoff = Backoff::for_services();
        let mut options = bridge.options.clone();
        options.once = false;
        while !stop.is_cancelled() {
            let outcome = if options.reverse {
                super::reverse(&options, &bridge.status, stop.clone()).await
            } else {
                super::forward(&options, &bridge.status, stop.clone()).await
            };
            match outcome {
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
