//! Reading `XREADGROUP` and `XAUTOCLAIM` replies into [`StreamEntry`]s, RESP2 or RESP3, keeping
//! field names and values as bytes and noticing entries deleted while pending.

use redis::{ErrorKind, RedisError, RedisResult, Value};

use super::StreamEntry;

fn bad_reply(what: &'static str, v: &Value) -> RedisError {
    RedisError::from((ErrorKind::UnexpectedReturnType, what, format!("{v:?}")))
}

fn reply_bytes(v: Value) -> Result<Vec<u8>, Value> {
    match v {
        Value::BulkString(b) => Ok(b),
        Value::SimpleString(s) => Ok(s.into_bytes()),
        Value::VerbatimString { text, .. } => Ok(text.into_bytes()),
        other => Err(other),
    }
}

fn reply_text(v: Value) -> RedisResult<String> {
    let b = reply_bytes(v).map_err(|v| bad_reply("a Stream id or name is not a string", &v))?;
    String::from_utf8(b).map_err(|e| {
        RedisError::from((
            ErrorKind::UnexpectedReturnType,
            "a Stream id is not UTF-8",
            e.to_string(),
        ))
    })
}

/// Pairs of a flat `[k, v, k, v, …]` array or a map; nil is no pairs.
fn reply_pairs(v: Value) -> RedisResult<Vec<(Value, Value)>> {
    match v {
        Value::Nil => Ok(Vec::new()),
        Value::Map(pairs) => Ok(pairs),
        Value::Array(items) if items.len() % 2 == 0 => {
            let mut out = Vec::with_capacity(items.len() / 2);
            let mut it = items.into_iter();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                out.push((k, v));
            }
            Ok(out)
        }
        other => Err(bad_reply("not a list of pairs", &other)),
    }
}

/// Entries of an `XREADGROUP`/`XAUTOCLAIM` reply: `[[id, fields | nil], …]`; a nil entry
/// (Redis 6's `XAUTOCLAIM` of a deleted one) is skipped and counted.
fn reply_entries(v: Value) -> RedisResult<(Vec<StreamEntry>, usize)> {
    let items = match v {
        Value::Nil => return Ok((Vec::new(), 0)),
        Value::Array(items) => items,
        other => return Err(bad_reply("not a list of Stream entries", &other)),
    };
    let mut out = Vec::with_capacity(items.len());
    let mut nil = 0;
    for item in items {
        let mut parts = match item {
            Value::Nil => {
                nil += 1;
                continue;
            }
            Value::Array(parts) if parts.len() == 2 => parts.into_iter(),
            other => return Err(bad_reply("not a Stream entry", &other)),
        };
        let id = reply_text(parts.next().unwrap_or(Value::Nil))?;
        let mut fields = Vec::new();
        for (k, v) in reply_pairs(parts.next().unwrap_or(Value::Nil))? {
            let k = reply_bytes(k).map_err(|v| bad_reply("a field name is not a string", &v))?;
            let v = reply_bytes(v).map_err(|v| bad_reply("a value is not a string", &v))?;
            fields.push((k, v));
        }
        out.push(StreamEntry { id, fields });
    }
    Ok((out, nil))
}

/// The entries of an `XREADGROUP` reply: `[[stream, entries]]` (RESP2) or `{stream: entries}`
/// (RESP3); nil when nothing came.
pub(super) fn reply_read(reply: Value) -> RedisResult<Vec<StreamEntry>> {
    let streams = match reply {
        Value::Nil => return Ok(Vec::new()),
        Value::Map(pairs) => pairs,
        Value::Array(items) => items
            .into_iter()
            .map(|item| match item {
                Value::Array(kv) if kv.len() == 2 => {
                    let mut kv = kv.into_iter();
                    Ok((
                        kv.next().unwrap_or(Value::Nil),
                        kv.next().unwrap_or(Value::Nil),
                    ))
                }
                other => Err(bad_reply("not an XREADGROUP reply", &other)),
            })
            .collect::<RedisResult<_>>()?,
        other => return Err(bad_reply("not an XREADGROUP reply", &other)),
    };
    let mut out = Vec::new();
    for (_, entries) in streams {
        out.extend(reply_entries(entries)?.0);
    }
    Ok(out)
}

/// What `XAUTOCLAIM` answered.
#[derive(Debug)]
pub(super) struct Claimed {
    /// The cursor of the next call; `0-0` when the scan is complete.
    pub(super) next: String,
    pub(super) entries: Vec<StreamEntry>,
    /// Ids no longer in the Stream (Redis 7).
    pub(super) deleted: Vec<String>,
    /// Redis 6 claimed deleted entries as nil.
    pub(super) nil: usize,
}

pub(super) fn reply_claimed(v: Value) -> RedisResult<Claimed> {
    let Value::Array(items) = v else {
        return Err(bad_reply("not an XAUTOCLAIM reply", &v));
    };
    if !(2..=3).contains(&items.len()) {
        return Err(bad_reply("not an XAUTOCLAIM reply", &Value::Array(items)));
    }
    let mut it = items.into_iter();
    let next = reply_text(it.next().unwrap_or(Value::Nil))?;
    let (entries, nil) = reply_entries(it.next().unwrap_or(Value::Nil))?;
    let deleted = match it.next() {
        Some(Value::Array(ids)) => ids
            .into_iter()
            .map(reply_text)
            .collect::<RedisResult<_>>()?,
        Some(Value::Nil) | None => Vec::new(),
        Some(other) => return Err(bad_reply("not a list of deleted ids", &other)),
    };
    Ok(Claimed {
        next,
        entries,
        deleted,
        nil,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_keep_raw_fields_and_deleted_entries() {
        let bulk = |b: &[u8]| Value::BulkString(b.to_vec());
        let reply = Value::Array(vec![
            bulk(b"0-0"),
            Value::Array(vec![
                Value::Array(vec![
                    bulk(b"1-0"),
                    Value::Array(vec![bulk(b"\xffname"), bulk(b"v")]),
                ]),
                Value::Array(vec![bulk(b"2-0"), Value::Nil]),
                Value::Nil,
            ]),
            Value::Array(vec![bulk(b"3-0")]),
        ]);
        let c = reply_claimed(reply).unwrap();
        assert_eq!((c.next.as_str(), c.nil), ("0-0", 1));
        assert_eq!(c.deleted, vec!["3-0".to_string()]);
        assert_eq!(
            c.entries[0].fields,
            vec![(b"\xffname".to_vec(), b"v".to_vec())]
        );
        assert!(c.entries[1].fields.is_empty(), "deleted while pending");
    }

    #[test]
    fn read_replies_in_resp2_and_resp3() {
        let bulk = |b: &[u8]| Value::BulkString(b.to_vec());
        let entries = || {
            Value::Array(vec![Value::Array(vec![
                bulk(b"1-0"),
                Value::Array(vec![bulk(b"k"), bulk(b"v")]),
            ])])
        };
        let want = vec![StreamEntry {
            id: "1-0".into(),
            fields: vec![(b"k".to_vec(), b"v".to_vec())],
        }];
        let resp2 = Value::Array(vec![Value::Array(vec![bulk(b"s"), entries()])]);
        assert_eq!(reply_read(resp2).unwrap(), want);
        let resp3 = Value::Map(vec![(bulk(b"s"), entries())]);
        assert_eq!(reply_read(resp3).unwrap(), want);
        assert!(reply_read(Value::Nil).unwrap().is_empty());
        assert!(reply_read(Value::Int(1)).is_err());
    }
}
