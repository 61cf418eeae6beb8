//! `ferry keys apply`: copy every matched key to its new name, keeping type, value and TTL.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use ferry_connectors::redis::{
    ChunkError, ChunkedCopy, Cmd, LedgeredCopy, LedgeredRestore, RedisEndpoint, RedisError, Value,
    cmd, copy_in_chunks, copy_with_ledger, key_slot, restore_with_ledger,
};
use ferry_core::checkpoint::{CheckpointStore, now_ms};
use ferry_core::rules::RuleSet;
use ferry_core::telemetry::Metric;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::scan::{ScanBatch, estimate_keys, scan_batches};
use super::{
    CREATED, KeysContext, KeysError, KeysOptions, KeysState, LEDGER_BACKUP, LEDGER_CREATED,
    OVERWROTE, OnConflict, PerRule, SOURCE_DELETED, Stats, add_per_rule, is_store_key,
    ledger_value,
};
use crate::observe::Progress;
use crate::report::{ErrorLog, display_key, rfc3339};
use crate::runtime::LeaseGuard;
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
    let result = run(ctx, &stop).await;
    lease.release().await;
    result
}

async fn run(ctx: &KeysContext, stop: &CancellationToken) -> Result<ApplyOutcome, KeysError> {
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
    if resumed {
        tracing::info!(run = %ctx.opts.run_name, done = state.stats.scanned, "resuming an interrupted run");
    }
    state.state = "running".into();
    save(ctx, &mut state).await?;

    let batcher = Batcher::new(ctx);
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
/// source, new keys and the checkpoint store in one database, and no `--delete-source` (whose
/// ledger flags are written per key).
fn uses_ledgered_copy(ctx: &KeysContext) -> bool {
    ctx.same_server
        && !ctx.source.is_cluster()
        && ctx.source.version() >= (6, 2)
        && ctx.target.db() == ctx.source.db()
        && !ctx.opts.delete_source
        && ctx
            .store
            .redis_endpoint()
            .is_some_and(|s| s.same_server(&ctx.source) && s.db() == ctx.source.db())
}

/// Whether apply restores with [`restore_with_ledger`]: another server as target, standalone,
/// holding the checkpoint store in the target's database, and no `--delete-source`.
fn uses_ledgered_restore(ctx: &KeysContext) -> bool {
    !ctx.same_server
        && !ctx.target.is_cluster()
        && !ctx.opts.delete_source
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
    /// An earlier attempt of this run created it: write it again (REPLACE).
    Redo(u8),
    /// It exists and the policy is `overwrite`.
    Overwrite,
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
    Done,
    Vanished,
    Exists,
    Failed(String),
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

impl Batcher {
    fn new(ctx: &KeysContext) -> Self {
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
        }
    }

    fn rule_name(&self, idx: usize) -> String {
        self.rules.rules()[idx].name.clone()
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
                    per_rule.entry(self.rule_name(rule)).or_default().matched += 1;
                    items.push(Item {
                        src: key,
                        dst,
                        rule,
                        action: Action::Create,
                    });
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

        let mut migrated = Vec::new();
        let items = if self.ledgered {
            self.copy_ledgered(items, &mut stats, &mut per_rule, &mut errors)
                .await?
        } else if self.ledgered_restore.load(Ordering::Relaxed) {
            self.restore_ledgered(items, &mut stats, &mut per_rule, &mut errors)
                .await?
        } else {
            items
        };
        let items = self
            .decide(items, &mut stats, &mut per_rule, &mut errors)
            .await?;
        self.backup_overwritten(&items).await?;
        let intents: Vec<_> = items
            .iter()
            .filter_map(|i| match i.action {
                Action::Create => Some((i.dst.clone(), ledger_value(CREATED, &i.src))),
                Action::Overwrite => {
                    Some((i.dst.clone(), ledger_value(CREATED | OVERWROTE, &i.src)))
                }
                Action::Redo(_) => None,
            })
            .collect();
        self.store
            .ledger_put(&self.scope, LEDGER_CREATED, &intents)
            .await?;

        let outcomes = self.write(&items, &mut stats).await?;

        let mut undo = Vec::new();
        for (item, outcome) in items.into_iter().zip(outcomes) {
            let rule = per_rule.entry(self.rule_name(item.rule)).or_default();
            match outcome {
                Written::Done => {
                    stats.migrated += 1;
                    rule.migrated += 1;
                    if item.action == Action::Overwrite {
                        stats.overwritten += 1;
                    }
                    migrated.push(item);
                    continue;
                }
                Written::Vanished => stats.vanished += 1,
                Written::Exists => {
                    stats.skipped_existing += 1;
                    rule.skipped_existing += 1;
                }
                Written::Failed(e) => {
                    stats.failed += 1;
                    rule.failed += 1;
                    errors.push(display_key(&item.src), e);
                }
            }
            if matches!(item.action, Action::Create | Action::Overwrite) {
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
        if self.opts.delete_source && !migrated.is_empty() {
            stats.source_deleted += self.delete_sources(&migrated).await?;
        }
        for (outcome, n) in [
            ("migrated", stats.migrated),
            ("skipped_existing", stats.skipped_existing),
            ("vanished", stats.vanished),
            ("failed", stats.failed),
            ("unmatched", stats.unmatched),
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

    /// Copies every item with the ledgered COPY script and counts what it did; returns the
    /// items whose new name already existed, for [`Batcher::decide`] and the regular path (an
    /// earlier attempt's key still in the ledger's journal, or a key the policy decides).
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
        let pairs: Vec<(&[u8], &[u8])> = items
            .iter()
            .map(|i| (i.src.as_slice(), i.dst.as_slice()))
            .collect();
        let outcomes = copy_with_ledger(
            &self.source,
            &self.scope,
            LEDGER_CREATED,
            &[CREATED],
            &pairs,
        )
        .await?;
        let written = outcomes
            .into_iter()
            .map(|outcome| match outcome {
                LedgeredCopy::Created | LedgeredCopy::Redone => {
                    stats.server_side_copies += 1;
                    Some(Written::Done)
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
            let rule = per_rule.entry(self.rule_name(item.rule)).or_default();
            match outcome {
                Some(Written::Done) => {
                    stats.migrated += 1;
                    rule.migrated += 1;
                }
                Some(Written::Vanished) => stats.vanished += 1,
                Some(Written::Failed(e)) => {
                    stats.failed += 1;
                    rule.failed += 1;
                    errors.push(display_key(&item.src), e);
                }
                Some(Written::Exists) | None => rest.push(item),
            }
        }
        rest
    }

    /// Checks which new names exist and applies the conflict policy.
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
        let mut items = items;
        for (&i, ledger) in existing.iter().zip(ours) {
            let item = &mut items[i];
            if let Some(v) = ledger {
                item.action = Action::Redo(v.first().copied().unwrap_or(CREATED));
                continue;
            }
            let rule = per_rule.entry(self.rule_name(item.rule)).or_default();
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

    /// Saves the current value of every key about to be overwritten into the backup ledger.
    async fn backup_overwritten(&self, items: &[Item]) -> Result<(), KeysError> {
        let victims: Vec<&Item> = items
            .iter()
            .filter(|i| i.action == Action::Overwrite)
            .collect();
        if victims.is_empty() {
            return Ok(());
        }
        let mut cmds = Vec::new();
        for v in &victims {
            cmds.push((v.dst.clone(), self.target.expiry_cmd(&v.dst)));
            cmds.push((v.dst.clone(), cmd("DUMP").arg(&v.dst).clone()));
        }
        let now = now_ms();
        let replies = self.target.run(cmds).await?;
        let mut entries = Vec::new();
        for (v, pair) in victims.iter().zip(replies.chunks(2)) {
            if let (Some(expiry), Ok(Value::BulkString(payload))) =
                (self.target.expiry_from(&pair[0], now), &pair[1])
            {
                let at: i64 = expiry.unwrap_or(-1);
                let mut value = at.to_le_bytes().to_vec();
                value.extend_from_slice(payload);
                entries.push((v.dst.clone(), value));
            }
        }
        self.store
            .ledger_put(&self.scope, LEDGER_BACKUP, &entries)
            .await?;
        Ok(())
    }

    fn can_copy_server_side(&self, item: &Item) -> bool {
        self.same_server
            && self.source.version() >= (6, 2)
            && (!self.source.is_cluster() || key_slot(&item.src) == key_slot(&item.dst))
    }

    /// Writes every item: server-side COPY where possible, else DUMP/RESTORE, else chunks.
    async fn write(&self, items: &[Item], stats: &mut Stats) -> Result<Vec<Written>, KeysError> {
        let mut out: Vec<Option<Written>> = vec![None; items.len()];
        let (copy, dump): (Vec<usize>, Vec<usize>) =
            (0..items.len()).partition(|&i| self.can_copy_server_side(&items[i]));
        if !copy.is_empty() {
            self.write_by_copy(items, &copy, &mut out, stats).await?;
        }
        if !dump.is_empty() {
            self.write_by_dump(items, &dump, &mut out, stats).await?;
        }
        Ok(out
            .into_iter()
            .map(|o| o.unwrap_or(Written::Failed("not written".into())))
            .collect())
    }

    async fn write_by_copy(
        &self,
        items: &[Item],
        which: &[usize],
        out: &mut [Option<Written>],
        stats: &mut Stats,
    ) -> Result<(), KeysError> {
        let target_db = self.target.db();
        let cmds = which
            .iter()
            .map(|&i| {
                let item = &items[i];
                let mut c = cmd("COPY");
                c.arg(&item.src).arg(&item.dst);
                if target_db != self.source.db() {
                    c.arg("DB").arg(target_db);
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

    /// Reads what DUMP/RESTORE needs of the items `which`: sizes first, so that a huge value is
    /// never DUMPed in one piece, then expiry and payload. Returns the values read and the items
    /// too big for one payload; vanished and failed items get their outcome in `out`.
    async fn read_dumps(
        &self,
        items: &[Item],
        which: &[usize],
        out: &mut [Option<Written>],
    ) -> Result<(Vec<Dumped>, Vec<usize>), KeysError> {
        let sizes = self
            .source
            .run(
                which
                    .iter()
                    .map(|&i| {
                        let src = &items[i].src;
                        (
                            src.clone(),
                            cmd("MEMORY")
                                .arg("USAGE")
                                .arg(src)
                                .arg("SAMPLES")
                                .arg(1)
                                .clone(),
                        )
                    })
                    .collect(),
            )
            .await?;
        let mut small = Vec::new();
        let mut chunked = Vec::new();
        for (&i, size) in which.iter().zip(sizes) {
            match size {
                Ok(Value::Int(n)) if (n as u64) <= self.opts.max_payload => small.push(i),
                Ok(Value::Int(_)) => chunked.push(i),
                Ok(_) => out[i] = Some(Written::Vanished),
                Err(e) => out[i] = Some(Written::Failed(format!("MEMORY USAGE: {e}"))),
            }
        }
        let mut cmds = Vec::with_capacity(small.len() * 2);
        for &i in &small {
            let src = &items[i].src;
            cmds.push((src.clone(), self.source.expiry_cmd(src)));
            cmds.push((src.clone(), cmd("DUMP").arg(src).clone()));
        }
        let now = now_ms();
        let replies = self.source.run(cmds).await?;
        let mut dumped = Vec::with_capacity(small.len());
        let mut replies = replies.into_iter();
        for &i in &small {
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
        Ok((dumped, chunked))
    }

    /// Restores every item on the target with the ledgered RESTORE script and counts what it
    /// did; returns the items for [`Batcher::decide`] and the regular path: new names that
    /// already existed, values too big for one payload, payloads the target refuses.
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
        let (dumped, _too_big) = self.read_dumps(&items, &all, &mut out).await?;
        let restores: Vec<LedgeredRestore> = dumped
            .iter()
            .map(|d| LedgeredRestore {
                dst: &items[d.idx].dst,
                src: &items[d.idx].src,
                expire_at: d.expire_at,
                payload: &d.payload,
            })
            .collect();
        let outcomes = restore_with_ledger(
            &self.target,
            &self.scope,
            LEDGER_CREATED,
            &[CREATED],
            &restores,
        )
        .await?;
        for (d, outcome) in dumped.iter().zip(outcomes) {
            out[d.idx] = match outcome {
                LedgeredCopy::Created | LedgeredCopy::Redone => {
                    stats.bytes += d.payload.len() as u64;
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
        Ok(self.count_written(items, out, stats, per_rule, errors))
    }

    async fn write_by_dump(
        &self,
        items: &[Item],
        which: &[usize],
        out: &mut [Option<Written>],
        stats: &mut Stats,
    ) -> Result<(), KeysError> {
        let (dumped, chunked) = self.read_dumps(items, which, out).await?;
        let mut restores = Vec::with_capacity(dumped.len());
        let mut restored = Vec::with_capacity(dumped.len());
        for Dumped {
            idx: i,
            expire_at,
            payload,
        } in dumped
        {
            let item = &items[i];
            stats.bytes += payload.len() as u64;
            let mut c = cmd("RESTORE");
            c.arg(&item.dst)
                .arg(expire_at.unwrap_or(0))
                .arg(payload.as_slice());
            if item.action != Action::Create {
                c.arg("REPLACE");
            }
            if expire_at.is_some() {
                c.arg("ABSTTL");
            }
            restores.push((item.dst.clone(), c));
            restored.push((i, expire_at));
        }
        let replies = self.target.run(restores).await?;
        for ((i, expire_at), reply) in restored.into_iter().zip(replies) {
            out[i] = Some(match reply {
                Ok(_) => Written::Done,
                Err(e) if e.code() == Some("BUSYKEY") => Written::Exists,
                Err(e) if is_payload_rejection(&e) => {
                    tracing::debug!(key = %display_key(&items[i].src), "target refused the DUMP payload; copying in chunks");
                    self.copy_chunked(&items[i], Some(expire_at), stats).await?
                }
                Err(e) => Written::Failed(format!("RESTORE: {e}")),
            });
        }
        // Values too big for one payload.
        for i in chunked {
            out[i] = Some(self.copy_chunked(&items[i], None, stats).await?);
        }
        Ok(())
    }

    /// Copies one item element by element; `expire_at` is read from the source when `None`.
    async fn copy_chunked(
        &self,
        item: &Item,
        expire_at: Option<Option<i64>>,
        stats: &mut Stats,
    ) -> Result<Written, KeysError> {
        let expire_at = match expire_at {
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
                    None => return Ok(Written::Failed(format!("reading the expiry: {r:?}"))),
                }
            }
        };
        let replace = item.action != Action::Create;
        match copy_in_chunks(
            &self.source,
            &item.src,
            &self.target,
            &item.dst,
            expire_at,
            replace,
            self.opts.chunk_size,
        )
        .await
        {
            Ok(ChunkedCopy::Copied { bytes }) => {
                stats.bytes += bytes;
                stats.chunked += 1;
                Ok(Written::Done)
            }
            Ok(ChunkedCopy::Vanished) => Ok(Written::Vanished),
            Ok(ChunkedCopy::Exists) => Ok(Written::Exists),
            Err(ChunkError::Key(e)) => Ok(Written::Failed(format!("chunked copy: {e}"))),
            Err(ChunkError::Conn(e)) => Err(e.into()),
        }
    }

    /// Records the deletion intent, then deletes the sources of migrated keys.
    async fn delete_sources(&self, migrated: &[Item]) -> Result<u64, KeysError> {
        let intents: Vec<_> = migrated
            .iter()
            .map(|i| {
                let flags = match i.action {
                    Action::Create => CREATED,
                    Action::Overwrite => CREATED | OVERWROTE,
                    Action::Redo(f) => f,
                };
                (i.dst.clone(), ledger_value(flags | SOURCE_DELETED, &i.src))
            })
            .collect();
        self.store
            .ledger_put(&self.scope, LEDGER_CREATED, &intents)
            .await?;
        let replies = self
            .source
            .run(
                migrated
                    .iter()
                    .map(|i| (i.src.clone(), cmd("UNLINK").arg(&i.src).clone()))
                    .collect(),
            )
            .await?;
        Ok(replies
            .iter()
            .filter(|r| matches!(r, Ok(Value::Int(1))))
            .count() as u64)
    }
}
