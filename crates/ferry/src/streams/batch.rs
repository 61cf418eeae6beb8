//! One batch read from the Stream: decoded by the handler, committed (in halves when refused),
//! then its dead letters written and every entry acknowledged in one `MULTI`/`EXEC`, after the
//! commit.

use super::bisect::commit_in_halves;
use super::consumer::Run;
use super::{BatchHandler, StreamEntry};
use crate::runtime::failpoint;

/// Fields a dead letter adds to the entry's own (which it keeps, except these two names).
const SOURCE_ID_FIELD: &[u8] = b"ferry_source_id";
const ERROR_FIELD: &[u8] = b"ferry_error";

impl<H: BatchHandler> Run<'_, H> {
    /// Commits the entries' items, dead-letters the bad ones, then acknowledges all of them;
    /// returns the entries handled.
    pub(super) async fn process(&mut self, entries: Vec<StreamEntry>) -> Result<usize, H::Error> {
        if entries.is_empty() {
            return Ok(0);
        }
        self.stats.read += entries.len() as u64;
        // (entry, reason) of each dead letter, and the good items with their entries.
        let mut dead: Vec<(&StreamEntry, String)> = Vec::new();
        let mut good: Vec<&StreamEntry> = Vec::with_capacity(entries.len());
        let mut items: Vec<H::Item> = Vec::with_capacity(entries.len());
        let mut deleted = 0u64;
        for entry in &entries {
            // A Stream entry has at least one field: none means it was deleted while pending
            // (an own pending entry is read back as its id and nil).
            if entry.fields.is_empty() {
                deleted += 1;
                continue;
            }
            match self.handler.decode(entry) {
                Ok(item) => {
                    good.push(entry);
                    items.push(item);
                }
                Err(reason) => dead.push((entry, reason)),
            }
        }
        let refused = commit_in_halves(&mut *self.handler, &items).await?;
        dead.extend(refused.into_iter().map(|(i, reason)| (good[i], reason)));
        failpoint(self.opts.names.after_commit_failpoint);
        self.dead_letter_and_ack(&entries, &dead).await?;
        let rejected = dead.len() as u64;
        self.stats.dead_lettered += rejected;
        self.stats.deleted += deleted;
        self.opts.names.dead_letters.increment(rejected);
        if deleted > 0 {
            tracing::info!(
                entries = deleted,
                "pending entries were deleted from the stream; acknowledged"
            );
        }
        Ok(entries.len())
    }

    /// Writes the dead letters (each entry's fields plus `ferry_source_id` and `ferry_error`)
    /// and acknowledges `entries`, together: a crash or a lost connection before `EXEC` leaves
    /// every entry pending and writes no dead letter, so each is written once.
    async fn dead_letter_and_ack(
        &mut self,
        entries: &[StreamEntry],
        dead: &[(&StreamEntry, String)],
    ) -> Result<(), H::Error> {
        let opts = self.opts;
        if !dead.is_empty() {
            // MULTI/EXEC does not roll back: a dead letter that fails (a key of another type
            // under the dead-letter name) would still let the XACK through and lose the entry.
            let kind: String = redis::cmd("TYPE")
                .arg(&opts.dead_letter)
                .query_async(&mut self.conn)
                .await
                .map_err(|e| self.handler.redis_error(e))?;
            if kind != "none" && kind != "stream" {
                let detail = format!(
                    "the dead-letter key {} is a {kind}, not a stream: rename it, or name another dead-letter stream; the entries stay pending",
                    opts.dead_letter
                );
                let e =
                    redis::RedisError::from((redis::ErrorKind::Client, "wrong key type", detail));
                return Err(self.handler.redis_error(e));
            }
        }
        let mut pipe = redis::pipe();
        pipe.atomic();
        for (entry, reason) in dead {
            tracing::warn!(entry = %entry.id, %reason, dead_letter = %opts.dead_letter, "not {}; moved to the dead-letter stream", opts.names.item);
            let x = pipe.cmd("XADD").arg(&opts.dead_letter).arg("*");
            x.arg(SOURCE_ID_FIELD)
                .arg(&entry.id)
                .arg(ERROR_FIELD)
                .arg(reason);
            for (k, v) in &entry.fields {
                if k == SOURCE_ID_FIELD || k == ERROR_FIELD {
                    continue;
                }
                x.arg(k).arg(v);
            }
            pipe.ignore();
        }
        pipe.cmd("XACK").arg(&opts.stream).arg(&opts.group);
        for e in entries {
            pipe.arg(&e.id);
        }
        pipe.ignore();
        let () = pipe
            .query_async(&mut self.conn)
            .await
            .map_err(|e| self.handler.redis_error(e))?;
        Ok(())
    }
}
