//! `ferry keys verify`: every migrated key exists under its new name with the same type,
//! value and TTL.

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

fn inspect(key: &[u8]) -> [(Vec<u8>, Cmd); 3] {
    [
        (key.to_vec(), cmd("TYPE").arg(key).clone()),
        (key.to_vec(), cmd("PTTL").arg(key).clone()),
        (key.to_vec(), cmd("DUMP").arg(key).clone()),
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

async fn check(
    ctx: &KeysContext,
    entries: &[(Vec<u8>, Vec<u8>)],
    out: &mut VerifyOutcome,
) -> Result<(), KeysError> {
    if entries.is_empty() {
        return Ok(());
    }
    let mut src_cmds = Vec::new();
    let mut dst_cmds = Vec::new();
    for (new, value) in entries {
        let (_, src) = parse_ledger_value(value);
        src_cmds.extend(inspect(src));
        dst_cmds.extend(inspect(new));
    }
    let src = ctx.source.run(src_cmds).await?;
    let dst = ctx.target.run(dst_cmds).await?;
    for (n, (new, value)) in entries.iter().enumerate() {
        out.checked += 1;
        let (flags, old) = parse_ledger_value(value);
        let (s, d) = (&src[3 * n..3 * n + 3], &dst[3 * n..3 * n + 3]);
        let (s_type, d_type) = (text(&s[0]), text(&d[0]));
        let name = display_key(new);
        if d_type == "none" {
            out.missing += 1;
            out.errors
                .push(name, format!("missing (source {})", display_key(old)));
            continue;
        }
        if s_type == "none" {
            if flags & SOURCE_DELETED == 0 {
                out.source_gone += 1;
            } else {
                out.ok += 1;
            }
            continue;
        }
        if s_type != d_type {
            out.mismatched_value += 1;
            out.errors
                .push(name, format!("type {d_type}, source has {s_type}"));
            continue;
        }
        let same = match (&s[2], &d[2]) {
            (Ok(Value::BulkString(a)), Ok(Value::BulkString(b))) if a == b => true,
            // Payloads differ (e.g. after a chunked copy or across versions): compare contents.
            _ => same_contents(&ctx.source, old, &ctx.target, new, &s_type).await?,
        };
        if !same {
            out.mismatched_value += 1;
            out.errors.push(
                name,
                format!("value differs from the source {}", display_key(old)),
            );
            continue;
        }
        let (s_ttl, d_ttl) = (int(&s[1]), int(&d[1]));
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

/// The value of a key in a canonical form, for comparing across encodings.
async fn canonical(
    ep: &RedisEndpoint,
    key: &[u8],
    kind: &str,
) -> Result<Option<Vec<Vec<u8>>>, KeysError> {
    let c = match kind {
        "string" => cmd("GET").arg(key).clone(),
        "hash" => cmd("HGETALL").arg(key).clone(),
        "set" => cmd("SMEMBERS").arg(key).clone(),
        "zset" => cmd("ZRANGE")
            .arg(key)
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .clone(),
        "list" => cmd("LRANGE").arg(key).arg(0).arg(-1).clone(),
        "stream" => cmd("XRANGE").arg(key).arg("-").arg("+").clone(),
        _ => return Ok(None),
    };
    let v = match ep.query(key, c).await? {
        Ok(v) => v,
        Err(_) => return Ok(None),
    };
    let mut items = Vec::new();
    flatten(v, &mut items);
    match kind {
        "hash" => {
            let mut pairs: Vec<Vec<u8>> = items
                .chunks(2)
                .map(|p| {
                    [
                        &(p[0].len() as u64).to_le_bytes()[..],
                        &p[0],
                        p.get(1).map_or(&[][..], |v| v),
                    ]
                    .concat()
                })
                .collect();
            pairs.sort();
            Ok(Some(pairs))
        }
        "set" => {
            items.sort();
            Ok(Some(items))
        }
        _ => Ok(Some(items)),
    }
}

fn flatten(v: Value, into: &mut Vec<Vec<u8>>) {
    match v {
        Value::BulkString(b) => into.push(b),
        Value::SimpleString(s) => into.push(s.into_bytes()),
        Value::Int(i) => into.push(i.to_string().into_bytes()),
        Value::Array(a) | Value::Set(a) => a.into_iter().for_each(|v| flatten(v, into)),
        Value::Map(m) => m.into_iter().for_each(|(k, v)| {
            flatten(k, into);
            flatten(v, into);
        }),
        Value::Nil => into.push(Vec::new()),
        other => into.push(format!("{other:?}").into_bytes()),
    }
}

async fn same_contents(
    a: &RedisEndpoint,
    ka: &[u8],
    b: &RedisEndpoint,
    kb: &[u8],
    kind: &str,
) -> Result<bool, KeysError> {
    let (x, y) = (canonical(a, ka, kind).await?, canonical(b, kb, kind).await?);
    Ok(x.is_some() && x == y)
}
