//! Writing a batch: the ledgered scripts, server-side COPY (or a move), DUMP/RESTORE in
//! groups bounded by bytes, and deleting sources only when unchanged (`--delete-source`).

use super::chunked::changed_while_moved;
use super::*;

impl Batcher {
    /// Copies (with `--delete-source`: moves) every item with the ledgered COPY script and
    /// counts what it did; returns the items whose new name already existed, for
    /// [`Batcher::decide`] and the regular path (an earlier attempt's key still in the ledger's
    /// journal, another source's key, or a key the policy decides).
    pub(super) async fn copy_ledgered(
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
    pub(super) fn count_written(
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

    pub(super) fn can_copy_server_side(&self, item: &Item) -> bool {
        self.same_server
            && self.source.version() >= (6, 2)
            && (!self.source.is_cluster() || key_slot(&item.src) == key_slot(&item.dst))
    }

    /// Writes every item: server-side COPY where possible, else DUMP/RESTORE, else chunks;
    /// with `--delete-source` each source is deleted only if unchanged since its copy.
    pub(super) async fn write(
        &self,
        items: &[Item],
        stats: &mut Stats,
    ) -> Result<Vec<Written>, KeysError> {
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

    pub(super) fn target_db(&self) -> Option<i64> {
        (self.target.db() != self.source.db()).then(|| self.target.db())
    }

    pub(super) async fn write_by_copy(
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
    pub(super) async fn move_on_server(
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
    pub(super) async fn sizes(
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
    pub(super) async fn read_dumps(
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
    pub(super) async fn restore_ledgered(
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
    pub(super) async fn delete_copied_sources(
        &self,
        items: &[Item],
        copied: &[&Dumped],
    ) -> Result<Vec<SourceDelete>, KeysError> {
        let intents: Vec<_> = copied
            .iter()
            .map(|d| items[d.idx].ledger_entry(true))
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

    pub(super) async fn write_by_dump(
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
    pub(super) async fn restore_group(
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
}
