//! Record: what apply writes down besides the keys. Per batch, the `created` ledger entry of
//! every key before it is written, the counts of what each write did and the withdrawal of the
//! entries of keys that were not written; per run, the checkpoint state.

use std::time::Instant;

use chrono::Utc;
use ferry_core::checkpoint::CheckpointStore;
use ferry_core::telemetry::Metric;

use super::batch::Batcher;
use super::map::{Action, Item};
use super::write::Written;
use crate::jobs::keys::metrics::KeysMetric;
use crate::jobs::keys::{
    KeysContext, KeysError, KeysState, LEDGER_BACKUP, LEDGER_CREATED, PerRule, Stats,
};
use ferry_core::report::{ErrorLog, display_key, rfc3339};

/// What a batch did so far: its counts, per rule, and its failed keys.
#[derive(Debug, Default)]
pub(super) struct Tally {
    /// Counts.
    pub(super) stats: Stats,
    /// Counts per rule.
    pub(super) per_rule: PerRule,
    /// Failed keys.
    pub(super) errors: ErrorLog,
}

impl Tally {
    /// Adds the batch's counts, bytes and duration to the metrics.
    pub(super) fn record_metrics(&self, started: Instant) {
        let stats = &self.stats;
        for (outcome, n) in [
            ("migrated", stats.migrated),
            ("skipped_existing", stats.skipped_existing),
            ("vanished", stats.vanished),
            ("failed", stats.failed),
            ("unmatched", stats.unmatched),
            ("collision", stats.collisions),
        ] {
            metrics::counter!(KeysMetric::ProcessedTotal.name(), "job" => "keys", "outcome" => outcome)
                .increment(n);
        }
        metrics::counter!(KeysMetric::BytesTotal.name(), "job" => "keys").increment(stats.bytes);
        metrics::histogram!(Metric::BatchDurationSeconds.name(), "job" => "keys", "stage" => "apply")
            .record(started.elapsed().as_secs_f64());
    }
}

impl Batcher {
    /// Records every item about to be written in the `created` ledger (a redone item only
    /// with `--delete-source`, which adds its flag): a crash during the write leaves keys
    /// rollback and a resumed apply know.
    pub(super) async fn record_intents(&self, items: &[Item]) -> Result<(), KeysError> {
        let delete_source = self.opts.delete_source;
        let intents: Vec<_> = items
            .iter()
            .filter(|i| delete_source || !matches!(i.action, Action::Redo(_)))
            .map(|i| i.ledger_entry(delete_source))
            .collect();
        self.store
            .ledger_put(&self.scope, LEDGER_CREATED, &intents)
            .await?;
        Ok(())
    }

    /// Counts what each write did, then withdraws the `created` and `backup` entries of the
    /// keys that were not written, so rollback and verify skip them.
    pub(super) async fn record_outcomes(
        &self,
        items: Vec<Item>,
        outcomes: Vec<Written>,
        tally: &mut Tally,
    ) -> Result<(), KeysError> {
        let mut undo = Vec::new();
        for (item, outcome) in items.into_iter().zip(outcomes) {
            let wrote = outcome.wrote();
            self.count(&item, outcome, tally);
            if !wrote && matches!(item.action, Action::Create | Action::Overwrite) {
                undo.push(item.dst);
            }
        }
        self.store
            .ledger_remove(&self.scope, LEDGER_CREATED, &undo)
            .await?;
        self.store
            .ledger_remove(&self.scope, LEDGER_BACKUP, &undo)
            .await?;
        Ok(())
    }

    /// Counts the items a ledgered script wrote (or found vanished, or failed); returns the
    /// others (`None` or `Exists`), which go on to [`Batcher::decide`] and the regular path.
    pub(super) fn count_written(
        &self,
        items: Vec<Item>,
        written: Vec<Option<Written>>,
        tally: &mut Tally,
    ) -> Vec<Item> {
        let mut rest = Vec::new();
        for (item, outcome) in items.into_iter().zip(written) {
            match outcome {
                Some(Written::Exists) | None => rest.push(item),
                Some(outcome) => self.count(&item, outcome, tally),
            }
        }
        rest
    }

    /// Counts one item's outcome.
    fn count(&self, item: &Item, outcome: Written, tally: &mut Tally) {
        let Tally {
            stats,
            per_rule,
            errors,
        } = tally;
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

/// Saves the run's checkpoint state (its SCAN cursors and counts).
pub(super) async fn save(ctx: &KeysContext, state: &mut KeysState) -> Result<(), KeysError> {
    state.updated_at = rfc3339(Utc::now());
    let bytes = serde_json::to_vec(state).expect("state serialises");
    ctx.store.save(&ctx.scope, &bytes).await?;
    metrics::counter!(Metric::CheckpointsSavedTotal.name(), "job" => "keys").increment(1);
    Ok(())
}
