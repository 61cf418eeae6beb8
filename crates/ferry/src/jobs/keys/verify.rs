//! `ferry keys verify`: every migrated key exists under its new name with the same type,
//! value and TTL.
//!
//! Memory stays bounded whatever the size of the values: each page first asks TYPE, PTTL and
//! `MEMORY USAGE` of its keys on both sides; values up to `--max-payload` are compared by their
//! DUMP payloads (a limited number of bytes of DUMPs in flight at once), bigger ones and ones
//! whose payloads differ (another encoding, another server version) element by element,
//! `--chunk-size` elements at a time.

use chrono::{DateTime, Utc};
use ferry_connectors::redis::{Cmd, RedisEndpoint, Value, cmd};
use ferry_core::checkpoint::CheckpointStore;
use serde::Serialize;

use super::{KeysContext, KeysError, LEDGER_CREATED, SOURCE_DELETED, parse_ledger_value};
use crate::observe::Progress;
use crate::report::{ErrorLog, display_key};

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
        // Reservoir sampling over the ledger keeps memory at N entries.
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
                break;
            }
            cursor = next;
        }
        for chunk in reservoir.chunks(page) {
            check(ctx, chunk, &mut out).await?;
            progress.inc(chunk.len() as u64);
        }
    } else {
        let mut cursor = 0;
        loop {
            let (next, entries) = ctx
                .store
                .ledger_page(&ctx.scope, LEDGER_CREATED, cursor, page)
                .await?;
            check(ctx, &entries, &mut out).await?;
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

/// Bytes of DUMP payloads (as estimated by `MEMORY USAGE`, both sides together) read at once;
/// a single pair of values up to `--max-payload` each is read alone even when bigger.
const DUMP_BYTES_IN_FLIGHT: u64 = 32 * 1024 * 1024;
/// Bytes of a string compared at once (GETRANGE windows).
const STRING_WINDOW: u64 = 1024 * 1024;

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

async fn check(
    ctx: &KeysContext,
    entries: &[(Vec<u8>, Vec<u8>)],
    out: &mut VerifyOutcome,
) -> Result<(), KeysError> {
    if entries.is_empty() {
        return Ok(());
    }
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

    // Whether the values are equal, for the entries of `Seen::Compare`.
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

    for (n, ((new, value), seen)) in entries.iter().zip(seen).enumerate() {
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
        let (s_ttl, d_ttl) = (int(&src[3 * n + 1]), int(&dst[3 * n + 1]));
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
    Ok(())
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

/// Reads one command's reply as `T`; `None` when the command failed or the reply has another
/// shape (the key changed type or vanished meanwhile: the values then differ).
async fn read<T: redis::FromRedisValue>(
    ep: &RedisEndpoint,
    key: &[u8],
    c: Cmd,
) -> Result<Option<T>, KeysError> {
    Ok(match ep.query(key, c).await? {
        Ok(v) => redis::from_redis_value(v).ok(),
        Err(_) => None,
    })
}

fn score(v: &Value) -> Option<f64> {
    match v {
        Value::Double(d) => Some(*d),
        Value::BulkString(b) => parse_score(b),
        Value::SimpleString(s) => parse_score(s.as_bytes()),
        _ => None,
    }
}

fn parse_score(b: &[u8]) -> Option<f64> {
    let s = std::str::from_utf8(b).ok()?;
    match s {
        "inf" | "+inf" => Some(f64::INFINITY),
        "-inf" => Some(f64::NEG_INFINITY),
        _ => s.parse().ok(),
    }
}

/// Compares the value of `old` on the source with `new` on the target element by element, in
/// windows of `--chunk-size` elements (1 MiB of a string): first their lengths, then each
/// window of the source against the same elements of the target.
pub(super) async fn same_in_chunks(
    a: &RedisEndpoint,
    b: &RedisEndpoint,
    chunk: usize,
    old: &[u8],
    new: &[u8],
    kind: &str,
) -> Result<bool, KeysError> {
    let chunk = chunk.max(1);
    let len_cmd = match kind {
        "string" => "STRLEN",
        "hash" => "HLEN",
        "set" => "SCARD",
        "zset" => "ZCARD",
        "list" => "LLEN",
        "stream" => "XLEN",
        _ => return Ok(false),
    };
    let (len_a, len_b) = tokio::join!(
        read::<u64>(a, old, cmd(len_cmd).arg(old).clone()),
        read::<u64>(b, new, cmd(len_cmd).arg(new).clone())
    );
    let len = match (len_a?, len_b?) {
        (Some(x), Some(y)) if x == y => x,
        _ => return Ok(false),
    };
    match kind {
        "hash" | "set" | "zset" => {
            let scan = match kind {
                "hash" => "HSCAN",
                "set" => "SSCAN",
                _ => "ZSCAN",
            };
            let scan_from = |cursor: u64| {
                cmd(scan)
                    .arg(old)
                    .arg(cursor)
                    .arg("COUNT")
                    .arg(chunk)
                    .clone()
            };
            // The next window of the source is read while the last one is looked up on the
            // target: two windows in memory at most.
            let mut page = read::<(u64, Vec<Vec<u8>>)>(a, old, scan_from(0)).await?;
            loop {
                let Some((next, items)) = page else {
                    return Ok(false);
                };
                let lookup = async {
                    Ok::<_, KeysError>(
                        items.is_empty() || found_on_target(b, new, kind, &items).await?,
                    )
                };
                if next == 0 {
                    return lookup.await;
                }
                let ahead = read::<(u64, Vec<Vec<u8>>)>(a, old, scan_from(next));
                let (found, ahead) = tokio::join!(lookup, ahead);
                if !found? {
                    return Ok(false);
                }
                page = ahead?;
            }
        }
        "list" => {
            let mut at = 0u64;
            while at < len {
                let end = at + chunk as u64 - 1;
                let c = |k: &[u8]| cmd("LRANGE").arg(k).arg(at).arg(end).clone();
                let (x, y) = tokio::join!(
                    read::<Vec<Vec<u8>>>(a, old, c(old)),
                    read::<Vec<Vec<u8>>>(b, new, c(new))
                );
                let (x, y) = (x?, y?);
                match (x, y) {
                    (Some(x), Some(y)) if x == y && !x.is_empty() => at += x.len() as u64,
                    (Some(x), Some(y)) if x == y => return Ok(true),
                    _ => return Ok(false),
                }
            }
            Ok(true)
        }
        "string" => {
            let mut at = 0u64;
            while at < len {
                let end = at + STRING_WINDOW - 1;
                let c = |k: &[u8]| cmd("GETRANGE").arg(k).arg(at).arg(end).clone();
                let (x, y) = tokio::join!(
                    read::<Vec<u8>>(a, old, c(old)),
                    read::<Vec<u8>>(b, new, c(new))
                );
                let (x, y) = (x?, y?);
                match (x, y) {
                    (Some(x), Some(y)) if x == y && !x.is_empty() => at += x.len() as u64,
                    (Some(x), Some(y)) if x == y => return Ok(true),
                    _ => return Ok(false),
                }
            }
            Ok(true)
        }
        _ => {
            // Streams: windows of entries read from the same id on both sides.
            let mut start = b"-".to_vec();
            loop {
                let c = |k: &[u8]| {
                    cmd("XRANGE")
                        .arg(k)
                        .arg(&start)
                        .arg("+")
                        .arg("COUNT")
                        .arg(chunk)
                        .clone()
                };
                type Entries = Vec<(Vec<u8>, Vec<Vec<u8>>)>;
                let (x, y) = tokio::join!(
                    read::<Entries>(a, old, c(old)),
                    read::<Entries>(b, new, c(new))
                );
                let (Some(x), Some(y)) = (x?, y?) else {
                    return Ok(false);
                };
                if x != y {
                    return Ok(false);
                }
                let Some((last, _)) = x.last() else {
                    return Ok(true);
                };
                start = [&b"("[..], last].concat();
            }
        }
    }
}

/// Whether every element of one scanned window of the source (`items` as HSCAN, SSCAN or ZSCAN
/// returns them) is on the target with the same value or score.
async fn found_on_target(
    b: &RedisEndpoint,
    new: &[u8],
    kind: &str,
    items: &[Vec<u8>],
) -> Result<bool, KeysError> {
    let multi = b.version() >= (6, 2);
    match kind {
        "hash" => {
            let (fields, values): (Vec<&[u8]>, Vec<&[u8]>) = items
                .chunks_exact(2)
                .map(|p| (&p[0][..], &p[1][..]))
                .unzip();
            let c = cmd("HMGET").arg(new).arg(&fields).clone();
            let Some(got) = read::<Vec<Option<Vec<u8>>>>(b, new, c).await? else {
                return Ok(false);
            };
            Ok(got.len() == values.len()
                && got.iter().zip(values).all(|(g, v)| g.as_deref() == Some(v)))
        }
        "set" => {
            let replies: Vec<Value> = if multi {
                let c = cmd("SMISMEMBER").arg(new).arg(items).clone();
                match read::<Vec<Value>>(b, new, c).await? {
                    Some(r) => r,
                    None => return Ok(false),
                }
            } else {
                let cmds = items
                    .iter()
                    .map(|m| (new.to_vec(), cmd("SISMEMBER").arg(new).arg(m).clone()))
                    .collect();
                match b.run(cmds).await?.into_iter().collect::<Result<_, _>>() {
                    Ok(r) => r,
                    Err(_) => return Ok(false),
                }
            };
            Ok(replies.len() == items.len() && replies.iter().all(|r| matches!(r, Value::Int(1))))
        }
        _ => {
            let (members, scores): (Vec<&[u8]>, Vec<&[u8]>) = items
                .chunks_exact(2)
                .map(|p| (&p[0][..], &p[1][..]))
                .unzip();
            let replies: Vec<Value> = if multi {
                let c = cmd("ZMSCORE").arg(new).arg(&members).clone();
                match read::<Vec<Value>>(b, new, c).await? {
                    Some(r) => r,
                    None => return Ok(false),
                }
            } else {
                let cmds = members
                    .iter()
                    .map(|m| (new.to_vec(), cmd("ZSCORE").arg(new).arg(*m).clone()))
                    .collect();
                match b.run(cmds).await?.into_iter().collect::<Result<_, _>>() {
                    Ok(r) => r,
                    Err(_) => return Ok(false),
                }
            };
            Ok(replies.len() == scores.len()
                && replies
                    .iter()
                    .zip(scores)
                    .all(|(r, s)| score(r).is_some() && score(r) == parse_score(s)))
        }
    }
}
