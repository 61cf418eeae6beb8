//! One SCAN batch on its way through the stages of apply: [`Batcher`] holds what every batch
//! shares, [`Batcher::process`] calls the stages in order.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use ferry_connectors::redis::{LedgerWrite, RedisEndpoint};
use ferry_core::jobs::keys::rules::RuleSet;

use super::record::Tally;
use crate::jobs::keys::clash::ClashResolution;
use crate::jobs::keys::scan::ScanBatch;
use crate::jobs::keys::{
    KeysContext, KeysError, KeysOptions, KeysState, LEDGER_CREATED, add_per_rule,
};
use crate::store::AnyStore;
use ferry_core::report::ErrorLog;

/// Processes batches: the shared, cheaply cloned parts of the context.
#[derive(Debug, Clone)]
pub(super) struct Batcher {
    pub(super) source: Arc<RedisEndpoint>,
    pub(super) target: Arc<RedisEndpoint>,
    pub(super) rules: Arc<RuleSet>,
    pub(super) store: Arc<AnyStore>,
    pub(super) scope: Arc<str>,
    pub(super) opts: Arc<KeysOptions>,
    pub(super) same_server: bool,
    /// Whether new keys are copied by the ledgered COPY script (see
    /// [`Batcher::write_by_script`]).
    pub(super) ledgered: bool,
    /// Whether new keys are restored by the ledgered RESTORE script on the target (see
    /// [`Batcher::write_by_script`]); turned off for the rest of the run once the target
    /// refuses a payload (a DUMP from a newer server: those go in chunks, by the regular path).
    pub(super) ledgered_restore: Arc<AtomicBool>,
    pub(super) skip_prefix: Option<Arc<[u8]>>,
    /// Old keys held back because they clash with others (`--on-collision`).
    pub(super) clashes: Arc<ClashResolution>,
    /// The run lease's fencing token, checked by the ledgered scripts.
    pub(super) fence: u64,
    /// New names being written on the regular path by the batches in flight, with their
    /// sources: two old keys never race for one name between its check and its write.
    pub(super) in_flight: Arc<Mutex<HashMap<Vec<u8>, Vec<u8>>>>,
}

impl Batcher {
    pub(super) fn new(ctx: &KeysContext, clashes: ClashResolution, fence: u64) -> Self {
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

    /// Runs one batch through every stage, in order: map the keys to their new names, write
    /// what the ledgered scripts can, decide what the others become, back up what `overwrite`
    /// replaces, record the intents, write, record what the writes did.
    pub(super) async fn process(&self, batch: ScanBatch) -> Result<BatchDone, KeysError> {
        let started = Instant::now();
        let mut tally = Tally::default();
        let items = self.map(batch.keys, &mut tally);
        let items = self.write_by_script(items, &mut tally).await?;
        let (items, claims) = self.claim(items, &mut tally);
        let items = self.decide(items, &mut tally).await?;
        let items = self.backup_overwritten(items, &mut tally).await?;
        self.record_intents(&items).await?;
        let outcomes = self.write(&items, &mut tally.stats).await?;
        self.record_outcomes(items, outcomes, &mut tally).await?;
        self.release(&claims);
        tally.record_metrics(started);
        Ok(BatchDone {
            node: batch.node,
            cursor_after: batch.cursor_after,
            tally,
        })
    }

    pub(super) fn rule_name(&self, idx: usize) -> String {
        self.rules.rules()[idx].name.clone()
    }

    /// How the ledgered scripts record the keys they write in the `created` ledger.
    pub(super) fn ledger_write<'a>(&'a self, value_prefix: &'a [u8]) -> LedgerWrite<'a> {
        LedgerWrite {
            scope: &self.scope,
            ledger: LEDGER_CREATED,
            value_prefix,
            fence: self.fence,
        }
    }
}

/// Whether apply copies with [`copy_with_ledger`](ferry_connectors::redis::copy_with_ledger):
/// one standalone server (Redis ≥ 6.2) holding source, new keys and the checkpoint store in one
/// database. With `--delete-source` the script moves each key (`RENAMENX`), so the copy and the
/// delete are one step.
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

/// Whether apply restores with
/// [`restore_with_ledger`](ferry_connectors::redis::restore_with_ledger): another server as
/// target, standalone, holding the checkpoint store in the target's database.
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
pub(super) struct BatchDone {
    node: String,
    cursor_after: u64,
    /// Its counts and errors.
    pub(super) tally: Tally,
}

impl BatchDone {
    /// Adds the batch's counts and errors to the run and advances its master's cursor.
    pub(super) fn add_to(self, state: &mut KeysState, errors: &mut ErrorLog) {
        state.stats.add(&self.tally.stats);
        add_per_rule(&mut state.per_rule, &self.tally.per_rule);
        errors.extend(self.tally.errors);
        state.cursors.insert(self.node.clone(), self.cursor_after);
        if self.cursor_after == 0 && !state.finished_nodes.contains(&self.node) {
            state.finished_nodes.push(self.node);
        }
    }
}
