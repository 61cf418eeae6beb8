//! Writing a batch to the Stream, once: one Lua script per batch adds the entries (and dead
//! letters) and records, per topic partition, the last offset written, in a hash next to the
//! Stream (`{stream}:ferry-offsets`, field `TOPIC/PARTITION`). A record whose offset is not
//! above the recorded one was written before — by this process before a crash, or by another
//! member of the group before a rebalance — and is skipped. Redis runs a script atomically, so
//! two bridges that briefly own one partition still write each record once.
//!
//! Kafka offsets are committed after the script returned; a crash in between re-delivers the
//! batch, which the script then skips.

use std::collections::BTreeMap;

use redis::aio::MultiplexedConnection;

use super::entry::{Outgoing, Target};

/// Adds the entries above each partition's recorded offset; returns (entries added to the
/// Stream, dead letters added, records skipped, bytes of the values added to the Stream). Per
/// record: `TOPIC/PARTITION`, offset, timestamp (ms, -1 if none), target (`s` Stream, `d`
/// dead-letter Stream, `e` echo: record the offset, write nothing), field count, fields (the
/// first is `value`). The first record ever written of a partition is kept as
/// `TOPIC/PARTITION#first` = `OFFSET:TIMESTAMP`, to tell a topic that started over from a batch
/// delivered again.
const WRITE_ONCE: &str = r"
local stream, dlq, offsets = KEYS[1], KEYS[2], KEYS[3]
local maxlen = tonumber(ARGV[1])
local last, first = {}, {}
local written, dead, skipped, bytes = 0, 0, 0, 0
local i = 2
while i <= #ARGV do
  local tp, off, ts, target, n = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2], ARGV[i + 3], tonumber(ARGV[i + 4])
  local head, stop = i + 5, i + 4 + 2 * n
  local seen = last[tp]
  if seen == nil then
    seen = tonumber(redis.call('HGET', offsets, tp) or '-1')
  end
  if off > seen then
    if target == 's' then
      if maxlen > 0 then
        redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', unpack(ARGV, head, stop))
      else
        redis.call('XADD', stream, '*', unpack(ARGV, head, stop))
      end
      written = written + 1
      bytes = bytes + string.len(ARGV[head + 1])
    elseif target == 'd' then
      redis.call('XADD', dlq, '*', unpack(ARGV, head, stop))
      dead = dead + 1
    end
    if first[tp] == nil then
      first[tp] = true
      redis.call('HSETNX', offsets, tp .. '#first', string.format('%d', off) .. ':' .. ts)
    end
    seen = off
  else
    skipped = skipped + 1
  end
  last[tp] = seen
  i = stop + 1
end
for tp, off in pairs(last) do
  redis.call('HSET', offsets, tp, string.format('%d', off))
end
return {written, dead, skipped, bytes}
";

/// The hash of last written offsets of `stream`.
pub fn offsets_key(stream: &str) -> String {
    format!("{stream}:ferry-offsets")
}

/// The hash field of a partition.
pub fn partition_field(topic: &str, partition: i32) -> String {
    format!("{topic}/{partition}")
}

/// Writes one batch to the Stream.
#[derive(Debug)]
pub struct StreamSink {
    script: redis::Script,
    stream: String,
    dead_letter: String,
    offsets: String,
    maxlen: u64,
}

/// What a write did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Written {
    /// Entries added to the Stream.
    pub written: u64,
    /// Entries added to the dead-letter Stream.
    pub dead_lettered: u64,
    /// Records skipped: written before.
    pub skipped: u64,
    /// Bytes of the `value` fields added to the Stream.
    pub bytes: u64,
}

impl StreamSink {
    /// A sink for `stream`, its dead-letter Stream, trimming to about `maxlen` entries.
    pub fn new(stream: &str, dead_letter: &str, maxlen: Option<u64>) -> Self {
        StreamSink {
            script: redis::Script::new(WRITE_ONCE),
            stream: stream.to_string(),
            dead_letter: dead_letter.to_string(),
            offsets: offsets_key(stream),
            maxlen: maxlen.unwrap_or(0),
        }
    }

    /// Writes `batch` (records of `topic`, in offset order per partition) in one script call.
    pub async fn write(
        &self,
        conn: &mut MultiplexedConnection,
        topic: &str,
        batch: &[Outgoing],
    ) -> redis::RedisResult<Written> {
        if batch.is_empty() {
            return Ok(Written::default());
        }
        let mut call = self.script.prepare_invoke();
        call.key(&self.stream)
            .key(&self.dead_letter)
            .key(&self.offsets);
        call.arg(self.maxlen);
        let mut fields: BTreeMap<i32, String> = BTreeMap::new();
        for o in batch {
            let tp = fields
                .entry(o.partition)
                .or_insert_with(|| partition_field(topic, o.partition));
            let (target, entry_fields): (&str, &[_]) = match &o.target {
                Target::Stream => ("s", &o.fields),
                Target::DeadLetter => ("d", &o.fields),
                Target::Echo => ("e", &[]),
            };
            call.arg(tp.as_str())
                .arg(o.offset)
                .arg(o.timestamp.unwrap_or(-1))
                .arg(target)
                .arg(entry_fields.len());
            for (k, v) in entry_fields {
                call.arg(k).arg(v);
            }
        }
        let (written, dead_lettered, skipped, bytes): (u64, u64, u64, u64) =
            call.invoke_async(conn).await?;
        Ok(Written {
            written,
            dead_lettered,
            skipped,
            bytes,
        })
    }
}

/// What the hash of `stream` records of one partition.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recorded {
    /// The last offset written.
    pub last: Option<i64>,
    /// The first record ever written: offset and timestamp (ms, -1 if none).
    pub first: Option<(i64, i64)>,
}

/// The last offsets written to `stream`, by `TOPIC/PARTITION`.
pub async fn written_offsets(
    conn: &mut MultiplexedConnection,
    stream: &str,
) -> redis::RedisResult<BTreeMap<String, i64>> {
    let all: BTreeMap<String, String> = redis::cmd("HGETALL")
        .arg(offsets_key(stream))
        .query_async(conn)
        .await?;
    Ok(all
        .into_iter()
        .filter_map(|(k, v)| Some((k, v.parse().ok()?)))
        .collect())
}

/// What is recorded of the partition `field` (`TOPIC/PARTITION`).
pub async fn recorded(
    conn: &mut MultiplexedConnection,
    stream: &str,
    field: &str,
) -> redis::RedisResult<Recorded> {
    let (last, first): (Option<String>, Option<String>) = redis::cmd("HMGET")
        .arg(offsets_key(stream))
        .arg(field)
        .arg(format!("{field}#first"))
        .query_async(conn)
        .await?;
    let first = first.and_then(|f| {
        let (o, t) = f.split_once(':')?;
        Some((o.parse().ok()?, t.parse().ok()?))
    });
    Ok(Recorded {
        last: last.and_then(|l| l.parse().ok()),
        first,
    })
}

/// Forgets the recorded offset of a partition (its topic was recreated: offsets start over).
pub async fn forget_partition(
    conn: &mut MultiplexedConnection,
    stream: &str,
    topic: &str,
    partition: i32,
) -> redis::RedisResult<()> {
    let field = partition_field(topic, partition);
    redis::cmd("HDEL")
        .arg(offsets_key(stream))
        .arg(&field)
        .arg(format!("{field}#first"))
        .query_async(conn)
        .await
}
