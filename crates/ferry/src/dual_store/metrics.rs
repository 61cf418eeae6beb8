//! What a [`DualStore`](super::DualStore) counts: the Prometheus names ([`DualMetric`]), the
//! labels, and the atomic counters behind [`DualStats`]. Every count is recorded here, in one
//! place, for both the exporter and the snapshot.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ferry_core::jobs::vectors::StorageMode;
use serde::Serialize;

ferry_core::metric_names! {
    /// The dual-write store's metrics.
    pub enum DualMetric {
        /// Calls to one store, by `store` (primary, secondary), `op` (upsert, delete, get,
        /// search) and `outcome` (ok, refused, error, timeout).
        CallsTotal => (Counter, "ferry_vectors_dual_calls_total", "Calls of a dual-write store to one of its stores, by store, op and outcome (ok, refused: some items refused, error, timeout)."),
        /// Time of one call to one store, by `store` and `op`.
        CallSeconds => (Histogram, "ferry_vectors_dual_call_seconds", "Time of one call of a dual-write store to one of its stores, by store and op (timeouts count as the timeout)."),
        /// Reads compared with the secondary in shadow_read mode, by `op` (one per id of a get,
        /// one per search).
        ShadowReadsTotal => (Counter, "ferry_vectors_shadow_reads_total", "Reads compared with the secondary store in shadow_read mode, by op (one per id of a get, one per search)."),
        /// Shadow reads whose secondary result differed, by `op`.
        ShadowMismatchesTotal => (Counter, "ferry_vectors_shadow_read_mismatches_total", "Shadow reads whose secondary result differed from the primary's, by op."),
        /// Cutover reads served by the primary because the secondary failed, by `op`.
        FallbacksTotal => (Counter, "ferry_vectors_dual_fallbacks_total", "Cutover reads served by the primary store because the secondary failed or timed out, by op."),
        /// The storage mode in use: 0 primary_only, 1 dual_write, 2 shadow_read, 3 cutover.
        StorageMode => (Gauge, "ferry_vectors_storage_mode", "The storage mode a dual-write store follows: 0 primary_only, 1 dual_write, 2 shadow_read, 3 cutover."),
    }
}

/// One of the two stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    /// The old store, authoritative until the migration is done.
    Primary,
    /// The new store.
    Secondary,
}

impl Store {
    /// The `store` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Store::Primary => "primary",
            Store::Secondary => "secondary",
        }
    }
}

/// An operation of the dual store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Writes vectors.
    Upsert,
    /// Removes vectors.
    Delete,
    /// Reads vectors by id.
    Get,
    /// Nearest-neighbour search.
    Search,
}

impl Op {
    /// The `op` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Upsert => "upsert",
            Op::Delete => "delete",
            Op::Get => "get",
            Op::Search => "search",
        }
    }
}

/// How one call to one store ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It answered.
    Ok,
    /// It answered but refused some items of an upsert.
    Refused,
    /// It failed.
    Error,
    /// It did not answer within the secondary timeout.
    Timeout,
}

impl Outcome {
    /// The `outcome` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Refused => "refused",
            Outcome::Error => "error",
            Outcome::Timeout => "timeout",
        }
    }
}

/// The gauge value of a mode: its place in migration order (0..3).
pub fn mode_value(mode: StorageMode) -> f64 {
    StorageMode::ALL
        .iter()
        .position(|m| *m == mode)
        .unwrap_or_default() as f64
}

/// Calls to one store so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StoreStats {
    /// Calls that succeeded (including upserts with refused items).
    pub ok: u64,
    /// Calls that failed (errors and timeouts).
    pub errors: u64,
    /// Of the failed calls, those that timed out.
    pub timeouts: u64,
    /// Items the store refused in upserts that otherwise succeeded.
    pub refused_items: u64,
}

impl StoreStats {
    /// Calls made.
    pub fn calls(&self) -> u64 {
        self.ok + self.errors
    }

    /// Share of calls that succeeded (1.0 before the first call).
    pub fn success_rate(&self) -> f64 {
        match self.calls() {
            0 => 1.0,
            n => self.ok as f64 / n as f64,
        }
    }
}

/// A snapshot of what a dual store has counted since it was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct DualStats {
    /// The last mode read (`None` before a Redis mode source was first read).
    pub mode: Option<StorageMode>,
    /// Calls to the primary store.
    pub primary: StoreStats,
    /// Calls to the secondary store.
    pub secondary: StoreStats,
    /// Reads compared in shadow_read mode (one per id of a get, one per search).
    pub shadow_reads: u64,
    /// Compared reads whose secondary result differed.
    pub shadow_mismatches: u64,
    /// Cutover reads served by the primary because the secondary failed.
    pub fallbacks: u64,
    /// Ids a cutover get took from the primary because the secondary lacked them.
    pub filled: u64,
}

impl DualStats {
    /// Share of shadow reads that matched (1.0 before the first).
    pub fn shadow_match_rate(&self) -> f64 {
        match self.shadow_reads {
            0 => 1.0,
            n => (n - self.shadow_mismatches.min(n)) as f64 / n as f64,
        }
    }
}

#[derive(Debug, Default)]
struct StoreCounters {
    ok: AtomicU64,
    errors: AtomicU64,
    timeouts: AtomicU64,
    refused_items: AtomicU64,
}

impl StoreCounters {
    fn snapshot(&self) -> StoreStats {
        StoreStats {
            ok: self.ok.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            timeouts: self.timeouts.load(Ordering::Relaxed),
            refused_items: self.refused_items.load(Ordering::Relaxed),
        }
    }
}

/// The counters of one dual store; each method also records the Prometheus metric.
#[derive(Debug, Default)]
pub(crate) struct Recorder {
    primary: StoreCounters,
    secondary: StoreCounters,
    shadow_reads: AtomicU64,
    shadow_mismatches: AtomicU64,
    fallbacks: AtomicU64,
    filled: AtomicU64,
}

impl Recorder {
    /// One call to `store` that ended with `outcome` after `elapsed`; `refused` items of an
    /// upsert that succeeded.
    pub(crate) fn call(&self, store: Store, op: Op, outcome: Outcome, elapsed: Duration) {
        let (s, o) = (store.as_str(), op.as_str());
        metrics::counter!(DualMetric::CallsTotal.name(), "store" => s, "op" => o, "outcome" => outcome.as_str())
            .increment(1);
        metrics::histogram!(DualMetric::CallSeconds.name(), "store" => s, "op" => o)
            .record(elapsed.as_secs_f64());
        let c = self.counters(store);
        let counter = match outcome {
            Outcome::Ok | Outcome::Refused => &c.ok,
            Outcome::Error | Outcome::Timeout => &c.errors,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if outcome == Outcome::Timeout {
            c.timeouts.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Items `store` refused in an upsert that otherwise succeeded.
    pub(crate) fn refused(&self, store: Store, items: usize) {
        self.counters(store)
            .refused_items
            .fetch_add(items as u64, Ordering::Relaxed);
    }

    /// `reads` compared reads of `op`, `mismatches` of them different.
    pub(crate) fn shadow(&self, op: Op, reads: u64, mismatches: u64) {
        let o = op.as_str();
        metrics::counter!(DualMetric::ShadowReadsTotal.name(), "op" => o).increment(reads);
        metrics::counter!(DualMetric::ShadowMismatchesTotal.name(), "op" => o)
            .increment(mismatches);
        self.shadow_reads.fetch_add(reads, Ordering::Relaxed);
        self.shadow_mismatches
            .fetch_add(mismatches, Ordering::Relaxed);
    }

    /// A cutover read of `op` served by the primary.
    pub(crate) fn fallback(&self, op: Op) {
        metrics::counter!(DualMetric::FallbacksTotal.name(), "op" => op.as_str()).increment(1);
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
    }

    /// Ids of a cutover get taken from the primary.
    pub(crate) fn filled(&self, ids: usize) {
        self.filled.fetch_add(ids as u64, Ordering::Relaxed);
    }

    /// What has been counted, with the last mode read.
    pub(crate) fn snapshot(&self, mode: Option<StorageMode>) -> DualStats {
        DualStats {
            mode,
            primary: self.primary.snapshot(),
            secondary: self.secondary.snapshot(),
            shadow_reads: self.shadow_reads.load(Ordering::Relaxed),
            shadow_mismatches: self.shadow_mismatches.load(Ordering::Relaxed),
            fallbacks: self.fallbacks.load(Ordering::Relaxed),
            filled: self.filled.load(Ordering::Relaxed),
        }
    }

    fn counters(&self, store: Store) -> &StoreCounters {
        match store {
            Store::Primary => &self.primary,
            Store::Secondary => &self.secondary,
        }
    }
}

/// Sets the storage-mode gauge.
pub(crate) fn set_mode_gauge(mode: StorageMode) {
    metrics::gauge!(DualMetric::StorageMode.name()).set(mode_value(mode));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_convention() {
        for m in DualMetric::ALL {
            ferry_core::telemetry::check_convention(m.name(), m.kind()).unwrap();
        }
    }

    #[test]
    fn modes_are_gauged_in_migration_order() {
        let values: Vec<f64> = StorageMode::ALL.into_iter().map(mode_value).collect();
        assert_eq!(values, vec![0.0, 1.0, 2.0, 3.0]);
    }

    #[test]
    fn rates_count_timeouts_as_failures_and_refusals_as_answers() {
        let r = Recorder::default();
        let t = Duration::from_millis(1);
        r.call(Store::Secondary, Op::Upsert, Outcome::Ok, t);
        r.call(Store::Secondary, Op::Upsert, Outcome::Refused, t);
        r.refused(Store::Secondary, 3);
        r.call(Store::Secondary, Op::Get, Outcome::Timeout, t);
        r.call(Store::Secondary, Op::Get, Outcome::Error, t);
        r.shadow(Op::Get, 4, 1);
        let s = r.snapshot(Some(StorageMode::ShadowRead));
        assert_eq!(
            s.secondary,
            StoreStats {
                ok: 2,
                errors: 2,
                timeouts: 1,
                refused_items: 3
            }
        );
        assert_eq!(s.secondary.success_rate(), 0.5);
        assert_eq!(s.primary.success_rate(), 1.0);
        assert_eq!(s.shadow_match_rate(), 0.75);
    }
}
