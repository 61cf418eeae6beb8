//! A running bridge's state, shared with `ferry serve`'s status endpoint.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::Serialize;

use super::BridgeSummary;

/// What one bridge is doing, updated after every batch.
#[derive(Debug, Default)]
pub struct BridgeStatus {
    inner: Mutex<StatusView>,
}

/// A snapshot of a [`BridgeStatus`], as the status endpoint shows it.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct StatusView {
    /// The bridge's name.
    pub name: String,
    /// `kafka->stream` or `stream->kafka`.
    pub direction: String,
    /// `starting`, `running`, `paused`, `retrying`, `stopped` or `failed`.
    pub state: String,
    /// Why it is paused, retrying or failed.
    pub reason: Option<String>,
    /// Totals of this process.
    pub totals: BridgeSummary,
    /// Records not yet bridged, by partition (forward).
    pub lag: BTreeMap<i32, i64>,
    /// Bytes of the frames' images before / after re-encoding (1.0 without frames).
    pub compression_ratio: f64,
    /// When the last batch was written (RFC 3339).
    pub last_batch_at: Option<String>,
}

impl BridgeStatus {
    /// A status for the bridge `name`.
    pub fn new(name: &str, direction: &str) -> Self {
        BridgeStatus {
            inner: Mutex::new(StatusView {
                name: name.to_string(),
                direction: direction.to_string(),
                state: "starting".into(),
                compression_ratio: 1.0,
                ..StatusView::default()
            }),
        }
    }

    /// Applies `f` to the status.
    pub fn update(&self, f: impl FnOnce(&mut StatusView)) {
        let mut view = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut view);
    }

    /// Sets the state and its reason.
    pub fn set_state(&self, state: &str, reason: Option<String>) {
        self.update(|v| {
            v.state = state.to_string();
            v.reason = reason;
        });
    }

    /// A copy of the status.
    pub fn view(&self) -> StatusView {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
