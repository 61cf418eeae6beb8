//! DUMP/RESTORE: values read from the source as payloads, a bounded number of bytes at a time,
//! and restored under their new names on the target, TTL included; values too big for one
//! payload or refused by the target go in [`chunks`](super::chunks). With `--delete-source`
//! each source is deleted only if it is unchanged since its DUMP. On a standalone target that
//! holds the checkpoint store, the ledgered RESTORE script records and restores each key in
//! one step.

use std::sync::atomic::Ordering;

use ferry_connectors::redis::{
    DeleteIfUnchanged, LedgeredCopy, LedgeredRestore, SourceDelete, Value, Witness, cmd,
    delete_if_unchanged, restore_with_ledger,
};
use ferry_core::checkpoint::{CheckpointStore, now_ms};

use super::chunks::Chunks;
use super::{WriteStrategy, Written};
use crate::jobs::keys::apply::batch::Batcher;
use crate::jobs::keys::apply::map::{Action, Item};
use crate::jobs::keys::apply::payload::{
    is_payload_rejection, memory_usages, payload_groups, refuses_payload,
};
use crate::jobs::keys::apply::record::Tally;
use crate::jobs::keys::{CREATED, KeysError, LEDGER_CREATED, SOURCE_DELETED, Stats};
use ferry_core::report::display_key;

/// Copies through Ferry as DUMP payloads.
#[derive(Debug, Clone, Copy)]
pub(super) struct DumpRestore<'a>(pub(super) &'a Batcher);

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

impl WriteStrategy for DumpRestore<'_> {
    async fn write(
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
        Chunks(self.0).write(items, &chunked, out, stats).await
    }
}

impl DumpRestore<'_> {
    /// Estimates the sizes of the items `which`: returns the ones small enough for one payload
    /// with their size, and the ones too big; vanished and failed items get their outcome in
    /// `out`.
    async fn sizes(
        &self,
        items: &[Item],
        which: &[usize],
        out: &mut [Option<Written>],
    ) -> Result<(Vec<(usize, u64)>, Vec<usize>), KeysError> {
        let b = self.0;
        let sizes = memory_usages(&b.source, which.iter().map(|&i| &items[i].src)).await?;
        let mut small = Vec::new();
        let mut chunked = Vec::new();
        for (&i, size) in which.iter().zip(sizes) {
            match size {
                Ok(Value::Int(n)) if (n as u64) <= b.opts.max_payload => small.push((i, n as u64)),
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
        let source = &self.0.source;
        let mut cmds = Vec::with_capacity(group.len() * 2);
        for &i in group {
            let src = &items[i].src;
            cmds.push((src.clone(), source.expiry_cmd(src)));
            cmds.push((src.clone(), cmd("DUMP").arg(src).clone()));
        }
        let now = now_ms();
        let replies = source.run(cmds).await?;
        let mut dumped = Vec::with_capacity(group.len());
        let mut replies = replies.into_iter();
        for &i in group {
            let (Some(expiry), Some(dump)) = (replies.next(), replies.next()) else {
                break;
            };
            let Some(expire_at) = source.expiry_from(&expiry, now) else {
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
        let replies = self.0.target.run(restores).await?;
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
                    Chunks(self.0)
                        .copy_one(&items[i], Some(d.expire_at), stats)
                        .await?
                }
                Err(e) => Written::Failed(format!("RESTORE: {e}")),
            });
        }
        if !self.0.opts.delete_source || restored.is_empty() {
            return Ok(());
        }
        let changed = self
            .delete_restored_sources(items, &restored, replace, out)
            .await?;
        if !changed.is_empty() {
            Box::pin(self.restore_group(items, &changed, true, out, stats)).await?;
        }
        Ok(())
    }

    /// Deletes the source of each item `restored` that is unchanged since its DUMP; returns the
    /// changed ones to copy once more (already copied again with `replace`: they are kept).
    async fn delete_restored_sources(
        &self,
        items: &[Item],
        restored: &[&Dumped],
        replace: bool,
        out: &mut [Option<Written>],
    ) -> Result<Vec<usize>, KeysError> {
        let b = self.0;
        let checks: Vec<DeleteIfUnchanged> = restored
            .iter()
            .map(|d| DeleteIfUnchanged {
                key: &items[d.idx].src,
                witness: Witness::Payload(&d.payload),
                expire_at: d.expire_at,
            })
            .collect();
        b.store.check_lease(&b.scope).await?;
        let mut changed = Vec::new();
        for (d, deleted) in restored
            .iter()
            .zip(delete_if_unchanged(&b.source, &checks).await?)
        {
            out[d.idx] = Some(match deleted {
                SourceDelete::Deleted => Written::Moved,
                SourceDelete::Gone => Written::Done,
                SourceDelete::Changed if !replace => {
                    changed.push(d.idx);
                    continue;
                }
                SourceDelete::Changed => Written::changed_twice(),
                SourceDelete::Failed(e) => Written::delete_failed(e),
            });
        }
        Ok(changed)
    }

    /// Restores every item on the target with the ledgered RESTORE script and counts what it
    /// did; returns the items for [`Batcher::decide`] and the regular path: new names that
    /// already existed, values too big for one payload, payloads the target refuses, and
    /// (with `--delete-source`) sources that changed while they were copied.
    pub(super) async fn restore_ledgered(
        &self,
        items: Vec<Item>,
        tally: &mut Tally,
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
            let written = self
                .restore_dumped_ledgered(&items, &dumped, &mut out, &mut tally.stats)
                .await?;
            if self.0.opts.delete_source && !written.is_empty() {
                self.delete_ledgered_sources(&mut items, &written, &mut out)
                    .await?;
            }
        }
        Ok(self.0.count_written(items, out, tally))
    }

    /// Runs the ledgered RESTORE script for `dumped`, leaving each outcome in `out` (`None` for
    /// the regular path); returns the values it wrote. A payload the target refuses turns the
    /// script off for the rest of the run.
    async fn restore_dumped_ledgered<'d>(
        &self,
        items: &[Item],
        dumped: &'d [Dumped],
        out: &mut [Option<Written>],
        stats: &mut Stats,
    ) -> Result<Vec<&'d Dumped>, KeysError> {
        let b = self.0;
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
            restore_with_ledger(&b.target, &b.ledger_write(&[CREATED]), &restores).await?;
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
                    b.ledgered_restore.store(false, Ordering::Relaxed);
                    None
                }
                LedgeredCopy::Failed(e) => Some(Written::Failed(format!("RESTORE: {e}"))),
            };
        }
        Ok(written)
    }

    /// With `--delete-source`, after the ledgered RESTORE: deletes each source of `written`
    /// unchanged since its DUMP; a changed one goes back to the regular path, redone.
    async fn delete_ledgered_sources(
        &self,
        items: &mut [Item],
        written: &[&Dumped],
        out: &mut [Option<Written>],
    ) -> Result<(), KeysError> {
        let deleted = self.delete_copied_sources(items, written).await?;
        for (d, deleted) in written.iter().zip(deleted) {
            match deleted {
                SourceDelete::Deleted => out[d.idx] = Some(Written::Moved),
                SourceDelete::Gone => {}
                // Changed since the copy: the regular path copies it again.
                SourceDelete::Changed => {
                    out[d.idx] = None;
                    items[d.idx].action = Action::Redo(CREATED | SOURCE_DELETED);
                }
                SourceDelete::Failed(e) => out[d.idx] = Some(Written::delete_failed(e)),
            }
        }
        Ok(())
    }

    /// Records that the sources of `copied` are deleted (so rollback re-creates them), then
    /// deletes each one that is unchanged since it was read.
    async fn delete_copied_sources(
        &self,
        items: &[Item],
        copied: &[&Dumped],
    ) -> Result<Vec<SourceDelete>, KeysError> {
        let b = self.0;
        let intents: Vec<_> = copied
            .iter()
            .map(|d| items[d.idx].ledger_entry(true))
            .collect();
        b.store
            .ledger_put(&b.scope, LEDGER_CREATED, &intents)
            .await?;
        b.store.check_lease(&b.scope).await?;
        let checks: Vec<DeleteIfUnchanged> = copied
            .iter()
            .map(|d| DeleteIfUnchanged {
                key: &items[d.idx].src,
                witness: Witness::Payload(&d.payload),
                expire_at: d.expire_at,
            })
            .collect();
        Ok(delete_if_unchanged(&b.source, &checks).await?)
    }
}
