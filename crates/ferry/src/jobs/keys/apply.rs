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
    let mut state = match resumable {
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
    // Old keys that map to one new name are found before anything is written.
    let clashes = find_clashes(ctx).await?;
    let resolution = match ctx.opts.on_collision {
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
    };
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
    let limiter = ctx.opts.rate.map(RateLimiter::new);
    let batches = scan_batches(
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
    .map(|b| {
        let batcher = batcher.clone();
        tokio::spawn(async move { batcher.process(b?).await })
    })
    .buffered(ctx.opts.concurrency);
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
        state.stats.add(&done.stats);
        add_per_rule(&mut state.per_rule, &done.per_rule);
        errors.extend(done.errors);
        state.cursors.insert(done.node.clone(), done.cursor_after);
        if done.cursor_after == 0 && !state.finished_nodes.contains(&done.node) {
            state.finished_nodes.push(done.node);
        }
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

#[derive(Debug)]
struct Item {
    src: Vec<u8>,
    dst: Vec<u8>,
    rule: usize,
    action: Action,
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
            .map(|i| {
                (
                    i.dst.clone(),
                    ledger_value(i.action.flags(delete_source), &i.src),
                )
            })
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

    /// Copies (with `--delete-source`: moves) every item with the ledgered COPY script and
    /// counts what it did; returns the items whose new name already existed, for
    /// [`Batcher::decide`] and the regular path (an earlier attempt's key still in the ledger's
    /// journal, another source's key, or a key the policy decides).
    async fn copy_ledgered(
        &self,
        items: Vec<Item>,
        stats: &mut Stats,
        per_rule: &mut PerRule,
        errors: &mut ErrorLog,
    ) -> Result<Vec<Item>, KeysError> {
        if items.is_empty() {
            return Ok(items);
        }
        let moves = self.opts.delete_source;
        let pairs: Vec<(&[u8], &[u8])> = items
            .iter()
            .map(|i| (i.src.as_slice(), i.dst.as_slice()))
            .collect();
        let prefix = [Action::Create.flags(moves)];
        let outcomes =
            copy_with_ledger(&self.source, &self.ledger_write(&prefix), moves, &pairs).await?;
        let written = outcomes
            .into_iter()
            .map(|outcome| match outcome {
                LedgeredCopy::Created | LedgeredCopy::Redone => {
                    stats.server_side_copies += 1;
                    Some(if moves { Written::Moved } else { Written::Done })
                }
                LedgeredCopy::Vanished => Some(Written::Vanished),
                LedgeredCopy::Failed(e) => Some(Written::Failed(format!("COPY: {e}"))),
                LedgeredCopy::Exists => None,
            })
            .collect();
        Ok(self.count_written(items, written, stats, per_rule, errors))
    }

    /// Counts the items a ledgered script wrote (or found vanished, or failed); returns the
    /// others (`None` or `Exists`), which go on to [`Batcher::decide`] and the regular path.
    fn count_written(
        &self,
        items: Vec<Item>,
        written: Vec<Option<Written>>,
        stats: &mut Stats,
        per_rule: &mut PerRule,
        errors: &mut ErrorLog,
    ) -> Vec<Item> {
        let mut rest = Vec::new();
        for (item, outcome) in items.into_iter().zip(written) {
            match outcome {
                Some(Written::Exists) | None => rest.push(item),
                Some(outcome) => self.count(&item, outcome, stats, per_rule, errors),
            }
        }
        rest
    }

    /// Checks which new names exist and decides: a name this run wrote from the same source is
    /// redone; one it wrote from another source is a clash (never overwritten); any other goes
    /// by the conflict policy.
    async fn decide(
        &self,
        items: Vec<Item>,
        stats: &mut Stats,
        per_rule: &mut PerRule,
        errors: &mut ErrorLog,
    ) -> Result<Vec<Item>, KeysError> {
        if items.is_empty() {
            return Ok(items);
        }
        let mut items = items;
        let replies = self
            .target
            .run(
                items
                    .iter()
                    .map(|i| (i.dst.clone(), exists_cmd(&i.dst)))
                    .collect(),
            )
            .await?;
        let existing: Vec<usize> = replies
            .iter()
            .enumerate()
            .filter(|(_, r)| matches!(r, Ok(Value::Int(1))))
            .map(|(i, _)| i)
            .collect();
        if existing.is_empty() {
            return Ok(items);
        }
        let keys: Vec<Vec<u8>> = existing.iter().map(|&i| items[i].dst.clone()).collect();
        let ours = self
            .store
            .ledger_get(&self.scope, LEDGER_CREATED, &keys)
            .await?;
        let mut drop = vec![false; items.len()];
        for (&i, ledger) in existing.iter().zip(ours) {
            let item = &mut items[i];
            let rule = per_rule.entry(self.rule_name(item.rule)).or_default();
            match ledger.as_deref().map(parse_ledger_value) {
                Some((flags, src)) if src == item.src.as_slice() => {
                    item.action = Action::Redo(flags);
                    continue;
                }
                Some((_, other)) => {
                    // Another old key took this name in this run (it appeared after the check
                    // for clashes): never overwrite it.
                    drop[i] = true;
                    let other = other.to_vec();
                    self.count_clash(item, &other, stats, per_rule, errors);
                    continue;
                }
                None => {}
            }
            match self.opts.on_conflict {
                OnConflict::Overwrite => item.action = Action::Overwrite,
                OnConflict::Skip => {
                    stats.skipped_existing += 1;
                    rule.skipped_existing += 1;
                    drop[i] = true;
                }
                OnConflict::Fail => {
                    stats.failed += 1;
                    rule.failed += 1;
                    errors.push(display_key(&item.src), exists_error(&item.dst));
                    drop[i] = true;
                }
            }
        }
        let mut keep = drop.into_iter();
        items.retain(|_| !keep.next().unwrap_or(false));
        Ok(items)
    }

    /// Claims the new names of `items` for this batch. Two old keys with one new name in the
    /// batches being written (a clash that appeared after the check for clashes): the first
    /// claims the name, the others are counted as clashes and dropped. Returns the items kept
    /// and the names claimed, to release once the batch is written.
    fn claim(
        &self,
        items: Vec<Item>,
        stats: &mut Stats,
        per_rule: &mut PerRule,
        errors: &mut ErrorLog,
    ) -> (Vec<Item>, Vec<Vec<u8>>) {
        if items.is_empty() {
            return (items, Vec::new());
        }
        let mut claims = Vec::with_capacity(items.len());
        let mut kept = Vec::with_capacity(items.len());
        let mut clashes = Vec::new();
        {
            let mut claimed = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
            for item in items {
                match claimed.get(&item.dst) {
                    // The same key twice (SCAN may return a key more than once).
                    Some(src) if *src == item.src => {}
                    Some(other) => clashes.push((item, other.clone())),
                    None => {
                        claimed.insert(item.dst.clone(), item.src.clone());
                        claims.push(item.dst.clone());
                        kept.push(item);
                    }
                }
            }
        }
        for (item, other) in clashes {
            self.count_clash(&item, &other, stats, per_rule, errors);
        }
        (kept, claims)
    }

    /// Counts an old key whose new name another old key (`other`) takes in this run.
    fn count_clash(
        &self,
        item: &Item,
        other: &[u8],
        stats: &mut Stats,
        per_rule: &mut PerRule,
        errors: &mut ErrorLog,
    ) {
        if self.opts.on_collision == OnCollision::FirstWins {
            stats.collisions += 1;
            return;
        }
        stats.failed += 1;
        per_rule
            .entry(self.rule_name(item.rule))
            .or_default()
            .failed += 1;
        errors.push(
            display_key(&item.src),
            format!(
                "its new name {} is written by this run from {}; left under its old name",
                display_key(&item.dst),
                display_key(other)
            ),
        );
    }

    /// The key on the target that keeps the old value of an overwritten `dst` too big for one
    /// payload.
    fn backup_key(&self, dst: &[u8]) -> Option<Vec<u8>> {
        let tag = format!("{}-backup", self.opts.run_name);
        chunk_tmp_key(dst, &tag, self.target.is_cluster())
    }

    /// Saves the current value of every key about to be overwritten into the backup ledger:
    /// small values as DUMP payloads (a bounded number of bytes at a time), bigger ones by a
    /// server-side COPY into a backup key on the target. Items whose value cannot be backed
    /// up are counted failed and dropped.
    async fn backup_overwritten(
        &self,
        items: Vec<Item>,
        stats: &mut Stats,
        errors: &mut ErrorLog,
    ) -> Result<Vec<Item>, KeysError> {
        let victims: Vec<usize> = (0..items.len())
            .filter(|&i| items[i].action == Action::Overwrite)
            .collect();
        if victims.is_empty() {
            return Ok(items);
        }
        let sizes = memory_usages(&self.target, victims.iter().map(|&i| &items[i].dst)).await?;
        let mut small = Vec::new();
        let mut by_key = Vec::new();
        for (&i, size) in victims.iter().zip(sizes) {
            match size {
                Ok(Value::Int(n))
                    if n as u64 > self.opts.max_payload && self.target.version() >= (6, 2) =>
                {
                    by_key.push(i)
                }
                Ok(Value::Int(n)) => small.push((i, n as u64)),
                // Gone meanwhile: nothing to back up, the write creates it.
                _ => small.push((i, 0)),
            }
        }
        let mut failed = vec![false; items.len()];
        for group in payload_groups(&small) {
            let mut cmds = Vec::new();
            for &i in &group {
                let dst = &items[i].dst;
                cmds.push((dst.clone(), self.target.expiry_cmd(dst)));
                cmds.push((dst.clone(), cmd("DUMP").arg(dst).clone()));
            }
            let now = now_ms();
            let replies = self.target.run(cmds).await?;
            let mut entries = Vec::new();
            for (&i, pair) in group.iter().zip(replies.chunks(2)) {
                if let (Some(expiry), Ok(Value::BulkString(payload))) =
                    (self.target.expiry_from(&pair[0], now), &pair[1])
                {
                    let at: i64 = expiry.unwrap_or(-1);
                    let mut value = at.to_le_bytes().to_vec();
                    value.extend_from_slice(payload);
                    entries.push((items[i].dst.clone(), value));
                }
            }
            self.store
                .ledger_put(&self.scope, LEDGER_BACKUP, &entries)
                .await?;
        }
        if !by_key.is_empty() {
            let mut entries = Vec::new();
            let mut cmds = Vec::new();
            let mut copied = Vec::new();
            for &i in &by_key {
                let dst = &items[i].dst;
                let Some(backup) = self.backup_key(dst) else {
                    failed[i] = true;
                    continue;
                };
                let mut value = BACKUP_BY_KEY.to_le_bytes().to_vec();
                value.extend_from_slice(&backup);
                entries.push((dst.clone(), value));
                let mut c = cmd("COPY");
                c.arg(dst).arg(&backup).arg("REPLACE");
                cmds.push((dst.clone(), c));
                copied.push(i);
            }
            // Recorded first: a crash after the COPY leaves a backup key rollback knows.
            self.store
                .ledger_put(&self.scope, LEDGER_BACKUP, &entries)
                .await?;
            let replies = self.target.run(cmds).await?;
            for (&i, reply) in copied.iter().zip(replies) {
                if let Err(e) = reply {
                    failed[i] = true;
                    errors.push(
                        display_key(&items[i].src),
                        format!("backing up the value it would overwrite: {e}"),
                    );
                }
            }
        }
        let mut kept = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            if failed[i] {
                stats.failed += 1;
                if self.backup_key(&item.dst).is_none() {
                    errors.push(
                        display_key(&item.src),
                        "its new name has an unbalanced hash tag, so its old value cannot be backed up before overwriting".to_string(),
                    );
                }
            } else {
                kept.push(item);
            }
        }
        Ok(kept)
    }

    fn can_copy_server_side(&self, item: &Item) -> bool {
        self.same_server
            && self.source.version() >= (6, 2)
            && (!self.source.is_cluster() || key_slot(&item.src) == key_slot(&item.dst))
    }

    /// Writes every item: server-side COPY where possible, else DUMP/RESTORE, else chunks;
    /// with `--delete-source` each source is deleted only if unchanged since its copy.
    async fn write(&self, items: &[Item], stats: &mut Stats) -> Result<Vec<Written>, KeysError> {
        let mut out: Vec<Option<Written>> = vec![None; items.len()];
        let (copy, dump): (Vec<usize>, Vec<usize>) =
            (0..items.len()).partition(|&i| self.can_copy_server_side(&items[i]));
        if !copy.is_empty() {
            if self.opts.delete_source {
                self.move_on_server(items, &copy, &mut out, stats).await?;
            } else {
                self.write_by_copy(items, &copy, &mut out, stats).await?;
            }
        }
        if !dump.is_empty() {
            self.write_by_dump(items, &dump, &mut out, stats).await?;
        }
        Ok(out
            .into_iter()
            .map(|o| o.unwrap_or(Written::Failed("not written".into())))
            .collect())
    }

    fn target_db(&self) -> Option<i64> {
        (self.target.db() != self.source.db()).then(|| self.target.db())
    }

    async fn write_by_copy(
        &self,
        items: &[Item],
        which: &[usize],
        out: &mut [Option<Written>],
        stats: &mut Stats,
    ) -> Result<(), KeysError> {
        let target_db = self.target_db();
        let cmds = which
            .iter()
            .map(|&i| {
                let item = &items[i];
                let mut c = cmd("COPY");
                c.arg(&item.src).arg(&item.dst);
                if let Some(db) = target_db {
                    c.arg("DB").arg(db);
                }
                if item.action != Action::Create {
                    c.arg("REPLACE");
                }
                (item.src.clone(), c)
            })
            .collect();
        let replies = self.source.run(cmds).await?;
        let mut zero = Vec::new();
        for (&i, reply) in which.iter().zip(replies) {
            out[i] = Some(match reply {
                Ok(Value::Int(1)) => {
                    stats.server_side_copies += 1;
                    Written::Done
                }
                Ok(_) => {
                    zero.push(i);
                    continue;
                }
                Err(e) => Written::Failed(format!("COPY: {e}")),
            });
        }
        // COPY answers 0 when the source is gone or the new name appeared meanwhile.
        if !zero.is_empty() {
            let replies = self
                .source
                .run(
                    zero.iter()
                        .map(|&i| (items[i].src.clone(), exists_cmd(&items[i].src)))
                        .collect(),
                )
                .await?;
            for (&i, r) in zero.iter().zip(replies) {
                out[i] = Some(match r {
                    Ok(Value::Int(0)) => Written::Vanished,
                    _ => Written::Exists,
                });
            }
        }
        Ok(())
    }

    /// `--delete-source` on one server: COPY and UNLINK in one script per key.
    async fn move_on_server(
        &self,
        items: &[Item],
        which: &[usize],
        out: &mut [Option<Written>],
        stats: &mut Stats,
    ) -> Result<(), KeysError> {
        let moves: Vec<(&[u8], &[u8], bool)> = which
            .iter()
            .map(|&i| {
                let item = &items[i];
                (
                    item.src.as_slice(),
                    item.dst.as_slice(),
                    item.action != Action::Create,
                )
            })
            .collect();
        self.store.check_lease(&self.scope).await?;
        let replies = move_on_server(&self.source, &moves, self.target_db()).await?;
        for (&i, reply) in which.iter().zip(replies) {
            out[i] = Some(match reply {
                Moved::Moved => {
                    stats.server_side_copies += 1;
                    Written::Moved
                }
                Moved::Exists => Written::Exists,
                Moved::Gone => Written::Vanished,
                Moved::Failed(e) => Written::Failed(format!("COPY: {e}")),
            });
        }
        Ok(())
    }

    /// Estimates the sizes of the items `which`: returns the ones small enough for one payload
    /// with their size, and the ones too big; vanished and failed items get their outcome in
    /// `out`.
    async fn sizes(
        &self,
        items: &[Item],
        which: &[usize],
        out: &mut [Option<Written>],
    ) -> Result<(Vec<(usize, u64)>, Vec<usize>), KeysError> {
        let sizes = memory_usages(&self.source, which.iter().map(|&i| &items[i].src)).await?;
        let mut small = Vec::new();
        let mut chunked = Vec::new();
        for (&i, size) in which.iter().zip(sizes) {
            match size {
                Ok(Value::Int(n)) if (n as u64) <= self.opts.max_payload => {
                    small.push((i, n as u64))
                }
                Ok(Value::Int(_)) => chunked.push(i),
                Ok(_) => out[i] = Some(Written::Vanished),
                Err(e) => out[i] = Some(Written::Failed(format!("MEMORY USAGE: {e}"))),
            }
        }
        Ok((small, chunked))
    }

    /// Reads expiry and DUMP payload of the items `group`; vanished and failed items get their
    /// outcome in `out`.
    async fn read_dumps(
        &self,
        items: &[Item],
        group: &[usize],
        out: &mut [Option<Written>],
    ) -> Result<Vec<Dumped>, KeysError> {
        let mut cmds = Vec::with_capacity(group.len() * 2);
        for &i in group {
            let src = &items[i].src;
            cmds.push((src.clone(), self.source.expiry_cmd(src)));
            cmds.push((src.clone(), cmd("DUMP").arg(src).clone()));
        }
        let now = now_ms();
        let replies = self.source.run(cmds).await?;
        let mut dumped = Vec::with_capacity(group.len());
        let mut replies = replies.into_iter();
        for &i in group {
            let (Some(expiry), Some(dump)) = (replies.next(), replies.next()) else {
                break;
            };
            let Some(expire_at) = self.source.expiry_from(&expiry, now) else {
                out[i] = Some(Written::Vanished);
                continue;
            };
            let payload = match dump {
                Ok(Value::BulkString(p)) => p,
                Ok(_) => {
                    out[i] = Some(Written::Vanished);
                    continue;
                }
                Err(e) => {
                    out[i] = Some(Written::Failed(format!("DUMP: {e}")));
                    continue;
                }
            };
            if expire_at.is_some_and(|at| at <= now_ms()) {
                out[i] = Some(Written::Vanished);
                continue;
            }
            dumped.push(Dumped {
                idx: i,
                expire_at,
                payload,
            });
        }
        Ok(dumped)
    }

    /// Restores every item on the target with the ledgered RESTORE script and counts what it
    /// did; returns the items for [`Batcher::decide`] and the regular path: new names that
    /// already existed, values too big for one payload, payloads the target refuses, and
    /// (with `--delete-source`) sources that changed while they were copied.
    async fn restore_ledgered(
        &self,
        items: Vec<Item>,
        stats: &mut Stats,
        per_rule: &mut PerRule,
        errors: &mut ErrorLog,
    ) -> Result<Vec<Item>, KeysError> {
        if items.is_empty() {
            return Ok(items);
        }
        let all: Vec<usize> = (0..items.len()).collect();
        let mut out: Vec<Option<Written>> = vec![None; items.len()];
        let (small, _too_big) = self.sizes(&items, &all, &mut out).await?;
        let mut items = items;
        for group in payload_groups(&small) {
            let dumped = self.read_dumps(&items, &group, &mut out).await?;
            let restores: Vec<LedgeredRestore> = dumped
                .iter()
                .map(|d| LedgeredRestore {
                    dst: &items[d.idx].dst,
                    src: &items[d.idx].src,
                    expire_at: d.expire_at,
                    payload: &d.payload,
                })
                .collect();
            let outcomes =
                restore_with_ledger(&self.target, &self.ledger_write(&[CREATED]), &restores)
                    .await?;
            let mut written = Vec::new();
            for (d, outcome) in dumped.iter().zip(outcomes) {
                out[d.idx] = match outcome {
                    LedgeredCopy::Created | LedgeredCopy::Redone => {
                        stats.bytes += d.payload.len() as u64;
                        written.push(d);
                        Some(Written::Done)
                    }
                    LedgeredCopy::Vanished => Some(Written::Vanished),
                    LedgeredCopy::Exists => None,
                    LedgeredCopy::Failed(e) if refuses_payload(&e) => {
                        tracing::debug!(
                            "the target refuses DUMP payloads; copying in chunks from now on"
                        );
                        self.ledgered_restore.store(false, Ordering::Relaxed);
                        None
                    }
                    LedgeredCopy::Failed(e) => Some(Written::Failed(format!("RESTORE: {e}"))),
                };
            }
            if self.opts.delete_source && !written.is_empty() {
                for (d, deleted) in written
                    .iter()
                    .zip(self.delete_copied_sources(&items, &written).await?)
                {
                    match deleted {
                        SourceDelete::Deleted => out[d.idx] = Some(Written::Moved),
                        SourceDelete::Gone => {}
                        // Changed since the copy: the regular path copies it again.
                        SourceDelete::Changed => {
                            out[d.idx] = None;
                            items[d.idx].action = Action::Redo(CREATED | SOURCE_DELETED);
                        }
                        SourceDelete::Failed(e) => {
                            out[d.idx] = Some(Written::Kept {
                                changed: false,
                                why: format!("copied, but deleting the source failed: {e}"),
                            })
                        }
                    }
                }
            }
        }
        Ok(self.count_written(items, out, stats, per_rule, errors))
    }

    /// Records that the sources of `copied` are deleted (so rollback re-creates them), then
    /// deletes each one that is unchanged since it was read.
    async fn delete_copied_sources(
        &self,
        items: &[Item],
        copied: &[&Dumped],
    ) -> Result<Vec<SourceDelete>, KeysError> {
        let intents: Vec<_> = copied
            .iter()
            .map(|d| {
                let item = &items[d.idx];
                (
                    item.dst.clone(),
                    ledger_value(item.action.flags(true), &item.src),
                )
            })
            .collect();
        self.store
            .ledger_put(&self.scope, LEDGER_CREATED, &intents)
            .await?;
        self.store.check_lease(&self.scope).await?;
        let checks: Vec<DeleteIfUnchanged> = copied
            .iter()
            .map(|d| DeleteIfUnchanged {
                key: &items[d.idx].src,
                witness: Witness::Payload(&d.payload),
                expire_at: d.expire_at,
            })
            .collect();
        Ok(delete_if_unchanged(&self.source, &checks).await?)
    }

    async fn write_by_dump(
        &self,
        items: &[Item],
        which: &[usize],
        out: &mut [Option<Written>],
        stats: &mut Stats,
    ) -> Result<(), KeysError> {
        let (small, chunked) = self.sizes(items, which, out).await?;
        for group in payload_groups(&small) {
            self.restore_group(items, &group, false, out, stats).await?;
        }
        // Values too big for one payload.
        for i in chunked {
            out[i] = Some(self.copy_chunked(&items[i], None, stats).await?);
        }
        Ok(())
    }

    /// DUMPs the items `group` and RESTOREs them under their new names (REPLACE for redone and
    /// overwritten items, or all with `replace`); with `--delete-source`, deletes each source
    /// unchanged since its DUMP and copies a changed one once more.
    async fn restore_group(
        &self,
        items: &[Item],
        group: &[usize],
        replace: bool,
        out: &mut [Option<Written>],
        stats: &mut Stats,
    ) -> Result<(), KeysError> {
        let dumped = self.read_dumps(items, group, out).await?;
        let mut restores = Vec::with_capacity(dumped.len());
        for d in &dumped {
            let item = &items[d.idx];
            stats.bytes += d.payload.len() as u64;
            let mut c = cmd("RESTORE");
            c.arg(&item.dst)
                .arg(d.expire_at.unwrap_or(0))
                .arg(d.payload.as_slice());
            if replace || item.action != Action::Create {
                c.arg("REPLACE");
            }
            if d.expire_at.is_some() {
                c.arg("ABSTTL");
            }
            restores.push((item.dst.clone(), c));
        }
        let replies = self.target.run(restores).await?;
        let mut restored = Vec::new();
        for (d, reply) in dumped.iter().zip(replies) {
            let i = d.idx;
            out[i] = Some(match reply {
                Ok(_) => {
                    restored.push(d);
                    Written::Done
                }
                Err(e) if e.code() == Some("BUSYKEY") => Written::Exists,
                Err(e) if is_payload_rejection(&e) => {
                    tracing::debug!(key = %display_key(&items[i].src), "target refused the DUMP payload; copying in chunks");
                    self.copy_chunked(&items[i], Some(d.expire_at), stats)
                        .await?
                }
                Err(e) => Written::Failed(format!("RESTORE: {e}")),
            });
        }
        if !self.opts.delete_source || restored.is_empty() {
            return Ok(());
        }
        let checks: Vec<DeleteIfUnchanged> = restored
            .iter()
            .map(|d| DeleteIfUnchanged {
                key: &items[d.idx].src,
                witness: Witness::Payload(&d.payload),
                expire_at: d.expire_at,
            })
            .collect();
        self.store.check_lease(&self.scope).await?;
        let mut changed = Vec::new();
        for (d, deleted) in restored
            .iter()
            .zip(delete_if_unchanged(&self.source, &checks).await?)
        {
            out[d.idx] = Some(match deleted {
                SourceDelete::Deleted => Written::Moved,
                SourceDelete::Gone => Written::Done,
                SourceDelete::Changed if !replace => {
                    changed.push(d.idx);
                    continue;
                }
                SourceDelete::Changed => Written::Kept {
                    changed: true,
                    why: changed_while_moved(),
                },
                SourceDelete::Failed(e) => Written::Kept {
                    changed: false,
                    why: format!("copied, but deleting the source failed: {e}"),
                },
            });
        }
        if !changed.is_empty() {
            Box::pin(self.restore_group(items, &changed, true, out, stats)).await?;
        }
        Ok(())
    }

    /// Copies one item element by element; `expire_at` is read from the source when `None`.
    /// The temporary key is recorded in the `tmp` ledger while the copy runs. With
    /// `--delete-source` the source is deleted only if, after the copy, it still equals the new
    /// key element by element (a chunked copy is no snapshot: a value changed and changed back
    /// meanwhile must not pass) and is unchanged from that comparison to the delete (its DUMP
    /// digest, taken before the comparison, checked in the deleting script); a changed one is
    /// copied once more, then kept.
    async fn copy_chunked(
        &self,
        item: &Item,
        expire_at: Option<Option<i64>>,
        stats: &mut Stats,
    ) -> Result<Written, KeysError> {
        let mut replace = item.action != Action::Create;
        let mut expire_at = expire_at;
        for attempt in 0..2 {
            let at = match expire_at.take() {
                Some(e) => e,
                None => {
                    let now = now_ms();
                    let r = self
                        .source
                        .query(&item.src, self.source.expiry_cmd(&item.src))
                        .await?;
                    match self.source.expiry_from(&r, now) {
                        Some(e) => e,
                        None if r.is_ok() => return Ok(Written::Vanished),
                        None => {
                            return Ok(Written::Failed(format!("reading the expiry: {r:?}")));
                        }
                    }
                }
            };
            let written = self.copy_chunked_once(item, at, replace, stats).await?;
            if !self.opts.delete_source || written != Written::Done {
                return Ok(written);
            }
            pausepoint("keys-after-chunked-copy");
            let digest = match source_digest(&self.source, &item.src).await? {
                Ok(Some(d)) => d,
                Ok(None) => return Ok(Written::Done),
                Err(e) => {
                    return Ok(Written::Kept {
                        changed: false,
                        why: format!("copied, but reading the source failed: {e}"),
                    });
                }
            };
            let kind = match self
                .source
                .query(&item.src, cmd("TYPE").arg(&item.src).clone())
                .await?
            {
                Ok(Value::SimpleString(t)) => t,
                Ok(Value::BulkString(t)) => String::from_utf8_lossy(&t).into_owned(),
                _ => String::new(),
            };
            let same = same_in_chunks(
                &self.source,
                &self.target,
                self.opts.chunk_size,
                &item.src,
                &item.dst,
                &kind,
            )
            .await?
                && (kind != "stream"
                    || stream_groups(&self.source, &item.src).await?
                        == stream_groups(&self.target, &item.dst).await?);
            let deleted = if same {
                let check = DeleteIfUnchanged {
                    key: &item.src,
                    witness: Witness::Sha1(&digest),
                    expire_at: at,
                };
                self.store.check_lease(&self.scope).await?;
                delete_if_unchanged(&self.source, &[check]).await?.pop()
            } else {
                Some(SourceDelete::Changed)
            };
            match deleted {
                Some(SourceDelete::Deleted) => return Ok(Written::Moved),
                Some(SourceDelete::Changed) if attempt == 0 => replace = true,
                Some(SourceDelete::Changed) => {
                    return Ok(Written::Kept {
                        changed: true,
                        why: changed_while_moved(),
                    });
                }
                Some(SourceDelete::Failed(e)) => {
                    return Ok(Written::Kept {
                        changed: false,
                        why: format!("copied, but deleting the source failed: {e}"),
                    });
                }
                Some(SourceDelete::Gone) | None => return Ok(Written::Done),
            }
        }
        unreachable!("the second attempt returns")
    }

    async fn copy_chunked_once(
        &self,
        item: &Item,
        expire_at: Option<i64>,
        replace: bool,
        stats: &mut Stats,
    ) -> Result<Written, KeysError> {
        // The token in the name: a run that lost its lease never writes into the temporary
        // key of the run that took over.
        let tag = format!("{}-{}", self.opts.run_name, self.fence);
        let tmp = chunk_tmp_key(&item.dst, &tag, self.target.is_cluster());
        if let Some(tmp) = &tmp {
            self.store
                .ledger_put(&self.scope, LEDGER_TMP, &[(tmp.clone(), item.dst.clone())])
                .await?;
        }
        // Checked in the renaming script when the store lives on the target, else read just
        // before the rename (a file store: checked before the copy starts).
        self.store.check_lease(&self.scope).await?;
        let fence_key = RedisCheckpointStore::fence_key(&self.scope);
        let fence = self
            .store
            .redis_endpoint()
            .filter(|_| self.fence != 0)
            .map(|endpoint| ChunkFence {
                endpoint,
                key: &fence_key,
                token: self.fence,
            });
        let copied = copy_in_chunks_fenced(
            &self.source,
            &item.src,
            &self.target,
            &item.dst,
            expire_at,
            replace,
            self.opts.chunk_size,
            &tag,
            fence,
        )
        .await;
        let written = match copied {
            Ok(ChunkedCopy::Copied { bytes }) => {
                stats.bytes += bytes;
                stats.chunked += 1;
                Written::Done
            }
            Ok(ChunkedCopy::Vanished) => Written::Vanished,
            Ok(ChunkedCopy::Exists) => Written::Exists,
            Err(ChunkError::Key(e)) => Written::Failed(format!("chunked copy: {e}")),
            Err(ChunkError::Conn(e)) => return Err(e.into()),
        };
        if let Some(tmp) = tmp {
            self.store
                .ledger_remove(&self.scope, LEDGER_TMP, &[tmp])
                .await?;
        }
        Ok(written)
    }
}

/// What the consumer groups of a stream have reached (name, consumers, pending entries, last
/// delivered id, entries read), for comparing a copy with its source: the entries alone do not
/// show a group created, an acknowledgement or a delivery.
async fn stream_groups(endpoint: &RedisEndpoint, key: &[u8]) -> Result<Vec<String>, KeysError> {
    const FIELDS: [&str; 5] = [
        "name",
        "consumers",
        "pending",
        "last-delivered-id",
        "entries-read",
    ];
    let reply = endpoint
        .query(key, cmd("XINFO").arg("GROUPS").arg(key).clone())
        .await?;
    let groups = match reply {
        Ok(Value::Array(groups)) => groups,
        _ => return Ok(Vec::new()),
    };
    let mut out: Vec<String> = groups
        .into_iter()
        .map(|group| {
            let pairs: Vec<(Value, Value)> = match group {
                Value::Map(m) => m,
                Value::Array(a) => {
                    let mut it = a.into_iter();
                    std::iter::from_fn(|| Some((it.next()?, it.next()?))).collect()
                }
                _ => Vec::new(),
            };
            let text = |v: &Value| match v {
                Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
                Value::SimpleString(s) => s.clone(),
                other => format!("{other:?}"),
            };
            let mut fields: Vec<String> = pairs
                .iter()
                .filter(|(k, _)| FIELDS.contains(&text(k).as_str()))
                .map(|(k, v)| format!("{}={}", text(k), text(v)))
                .collect();
            fields.sort();
            fields.join(" ")
        })
        .collect();
    out.sort();
    Ok(out)
}

fn changed_while_moved() -> String {
    "an application changed it twice while it was being moved: kept under its old name (the new name holds an earlier value); run apply again to copy its latest value".to_string()
}

/// `MEMORY USAGE key SAMPLES 1` of each key, pipelined: the estimate that decides whether a
/// value goes in one payload.
async fn memory_usages<'a>(
    endpoint: &RedisEndpoint,
    keys: impl Iterator<Item = &'a Vec<u8>>,
) -> Result<Vec<ferry_connectors::redis::RedisResult<Value>>, KeysError> {
    let cmds = keys
        .map(|key| {
            let mut c = cmd("MEMORY");
            c.arg("USAGE").arg(key).arg("SAMPLES").arg(1);
            (key.clone(), c)
        })
        .collect();
    Ok(endpoint.run(cmds).await?)
}
