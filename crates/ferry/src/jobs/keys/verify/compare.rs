//! Checks one page of `created` ledger entries: a first look at both keys of every entry
//! (TYPE, PTTL, size), their values compared by DUMP payload where they fit and element by
//! element otherwise, then each entry counted.

use ferry_connectors::redis::{Cmd, Value, cmd};

use super::VerifyOutcome;
use super::chunks::same_in_chunks;
use crate::jobs::keys::{KeysContext, KeysError, SOURCE_DELETED, parse_ledger_value};
use ferry_core::report::display_key;

/// Bytes of DUMP payloads (as estimated by `MEMORY USAGE`, both sides together) read at once;
/// a single pair of values up to `--max-payload` each is read alone even when bigger.
const DUMP_BYTES_IN_FLIGHT: u64 = 32 * 1024 * 1024;

/// The replies of one side, three per entry: TYPE, PTTL and `MEMORY USAGE`.
type Replies = Vec<Result<Value, redis::RedisError>>;

/// TYPE, PTTL and the size estimate of `key`.
fn inspect(key: &[u8]) -> [(Vec<u8>, Cmd); 3] {
    [
        (key.to_vec(), cmd("TYPE").arg(key).clone()),
        (key.to_vec(), cmd("PTTL").arg(key).clone()),
        (
            key.to_vec(),
            cmd("MEMORY")
                .arg("USAGE")
                .arg(key)
                .arg("SAMPLES")
                .arg(1)
                .clone(),
        ),
    ]
}

fn text(v: &Result<Value, redis::RedisError>) -> String {
    match v {
        Ok(Value::SimpleString(s)) => s.clone(),
        Ok(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
        _ => "none".into(),
    }
}

fn int(v: &Result<Value, redis::RedisError>) -> i64 {
    match v {
        Ok(Value::Int(i)) => *i,
        _ => -2,
    }
}

fn size(v: &Result<Value, redis::RedisError>) -> Option<u64> {
    match v {
        Ok(Value::Int(i)) if *i >= 0 => Some(*i as u64),
        _ => None,
    }
}

/// The types that can be compared element by element.
fn chunkable(kind: &str) -> bool {
    matches!(kind, "string" | "hash" | "set" | "zset" | "list" | "stream")
}

/// What the first look at an entry found.
enum Seen {
    Missing,
    SourceGone {
        deleted: bool,
    },
    TypeDiffers {
        src: String,
        dst: String,
    },
    /// Same type on both sides: the values must be compared.
    Compare {
        kind: String,
    },
}

/// The first look at a page: both sides' replies, what each entry is, and the entries whose
/// values are compared by DUMP, with their estimated bytes.
struct FirstLook {
    src: Replies,
    dst: Replies,
    seen: Vec<Seen>,
    by_dump: Vec<(usize, u64)>,
}

/// Checks the entries of one page and counts them in `out`.
pub(super) async fn check(
    ctx: &KeysContext,
    entries: &[(Vec<u8>, Vec<u8>)],
    out: &mut VerifyOutcome,
) -> Result<(), KeysError> {
    if entries.is_empty() {
        return Ok(());
    }
    let mut look = first_look(ctx, entries).await?;
    let by_dump = std::mem::take(&mut look.by_dump);
    let same = compare_values(ctx, entries, &look.seen, by_dump).await?;
    count(ctx, entries, &look, &same, out);
    Ok(())
}

/// Asks TYPE, PTTL and size of every entry's keys, source first, and sorts the entries by what
/// that shows.
async fn first_look(
    ctx: &KeysContext,
    entries: &[(Vec<u8>, Vec<u8>)],
) -> Result<FirstLook, KeysError> {
    let mut src_cmds = Vec::with_capacity(entries.len() * 3);
    let mut dst_cmds = Vec::with_capacity(entries.len() * 3);
    for (new, value) in entries {
        let (_, src) = parse_ledger_value(value);
        src_cmds.extend(inspect(src));
        dst_cmds.extend(inspect(new));
    }
    let src = ctx.source.run(src_cmds).await?;
    let dst = ctx.target.run(dst_cmds).await?;

    let mut seen = Vec::with_capacity(entries.len());
    // Entries whose values fit in one payload on both sides: compared by DUMP.
    let mut by_dump: Vec<(usize, u64)> = Vec::new();
    for (n, (_, value)) in entries.iter().enumerate() {
        let (flags, _) = parse_ledger_value(value);
        let (s, d) = (&src[3 * n..3 * n + 3], &dst[3 * n..3 * n + 3]);
        let (s_type, d_type) = (text(&s[0]), text(&d[0]));
        seen.push(if d_type == "none" {
            Seen::Missing
        } else if s_type == "none" {
            Seen::SourceGone {
                deleted: flags & SOURCE_DELETED != 0,
            }
        } else if s_type != d_type {
            Seen::TypeDiffers {
                src: s_type,
                dst: d_type,
            }
        } else {
            let max = ctx.opts.max_payload;
            match (size(&s[2]), size(&d[2])) {
                (Some(a), Some(b)) if a <= max && b <= max => by_dump.push((n, a + b)),
                // Only DUMP can compare other (module) types, whatever their size.
                (a, b) if !chunkable(&s_type) => {
                    by_dump.push((n, a.unwrap_or(max).saturating_add(b.unwrap_or(max))))
                }
                _ => {}
            }
            Seen::Compare { kind: s_type }
        });
    }
    Ok(FirstLook {
        src,
        dst,
        seen,
        by_dump,
    })
}

/// Whether the values are equal, for the entries of `Seen::Compare`: by DUMP payload for the
/// entries `by_dump` (a bounded number of bytes at a time), then element by element for the
/// others and for those whose payloads differ.
async fn compare_values(
    ctx: &KeysContext,
    entries: &[(Vec<u8>, Vec<u8>)],
    seen: &[Seen],
    by_dump: Vec<(usize, u64)>,
) -> Result<Vec<Option<bool>>, KeysError> {
    let mut same: Vec<Option<bool>> = vec![None; entries.len()];
    let mut group: Vec<usize> = Vec::new();
    let mut group_bytes = 0u64;
    let mut pending = by_dump.into_iter().peekable();
    while let Some((n, bytes)) = pending.next() {
        group.push(n);
        group_bytes = group_bytes.saturating_add(bytes);
        let full = pending
            .peek()
            .is_none_or(|&(_, next)| group_bytes.saturating_add(next) > DUMP_BYTES_IN_FLIGHT);
        if full {
            compare_dumps(ctx, entries, &group, &mut same).await?;
            group.clear();
            group_bytes = 0;
        }
    }
    for (n, (new, value)) in entries.iter().enumerate() {
        if let (Seen::Compare { kind }, None) = (&seen[n], same[n]) {
            let (_, old) = parse_ledger_value(value);
            same[n] = Some(if chunkable(kind) {
                same_in_chunks(
                    &ctx.source,
                    &ctx.target,
                    ctx.opts.chunk_size,
                    old,
                    new,
                    kind,
                )
                .await?
            } else {
                false
            });
        }
    }
    Ok(same)
}

/// Compares the DUMP payloads of the entries `which` on both sides; equal payloads mean equal
/// values. Others are left undecided (`None`), for [`same_in_chunks`].
async fn compare_dumps(
    ctx: &KeysContext,
    entries: &[(Vec<u8>, Vec<u8>)],
    which: &[usize],
    same: &mut [Option<bool>],
) -> Result<(), KeysError> {
    let dump = |key: &[u8]| (key.to_vec(), cmd("DUMP").arg(key).clone());
    let src = ctx
        .source
        .run(
            which
                .iter()
                .map(|&n| dump(parse_ledger_value(&entries[n].1).1))
                .collect(),
        )
        .await?;
    let dst = ctx
        .target
        .run(which.iter().map(|&n| dump(&entries[n].0)).collect())
        .await?;
    for ((&n, a), b) in which.iter().zip(src).zip(dst) {
        if let (Ok(Value::BulkString(a)), Ok(Value::BulkString(b))) = (a, b)
            && a == b
        {
            same[n] = Some(true);
        }
    }
    Ok(())
}

/// Counts every entry of the page in `out`: missing, source gone, type or value or TTL
/// differing, or ok.
fn count(
    ctx: &KeysContext,
    entries: &[(Vec<u8>, Vec<u8>)],
    look: &FirstLook,
    same: &[Option<bool>],
    out: &mut VerifyOutcome,
) {
    for (n, ((new, value), seen)) in entries.iter().zip(&look.seen).enumerate() {
        out.checked += 1;
        let (_, old) = parse_ledger_value(value);
        let name = display_key(new);
        match seen {
            Seen::Missing => {
                out.missing += 1;
                out.errors
                    .push(name, format!("missing (source {})", display_key(old)));
                continue;
            }
            Seen::SourceGone { deleted: false } => {
                out.source_gone += 1;
                continue;
            }
            Seen::SourceGone { deleted: true } => {
                out.moved_unchecked += 1;
                continue;
            }
            Seen::TypeDiffers { src, dst } => {
                out.mismatched_value += 1;
                out.errors
                    .push(name, format!("type {dst}, source has {src}"));
                continue;
            }
            Seen::Compare { .. } => {}
        }
        if same[n] != Some(true) {
            out.mismatched_value += 1;
            out.errors.push(
                name,
                format!("value differs from the source {}", display_key(old)),
            );
            continue;
        }
        let (s_ttl, d_ttl) = (int(&look.src[3 * n + 1]), int(&look.dst[3 * n + 1]));
        let ttl_ok = match (s_ttl, d_ttl) {
            (-1, -1) => true,
            (a, b) if a >= 0 && b >= 0 => (a - b).abs() <= ctx.opts.ttl_tolerance_ms,
            _ => false,
        };
        if !ttl_ok {
            out.mismatched_ttl += 1;
            out.errors.push(
                name,
                format!(
                    "TTL {d_ttl} ms, source has {s_ttl} ms (tolerance {} ms)",
                    ctx.opts.ttl_tolerance_ms
                ),
            );
            continue;
        }
        out.ok += 1;
    }
}
