//! `ferry keys apply`: copy every matched key to its new name, keeping type, value and TTL.
//!
//! The run (this file) takes the run lease, resumes the unfinished run or starts one, scans the
//! source master by master and hands each SCAN batch to a task of its own: at most
//! `--concurrency` at once, at most `--rate` keys per second ([`rate`]). Every batch follows
//! the data through the stages below, each read once, top to bottom, in its own file; the run
//! adds up what the batches did and saves the checkpoint state ([`record::save`]) every few
//! thousand keys, every second and at the end.
//!
//! ```text
//!  SCAN batch                               (scan.rs)
//!     │
//!     ▼
//!  map          old name → new name + rule; clashes held back    (map.rs)
//!     │
//!     ▼
//!  write by script   ledgered COPY / RESTORE, when the store      (write/server_copy.rs,
//!     │              shares the server written to; the rest ↓      write/dump_restore.rs)
//!     ▼
//!  decide       claim new names; which exist: redo, clash,        (decide.rs)
//!     │         or --on-conflict skip / overwrite / fail
//!     ▼
//!  back up      values `overwrite` replaces → `backup` ledger     (backup.rs)
//!     │
//!     ▼
//!  record       intents → `created` ledger, before writing        (record.rs)
//!     │
//!     ▼
//!  write        one WriteStrategy per key: server-side COPY,      (write/)
//!     │         DUMP/RESTORE, or chunks
//!     ▼
//!  record       counts; intents of keys not written withdrawn     (record.rs)
//! ```
//!
//! [`batch::Batcher::process`] strings the stages together. The order of the Redis commands
//! inside and across the stages is what makes a crash at any point end exact: every key is in
//! the ledger before it is written, and withdrawn only once it is known not to be.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use ferry_core::checkpoint::CheckpointStore;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::clash::{ClashResolution, OnCollision, find_clashes, refuse};
use super::scan::{estimate_keys, scan_batches};
use super::{KeysContext, KeysError, KeysState, PerRule, Stats, sweep_tmp_keys};
use crate::observe::Progress;
use crate::runtime::LeaseGuard;
use ferry_core::report::{ErrorLog, rfc3339};

mod backup;
mod batch;
mod decide;
mod map;
mod payload;
pub(super) use payload::refuses_payload;
mod rate;
mod record;
mod write;

use batch::{BatchDone, Batcher};
use rate::RateLimiter;
use record::save;

/// What an apply run did.
#[derive(Debug)]
pub struct ApplyOutcome {
    /// Counts of this run (including what earlier, interrupted attempts of it did).
    pub stats: Stats,
    /// Counts per rule.
    pub per_rule: PerRule,
    /// Failed keys.
    pub errors: ErrorLog,
    /// When this invocation started.
    pub started: DateTime<Utc>,
    /// Keys scanned per second by this invocation.
    pub keys_per_s: f64,
    /// Whether it resumed an interrupted run.
    pub resumed: bool,
}

/// How often the checkpoint is saved, at most.
const CHECKPOINT_EVERY_KEYS: u64 = 5000;
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// Runs apply under the run lease; a second apply of the same run name is refused.
pub async fn apply(ctx: &KeysContext, stop: CancellationToken) -> Result<ApplyOutcome, KeysError> {
    let lease = LeaseGuard::acquire(ctx.store.clone(), &ctx.scope, stop.clone()).await?;
    let result = run(ctx, &stop, lease.lease().token).await;
    lease.release().await;
    result
}

async fn run(
    ctx: &KeysContext,
    stop: &CancellationToken,
    fence: u64,
) -> Result<ApplyOutcome, KeysError> {
    let started = Utc::now();
    let clock = Instant::now();
    let (mut state, resumed) = open_state(ctx, started).await?;
    let resolution = resolve_clashes(ctx).await?;
    if resumed {
        tracing::info!(run = %ctx.opts.run_name, done = state.stats.scanned, "resuming an interrupted run");
    }
    let swept = sweep_tmp_keys(ctx).await?;
    if swept > 0 {
        tracing::info!(
            keys = swept,
            "removed temporary keys an interrupted chunked copy left"
        );
    }
    state.state = "running".into();
    save(ctx, &mut state).await?;

    let batcher = Batcher::new(ctx, resolution, fence);
    let mut progress = Progress::new("migrating keys", state.estimated_total);
    progress.inc(state.stats.scanned);
    let mut errors = ErrorLog::default();
    let scanned_before = state.stats.scanned;
    let batches = batch_tasks(ctx, &state, batcher, stop);
    futures::pin_mut!(batches);

    let mut since_save = 0u64;
    let mut last_save = Instant::now();
    let mut failure = None;
    while let Some(joined) = batches.next().await {
        let done = match joined {
            Ok(Ok(done)) => done,
            Ok(Err(e)) => {
                failure = Some(e);
                break;
            }
            Err(join) => {
                failure = Some(KeysError::Usage(format!(
                    "internal error in a batch: {join}"
                )));
                break;
            }
        };
        progress.inc(done.tally.stats.scanned);
        since_save += done.tally.stats.scanned;
        done.add_to(&mut state, &mut errors);
        if since_save >= CHECKPOINT_EVERY_KEYS || last_save.elapsed() >= CHECKPOINT_EVERY {
            save(ctx, &mut state).await?;
            since_save = 0;
            last_save = Instant::now();
        }
    }
    progress.finish();
    let all_done = ctx
        .source
        .masters()
        .iter()
        .all(|n| state.finished_nodes.contains(&n.addr));
    state.state = match (&failure, all_done) {
        (Some(_), _) => "failed",
        (None, true) => "completed",
        (None, false) => "interrupted",
    }
    .into();
    save(ctx, &mut state).await?;
    if let Some(e) = failure {
        return Err(e);
    }
    if !all_done {
        return Err(KeysError::Interrupted {
            done: state.stats.scanned,
        });
    }
    let secs = clock.elapsed().as_secs_f64().max(1e-9);
    Ok(ApplyOutcome {
        keys_per_s: (state.stats.scanned - scanned_before) as f64 / secs,
        stats: state.stats,
        per_rule: state.per_rule,
        errors,
        started,
        resumed,
    })
}

/// The state to run with: the unfinished previous run's (resumed) or a fresh one; refuses an
/// unfinished run made with other rules unless `--restart`.
async fn open_state(
    ctx: &KeysContext,
    started: DateTime<Utc>,
) -> Result<(KeysState, bool), KeysError> {
    let fingerprint = ctx.rules.fingerprint();
    let previous: Option<KeysState> = match ctx.store.load(&ctx.scope).await? {
        Some(bytes) => Some(serde_json::from_slice(&bytes).map_err(|e| {
            KeysError::Dirty(format!(
                "the saved state of `{}` is unreadable ({e}); run `ferry keys rollback -y` or use another --run-name",
                ctx.scope
            ))
        })?),
        None => None,
    };
    let resumable = previous.filter(|p| p.state != "completed");
    if let Some(p) = &resumable
        && p.rules_fingerprint != fingerprint
        && !ctx.opts.restart
    {
        return Err(KeysError::Dirty(format!(
            "an unfinished run `{}` (started {}) used different rules; finish it with its rules, roll it back (`ferry keys rollback -y`), or pass --restart to start over with these rules",
            ctx.opts.run_name, p.started_at
        )));
    }
    let resumed = resumable.is_some() && !ctx.opts.restart;
    let state = match resumable {
        Some(p) if resumed => p,
        _ => KeysState {
            state: "running".into(),
            rules_fingerprint: fingerprint,
            source: ctx.source.display().to_string(),
            target: ctx.target.display().to_string(),
            started_at: rfc3339(started),
            updated_at: rfc3339(started),
            cursors: BTreeMap::new(),
            finished_nodes: Vec::new(),
            run_ids: BTreeMap::new(),
            stats: Stats::default(),
            per_rule: PerRule::new(),
            estimated_total: estimate_keys(&ctx.source).await,
        },
    };
    let mut state = state;
    restart_rescanned_masters(ctx, &mut state).await?;
    Ok((state, resumed))
}

/// A SCAN cursor is a position in one server process's hash table: on a master that restarted
/// (a new `run_id`) since its cursor was saved, the cursor would skip keys. Such a master's scan
/// starts over from 0 (what it already copied is found again and skipped or rewritten, as on
/// any rerun); the run ids of now are recorded.
async fn restart_rescanned_masters(
    ctx: &KeysContext,
    state: &mut KeysState,
) -> Result<(), KeysError> {
    let now = ctx.source.master_run_ids().await?;
    for (node, run_id) in &now {
        let was = state.run_ids.get(node);
        let unfinished = !state.finished_nodes.contains(node);
        if unfinished
            && was.is_some_and(|w| w != run_id)
            && state.cursors.remove(node).is_some_and(|c| c != 0)
        {
            tracing::warn!(
                master = %node,
                "the source master restarted since this run saved its position: scanning it again from the start"
            );
        }
    }
    state.run_ids = now;
    Ok(())
}

/// Old keys that map to one new name, found before anything is written: refused, or resolved
/// by `--on-collision`.
async fn resolve_clashes(ctx: &KeysContext) -> Result<ClashResolution, KeysError> {
    let clashes = find_clashes(ctx).await?;
    Ok(match ctx.opts.on_collision {
        _ if clashes.is_empty() => ClashResolution::default(),
        OnCollision::Refuse => return Err(refuse(&clashes, &ctx.rules)),
        policy => {
            tracing::warn!(
                clashes = clashes.len(),
                first = %clashes[0].describe(&ctx.rules),
                ?policy,
                "old keys map to one new name; resolved by --on-collision"
            );
            ClashResolution::new(&clashes, policy)
        }
    })
}

/// The batches of the scan, each processed in a task of its own, at most `--concurrency` at
/// once and `--rate` keys per second, results in scan order; stops taking batches on `stop`.
fn batch_tasks(
    ctx: &KeysContext,
    state: &KeysState,
    batcher: Batcher,
    stop: &CancellationToken,
) -> futures::stream::BoxStream<'static, Result<Result<BatchDone, KeysError>, tokio::task::JoinError>>
{
    let limiter = ctx.opts.rate.map(RateLimiter::new);
    scan_batches(
        &ctx.source,
        &state.cursors,
        &state.finished_nodes,
        ctx.scan_pattern(),
        ctx.opts.batch_size,
    )
    .take_until(stop.clone().cancelled_owned())
    .then(move |b| {
        let limiter = limiter.clone();
        async move {
            if let (Some(l), Ok(b)) = (&limiter, &b) {
                l.wait(b.keys.len() as u64).await;
            }
            b
        }
    })
    .map(move |b| {
        let batcher = batcher.clone();
        tokio::spawn(async move { batcher.process(b?).await })
    })
    .buffered(ctx.opts.concurrency)
    .boxed()
}
