//! One call of a dual store to one of its stores: timed, bounded by the secondary timeout for
//! the secondary, its outcome counted and logged in one place.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ferry_core::jobs::vectors::{ItemFailure, VectorError, VectorId, VectorResult};

use super::metrics::{Op, Outcome, Recorder, Store};

/// What a store's answer says about refused items (only an upsert refuses some).
pub(crate) trait Answer {
    /// Items refused by a call that otherwise succeeded.
    fn refused(&self) -> usize {
        0
    }
}

impl Answer for Vec<ItemFailure> {
    fn refused(&self) -> usize {
        self.len()
    }
}
impl Answer for u64 {}
impl Answer for Vec<Option<Vec<f32>>> {}
impl Answer for Vec<(VectorId, f32)> {}

/// Why a call to the secondary gave no answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SecondaryFailure {
    /// The store failed.
    #[error("{0}")]
    Failed(VectorError),
    /// It did not answer in time.
    #[error("no answer within {0:?}: raise the secondary timeout if the store is just slow")]
    Timeout(Duration),
}

/// Runs calls and records them.
#[derive(Debug)]
pub(crate) struct Caller {
    pub(crate) recorder: Recorder,
    secondary_timeout: Duration,
    /// Whether the secondary's last call failed: failures are logged as a warning when they
    /// start and at debug level after that, recovery as information.
    secondary_failing: AtomicBool,
}

impl Caller {
    pub(crate) fn new(secondary_timeout: Duration) -> Self {
        Caller {
            recorder: Recorder::default(),
            secondary_timeout,
            secondary_failing: AtomicBool::new(false),
        }
    }

    /// A call to the primary: its error is the caller's.
    pub(crate) async fn primary<T: Answer>(
        &self,
        op: Op,
        call: impl Future<Output = VectorResult<T>>,
    ) -> VectorResult<T> {
        let started = Instant::now();
        let result = call.await;
        let outcome = match &result {
            Ok(answer) => self.answered(Store::Primary, answer),
            Err(e) => {
                tracing::debug!(op = op.as_str(), error = %e, "primary store call failed");
                Outcome::Error
            }
        };
        self.recorder
            .call(Store::Primary, op, outcome, started.elapsed());
        result
    }

    /// A call to the secondary, bounded by the secondary timeout: a failure is counted and
    /// logged, never raised.
    pub(crate) async fn secondary<T: Answer>(
        &self,
        op: Op,
        call: impl Future<Output = VectorResult<T>>,
    ) -> Result<T, SecondaryFailure> {
        let started = Instant::now();
        let result = match tokio::time::timeout(self.secondary_timeout, call).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => Err(SecondaryFailure::Failed(e)),
            Err(_) => Err(SecondaryFailure::Timeout(self.secondary_timeout)),
        };
        let outcome = match &result {
            Ok(answer) => {
                if self.secondary_failing.swap(false, Ordering::Relaxed) {
                    tracing::info!(op = op.as_str(), "secondary store answers again");
                }
                self.answered(Store::Secondary, answer)
            }
            Err(failure) => {
                if self.secondary_failing.swap(true, Ordering::Relaxed) {
                    tracing::debug!(op = op.as_str(), error = %failure, "secondary store call failed");
                } else {
                    tracing::warn!(op = op.as_str(), error = %failure,
                        "secondary store call failed; the primary's answer stands (further failures are counted in ferry_vectors_dual_calls_total)");
                }
                match failure {
                    SecondaryFailure::Failed(_) => Outcome::Error,
                    SecondaryFailure::Timeout(_) => Outcome::Timeout,
                }
            }
        };
        self.recorder
            .call(Store::Secondary, op, outcome, started.elapsed());
        result
    }

    fn answered(&self, store: Store, answer: &impl Answer) -> Outcome {
        match answer.refused() {
            0 => Outcome::Ok,
            n => {
                tracing::debug!(
                    store = store.as_str(),
                    items = n,
                    "store refused items of an upsert"
                );
                self.recorder.refused(store, n);
                Outcome::Refused
            }
        }
    }
}
