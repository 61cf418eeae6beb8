//! `ferry keys verify`: every migrated key exists under its new name with the same type,
//! value and TTL.
//!
//! Memory stays bounded whatever the size of the values: each page first asks TYPE, PTTL and
//! `MEMORY USAGE` of its keys on both sides; values up to `--max-payload` are compared by their
//! DUMP payloads (a limited number of bytes of DUMPs in flight at once), bigger ones and ones
//! whose payloads differ (another encoding, another server version) element by element,
//! `--chunk-size` elements at a time.
//!
//! This file walks the `created` ledger (all of it, or a sample); [`compare`] checks one page
//! of entries, [`chunks`] compares two values element by element.

mod chunks;
mod compare;

use chrono::{DateTime, Utc};
use ferry_core::checkpoint::CheckpointStore;
use serde::Serialize;

use super::{KeysContext, KeysError, LEDGER_CREATED};
use crate::observe::Progress;
use ferry_core::report::ErrorLog;

pub(super) use chunks::same_in_chunks;

/// Counts of a verification.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyOutcome {
    /// Migrated keys checked.
    pub checked: u64,
    /// Keys equal in type, value and TTL.
    pub ok: u64,
    /// New keys that do not exist.
    pub missing: u64,
    /// New keys whose type or value differs from the source.
    pub mismatched_value: u64,
    /// New keys whose TTL differs by more than the tolerance.
    pub mismatched_ttl: u64,
    /// Source keys gone since the copy (only existence of the new key is checked).
    pub source_gone: u64,
    /// New keys whose source `--delete-source` removed: there is nothing left to compare
    /// them with, so only their existence is checked (not counted `ok`).
    pub moved_unchecked: u64,
    /// The differences found.
    #[serde(skip)]
    pub errors: ErrorLog,
    /// When verification started.
    #[serde(skip)]
    pub started: Option<DateTime<Utc>>,
}

impl VerifyOutcome {
    /// Keys that failed verification.
    pub fn failures(&self) -> u64 {
        self.missing + self.mismatched_value + self.mismatched_ttl
    }
}

/// A small deterministic generator for sampling (no cryptographic needs).
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Checks the migrated keys recorded in the `created` ledger (all, or `--sample N` of them).
pub async fn verify(ctx: &KeysContext) -> Result<VerifyOutcome, KeysError> {
    let mut out = VerifyOutcome {
        started: Some(Utc::now()),
        ..Default::default()
    };
    let total = ctx.store.ledger_len(&ctx.scope, LEDGER_CREATED).await?;
    let page = ctx.opts.batch_size.max(1);
    let mut progress = Progress::new(
        "verifying keys",
        ctx.opts.sample.unwrap_or(total).min(total),
    );
    if let Some(n) = ctx.opts.sample.filter(|&n| n < total) {
        let reservoir = sample_ledger(ctx, n, total, page).await?;
        for chunk in reservoir.chunks(page) {
            compare::check(ctx, chunk, &mut out).await?;
            progress.inc(chunk.len() as u64);
        }
    } else {
        let mut cursor = 0;
        loop {
            let (next, entries) = ctx
                .store
                .ledger_page(&ctx.scope, LEDGER_CREATED, cursor, page)
                .await?;
            compare::check(ctx, &entries, &mut out).await?;
            progress.inc(entries.len() as u64);
            if next == 0 {
                break;
            }
            cursor = next;
        }
    }
    progress.finish();
    Ok(out)
}

/// `n` entries of the `total` in the `created` ledger, chosen by reservoir sampling over the
/// ledger read `page` entries at a time (memory stays at `n` entries).
async fn sample_ledger(
    ctx: &KeysContext,
    n: u64,
    total: u64,
    page: usize,
) -> Result<Vec<(Vec<u8>, Vec<u8>)>, KeysError> {
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15 ^ total);
    let mut reservoir: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(n as usize);
    let mut seen = 0u64;
    let mut cursor = 0;
    loop {
        let (next, entries) = ctx
            .store
            .ledger_page(&ctx.scope, LEDGER_CREATED, cursor, page)
            .await?;
        for e in entries {
            seen += 1;
            if reservoir.len() < n as usize {
                reservoir.push(e);
            } else {
                let j = rng.next() % seen;
                if j < n {
                    reservoir[j as usize] = e;
                }
            }
        }
        if next == 0 {
            return Ok(reservoir);
        }
        cursor = next;
    }
}
