//! `ferry bridge health`: a Stream as its consumers see it — length, memory, groups with their
//! consumers, pending entries, the oldest pending entry's age and each group's lag — plus what
//! the forward bridge recorded (last offsets written) and the dead-letter Stream's length.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use redis::Value;
use redis::aio::MultiplexedConnection;
use serde::Serialize;

/// A Stream's health.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StreamHealth {
    /// The Stream.
    pub stream: String,
    /// Whether it exists.
    pub exists: bool,
    /// Entries.
    pub length: u64,
    /// Bytes the key uses (`MEMORY USAGE`, sampled).
    pub memory_bytes: u64,
    /// Redis's `used_memory`.
    pub redis_used_memory: u64,
    /// The first and last entry ids.
    pub first_id: Option<String>,
    /// The last entry id.
    pub last_id: Option<String>,
    /// Its consumer groups.
    pub groups: Vec<GroupHealth>,
    /// Entries of the dead-letter Stream (`{stream}:dlq`).
    pub dead_letters: u64,
    /// Last Kafka offsets the forward bridge wrote, by `TOPIC/PARTITION`.
    pub bridged_offsets: BTreeMap<String, i64>,
}

/// One consumer group.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GroupHealth {
    /// Its name.
    pub name: String,
    /// Entries delivered and not acknowledged.
    pub pending: u64,
    /// Entries not yet delivered to the group (Redis's `lag`; `None` when Redis cannot tell,
    /// e.g. after entries were deleted).
    pub lag: Option<u64>,
    /// The last entry delivered.
    pub last_delivered_id: String,
    /// The oldest pending entry.
    pub oldest_pending_id: Option<String>,
    /// Its age in milliseconds (now minus the time in its id).
    pub oldest_pending_age_ms: Option<u64>,
    /// How long since it was last delivered, in milliseconds.
    pub oldest_pending_idle_ms: Option<u64>,
    /// Its consumers.
    pub consumers: Vec<ConsumerHealth>,
}

/// One consumer of a group.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ConsumerHealth {
    /// Its name.
    pub name: String,
    /// Entries delivered to it and not acknowledged.
    pub pending: u64,
    /// Milliseconds since its last attempted interaction.
    pub idle_ms: u64,
}

fn map(v: Value) -> HashMap<String, Value> {
    redis::from_redis_value(v).unwrap_or_default()
}

fn int(m: &HashMap<String, Value>, k: &str) -> Option<u64> {
    m.get(k)
        .and_then(|v| {
            redis::from_redis_value::<Option<i64>>(v.clone())
                .ok()
                .flatten()
        })
        .and_then(|n| u64::try_from(n).ok())
}

fn text(m: &HashMap<String, Value>, k: &str) -> Option<String> {
    m.get(k).and_then(|v| {
        redis::from_redis_value::<Option<String>>(v.clone())
            .ok()
            .flatten()
    })
}

fn entry_id(v: Option<&Value>) -> Option<String> {
    let entry: Vec<Value> = redis::from_redis_value(v?.clone()).ok()?;
    redis::from_redis_value(entry.first()?.clone()).ok()
}

/// Milliseconds of an entry id's time part before now.
fn age_ms(id: &str) -> Option<u64> {
    let ms: u64 = id.split('-').next()?.parse().ok()?;
    let now = u64::try_from(chrono::Utc::now().timestamp_millis()).ok()?;
    Some(now.saturating_sub(ms))
}

/// Reads the health of `stream`; a key of another type is an error that says so.
pub async fn stream_health(
    conn: &mut MultiplexedConnection,
    stream: &str,
) -> anyhow::Result<StreamHealth> {
    let kind: String = redis::cmd("TYPE").arg(stream).query_async(conn).await?;
    anyhow::ensure!(
        kind == "none" || kind == "stream",
        "the key {stream} is a {kind}, not a stream"
    );
    let mut health = StreamHealth {
        stream: stream.to_string(),
        exists: kind == "stream",
        length: 0,
        memory_bytes: 0,
        redis_used_memory: super::backpressure::used_memory(conn).await?,
        first_id: None,
        last_id: None,
        groups: Vec::new(),
        dead_letters: 0,
        bridged_offsets: super::sink::written_offsets(conn, stream).await?,
    };
    let dlq = super::dead_letter_of(stream);
    let dlq_kind: String = redis::cmd("TYPE").arg(&dlq).query_async(conn).await?;
    if dlq_kind == "stream" {
        health.dead_letters = redis::cmd("XLEN").arg(&dlq).query_async(conn).await?;
    }
    if !health.exists {
        return Ok(health);
    }
    let info = map(redis::cmd("XINFO")
        .arg("STREAM")
        .arg(stream)
        .query_async(conn)
        .await?);
    health.length = int(&info, "length").unwrap_or(0);
    health.first_id = entry_id(info.get("first-entry"));
    health.last_id = entry_id(info.get("last-entry"));
    health.memory_bytes = redis::cmd("MEMORY")
        .arg("USAGE")
        .arg(stream)
        .query_async::<Option<u64>>(conn)
        .await?
        .unwrap_or(0);
    let groups: Vec<Value> = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(stream)
        .query_async(conn)
        .await?;
    for g in groups {
        health
            .groups
            .push(group_health(conn, stream, map(g)).await?);
    }
    Ok(health)
}

/// One group of `XINFO GROUPS`, with its oldest pending entry and its consumers.
async fn group_health(
    conn: &mut MultiplexedConnection,
    stream: &str,
    g: HashMap<String, Value>,
) -> redis::RedisResult<GroupHealth> {
    let mut group = GroupHealth {
        name: text(&g, "name").unwrap_or_default(),
        pending: int(&g, "pending").unwrap_or(0),
        lag: int(&g, "lag"),
        last_delivered_id: text(&g, "last-delivered-id").unwrap_or_default(),
        oldest_pending_id: None,
        oldest_pending_age_ms: None,
        oldest_pending_idle_ms: None,
        consumers: Vec::new(),
    };
    if group.pending > 0 {
        // XPENDING key group - + 1: [[id, consumer, idle, deliveries]]
        let oldest: Vec<(String, String, u64, u64)> = redis::cmd("XPENDING")
            .arg(stream)
            .arg(&group.name)
            .arg("-")
            .arg("+")
            .arg(1)
            .query_async(conn)
            .await?;
        if let Some((id, _, idle, _)) = oldest.into_iter().next() {
            group.oldest_pending_age_ms = age_ms(&id);
            group.oldest_pending_idle_ms = Some(idle);
            group.oldest_pending_id = Some(id);
        }
    }
    let consumers: Vec<Value> = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg(stream)
        .arg(&group.name)
        .query_async(conn)
        .await?;
    group.consumers = consumers
        .into_iter()
        .map(|c| {
            let c = map(c);
            ConsumerHealth {
                name: text(&c, "name").unwrap_or_default(),
                pending: int(&c, "pending").unwrap_or(0),
                idle_ms: int(&c, "idle").unwrap_or(0),
            }
        })
        .collect();
    Ok(group)
}

impl StreamHealth {
    /// The health as text, one fact a line.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        if !self.exists {
            let _ = writeln!(s, "stream {}: does not exist", self.stream);
        } else {
            let _ = writeln!(
                s,
                "stream {}: {} entries, {} bytes (Redis uses {} bytes)",
                self.stream, self.length, self.memory_bytes, self.redis_used_memory
            );
            let _ = writeln!(
                s,
                "  first {}  last {}",
                self.first_id.as_deref().unwrap_or("-"),
                self.last_id.as_deref().unwrap_or("-")
            );
        }
        let _ = writeln!(s, "  dead letters: {}", self.dead_letters);
        for (tp, off) in &self.bridged_offsets {
            let _ = writeln!(s, "  bridged from {tp}: up to offset {off}");
        }
        if self.exists && self.groups.is_empty() {
            let _ = writeln!(s, "  no consumer groups");
        }
        for g in &self.groups {
            let lag = g.lag.map_or("unknown".into(), |l| l.to_string());
            let _ = writeln!(
                s,
                "  group {}: {} pending, lag {lag}, last delivered {}",
                g.name, g.pending, g.last_delivered_id
            );
            if let (Some(id), Some(age), Some(idle)) = (
                &g.oldest_pending_id,
                g.oldest_pending_age_ms,
                g.oldest_pending_idle_ms,
            ) {
                let _ = writeln!(
                    s,
                    "    oldest pending {id}: {:.1} s old, idle {:.1} s",
                    age as f64 / 1000.0,
                    idle as f64 / 1000.0
                );
            }
            for c in &g.consumers {
                let _ = writeln!(
                    s,
                    "    consumer {}: {} pending, idle {:.1} s",
                    c.name,
                    c.pending,
                    c.idle_ms as f64 / 1000.0
                );
            }
        }
        s
    }
}
