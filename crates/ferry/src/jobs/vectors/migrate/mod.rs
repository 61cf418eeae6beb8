//! `ferry vectors migrate`: every item of the source copied into the target.
//!
//! The ids are cut into ranges once ([`plan`]); workers take ranges from a queue and copy them
//! batch by batch ([`worker`]); this coordinator applies each committed batch to the saved
//! state, so a rerun after a crash resumes every range after its last committed batch (a
//! batch the target committed but the state missed is written again: upserts are idempotent).

pub mod plan;
pub mod worker;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use ferry_core::checkpoint::{CheckpointStore, now_ms};
use ferry_core::jobs::vectors::{IdKind, IdRange, VectorSource, VectorTarget};
use ferry_core::report::ErrorLog;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::metrics::VectorsMetric;
use super::state::{RunState, Totals};
use super::{VectorsContext, VectorsError};
use crate::observe::Progress;
use crate::runtime::LeaseGuard;
use plan::Shape;
use worker::{BatchDone, Worker};

/// The state is saved at most this often (and whenever a range is done).
const SAVE_EVERY: Duration = Duration::from_millis(200);

/// How a migrate run goes.
#[derive(Debug, Clone, Copy, Default)]
pub struct MigrateRun {
    /// Read everything, write nothing, save no checkpoint.
    pub dry_run: bool,
    /// Forget a saved migration of the same name and start over.
    pub restart: bool,
}

/// What a migrate run did.
#[derive(Debug, Clone, Serialize)]
pub struct MigrateStats {
    /// Items in the source when the migration was planned.
    pub source_items: u64,
    /// The kind of the ids (`int` or `str`).
    pub id_kind: Option<IdKind>,
    /// The embeddings' dimension.
    pub dimension: Option<usize>,
    /// Items read by this run.
    pub read: u64,
    /// Vectors written by this run (would be written, in a dry run).
    pub written: u64,
    /// Items without an embedding seen by this run.
    pub missing_embedding: u64,
    /// Items that failed in this run.
    pub failed: u64,
    /// Items the source holds with an id that is neither an integer nor a string (a float, a
    /// boolean, a list, none): never copied, counted among the failures.
    pub unusable_ids: u64,
    /// Over every run of the migration.
    pub total: Totals,
    /// Whether this run resumed a migration an earlier run started.
    pub resumed: bool,
    /// Whether every range is done.
    pub complete: bool,
    /// Items read per second by this run (while copying).
    pub items_per_second: f64,
    /// Seconds spent before copying: describing the source, preparing the target, cutting the
    /// ids into ranges (or loading the saved plan).
    pub planning_seconds: f64,
    /// Seconds spent copying.
    pub copy_seconds: f64,
}

/// The outcome of `ferry vectors migrate`.
#[derive(Debug, Clone)]
pub struct MigrateOutcome {
    /// When it started.
    pub started: DateTime<Utc>,
    /// Whether nothing was written.
    pub dry_run: bool,
    /// The counts.
    pub stats: MigrateStats,
    /// Failed items of this run.
    pub errors: ErrorLog,
    /// Whether it stopped early (signal or lost lease) with its checkpoint saved.
    pub stopped: bool,
}

/// Runs (or resumes) the migration.
pub async fn migrate(
    ctx: &VectorsContext,
    run: MigrateRun,
    stop: CancellationToken,
) -> Result<MigrateOutcome, VectorsError> {
    let started = Utc::now();
    let info = ctx.source.describe().await?;
    let shape = plan::shape(&info)?;
    let outcome = run_or_resume(ctx, run, stop, started, &info, shape).await;
    outcome.map(|mut o| {
        if info.bad_ids > 0 {
            o.stats.unusable_ids = info.bad_ids;
            o.stats.failed += info.bad_ids;
            o.errors.push(
                format!("{} items", info.bad_ids),
                "their id is neither an integer nor a string (a float, a boolean, a list or none): not copied; give them proper ids",
            );
        }
        o
    })
}

async fn run_or_resume(
    ctx: &VectorsContext,
    run: MigrateRun,
    stop: CancellationToken,
    started: DateTime<Utc>,
    info: &ferry_core::jobs::vectors::SourceInfo,
    shape: Option<Shape>,
) -> Result<MigrateOutcome, VectorsError> {
    if run.dry_run {
        let Some(shape) = shape else {
            return Ok(empty(started, true, info.items));
        };
        let mut state = planned_state(ctx, shape, info.items).await?;
        return copy(ctx, &mut state, shape, true, started, stop).await;
    }
    let scope = ctx.options.scope();
    let lease = LeaseGuard::acquire(ctx.checkpoints.clone(), &scope, stop.clone()).await?;
    let result = async {
        let mut saved = RunState::load(&ctx.checkpoints, &ctx.options).await?;
        if run.restart && saved.is_some() {
            ctx.checkpoints.clear(&scope).await?;
            saved = None;
        }
        let (mut state, resumed) = match saved {
            Some(state) => {
                state.matches(&ctx.options)?;
                (state, true)
            }
            None => {
                let Some(shape) = shape else {
                    return Ok(empty(started, false, info.items));
                };
                plan::prepare_target(ctx, shape).await?;
                let mut state = planned_state(ctx, shape, info.items).await?;
                state.save(&ctx.checkpoints, &ctx.options).await?;
                (state, false)
            }
        };
        let shape = Shape {
            kind: state.id_kind,
            dimension: state.dimension,
        };
        if resumed {
            check_finished_target(ctx, &state).await?;
            plan::prepare_target(ctx, shape).await?;
        }
        let mut outcome = copy(ctx, &mut state, shape, false, started, stop).await?;
        outcome.stats.resumed = resumed;
        Ok(outcome)
    }
    .await;
    lease.release().await;
    result
}

/// A new migration's state: the ids of the `items` the source holds cut into ranges.
async fn planned_state(
    ctx: &VectorsContext,
    shape: Shape,
    items: u64,
) -> Result<RunState, VectorsError> {
    let ranges = plan::cut_ranges(ctx, shape.kind, items, parts(ctx)).await?;
    Ok(RunState::new(
        &ctx.options,
        shape.kind,
        shape.dimension,
        items,
        ranges,
    ))
}

/// A complete migration whose target lost its data is not reported complete again.
async fn check_finished_target(ctx: &VectorsContext, state: &RunState) -> Result<(), VectorsError> {
    if !state.is_finished() {
        return Ok(());
    }
    let target = ctx.target.describe().await?;
    let written = state.totals().written;
    if !target.exists && written > 0 {
        return Err(VectorsError::Conflict(format!(
            "migration `{}` is complete, but its target `{}` no longer exists: run migrate with --restart to copy everything again",
            ctx.options.name,
            ctx.options.target.name()
        )));
    }
    if target.items < written {
        eprintln!(
            "warning: migration `{}` is complete, but its target holds {} vectors of the {written} it wrote: run `ferry vectors validate --full --fix`",
            ctx.options.name, target.items
        );
    }
    Ok(())
}

/// Id ranges to cut: several per worker, so that a slow range does not leave workers idle.
fn parts(ctx: &VectorsContext) -> usize {
    ctx.options.workers.max(1) * 4
}

fn empty(started: DateTime<Utc>, dry_run: bool, items: u64) -> MigrateOutcome {
    MigrateOutcome {
        started,
        dry_run,
        stats: MigrateStats {
            source_items: items,
            id_kind: None,
            dimension: None,
            read: 0,
            written: 0,
            missing_embedding: 0,
            failed: 0,
            unusable_ids: 0,
            total: Totals::default(),
            resumed: false,
            complete: true,
            items_per_second: 0.0,
            planning_seconds: (Utc::now() - started).num_milliseconds() as f64 / 1000.0,
            copy_seconds: 0.0,
        },
        errors: ErrorLog::default(),
        stopped: false,
    }
}

/// Copies the ranges of `state` not done yet with the configured workers; saves `state` as
/// batches commit (unless `dry_run`).
async fn copy(
    ctx: &VectorsContext,
    state: &mut RunState,
    shape: Shape,
    dry_run: bool,
    started: DateTime<Utc>,
    stop: CancellationToken,
) -> Result<MigrateOutcome, VectorsError> {
    let clock = Instant::now();
    let planning_seconds = (Utc::now() - started).num_milliseconds().max(0) as f64 / 1000.0;
    tracing::info!(planning_seconds, "planned; copying");
    let before = state.totals();
    state.run_started_ms = now_ms();
    state.run_read_at_start = before.read;
    state.holder = Some(format!(
        "{}:{}",
        crate::runtime::hostname(),
        std::process::id()
    ));
    if !dry_run {
        state.save(&ctx.checkpoints, &ctx.options).await?;
    }
    let (handles, mut rx) = spawn_workers(ctx, state, shape, dry_run, &stop);
    let remaining = state.total.saturating_sub(before.read);
    let mut bar = Progress::new("vectors", remaining);
    let mut errors = ErrorLog::default();
    let mut last_save = Instant::now();
    while let Some(batch) = rx.recv().await {
        bar.inc(batch.read);
        let range_done = batch.done;
        apply(state, batch, &mut errors);
        let t = state.totals();
        metrics::gauge!(VectorsMetric::MigrationDoneItems.name()).set(t.read as f64);
        metrics::gauge!(VectorsMetric::MigrationTotalItems.name()).set(state.total as f64);
        if !dry_run && (range_done || last_save.elapsed() >= SAVE_EVERY) {
            state.save(&ctx.checkpoints, &ctx.options).await?;
            last_save = Instant::now();
        }
    }
    bar.finish();
    let failure = join_workers(handles).await;
    state.holder = None;
    if state.is_finished() && state.finished_ms.is_none() {
        state.finished_ms = Some(now_ms());
    }
    if !dry_run {
        state.save(&ctx.checkpoints, &ctx.options).await?;
    }
    if let Some(e) = failure {
        return Err(e);
    }
    let after = state.totals();
    let seconds = clock.elapsed().as_secs_f64();
    let read = after.read - before.read;
    Ok(MigrateOutcome {
        started,
        dry_run,
        stats: MigrateStats {
            source_items: state.total,
            id_kind: Some(state.id_kind),
            dimension: Some(state.dimension),
            read,
            written: after.written - before.written,
            missing_embedding: after.missing - before.missing,
            failed: after.failed - before.failed,
            unusable_ids: 0,
            total: after,
            resumed: false,
            complete: state.is_finished(),
            items_per_second: if seconds > 0.0 {
                read as f64 / seconds
            } else {
                0.0
            },
            planning_seconds,
            copy_seconds: seconds,
        },
        errors,
        stopped: !state.is_finished(),
    })
}

/// A worker task: `Err` when a store kept failing.
type WorkerHandle = tokio::task::JoinHandle<Result<(), ferry_core::jobs::vectors::VectorError>>;

/// Starts `--workers` tasks taking the ranges of `state` not done yet from one queue; each
/// committed batch comes back on the returned channel.
fn spawn_workers(
    ctx: &VectorsContext,
    state: &RunState,
    shape: Shape,
    dry_run: bool,
    stop: &CancellationToken,
) -> (Vec<WorkerHandle>, mpsc::UnboundedReceiver<BatchDone>) {
    let pending: VecDeque<(usize, IdRange)> = state
        .ranges
        .iter()
        .enumerate()
        .filter(|(_, r)| !r.done)
        .map(|(i, r)| (i, r.rest()))
        .collect();
    let queue = Arc::new(Mutex::new(pending));
    let (tx, rx) = mpsc::unbounded_channel::<BatchDone>();
    let worker = Worker {
        source: ctx.source.clone(),
        target: ctx.target.clone(),
        shape,
        batch: ctx.options.batch.max(1),
        dry_run,
        stop: stop.clone(),
    };
    let handles: Vec<_> = (0..ctx.options.workers.max(1))
        .map(|_| {
            let (worker, queue, tx) = (worker.clone(), queue.clone(), tx.clone());
            tokio::spawn(async move {
                loop {
                    let next = queue.lock().unwrap_or_else(|e| e.into_inner()).pop_front();
                    let Some((index, rest)) = next else {
                        return Ok(());
                    };
                    if worker.stop.is_cancelled() {
                        return Ok(());
                    }
                    if let Err(e) = worker.run_range(index, rest, &tx).await {
                        worker.stop.cancel();
                        return Err(e);
                    }
                }
            })
        })
        .collect();
    drop(tx);
    (handles, rx)
}

/// Waits for the workers; the first failure, if any.
async fn join_workers(handles: Vec<WorkerHandle>) -> Option<VectorsError> {
    let mut failure = None;
    for handle in handles {
        match handle.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failure = failure.or(Some(VectorsError::Store(e))),
            Err(e) => {
                failure = failure.or(Some(VectorsError::Usage(format!("a worker panicked: {e}"))))
            }
        }
    }
    failure
}

/// Applies one committed batch to the state and the metrics.
fn apply(state: &mut RunState, batch: BatchDone, errors: &mut ErrorLog) {
    let failed = batch.failures.len() as u64;
    metrics::counter!(VectorsMetric::ItemsReadTotal.name()).increment(batch.read);
    metrics::counter!(VectorsMetric::ItemsWrittenTotal.name()).increment(batch.written);
    metrics::counter!(VectorsMetric::ItemsMissingTotal.name()).increment(batch.missing);
    metrics::counter!(VectorsMetric::ItemsFailedTotal.name()).increment(failed);
    for (item, error) in batch.failures {
        if state.errors.items.len() < super::state::ERRORS_KEPT {
            state.errors.push(item.clone(), error.clone());
        } else {
            state.errors.total += 1;
        }
        errors.push(item, error);
    }
    let Some(range) = state.ranges.get_mut(batch.range) else {
        return;
    };
    range.read += batch.read;
    range.written += batch.written;
    range.missing += batch.missing;
    range.failed += failed;
    if batch.last.is_some() {
        range.cursor = batch.last;
    }
    range.done |= batch.done;
}
