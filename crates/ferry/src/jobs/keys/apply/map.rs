//! Map: the keys of a SCAN batch to the items apply writes, each old name with its new name
//! and rule. Keys of the checkpoint store, keys no rule matches, keys already under their new
//! name and old keys held back by `--on-collision` are counted here and go no further.

use super::batch::Batcher;
use super::record::Tally;
use crate::jobs::keys::clash::HeldBack;
use crate::jobs::keys::metrics::KeysMetric;
use crate::jobs::keys::{CREATED, OVERWROTE, SOURCE_DELETED, is_store_key, ledger_value};
use ferry_core::report::display_key;

/// What apply does with an item's new name; [`Batcher::decide`] changes it from `Create` when
/// the name exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Action {
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
    pub(super) fn flags(self, delete_source: bool) -> u8 {
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
pub(super) struct Item {
    /// The old name.
    pub(super) src: Vec<u8>,
    /// The new name.
    pub(super) dst: Vec<u8>,
    /// The index of the rule that maps it.
    pub(super) rule: usize,
    /// What is done with the new name.
    pub(super) action: Action,
}

impl Item {
    /// Its `created` ledger entry: new name → flags + source name.
    pub(super) fn ledger_entry(&self, delete_source: bool) -> (Vec<u8>, Vec<u8>) {
        (
            self.dst.clone(),
            ledger_value(self.action.flags(delete_source), &self.src),
        )
    }
}

impl Batcher {
    /// Maps the scanned `keys` to items (all `Create`), counting every key scanned, matched,
    /// unmatched, already under its new name, or held back by a clash.
    pub(super) fn map(&self, keys: Vec<Vec<u8>>, tally: &mut Tally) -> Vec<Item> {
        let Tally {
            stats,
            per_rule,
            errors,
        } = tally;
        let mut items = Vec::with_capacity(keys.len());
        for key in keys {
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
        metrics::counter!(KeysMetric::ScannedTotal.name(), "job" => "keys")
            .increment(stats.scanned);
        items
    }
}
