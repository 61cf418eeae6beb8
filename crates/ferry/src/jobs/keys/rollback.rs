//! `ferry keys rollback -y`: undo an apply using its ledgers.
//!
//! Memory stays bounded whatever the size of the values: a source removed by
//! `--delete-source` is re-created from its new key by DUMP/RESTORE only when the value fits in
//! `--max-payload`, else element by element ([`copy_in_chunks`]); an overwritten value too big
//! for one payload was kept by apply in a backup key on the target and is RENAMEd back; backups
//! kept as payloads are read a bounded number of bytes at a time.
//!
//! Entries whose undo fails are parked in the `rollback-failed` ledger while the pass goes on
//! (so that the pass ends), and put back into `created` when the rollback stops, however it
//! stops, and again at the start of every rollback (after a crash): a later rollback retries
//! them and reports them until they are undone.

use chrono::{DateTime, Utc};
use ferry_connectors::redis::{ChunkError, ChunkedCopy, Value, cmd, copy_in_chunks};
use ferry_core::checkpoint::{CheckpointStore, now_ms};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::{
    BACKUP_BY_KEY, KeysContext, KeysError, LEDGER_BACKUP, LEDGER_CREATED, OVERWROTE,
    SOURCE_DELETED, parse_ledger_value, sweep_tmp_keys,
};
use crate::observe::Progress;
use crate::runtime::LeaseGuard;
use ferry_core::report::{ErrorLog, display_key};

/// What a rollback did (or, as a dry run, would do).
#[derive(Debug, Clone, Default, Serialize)]
pub struct RollbackOutcome {
    /// Ledger entries handled.
    pub entries: u64,
    /// New keys deleted.
    pub deleted: u64,
    /// Overwritten keys given their old value back.
    pub restored_overwritten: u64,
    /// Source keys re-created (they were removed by `--delete-source`).
    pub restored_sources: u64,
    /// Entries that could not be undone.
    pub failed: u64,
    /// Whether nothing was changed.
    pub dry_run: bool,
    /// The failures.
    #[serde(skip)]
    pub errors: ErrorLog,
    /// When the rollback started.
    #[serde(skip)]
    pub started: Option<DateTime<Utc>>,
}

/// Entries whose undo failed during a rollback, until it stops.
const LEDGER_PARKED: &str = "rollback-failed";

/// Bytes of backup payloads (each at most about `--max-payload`) read from the store at once.
const BACKUP_BYTES_IN_FLIGHT: u64 = 64 * 1024 * 1024;

/// Deletes exactly the keys apply created, gives overwritten keys their old values back and
/// re-creates source keys that `--delete-source` removed; then clears the run's records.
/// Entries that could not be undone stay in the ledger (and are reported again) for a later
/// rollback. With `dry_run`, only counts.
pub async fn rollback(
    ctx: &KeysContext,
    dry_run: bool,
    stop: CancellationToken,
) -> Result<RollbackOutcome, KeysError> {
    let mut out = RollbackOutcome {
        started: Some(Utc::now()),
        dry_run,
        ..Default::default()
    };
    if dry_run {
        out.entries = ctx.store.ledger_len(&ctx.scope, LEDGER_CREATED).await?
            + ctx.store.ledger_len(&ctx.scope, LEDGER_PARKED).await?;
        return Ok(out);
    }
    let lease = LeaseGuard::acquire(ctx.store.clone(), &ctx.scope, stop.clone()).await?;
    let mut result = run(ctx, &mut out, &stop).await;
    if result.is_err() {
        // Interrupted or failed: what this pass parked goes back into the ledger now, so that
        // nothing depends on the next rollback finding it.
        if let Err(e) = unpark(ctx).await {
            tracing::warn!(error = %e, "could not put the failed entries back into the ledger; the next rollback does");
            if !matches!(result, Err(KeysError::Interrupted { .. })) {
                result = Err(e);
            }
        }
    }
    lease.release().await;
    result.map(|_| out)
}

async fn run(
    ctx: &KeysContext,
    out: &mut RollbackOutcome,
    stop: &CancellationToken,
) -> Result<(), KeysError> {
    // Failures an earlier rollback parked (and could not put back: it crashed) are retried.
    unpark(ctx).await?;
    let swept = sweep_tmp_keys(ctx).await?;
    if swept > 0 {
        tracing::info!(
            swept,
            "deleted temporary keys of interrupted chunked copies"
        );
    }
    let total = ctx.store.ledger_len(&ctx.scope, LEDGER_CREATED).await?;
    let mut progress = Progress::new("rolling back", total);
    let backups_at_once = (BACKUP_BYTES_IN_FLIGHT / ctx.opts.max_payload.max(1))
        .clamp(1, ctx.opts.batch_size.max(1) as u64) as usize;
    let mut cursor = 0;
    let mut interrupted = false;
    while !interrupted {
        // Entries are removed as they are undone (or parked), so an interrupted rollback resumes
        // where it stopped. A page may be empty before the end (a sparse hash table), so the
        // pass follows the cursor; passes repeat until the ledger is empty.
        let (next, entries) = ctx
            .store
            .ledger_page(&ctx.scope, LEDGER_CREATED, cursor, ctx.opts.batch_size)
            .await?;
        cursor = next;
        if entries.is_empty() {
            if cursor == 0 && ctx.store.ledger_len(&ctx.scope, LEDGER_CREATED).await? == 0 {
                break;
            }
            continue;
        }
        let page = undo_page(ctx, &entries, backups_at_once, out, stop).await?;
        interrupted = page.interrupted;
        progress.inc(page.handled);
    }
    progress.finish();
    if interrupted {
        return Err(KeysError::Interrupted { done: out.entries });
    }
    if out.failed == 0 {
        drop_orphan_backups(ctx).await?;
        ctx.store.clear(&ctx.scope).await?;
        return Ok(());
    }
    unpark(ctx).await
}

/// What [`undo_page`] did.
struct PageUndone {
    /// Entries handled (undone or parked).
    handled: u64,
    /// Whether it stopped on `stop`, before the page's end.
    interrupted: bool,
}

/// Undoes the entries of one page of the `created` ledger, reading the backups of `backups_at_once`
/// entries at a time, until `stop`; then parks the failed entries, forgets the backups of the
/// undone ones and removes the handled ones from the ledger.
async fn undo_page(
    ctx: &KeysContext,
    entries: &[(Vec<u8>, Vec<u8>)],
    backups_at_once: usize,
    out: &mut RollbackOutcome,
    stop: &CancellationToken,
) -> Result<PageUndone, KeysError> {
    let mut interrupted = false;
    let mut handled = Vec::with_capacity(entries.len());
    let mut undone = Vec::new();
    let mut parked = Vec::new();
    'page: for group in entries.chunks(backups_at_once) {
        let overwritten: Vec<Vec<u8>> = group
            .iter()
            .filter(|(_, v)| parse_ledger_value(v).0 & OVERWROTE != 0)
            .map(|(k, _)| k.clone())
            .collect();
        let mut backups = ctx
            .store
            .ledger_get(&ctx.scope, LEDGER_BACKUP, &overwritten)
            .await?
            .into_iter();
        for (new, value) in group {
            if stop.is_cancelled() {
                interrupted = true;
                break 'page;
            }
            let (flags, src) = parse_ledger_value(value);
            let backup = if flags & OVERWROTE != 0 {
                backups.next().flatten()
            } else {
                None
            };
            out.entries += 1;
            handled.push(new.clone());
            match undo_one(ctx, new, flags, src, backup.as_deref()).await? {
                Ok(kind) => {
                    match kind {
                        Undo::Deleted => out.deleted += 1,
                        Undo::RestoredOverwritten => out.restored_overwritten += 1,
                    }
                    if flags & SOURCE_DELETED != 0 {
                        out.restored_sources += 1;
                    }
                    undone.push(new.clone());
                }
                Err(e) => {
                    out.failed += 1;
                    out.errors.push(display_key(new), e);
                    // Parked until the rollback stops, then put back for a later one.
                    parked.push((new.clone(), value.clone()));
                }
            }
        }
    }
    ctx.store
        .ledger_put(&ctx.scope, LEDGER_PARKED, &parked)
        .await?;
    ctx.store
        .ledger_remove(&ctx.scope, LEDGER_BACKUP, &undone)
        .await?;
    ctx.store
        .ledger_remove(&ctx.scope, LEDGER_CREATED, &handled)
        .await?;
    Ok(PageUndone {
        handled: handled.len() as u64,
        interrupted,
    })
}

/// Moves the entries parked in `rollback-failed` back into `created` (an entry `created` holds
/// already, recorded again by a later apply, is kept as it is).
async fn unpark(ctx: &KeysContext) -> Result<(), KeysError> {
    let mut cursor = 0;
    loop {
        let (next, entries) = ctx
            .store
            .ledger_page(&ctx.scope, LEDGER_PARKED, cursor, ctx.opts.batch_size)
            .await?;
        cursor = next;
        if !entries.is_empty() {
            let keys: Vec<Vec<u8>> = entries.iter().map(|(k, _)| k.clone()).collect();
            let present = ctx
                .store
                .ledger_get(&ctx.scope, LEDGER_CREATED, &keys)
                .await?;
            let back: Vec<(Vec<u8>, Vec<u8>)> = entries
                .into_iter()
                .zip(present)
                .filter(|(_, p)| p.is_none())
                .map(|(e, _)| e)
                .collect();
            // Put back first: a crash in between leaves the entry in both, never in neither.
            ctx.store
                .ledger_put(&ctx.scope, LEDGER_CREATED, &back)
                .await?;
            ctx.store
                .ledger_remove(&ctx.scope, LEDGER_PARKED, &keys)
                .await?;
        }
        if cursor == 0 && ctx.store.ledger_len(&ctx.scope, LEDGER_PARKED).await? == 0 {
            return Ok(());
        }
    }
}

/// Deletes the backup keys that no `created` entry refers to any more (apply recorded the
/// backup, then stopped before it overwrote the key), before the ledgers are cleared.
async fn drop_orphan_backups(ctx: &KeysContext) -> Result<(), KeysError> {
    let mut cursor = 0;
    loop {
        let (next, entries) = ctx
            .store
            .ledger_page(&ctx.scope, LEDGER_BACKUP, cursor, ctx.opts.batch_size)
            .await?;
        let unlink: Vec<_> = entries
            .iter()
            .filter_map(|(new, v)| {
                backup_key(v).map(|k| (new.clone(), cmd("UNLINK").arg(k).clone()))
            })
            .collect();
        if !unlink.is_empty() {
            // Routed by the new name: the backup key shares its slot.
            ctx.target.run(unlink).await?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

/// The backup key of a `backup` ledger value kept by key ([`BACKUP_BY_KEY`]).
fn backup_key(value: &[u8]) -> Option<&[u8]> {
    let (at, rest) = value.split_at_checked(8)?;
    (i64::from_le_bytes(at.try_into().ok()?) == BACKUP_BY_KEY).then_some(rest)
}

enum Undo {
    Deleted,
    RestoredOverwritten,
}

async fn undo_one(
    ctx: &KeysContext,
    new: &[u8],
    flags: u8,
    src: &[u8],
    backup: Option<&[u8]>,
) -> Result<Result<Undo, String>, KeysError> {
    // 1. A source removed by --delete-source comes back from the new key first.
    if flags & SOURCE_DELETED != 0
        && let Err(e) = restore_source(ctx, new, src).await?
    {
        return Ok(Err(e));
    }
    // 2. An overwritten key gets its old value back; a created one is deleted.
    if flags & OVERWROTE != 0 {
        let Some(backup) = backup.filter(|b| b.len() >= 8) else {
            return Ok(Err("no backup of the overwritten value".into()));
        };
        if let Some(key) = backup_key(backup) {
            let c = cmd("RENAME").arg(key).arg(new).clone();
            return Ok(match ctx.target.query(new, c).await? {
                Ok(_) => {
                    // Forgotten at once: a second RENAME would find no backup key.
                    ctx.store
                        .ledger_remove(&ctx.scope, LEDGER_BACKUP, &[new.to_vec()])
                        .await?;
                    ctx.store
                        .ledger_remove(&ctx.scope, LEDGER_CREATED, &[new.to_vec()])
                        .await?;
                    Ok(Undo::RestoredOverwritten)
                }
                Err(e) => Err(format!(
                    "restoring the overwritten value from its backup key {}: {e}",
                    display_key(key)
                )),
            });
        }
        let at = i64::from_le_bytes(backup[..8].try_into().expect("8 bytes"));
        let mut c = cmd("RESTORE");
        c.arg(new).arg(at.max(0)).arg(&backup[8..]).arg("REPLACE");
        if at >= 0 {
            c.arg("ABSTTL");
        }
        return Ok(match ctx.target.query(new, c).await? {
            Ok(_) => Ok(Undo::RestoredOverwritten),
            Err(e) => Err(format!("restoring the overwritten value: {e}")),
        });
    }
    Ok(
        match ctx
            .target
            .query(new, cmd("UNLINK").arg(new).clone())
            .await?
        {
            Ok(_) => Ok(Undo::Deleted),
            Err(e) => Err(format!("UNLINK: {e}")),
        },
    )
}

/// Re-creates the source `src` that `--delete-source` removed, from the new key `new`: by
/// DUMP/RESTORE when the value fits in one payload, else element by element. A source that
/// exists (again) is left alone.
async fn restore_source(
    ctx: &KeysContext,
    new: &[u8],
    src: &[u8],
) -> Result<Result<(), String>, KeysError> {
    let exists = ctx
        .source
        .query(src, cmd("EXISTS").arg(src).clone())
        .await?;
    if !matches!(exists, Ok(Value::Int(0))) {
        return Ok(Ok(()));
    }
    let gone = || {
        format!(
            "cannot restore the deleted source {}: the new key is gone",
            display_key(src)
        )
    };
    let now = now_ms();
    let replies = ctx
        .target
        .run(vec![
            (new.to_vec(), ctx.target.expiry_cmd(new)),
            (
                new.to_vec(),
                cmd("MEMORY")
                    .arg("USAGE")
                    .arg(new)
                    .arg("SAMPLES")
                    .arg(1)
                    .clone(),
            ),
        ])
        .await?;
    let Some(expiry) = ctx.target.expiry_from(&replies[0], now) else {
        return Ok(Err(gone()));
    };
    let small = match &replies[1] {
        Ok(Value::Int(n)) => (*n as u64) <= ctx.opts.max_payload,
        Ok(Value::Nil) => return Ok(Err(gone())),
        // The size is unknown (MEMORY USAGE refused): copy in chunks, to be safe.
        _ => false,
    };
    if small {
        let dump = ctx.target.query(new, cmd("DUMP").arg(new).clone()).await?;
        let Ok(Value::BulkString(payload)) = dump else {
            return Ok(Err(gone()));
        };
        let mut c = cmd("RESTORE");
        c.arg(src).arg(expiry.unwrap_or(0)).arg(payload.as_slice());
        if expiry.is_some() {
            c.arg("ABSTTL");
        }
        drop(payload);
        match ctx.source.query(src, c).await? {
            Ok(_) => return Ok(Ok(())),
            // A payload from a newer server: element by element instead.
            Err(e) if super::apply::refuses_payload(&e.to_string()) => {}
            Err(e) => {
                return Ok(Err(format!(
                    "restoring the source {}: {e}",
                    display_key(src)
                )));
            }
        }
    }
    let tag = format!("{}-rollback", ctx.opts.run_name);
    match copy_in_chunks(
        &ctx.target,
        new,
        &ctx.source,
        src,
        expiry,
        false,
        ctx.opts.chunk_size,
        &tag,
    )
    .await
    {
        // Exists: the source came back meanwhile; it is left alone.
        Ok(ChunkedCopy::Copied { .. } | ChunkedCopy::Exists) => Ok(Ok(())),
        Ok(ChunkedCopy::Vanished) => Ok(Err(gone())),
        Err(ChunkError::Key(e)) => Ok(Err(format!(
            "restoring the source {} in chunks: {e}",
            display_key(src)
        ))),
        Err(ChunkError::Conn(e)) => Err(e.into()),
    }
}
