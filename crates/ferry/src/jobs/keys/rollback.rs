//! `ferry keys rollback -y`: undo an apply using its ledgers.

use chrono::{DateTime, Utc};
use ferry_connectors::redis::{Value, cmd};
use ferry_core::checkpoint::{CheckpointStore, now_ms};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::{
    KeysContext, KeysError, LEDGER_BACKUP, LEDGER_CREATED, OVERWROTE, SOURCE_DELETED,
    parse_ledger_value,
};
use crate::observe::Progress;
use crate::report::{ErrorLog, display_key};
use crate::runtime::LeaseGuard;

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

/// Deletes exactly the keys apply created, gives overwritten keys their old values back and
/// re-creates source keys that `--delete-source` removed; then clears the run's records.
/// With `dry_run`, only counts.
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
        out.entries = ctx.store.ledger_len(&ctx.scope, LEDGER_CREATED).await?;
        return Ok(out);
    }
    let lease = LeaseGuard::acquire(ctx.store.clone(), &ctx.scope, stop.clone()).await?;
    let result = run(ctx, &mut out, &stop).await;
    lease.release().await;
    result.map(|_| out)
}

async fn run(
    ctx: &KeysContext,
    out: &mut RollbackOutcome,
    stop: &CancellationToken,
) -> Result<(), KeysError> {
    let total = ctx.store.ledger_len(&ctx.scope, LEDGER_CREATED).await?;
    let mut progress = Progress::new("rolling back", total);
    let mut cursor = 0;
    loop {
        // Entries are removed as they are undone, so an interrupted rollback resumes where it
        // stopped. A page may be empty before the end (a sparse hash table), so the pass
        // follows the cursor; passes repeat until the ledger is empty.
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
        if stop.is_cancelled() {
            return Err(KeysError::Interrupted { done: out.entries });
        }
        let keys: Vec<Vec<u8>> = entries.iter().map(|(k, _)| k.clone()).collect();
        let backups = ctx
            .store
            .ledger_get(&ctx.scope, LEDGER_BACKUP, &keys)
            .await?;
        let mut undone = Vec::new();
        let mut parked = Vec::new();
        for ((new, value), backup) in entries.iter().zip(backups) {
            out.entries += 1;
            let (flags, src) = parse_ledger_value(value);
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
                    // Parked, and put back at the end so that a later rollback retries it.
                    parked.push((new.clone(), value.clone()));
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
            .ledger_remove(&ctx.scope, LEDGER_CREATED, &keys)
            .await?;
        progress.inc(keys.len() as u64);
    }
    progress.finish();
    if out.failed == 0 {
        ctx.store.clear(&ctx.scope).await?;
        return Ok(());
    }
    let mut cursor = 0;
    loop {
        let (next, entries) = ctx
            .store
            .ledger_page(&ctx.scope, LEDGER_PARKED, cursor, ctx.opts.batch_size)
            .await?;
        ctx.store
            .ledger_put(&ctx.scope, LEDGER_CREATED, &entries)
            .await?;
        if next == 0 {
            break;
        }
        cursor = next;
    }
    Ok(())
}

/// Entries whose undo failed during this rollback.
const LEDGER_PARKED: &str = "rollback-failed";

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
    if flags & SOURCE_DELETED != 0 {
        let exists = ctx
            .source
            .query(src, cmd("EXISTS").arg(src).clone())
            .await?;
        if matches!(exists, Ok(Value::Int(0))) {
            let now = now_ms();
            let replies = ctx
                .target
                .run(vec![
                    (new.to_vec(), ctx.target.expiry_cmd(new)),
                    (new.to_vec(), cmd("DUMP").arg(new).clone()),
                ])
                .await?;
            let (Some(expiry), Ok(Value::BulkString(payload))) =
                (ctx.target.expiry_from(&replies[0], now), &replies[1])
            else {
                return Ok(Err(format!(
                    "cannot restore the deleted source {}: the new key is gone",
                    display_key(src)
                )));
            };
            let mut c = cmd("RESTORE");
            c.arg(src).arg(expiry.unwrap_or(0)).arg(payload.as_slice());
            if expiry.is_some() {
                c.arg("ABSTTL");
            }
            if let Err(e) = ctx.source.query(src, c).await? {
                return Ok(Err(format!(
                    "restoring the source {}: {e}",
                    display_key(src)
                )));
            }
        }
    }
    // 2. An overwritten key gets its old value back; a created one is deleted.
    if flags & OVERWROTE != 0 {
        let Some(backup) = backup.filter(|b| b.len() >= 8) else {
            return Ok(Err("no backup of the overwritten value".into()));
        };
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
        match ctx.target.query(new, cmd("DEL").arg(new).clone()).await? {
            Ok(_) => Ok(Undo::Deleted),
            Err(e) => Err(format!("DEL: {e}")),
        },
    )
}
