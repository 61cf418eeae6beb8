//! Server-side COPY: source and target are the same server(s) (Redis ≥ 6.2, one slot in a
//! cluster), so no value passes through Ferry. With `--delete-source` each key is moved
//! (COPY and UNLINK in one script). On one standalone server that also holds the checkpoint
//! store, the ledgered COPY script records and copies each key in one step.

use ferry_connectors::redis::{LedgeredCopy, Moved, Value, cmd, copy_with_ledger, key_slot};
use ferry_core::checkpoint::CheckpointStore;

use super::{WriteStrategy, Written};
use crate::jobs::keys::apply::batch::Batcher;
use crate::jobs::keys::apply::decide::exists_cmd;
use crate::jobs::keys::apply::map::{Action, Item};
use crate::jobs::keys::apply::record::Tally;
use crate::jobs::keys::{KeysError, Stats};

/// Copies on the server: COPY, or a move with `--delete-source`.
#[derive(Debug, Clone, Copy)]
pub(super) struct ServerCopy<'a>(pub(super) &'a Batcher);

impl WriteStrategy for ServerCopy<'_> {
    async fn write(
        &self,
        items: &[Item],
        which: &[usize],
        out: &mut [Option<Written>],
        stats: &mut Stats,
    ) -> Result<(), KeysError> {
        if self.0.opts.delete_source {
            self.move_on_server(items, which, out, stats).await
        } else {
            self.copy(items, which, out, stats).await
        }
    }
}

impl ServerCopy<'_> {
    /// Whether `item` can be copied on the server.
    pub(super) fn can_copy(&self, item: &Item) -> bool {
        let b = self.0;
        b.same_server
            && b.source.version() >= (6, 2)
            && (!b.source.is_cluster() || key_slot(&item.src) == key_slot(&item.dst))
    }

    /// The target's database, when it is not the source's (`COPY … DB n`).
    fn target_db(&self) -> Option<i64> {
        let b = self.0;
        (b.target.db() != b.source.db()).then(|| b.target.db())
    }

    /// Copies (with `--delete-source`: moves) every item with the ledgered COPY script and
    /// counts what it did; returns the items whose new name already existed, for
    /// [`Batcher::decide`] and the regular path (an earlier attempt's key still in the ledger's
    /// journal, another source's key, or a key the policy decides).
    pub(super) async fn copy_ledgered(
        &self,
        items: Vec<Item>,
        tally: &mut Tally,
    ) -> Result<Vec<Item>, KeysError> {
        if items.is_empty() {
            return Ok(items);
        }
        let b = self.0;
        let moves = b.opts.delete_source;
        let pairs: Vec<(&[u8], &[u8])> = items
            .iter()
            .map(|i| (i.src.as_slice(), i.dst.as_slice()))
            .collect();
        let prefix = [Action::Create.flags(moves)];
        let outcomes = copy_with_ledger(&b.source, &b.ledger_write(&prefix), moves, &pairs).await?;
        let written = outcomes
            .into_iter()
            .map(|outcome| match outcome {
                LedgeredCopy::Created | LedgeredCopy::Redone => {
                    tally.stats.server_side_copies += 1;
                    Some(if moves { Written::Moved } else { Written::Done })
                }
                LedgeredCopy::Vanished => Some(Written::Vanished),
                LedgeredCopy::Failed(e) => Some(Written::Failed(format!("COPY: {e}"))),
                LedgeredCopy::Exists => None,
            })
            .collect();
        Ok(b.count_written(items, written, tally))
    }

    /// `COPY old new [DB n] [REPLACE]` for the items `which`; a COPY that answers 0 is told
    /// apart by whether the source still exists.
    async fn copy(
        &self,
        items: &[Item],
        which: &[usize],
        out: &mut [Option<Written>],
        stats: &mut Stats,
    ) -> Result<(), KeysError> {
        let b = self.0;
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
        let replies = b.source.run(cmds).await?;
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
            let replies = b
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
        let b = self.0;
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
        b.store.check_lease(&b.scope).await?;
        let replies =
            ferry_connectors::redis::move_on_server(&b.source, &moves, self.target_db()).await?;
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
}
