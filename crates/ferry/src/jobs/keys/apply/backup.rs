//! Back up: the current value of every key `--on-conflict overwrite` is about to replace goes
//! into the `backup` ledger before anything is written, so that rollback can give it back.

use ferry_connectors::redis::{Value, chunk_tmp_key, cmd};
use ferry_core::checkpoint::{CheckpointStore, now_ms};

use super::batch::Batcher;
use super::map::{Action, Item};
use super::payload::{memory_usages, payload_groups};
use super::record::Tally;
use crate::jobs::keys::{BACKUP_BY_KEY, KeysError, LEDGER_BACKUP};
use ferry_core::report::{ErrorLog, display_key};

/// How the old value of each overwritten item is kept: `(index, estimated bytes)` of the ones
/// read as DUMP payloads, and the indexes of the ones too big, copied into backup keys.
struct BackupPlan {
    as_payloads: Vec<(usize, u64)>,
    by_key: Vec<usize>,
}

impl Batcher {
    /// Saves the current value of every key about to be overwritten into the backup ledger:
    /// small values as DUMP payloads (a bounded number of bytes at a time), bigger ones by a
    /// server-side COPY into a backup key on the target. Items whose value cannot be backed
    /// up are counted failed and dropped.
    pub(super) async fn backup_overwritten(
        &self,
        items: Vec<Item>,
        tally: &mut Tally,
    ) -> Result<Vec<Item>, KeysError> {
        let victims: Vec<usize> = (0..items.len())
            .filter(|&i| items[i].action == Action::Overwrite)
            .collect();
        if victims.is_empty() {
            return Ok(items);
        }
        let plan = self.plan_backups(&items, &victims).await?;
        let mut failed = vec![false; items.len()];
        self.backup_as_payloads(&items, &plan.as_payloads).await?;
        if !plan.by_key.is_empty() {
            self.backup_by_key(&items, &plan.by_key, &mut failed, &mut tally.errors)
                .await?;
        }
        Ok(self.drop_failed_backups(items, &failed, tally))
    }

    /// Sorts the `victims` by the estimated size of their current value: up to
    /// `--max-payload` (or on a server without COPY) as payloads, bigger ones by key.
    async fn plan_backups(
        &self,
        items: &[Item],
        victims: &[usize],
    ) -> Result<BackupPlan, KeysError> {
        let sizes = memory_usages(&self.target, victims.iter().map(|&i| &items[i].dst)).await?;
        let mut plan = BackupPlan {
            as_payloads: Vec::new(),
            by_key: Vec::new(),
        };
        for (&i, size) in victims.iter().zip(sizes) {
            match size {
                Ok(Value::Int(n))
                    if n as u64 > self.opts.max_payload && self.target.version() >= (6, 2) =>
                {
                    plan.by_key.push(i)
                }
                Ok(Value::Int(n)) => plan.as_payloads.push((i, n as u64)),
                // Gone meanwhile: nothing to back up, the write creates it.
                _ => plan.as_payloads.push((i, 0)),
            }
        }
        Ok(plan)
    }

    /// Reads expiry and DUMP payload of the items `sized`, a bounded number of bytes at a time,
    /// into the backup ledger (a value gone meanwhile has nothing to back up).
    async fn backup_as_payloads(
        &self,
        items: &[Item],
        sized: &[(usize, u64)],
    ) -> Result<(), KeysError> {
        for group in payload_groups(sized) {
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
        Ok(())
    }

    /// Copies the values of the items `which` into backup keys on the target (server-side
    /// COPY, TTL included), recorded in the backup ledger first; marks the items whose value
    /// could not be copied in `failed`.
    async fn backup_by_key(
        &self,
        items: &[Item],
        which: &[usize],
        failed: &mut [bool],
        errors: &mut ErrorLog,
    ) -> Result<(), KeysError> {
        let mut entries = Vec::new();
        let mut cmds = Vec::new();
        let mut copied = Vec::new();
        for &i in which {
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
        Ok(())
    }

    /// Counts the items marked in `failed` and drops them; returns the others.
    fn drop_failed_backups(
        &self,
        items: Vec<Item>,
        failed: &[bool],
        tally: &mut Tally,
    ) -> Vec<Item> {
        let mut kept = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            if failed[i] {
                tally.stats.failed += 1;
                if self.backup_key(&item.dst).is_none() {
                    tally.errors.push(
                        display_key(&item.src),
                        "its new name has an unbalanced hash tag, so its old value cannot be backed up before overwriting".to_string(),
                    );
                }
            } else {
                kept.push(item);
            }
        }
        kept
    }

    /// The key on the target that keeps the old value of an overwritten `dst` too big for one
    /// payload.
    fn backup_key(&self, dst: &[u8]) -> Option<Vec<u8>> {
        let tag = format!("{}-backup", self.opts.run_name);
        chunk_tmp_key(dst, &tag, self.target.is_cluster())
    }
}
