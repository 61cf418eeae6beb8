//! Decide: what each item of a batch becomes. New names are claimed between the batches in
//! flight (a clash that appeared after the check for clashes), then the names that exist go by
//! whose they are: redone when this run wrote them from the same source, a clash when from
//! another, else the conflict policy (`--on-conflict`).

use ferry_connectors::redis::{Cmd, Value, cmd};
use ferry_core::checkpoint::CheckpointStore;

use super::batch::Batcher;
use super::map::{Action, Item};
use super::record::Tally;
use crate::jobs::keys::clash::OnCollision;
use crate::jobs::keys::{KeysError, LEDGER_CREATED, OnConflict, parse_ledger_value};
use ferry_core::report::display_key;

/// `EXISTS key`.
pub(super) fn exists_cmd(key: &[u8]) -> Cmd {
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

impl Batcher {
    /// Claims the new names of `items` for this batch. Two old keys with one new name in the
    /// batches being written (a clash that appeared after the check for clashes): the first
    /// claims the name, the others are counted as clashes and dropped. Returns the items kept
    /// and the names claimed, to [`release`](Batcher::release) once the batch is written.
    pub(super) fn claim(&self, items: Vec<Item>, tally: &mut Tally) -> (Vec<Item>, Vec<Vec<u8>>) {
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
            self.count_clash(&item, &other, tally);
        }
        (kept, claims)
    }

    /// Releases the new names [`claim`](Batcher::claim) took, once the batch is written.
    pub(super) fn release(&self, claims: &[Vec<u8>]) {
        if !claims.is_empty() {
            let mut claimed = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
            for dst in claims {
                claimed.remove(dst);
            }
        }
    }

    /// Checks which new names exist and decides: a name this run wrote from the same source is
    /// redone; one it wrote from another source is a clash (never overwritten); any other goes
    /// by the conflict policy.
    pub(super) async fn decide(
        &self,
        items: Vec<Item>,
        tally: &mut Tally,
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
            match ledger.as_deref().map(parse_ledger_value) {
                Some((flags, src)) if src == item.src.as_slice() => {
                    item.action = Action::Redo(flags);
                }
                Some((_, other)) => {
                    // Another old key took this name in this run (it appeared after the check
                    // for clashes): never overwrite it.
                    drop[i] = true;
                    let other = other.to_vec();
                    self.count_clash(item, &other, tally);
                }
                None => drop[i] = !self.apply_conflict_policy(item, tally),
            }
        }
        let mut keep = drop.into_iter();
        items.retain(|_| !keep.next().unwrap_or(false));
        Ok(items)
    }

    /// Applies `--on-conflict` to an item whose new name exists and is not this run's; returns
    /// whether the item goes on (`overwrite`), else counts it.
    fn apply_conflict_policy(&self, item: &mut Item, tally: &mut Tally) -> bool {
        let rule = tally.per_rule.entry(self.rule_name(item.rule)).or_default();
        match self.opts.on_conflict {
            OnConflict::Overwrite => {
                item.action = Action::Overwrite;
                true
            }
            OnConflict::Skip => {
                tally.stats.skipped_existing += 1;
                rule.skipped_existing += 1;
                false
            }
            OnConflict::Fail => {
                tally.stats.failed += 1;
                rule.failed += 1;
                tally
                    .errors
                    .push(display_key(&item.src), exists_error(&item.dst));
                false
            }
        }
    }

    /// Counts an old key whose new name another old key (`other`) takes in this run.
    pub(super) fn count_clash(&self, item: &Item, other: &[u8], tally: &mut Tally) {
        if self.opts.on_collision == OnCollision::FirstWins {
            tally.stats.collisions += 1;
            return;
        }
        tally.stats.failed += 1;
        tally
            .per_rule
            .entry(self.rule_name(item.rule))
            .or_default()
            .failed += 1;
        tally.errors.push(
            display_key(&item.src),
            format!(
                "its new name {} is written by this run from {}; left under its old name",
                display_key(&item.dst),
                display_key(other)
            ),
        );
    }
}
