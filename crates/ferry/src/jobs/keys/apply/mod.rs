//! `ferry keys apply`: copy every matched key to its new name, keeping type, value and TTL.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use ferry_connectors::redis::{
    ChunkError, ChunkFence, ChunkedCopy, Cmd, DeleteIfUnchanged, LedgerWrite, LedgeredCopy,
    LedgeredRestore, Moved, RedisCheckpointStore, RedisEndpoint, RedisError, SourceDelete, Value,
    Witness, chunk_tmp_key, cmd, copy_in_chunks_fenced, copy_with_ledger, delete_if_unchanged,
    key_slot, move_on_server, restore_with_ledger, source_digest,
};
use ferry_core::checkpoint::{CheckpointStore, now_ms};
use ferry_core::rules::RuleSet;
use ferry_core::telemetry::Metric;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::clash::{ClashResolution, HeldBack, OnCollision, find_clashes, refuse};
use super::scan::{ScanBatch, estimate_keys, scan_batches};
use super::verify::same_in_chunks;
use super::{
    BACKUP_BY_KEY, CREATED, KeysContext, KeysError, KeysOptions, KeysState, LEDGER_BACKUP,
    LEDGER_CREATED, LEDGER_TMP, OVERWROTE, OnConflict, PerRule, SOURCE_DELETED, Stats,
    add_per_rule, is_store_key, ledger_value, parse_ledger_value, sweep_tmp_keys,
};
use crate::observe::Progress;
use crate::report::{ErrorLog, display_key, rfc3339};
use crate::runtime::{LeaseGuard, pausepoint};
use crate::store::AnyStore;

mod chunked;
mod decide;
mod write;

use decide::memory_usages;

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
        progress.inc(done.stats.scanned);
        since_save += done.stats.scanned;
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
            stats: Stats::default(),
            per_rule: PerRule::new(),
            estimated_total: estimate_keys(&ctx.source).await,
        },
    };
    Ok((state, resumed))
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

async fn save(ctx: &KeysContext, state: &mut KeysState) -> Result<(), KeysError> {
    state.updated_at = rfc3339(Utc::now());
    let bytes = serde_json::to_vec(state).expect("state serialises");
    ctx.store.save(&ctx.scope, &bytes).await?;
    metrics::counter!(Metric::CheckpointsSavedTotal.name(), "job" => "keys").increment(1);
    Ok(())
}

/// Spaces batches so that at most `rate` keys per second are handled.
#[derive(Debug, Clone)]
struct RateLimiter {
    rate: u64,
    start: Instant,
    sent: Arc<std::sync::atomic::AtomicU64>,
}

impl RateLimiter {
    fn new(rate: u64) -> Self {
        Self {
            rate: rate.max(1),
            start: Instant::now(),
            sent: Arc::default(),
        }
    }

    async fn wait(&self, n: u64) {
        let sent = self.sent.fetch_add(n, std::sync::atomic::Ordering::Relaxed) + n;
        let due = Duration::from_secs_f64(sent as f64 / self.rate as f64);
        if let Some(wait) = due.checked_sub(self.start.elapsed()) {
            tokio::time::sleep(wait).await;
        }
    }
}

/// Whether apply copies with [`copy_with_ledger`]: one standalone server (Redis ≥ 6.2) holding
/// source, new keys and the checkpoint store in one database. With `--delete-source` the script
/// moves each key (`RENAMENX`), so the copy and the delete are one step.
fn uses_ledgered_copy(ctx: &KeysContext) -> bool {
    ctx.same_server
        && !ctx.source.is_cluster()
        && ctx.source.version() >= (6, 2)
        && ctx.target.db() == ctx.source.db()
        && ctx
            .store
            .redis_endpoint()
            .is_some_and(|s| s.same_server(&ctx.source) && s.db() == ctx.source.db())
}

/// Whether apply restores with [`restore_with_ledger`]: another server as target, standalone,
/// holding the checkpoint store in the target's database.
fn uses_ledgered_restore(ctx: &KeysContext) -> bool {
    !ctx.same_server
        && !ctx.target.is_cluster()
        && ctx
            .store
            .redis_endpoint()
            .is_some_and(|s| s.same_server(&ctx.target) && s.db() == ctx.target.db())
}

/// What one batch did.
#[derive(Debug)]
struct BatchDone {
    node: String,
    cursor_after: u64,
    stats: Stats,
    per_rule: PerRule,
    errors: ErrorLog,
}

impl BatchDone {
    /// Adds the batch's counts and errors to the run and advances its master's cursor.
    fn add_to(self, state: &mut KeysState, errors: &mut ErrorLog) {
        state.stats.add(&self.stats);
        add_per_rule(&mut state.per_rule, &self.per_rule);
        errors.extend(self.errors);
        state.cursors.insert(self.node.clone(), self.cursor_after);
        if self.cursor_after == 0 && !state.finished_nodes.contains(&self.node) {
            state.finished_nodes.push(self.node);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    /// The new name is free: create it.
    Create,
    /// An earlier attempt of this run created it from the same source: write it again
    /// (REPLACE); the ledger flags it has.
    Redo(u8),
    /// It exists and the policy is `overwrite`.
    Overwrite,
}

impl Action {
    /// The ledger flags of an item written with this action.
    fn flags(self, delete_source: bool) -> u8 {
        let flags = match self {
            Action::Create => CREATED,
            Action::Overwrite => CREATED | OVERWROTE,
            Action::Redo(f) => f,
        };
        if delete_source {
            flags | SOURCE_DELETED
        } else {
            flags
        }
    }
}

/// One old key of a batch on its way to its new name.
#[derive(Debug)]
struct Item {
    src: Vec<u8>,
    dst: Vec<u8>,
    rule: usize,
    action: Action,
}

impl Item {
    /// Its `created` ledger entry: new name → flags + source name.
    fn ledger_entry(&self, delete_source: bool) -> (Vec<u8>, Vec<u8>) {
        (
            self.dst.clone(),
            ledger_value(self.action.flags(delete_source), &self.src),
        )
    }
}

/// What happened to one item's write.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Written {
    /// Written under the new name (with `--delete-source`: the source was gone by then).
    Done,
    /// Written under the new name and the source deleted (`--delete-source`).
    Moved,
    /// The source was gone.
    Vanished,
    /// The new name exists.
    Exists,
    /// Written under the new name, but the source is kept: an application changed it while it
    /// was moved (`changed`), or deleting it failed. The new key stays in the ledger, so a
    /// re-run copies the latest value.
    Kept { changed: bool, why: String },
    /// Not written.
    Failed(String),
}

impl Written {
    /// Whether the new key was written (and stays in the ledger).
    fn wrote(&self) -> bool {
        matches!(self, Written::Done | Written::Moved | Written::Kept { .. })
    }
}

/// A value read from the source for DUMP/RESTORE.
#[derive(Debug)]
struct Dumped {
    /// The item's index in its batch.
    idx: usize,
    /// When it expires (Unix ms).
    expire_at: Option<i64>,
    /// Its DUMP payload.
    payload: Vec<u8>,
}

/// Most bytes of DUMP payloads (estimated by `MEMORY USAGE`) one batch holds at once; a single
/// bigger value (up to `--max-payload`) is read alone.
const PAYLOAD_BYTES_IN_FLIGHT: u64 = 8 << 20;

/// Processes batches: the shared, cheaply cloned parts of the context.
#[derive(Debug, Clone)]
struct Batcher {
    source: Arc<RedisEndpoint>,
    target: Arc<RedisEndpoint>,
    rules: Arc<RuleSet>,
    store: Arc<AnyStore>,
    scope: Arc<str>,
    opts: Arc<KeysOptions>,
    same_server: bool,
    /// Whether new keys are copied by the ledgered COPY script (see [`Batcher::copy_ledgered`]).
    ledgered: bool,
    /// Whether new keys are restored by the ledgered RESTORE script on the target (see
    /// [`Batcher::restore_ledgered`]); turned off for the rest of the run once the target
    /// refuses a payload (a DUMP from a newer server: those go in chunks, by the regular path).
    ledgered_restore: Arc<AtomicBool>,
    skip_prefix: Option<Arc<[u8]>>,
    /// Old keys held back because they clash with others (`--on-collision`).
    clashes: Arc<ClashResolution>,
    /// The run lease's fencing token, checked by the ledgered scripts.
    fence: u64,
    /// New names being written on the regular path by the batches in flight, with their
    /// sources: two old keys never race for one name between its check and its write.
    in_flight: Arc<Mutex<HashMap<Vec<u8>, Vec<u8>>>>,
}

fn exists_cmd(key: &[u8]) -> Cmd {
    let mut c = cmd("EXISTS");
    c.arg(key);
    c
}

fn exists_error(dst: &[u8]) -> String {
    format!(
        "new key {} already exists (--on-conflict fail)",
        display_key(dst)
    )
}

fn is_payload_rejection(e: &RedisError) -> bool {
    refuses_payload(&e.to_string())
}

/// Whether a server's error message says it cannot read a DUMP payload (e.g. from a newer
/// server).
fn refuses_payload(message: &str) -> bool {
    message.contains("payload version or checksum") || message.contains("Bad data format")
}

/// Splits `(index, estimated bytes)` into groups of at most [`PAYLOAD_BYTES_IN_FLIGHT`] bytes
/// (a bigger value alone), in order.
fn payload_groups(sized: &[(usize, u64)]) -> Vec<Vec<usize>> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut bytes = 0;
    for &(i, size) in sized {
        match groups.last_mut() {
            Some(g) if bytes + size <= PAYLOAD_BYTES_IN_FLIGHT => {
                g.push(i);
                bytes += size;
            }
            _ => {
                groups.push(vec![i]);
                bytes = size;
            }
        }
    }
    groups
}

impl Batcher {
    fn new(ctx: &KeysContext, clashes: ClashResolution, fence: u64) -> Self {
        Self {
            source: ctx.source.clone(),
            target: ctx.target.clone(),
            rules: ctx.rules.clone(),
            store: ctx.store.clone(),
            scope: ctx.scope.as_str().into(),
            opts: Arc::new(ctx.opts.clone()),
            same_server: ctx.same_server,
            ledgered: uses_ledgered_copy(ctx),
            ledgered_restore: Arc::new(uses_ledgered_restore(ctx).into()),
            skip_prefix: ctx.skip_prefix.as_deref().map(Arc::from),
            clashes: Arc::new(clashes),
            fence,
            in_flight: Arc::default(),
        }
    }

    fn rule_name(&self, idx: usize) -> String {
        self.rules.rules()[idx].name.clone()
    }

    fn ledger_write<'a>(&'a self, value_prefix: &'a [u8]) -> LedgerWrite<'a> {
        LedgerWrite {
            scope: &self.scope,
            ledger: LEDGER_CREATED,
            value_prefix,
            fence: self.fence,
        }
    }

    async fn process(&self, batch: ScanBatch) -> Result<BatchDone, KeysError> {
        let started = Instant::now();
        let mut stats = Stats::default();
        let mut per_rule = PerRule::new();
        let mut errors = ErrorLog::default();
        let mut items = Vec::with_capacity(batch.keys.len());
        for key in batch.keys {
            if is_store_key(self.skip_prefix.as_deref(), &key) {
                continue;
            }
            stats.scanned += 1;
            match self.rules.rename(&key) {
                Some((rule, dst)) if dst != key || !self.same_server => {
                    let counts = per_rule.entry(self.rule_name(rule)).or_default();
                    counts.matched += 1;
                    match self.clashes.held_back(&key) {
                        None => items.push(Item {
                            src: key,
                            dst,
                            rule,
                            action: Action::Create,
                        }),
                        Some(HeldBack::Lost { winner }) => {
                            tracing::debug!(key = %display_key(&key), winner = %display_key(winner), "left under its old name: another old key takes its new name");
                            stats.collisions += 1;
                        }
                        Some(HeldBack::Failed { message }) => {
                            stats.failed += 1;
                            counts.failed += 1;
                            errors.push(display_key(&key), message.clone());
                        }
                    }
                }
                Some((rule, _)) => {
                    // Already carries its new name on this server: nothing to do.
                    per_rule.entry(self.rule_name(rule)).or_default().matched += 1;
                    stats.skipped_existing += 1;
                }
                None => stats.unmatched += 1,
            }
        }
        stats.matched = stats.scanned - stats.unmatched;
        metrics::counter!(Metric::KeysScannedTotal.name(), "job" => "keys")
            .increment(stats.scanned);

        let items = if self.ledgered {
            self.copy_ledgered(items, &mut stats, &mut per_rule, &mut errors)
                .await?
        } else if self.ledgered_restore.load(Ordering::Relaxed) {
            self.restore_ledgered(items, &mut stats, &mut per_rule, &mut errors)
                .await?
        } else {
            items
        };
        let (items, claims) = self.claim(items, &mut stats, &mut per_rule, &mut errors);
        let items = self
            .decide(items, &mut stats, &mut per_rule, &mut errors)
            .await?;
        let items = self
            .backup_overwritten(items, &mut stats, &mut errors)
            .await?;
        let delete_source = self.opts.delete_source;
        let intents: Vec<_> = items
            .iter()
            .filter(|i| delete_source || !matches!(i.action, Action::Redo(_)))
            .map(|i| i.ledger_entry(delete_source))
            .collect();
        self.store
            .ledger_put(&self.scope, LEDGER_CREATED, &intents)
            .await?;

        let outcomes = self.write(&items, &mut stats).await?;

        let mut undo = Vec::new();
        for (item, outcome) in items.into_iter().zip(outcomes) {
            let wrote = outcome.wrote();
            self.count(&item, outcome, &mut stats, &mut per_rule, &mut errors);
            if !wrote && matches!(item.action, Action::Create | Action::Overwrite) {
                undo.push(item.dst);
            }
        }
        // Intents of keys that were not written are withdrawn, so rollback and verify skip them.
        self.store
            .ledger_remove(&self.scope, LEDGER_CREATED, &undo)
            .await?;
        self.store
            .ledger_remove(&self.scope, LEDGER_BACKUP, &undo)
            .await?;
        if !claims.is_empty() {
            let mut claimed = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
            for dst in &claims {
                claimed.remove(dst);
            }
        }
        for (outcome, n) in [
            ("migrated", stats.migrated),
            ("skipped_existing", stats.skipped_existing),
            ("vanished", stats.vanished),
            ("failed", stats.failed),
            ("unmatched", stats.unmatched),
            ("collision", stats.collisions),
        ] {
            metrics::counter!(Metric::KeysProcessedTotal.name(), "job" => "keys", "outcome" => outcome)
                .increment(n);
        }
        metrics::counter!(Metric::KeysBytesTotal.name(), "job" => "keys").increment(stats.bytes);
        metrics::histogram!(Metric::BatchDurationSeconds.name(), "job" => "keys", "stage" => "apply")
            .record(started.elapsed().as_secs_f64());
        Ok(BatchDone {
            node: batch.node,
            cursor_after: batch.cursor_after,
            stats,
            per_rule,
            errors,
        })
    }

    /// Counts one item's outcome.
    fn count(
        &self,
        item: &Item,
        outcome: Written,
        stats: &mut Stats,
        per_rule: &mut PerRule,
        errors: &mut ErrorLog,
    ) {
        let rule = per_rule.entry(self.rule_name(item.rule)).or_default();
        match outcome {
            Written::Done | Written::Moved => {
                stats.migrated += 1;
                rule.migrated += 1;
                if item.action == Action::Overwrite {
                    stats.overwritten += 1;
                }
                if outcome == Written::Moved {
                    stats.source_deleted += 1;
                }
            }
            Written::Vanished => stats.vanished += 1,
            Written::Exists => {
                stats.skipped_existing += 1;
                rule.skipped_existing += 1;
            }
            Written::Kept { changed, why } => {
                if changed {
                    stats.source_kept_changed += 1;
                }
                stats.failed += 1;
                rule.failed += 1;
                errors.push(display_key(&item.src), why);
            }
            Written::Failed(e) => {
                stats.failed += 1;
                rule.failed += 1;
                errors.push(display_key(&item.src), e);
            }
        }
    }
}
