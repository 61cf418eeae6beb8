//! Two values compared element by element, `--chunk-size` elements (1 MiB of a string) at a
//! time, so that memory stays bounded whatever their size: used by verify for values too big
//! for one payload and by apply before it deletes a source copied in chunks.

use ferry_connectors::redis::{Cmd, RedisEndpoint, Value, cmd};

use crate::jobs::keys::KeysError;

/// Bytes of a string compared at once (GETRANGE windows).
const STRING_WINDOW: u64 = 1024 * 1024;

/// Compares the value of `old` on the source with `new` on the target element by element, in
/// windows of `--chunk-size` elements (1 MiB of a string): first their lengths, then each
/// window of the source against the same elements of the target.
pub(in crate::jobs::keys) async fn same_in_chunks(
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
        "hash" | "set" | "zset" => same_members(a, b, chunk, old, new, kind).await,
        "list" => same_list(a, b, chunk, old, new, len).await,
        "string" => same_string(a, b, old, new, len).await,
        _ => same_stream(a, b, chunk, old, new).await,
    }
}

/// A hash, set or sorted set: each scanned window of the source looked up on the target. The
/// next window of the source is read while the last one is looked up on the target: two
/// windows in memory at most.
async fn same_members(
    a: &RedisEndpoint,
    b: &RedisEndpoint,
    chunk: usize,
    old: &[u8],
    new: &[u8],
    kind: &str,
) -> Result<bool, KeysError> {
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
    let mut page = read::<(u64, Vec<Vec<u8>>)>(a, old, scan_from(0)).await?;
    loop {
        let Some((next, items)) = page else {
            return Ok(false);
        };
        let lookup = async {
            Ok::<_, KeysError>(items.is_empty() || found_on_target(b, new, kind, &items).await?)
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

/// A list of `len` elements: the same LRANGE windows on both sides.
async fn same_list(
    a: &RedisEndpoint,
    b: &RedisEndpoint,
    chunk: usize,
    old: &[u8],
    new: &[u8],
    len: u64,
) -> Result<bool, KeysError> {
    let window = Window {
        command: "LRANGE",
        size: chunk as u64,
    };
    same_windows::<Vec<Vec<u8>>>(a, b, old, new, len, window).await
}

/// A string of `len` bytes: the same GETRANGE windows on both sides.
async fn same_string(
    a: &RedisEndpoint,
    b: &RedisEndpoint,
    old: &[u8],
    new: &[u8],
    len: u64,
) -> Result<bool, KeysError> {
    let window = Window {
        command: "GETRANGE",
        size: STRING_WINDOW,
    };
    same_windows::<Vec<u8>>(a, b, old, new, len, window).await
}

/// A range command (`LRANGE`, `GETRANGE`: `KEY START END`, both ends included) and how many
/// elements it reads at a time.
#[derive(Debug, Clone, Copy)]
struct Window {
    command: &'static str,
    size: u64,
}

/// Reads the same windows of `old` on `a` and `new` on `b` until `len` elements were compared
/// or a window comes back empty; false at the first difference.
async fn same_windows<T: redis::FromRedisValue + PartialEq + Windowed>(
    a: &RedisEndpoint,
    b: &RedisEndpoint,
    old: &[u8],
    new: &[u8],
    len: u64,
    window: Window,
) -> Result<bool, KeysError> {
    let mut at = 0u64;
    while at < len {
        let end = at + window.size - 1;
        let c = |k: &[u8]| cmd(window.command).arg(k).arg(at).arg(end).clone();
        let (x, y) = tokio::join!(read::<T>(a, old, c(old)), read::<T>(b, new, c(new)));
        let (x, y) = (x?, y?);
        match (x, y) {
            (Some(x), Some(y)) if x == y && x.count() > 0 => at += x.count(),
            (Some(x), Some(y)) if x == y => return Ok(true),
            _ => return Ok(false),
        }
    }
    Ok(true)
}

/// How many elements a window read.
trait Windowed {
    fn count(&self) -> u64;
}

impl<E> Windowed for Vec<E> {
    fn count(&self) -> u64 {
        self.len() as u64
    }
}

/// A stream: windows of entries read from the same id on both sides.
async fn same_stream(
    a: &RedisEndpoint,
    b: &RedisEndpoint,
    chunk: usize,
    old: &[u8],
    new: &[u8],
) -> Result<bool, KeysError> {
    type Entries = Vec<(Vec<u8>, Vec<Vec<u8>>)>;
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
