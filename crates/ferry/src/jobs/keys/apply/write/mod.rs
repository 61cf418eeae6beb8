//! Write: the items of a batch under their new names, each by one [`WriteStrategy`]:
//! server-side COPY where source and target share a server ([`server_copy`]), else
//! DUMP/RESTORE in groups bounded by bytes ([`dump_restore`]), and element by element for
//! values too big for one payload or refused by the target ([`chunks`]). With
//! `--delete-source` each strategy deletes a source only if it is unchanged since its copy.
//!
//! Before the regular path, [`Batcher::write_by_script`] lets the ledgered scripts write what
//! they can when the checkpoint store lives on the server written to: the ledger entry and
//! the write are then one step.

pub(super) mod chunks;
pub(super) mod dump_restore;
pub(super) mod server_copy;

use self::dump_restore::DumpRestore;
use self::server_copy::ServerCopy;
use super::batch::Batcher;
use super::map::Item;
use super::record::Tally;
use crate::jobs::keys::{KeysError, Stats};

/// One way of writing items under their new names.
pub(super) trait WriteStrategy {
    /// Writes the items `which` of `items` (REPLACE for redone and overwritten ones), leaving
    /// each one's outcome in `out`; with `--delete-source` also deletes each source unchanged
    /// since its copy.
    async fn write(
        &self,
        items: &[Item],
        which: &[usize],
        out: &mut [Option<Written>],
        stats: &mut Stats,
    ) -> Result<(), KeysError>;
}

/// What happened to one item's write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Written {
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
    pub(super) fn wrote(&self) -> bool {
        matches!(self, Written::Done | Written::Moved | Written::Kept { .. })
    }

    /// Written, but the source kept: an application changed it again after it was copied a
    /// second time.
    fn changed_twice() -> Self {
        Written::Kept {
            changed: true,
            why: "an application changed it twice while it was being moved: kept under its old name (the new name holds an earlier value); run apply again to copy its latest value".to_string(),
        }
    }

    /// Written, but deleting the source failed with `error`.
    fn delete_failed(error: impl std::fmt::Display) -> Self {
        Written::Kept {
            changed: false,
            why: format!("copied, but deleting the source failed: {error}"),
        }
    }
}

impl Batcher {
    /// Writes what the ledgered scripts can (the ledgered COPY on one server, the ledgered
    /// RESTORE on another) and counts it; returns the items left for the regular path. Without
    /// a ledgered script, returns all items.
    pub(super) async fn write_by_script(
        &self,
        items: Vec<Item>,
        tally: &mut Tally,
    ) -> Result<Vec<Item>, KeysError> {
        if self.ledgered {
            ServerCopy(self).copy_ledgered(items, tally).await
        } else if self
            .ledgered_restore
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            DumpRestore(self).restore_ledgered(items, tally).await
        } else {
            Ok(items)
        }
    }

    /// Writes every item: server-side COPY where possible, else DUMP/RESTORE, else chunks;
    /// with `--delete-source` each source is deleted only if unchanged since its copy.
    pub(super) async fn write(
        &self,
        items: &[Item],
        stats: &mut Stats,
    ) -> Result<Vec<Written>, KeysError> {
        let mut out: Vec<Option<Written>> = vec![None; items.len()];
        let server_copy = ServerCopy(self);
        let (copy, dump): (Vec<usize>, Vec<usize>) =
            (0..items.len()).partition(|&i| server_copy.can_copy(&items[i]));
        if !copy.is_empty() {
            server_copy.write(items, &copy, &mut out, stats).await?;
        }
        if !dump.is_empty() {
            DumpRestore(self)
                .write(items, &dump, &mut out, stats)
                .await?;
        }
        Ok(out
            .into_iter()
            .map(|o| o.unwrap_or(Written::Failed("not written".into())))
            .collect())
    }
}
