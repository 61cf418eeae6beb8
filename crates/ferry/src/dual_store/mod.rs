//! A vector store over two: the primary (old) store and the secondary (new) one, following a
//! live migration's storage mode (the vectors job's four phases):
//!
//! | mode | writes (upsert, delete) | reads (get, search) |
//! |---|---|---|
//! | `primary_only` | primary | primary |
//! | `dual_write` | primary, and the secondary best effort | primary |
//! | `shadow_read` | as `dual_write` | primary, compared with the secondary's |
//! | `cutover` | as `dual_write` | secondary, the primary when it fails |
//!
//! The primary is authoritative: its failure fails a call (its error is returned), also in
//! `cutover` for writes, so that a rollback to `primary_only` loses nothing. A secondary
//! failure or timeout never fails a call: it is counted and logged. The two stores are called
//! concurrently; a call returns when the primary has answered and the secondary has answered or
//! timed out ([`DualOptions::secondary_timeout`]), so a slow secondary adds at most that.
//!
//! The mode is fixed or read from a Redis key that operators change while applications run
//! ([`ModeSource`]). Every call is counted in Prometheus metrics ([`metrics::DualMetric`]) and
//! in [`DualStats`], which applications and tests read for success rates.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use ferry::dual_store::{DualOptions, DualStore, ModeSource};
//! use ferry_connectors::redis::{RedisEndpoint, VectorSetOptions, VectorSetTarget};
//! use ferry_core::jobs::vectors::{IdKind, VectorId};
//!
//! let url = "redis://127.0.0.1:6380";
//! let old = VectorSetTarget::open(url, "media:old", VectorSetOptions::default()).await?;
//! let new = VectorSetTarget::open(url, "media:new", VectorSetOptions::default()).await?;
//! let mode = ModeSource::Redis {
//!     endpoint: RedisEndpoint::connect(url, None).await?,
//!     key: "ferry:vectors:mode".into(),
//!     refresh: Duration::from_millis(500),
//! };
//! let store = DualStore::new(old, new, mode, IdKind::Int, DualOptions::default());
//! store.upsert(&[(VectorId::Int(7), vec![0.1, 0.2, 0.3])]).await?;
//! let nearest = store.search(&[0.1, 0.2, 0.3], 5).await?;
//! println!("{nearest:?} {:?}", store.stats());
//! # Ok(()) }
//! ```

mod call;
pub mod metrics;
mod mode;
pub mod shadow;

use std::fmt;
use std::time::Duration;

use ferry_core::jobs::vectors::{
    IdKind, ItemFailure, StorageMode, VectorId, VectorResult, VectorTarget,
};

use call::{Answer, Caller};
use metrics::Op;
pub use metrics::{DualStats, StoreStats};
use mode::ModeCache;
pub use mode::ModeSource;

/// How a dual store treats its secondary and compares shadow reads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DualOptions {
    /// How long a call waits for the secondary (and for a read of the mode key) before it
    /// counts a timeout and goes on with the primary's answer.
    pub secondary_timeout: Duration,
    /// Shadow searches agree when their top-k id lists share at least this share of the longer
    /// list (0.0..=1.0; 1.0 demands the same ids). The default 0.9 lets one id in ten differ at
    /// the boundary, as two approximate (HNSW) indexes or two quantisations may.
    pub search_min_overlap: f64,
    /// In `cutover`, ids the secondary lacks are read from the primary (a secondary write that
    /// failed earlier then costs no wrong answer); a primary failure then fails the get.
    pub cutover_fill_missing: bool,
    /// The mode used while a Redis mode key has never been read (unreachable at start):
    /// `dual_write` by default, which loses no write whatever the real mode is and reads the
    /// authoritative primary.
    pub fallback_mode: StorageMode,
}

impl Default for DualOptions {
    fn default() -> Self {
        DualOptions {
            secondary_timeout: Duration::from_secs(2),
            search_min_overlap: 0.9,
            cutover_fill_missing: true,
            fallback_mode: StorageMode::DualWrite,
        }
    }
}

/// A primary and a secondary vector store used as one, following the storage mode.
pub struct DualStore<P: VectorTarget, S: VectorTarget> {
    primary: P,
    secondary: S,
    mode: ModeCache,
    kind: IdKind,
    options: DualOptions,
    caller: Caller,
}

impl<P: VectorTarget, S: VectorTarget> fmt::Debug for DualStore<P, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DualStore")
            .field("mode", &self.mode.last())
            .field("kind", &self.kind)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl<P: VectorTarget, S: VectorTarget> DualStore<P, S> {
    /// Two stores used as one; `kind` is the kind of the ids (for stores that keep them as
    /// text). Nothing is read until the first call.
    pub fn new(
        primary: P,
        secondary: S,
        mode: ModeSource,
        kind: IdKind,
        mut options: DualOptions,
    ) -> Self {
        options.search_min_overlap = if options.search_min_overlap.is_nan() {
            1.0
        } else {
            options.search_min_overlap.clamp(0.0, 1.0)
        };
        DualStore {
            primary,
            secondary,
            mode: ModeCache::new(mode, options.fallback_mode, options.secondary_timeout),
            kind,
            options,
            caller: Caller::new(options.secondary_timeout),
        }
    }

    /// The primary store.
    pub fn primary(&self) -> &P {
        &self.primary
    }

    /// The secondary store.
    pub fn secondary(&self) -> &S {
        &self.secondary
    }

    /// The options in use (`search_min_overlap` clamped to 0.0..=1.0).
    pub fn options(&self) -> &DualOptions {
        &self.options
    }

    /// The mode in use now (read from its key if the last read is older than the refresh).
    pub async fn mode(&self) -> StorageMode {
        self.mode.current().await
    }

    /// What has been counted so far, with the last mode read.
    pub fn stats(&self) -> DualStats {
        self.caller.recorder.snapshot(self.mode.last())
    }

    /// Writes the items, replacing any with the same ids; returns the items the primary
    /// refused (the secondary's refusals are counted).
    pub async fn upsert(&self, items: &[(VectorId, Vec<f32>)]) -> VectorResult<Vec<ItemFailure>> {
        let mode = self.mode.current().await;
        let primary = self.primary.upsert(items);
        let secondary = self.secondary.upsert(items);
        self.write(mode, Op::Upsert, primary, secondary).await
    }

    /// Deletes the ids; returns how many the primary held.
    pub async fn delete(&self, ids: &[VectorId]) -> VectorResult<u64> {
        let mode = self.mode.current().await;
        let primary = self.primary.delete(ids);
        let secondary = self.secondary.delete(ids);
        self.write(mode, Op::Delete, primary, secondary).await
    }

    /// The stored vector of each id, `None` where there is none, from the store the mode
    /// reads.
    pub async fn get(&self, ids: &[VectorId]) -> VectorResult<Vec<Option<Vec<f32>>>> {
        let mode = self.mode.current().await;
        match mode {
            StorageMode::PrimaryOnly | StorageMode::DualWrite => {
                self.caller.primary(Op::Get, self.primary.get(ids)).await
            }
            StorageMode::ShadowRead => {
                let (primary, secondary) = tokio::join!(
                    self.caller.primary(Op::Get, self.primary.get(ids)),
                    self.caller.secondary(Op::Get, self.secondary.get(ids)),
                );
                let primary = primary?;
                if let Ok(secondary) = secondary {
                    self.compare_gets(ids, &primary, &secondary);
                }
                Ok(primary)
            }
            StorageMode::Cutover => self.cutover_get(ids).await,
        }
    }

    /// The `k` nearest ids to `vector` with their scores, best first, from the store the mode
    /// reads.
    pub async fn search(&self, vector: &[f32], k: usize) -> VectorResult<Vec<(VectorId, f32)>> {
        let mode = self.mode.current().await;
        let primary = self.primary.search(vector, k, self.kind);
        let secondary = self.secondary.search(vector, k, self.kind);
        match mode {
            StorageMode::PrimaryOnly | StorageMode::DualWrite => {
                self.caller.primary(Op::Search, primary).await
            }
            StorageMode::ShadowRead => {
                let (primary, secondary) = tokio::join!(
                    self.caller.primary(Op::Search, primary),
                    self.caller.secondary(Op::Search, secondary),
                );
                let primary = primary?;
                if let Ok(secondary) = secondary {
                    let min = self.options.search_min_overlap;
                    let matches = shadow::search_matches(&primary, &secondary, min);
                    if !matches {
                        tracing::debug!(
                            k,
                            overlap = shadow::overlap(&primary, &secondary),
                            "shadow search: the secondary's nearest ids differ"
                        );
                    }
                    self.caller
                        .recorder
                        .shadow(Op::Search, 1, u64::from(!matches));
                }
                Ok(primary)
            }
            StorageMode::Cutover => match self.caller.secondary(Op::Search, secondary).await {
                Ok(found) => Ok(found),
                Err(_) => self.fall_back(Op::Search, primary).await,
            },
        }
    }

    /// A write: the primary's result; then, only when the primary took it, the secondary too
    /// (best effort) unless the mode is `primary_only` — so a write reported failed never lands
    /// in the store cutover reads.
    async fn write<T: Answer>(
        &self,
        mode: StorageMode,
        op: Op,
        primary: impl Future<Output = VectorResult<T>>,
        secondary: impl Future<Output = VectorResult<T>>,
    ) -> VectorResult<T> {
        if !mode.writes_secondary() {
            return self.caller.primary(op, primary).await;
        }
        let primary = self.caller.primary(op, primary).await?;
        let _ = self.caller.secondary(op, secondary).await;
        Ok(primary)
    }

    /// A cutover get: the secondary's answer, ids it lacks filled from the primary (when
    /// [`DualOptions::cutover_fill_missing`]); the primary's when the secondary fails.
    async fn cutover_get(&self, ids: &[VectorId]) -> VectorResult<Vec<Option<Vec<f32>>>> {
        let mut found = match self
            .caller
            .secondary(Op::Get, self.secondary.get(ids))
            .await
        {
            Ok(found) if found.len() == ids.len() => found,
            Ok(_) | Err(_) => return self.fall_back(Op::Get, self.primary.get(ids)).await,
        };
        if !self.options.cutover_fill_missing {
            return Ok(found);
        }
        let missing: Vec<usize> = (0..ids.len()).filter(|&i| found[i].is_none()).collect();
        if missing.is_empty() {
            return Ok(found);
        }
        let wanted: Vec<VectorId> = missing.iter().map(|&i| ids[i].clone()).collect();
        let filled = self
            .caller
            .primary(Op::Get, self.primary.get(&wanted))
            .await?;
        let mut taken = 0;
        for (i, vector) in missing.into_iter().zip(filled) {
            if vector.is_some() {
                taken += 1;
                found[i] = vector;
            }
        }
        if taken > 0 {
            tracing::debug!(
                ids = taken,
                "cutover get: ids the secondary lacks read from the primary"
            );
            self.caller.recorder.filled(taken);
        }
        Ok(found)
    }

    /// A cutover read served by the primary because the secondary failed.
    async fn fall_back<T: Answer>(
        &self,
        op: Op,
        primary: impl Future<Output = VectorResult<T>>,
    ) -> VectorResult<T> {
        self.caller.recorder.fallback(op);
        self.caller.primary(op, primary).await
    }

    /// Counts a shadow get: one read per id, a mismatch per id whose vectors differ.
    fn compare_gets(
        &self,
        ids: &[VectorId],
        primary: &[Option<Vec<f32>>],
        secondary: &[Option<Vec<f32>>],
    ) {
        let quantization =
            shadow::looser(self.primary.quantization(), self.secondary.quantization());
        let differ = shadow::get_mismatches(ids, primary, secondary, quantization);
        for id in differ.iter().take(10) {
            tracing::debug!(id = %id, "shadow get: the secondary's vector differs");
        }
        self.caller
            .recorder
            .shadow(Op::Get, ids.len() as u64, differ.len() as u64);
    }
}
