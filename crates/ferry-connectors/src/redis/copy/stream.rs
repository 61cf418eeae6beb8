//! Streams copied element by element: entries, the stream's ids and counters, consumer groups,
//! consumers and pending entries (also of messages deleted or trimmed since).

use std::collections::BTreeSet;

use redis::{FromRedisValue, Value};

use super::{ChunkError, Ctx};

impl Ctx<'_> {
    /// The ids of every pending entry of every consumer group of the source stream, in order:
    /// `XCLAIM … FORCE` skips ids no longer in the stream (deleted or trimmed messages that
    /// are still pending), so the copy adds a placeholder entry for each while it runs.
    async fn pending_ids(&self) -> Result<BTreeSet<StreamId>, ChunkError> {
        let groups: Vec<HashMapValue> = self
            .read({
                let mut c = redis::cmd("XINFO");
                c.arg("GROUPS").arg(self.src);
                c
            })
            .await?;
        let mut ids = BTreeSet::new();
        for group in groups {
            let name = group.get("name").unwrap_or_default();
            let mut start = "-".to_string();
            loop {
                let mut c = redis::cmd("XPENDING");
                c.arg(self.src)
                    .arg(&name)
                    .arg(&start)
                    .arg("+")
                    .arg(self.chunk);
                let pending: Vec<(String, String, i64, i64)> = self.read(c).await?;
                let Some(last) = pending.last() else { break };
                start = format!("({}", last.0);
                ids.extend(pending.iter().filter_map(|p| StreamId::parse(&p.0)));
                if pending.len() < self.chunk {
                    break;
                }
            }
        }
        Ok(ids)
    }

    async fn add_placeholder(&self, id: StreamId) -> Result<(), ChunkError> {
        let mut w = redis::cmd("XADD");
        w.arg(&self.tmp)
            .arg(id.to_string())
            .arg("ferry")
            .arg("pending");
        self.write(w).await.map(drop)
    }

    pub(super) async fn copy_stream(&mut self) -> Result<(), ChunkError> {
        let placeholders = self.copy_entries().await?;
        let setid = self.stream_ids().await?;
        self.write(setid.clone()).await?;
        self.copy_groups().await?;
        if placeholders.below_first.is_empty() && placeholders.between.is_empty() {
            return Ok(());
        }
        // The placeholders go: trimmed below the first entry, deleted after it; then the
        // stream's counters are set again.
        if let Some(&top) = placeholders.below_first.last() {
            let mut t = redis::cmd("XTRIM");
            t.arg(&self.tmp).arg("MINID").arg(top.next().to_string());
            self.write(t).await?;
        }
        for ids in placeholders.between.chunks(self.chunk) {
            let mut d = redis::cmd("XDEL");
            d.arg(&self.tmp);
            for id in ids {
                d.arg(id.to_string());
            }
            self.write(d).await?;
        }
        self.write(setid).await.map(drop)
    }

    /// Copies the entries in id order, with a placeholder for each pending id that is no longer
    /// an entry; an empty stream is created with an entry trimmed at once (a trim, unlike XDEL,
    /// leaves max-deleted-entry-id alone).
    async fn copy_entries(&mut self) -> Result<Placeholders, ChunkError> {
        let mut pending = self.pending_ids().await?;
        let mut placeholders = Placeholders::default();
        let mut start = b"-".to_vec();
        let mut copied = 0usize;
        loop {
            let mut c = redis::cmd("XRANGE");
            c.arg(self.src)
                .arg(&start)
                .arg("+")
                .arg("COUNT")
                .arg(self.chunk);
            let entries: Vec<(Vec<u8>, Vec<Vec<u8>>)> = self.read(c).await?;
            let Some((last, _)) = entries.last() else {
                break;
            };
            let mut next = b"(".to_vec();
            next.extend_from_slice(last);
            start = next;
            for (id, fields) in &entries {
                if let Some(entry) = StreamId::parse(&String::from_utf8_lossy(id)) {
                    while let Some(&p) = pending.first().filter(|&&p| p <= entry) {
                        pending.pop_first();
                        if p < entry {
                            self.add_placeholder(p).await?;
                            placeholders.add(p, copied == 0);
                        }
                    }
                }
                self.count(fields);
                let mut w = redis::cmd("XADD");
                w.arg(&self.tmp).arg(id).arg(fields);
                self.write(w).await?;
                copied += 1;
            }
        }
        for p in std::mem::take(&mut pending) {
            self.add_placeholder(p).await?;
            placeholders.add(p, copied == 0);
        }
        if copied == 0 && placeholders.below_first.is_empty() {
            let mut w = redis::cmd("XADD");
            w.arg(&self.tmp)
                .arg("MAXLEN")
                .arg(0)
                .arg("0-1")
                .arg("f")
                .arg("v");
            self.write(w).await?;
        }
        Ok(placeholders)
    }

    /// The `XSETID` giving the copy the source's last id (and, on Redis 7, its entries-added
    /// and max-deleted-entry-id).
    async fn stream_ids(&self) -> Result<redis::Cmd, ChunkError> {
        let info: Vec<Value> = self
            .read({
                let mut c = redis::cmd("XINFO");
                c.arg("STREAM").arg(self.src);
                c
            })
            .await?;
        let field = |name: &str| -> Option<String> {
            info.chunks(2)
                .find_map(|kv| match &kv[0] {
                    Value::BulkString(k) if k == name.as_bytes() => Some(kv[1].clone()),
                    Value::SimpleString(k) if k == name => Some(kv[1].clone()),
                    _ => None,
                })
                .and_then(|v| redis::from_redis_value(v).ok())
        };
        let mut setid = redis::cmd("XSETID");
        setid
            .arg(&self.tmp)
            .arg(field("last-generated-id").unwrap_or_else(|| "0-0".into()));
        if self.to.version() >= (7, 0) && self.from.version() >= (7, 0) {
            if let Some(added) = field("entries-added") {
                setid.arg("ENTRIESADDED").arg(added);
            }
            if let Some(maxdel) = field("max-deleted-entry-id") {
                setid.arg("MAXDELETEDID").arg(maxdel);
            }
        }
        Ok(setid)
    }

    async fn copy_groups(&mut self) -> Result<(), ChunkError> {
        let groups: Vec<HashMapValue> = self
            .read({
                let mut c = redis::cmd("XINFO");
                c.arg("GROUPS").arg(self.src);
                c
            })
            .await?;
        for group in groups {
            let name = group.get("name").unwrap_or_default();
            let last = group
                .get("last-delivered-id")
                .unwrap_or_else(|| "0-0".into());
            let mut w = redis::cmd("XGROUP");
            w.arg("CREATE").arg(&self.tmp).arg(&name).arg(&last);
            if let Some(read) = group.get("entries-read")
                && self.to.version() >= (7, 0)
            {
                w.arg("ENTRIESREAD").arg(read);
            }
            self.write(w).await?;
            // Consumers, then their pending entries with idle time and delivery count.
            let consumers: Vec<HashMapValue> = self
                .read({
                    let mut c = redis::cmd("XINFO");
                    c.arg("CONSUMERS").arg(self.src).arg(&name);
                    c
                })
                .await?;
            for consumer in consumers {
                let cname = consumer.get("name").unwrap_or_default();
                if self.to.version() >= (6, 2) {
                    let mut w = redis::cmd("XGROUP");
                    w.arg("CREATECONSUMER")
                        .arg(&self.tmp)
                        .arg(&name)
                        .arg(&cname);
                    self.write(w).await?;
                }
                let mut start = "-".to_string();
                loop {
                    let mut c = redis::cmd("XPENDING");
                    c.arg(self.src)
                        .arg(&name)
                        .arg(&start)
                        .arg("+")
                        .arg(self.chunk)
                        .arg(&cname);
                    let pending: Vec<(String, String, i64, i64)> = self.read(c).await?;
                    let Some(last) = pending.last() else { break };
                    start = format!("({}", last.0);
                    for (id, _, idle, deliveries) in &pending {
                        let mut w = redis::cmd("XCLAIM");
                        w.arg(&self.tmp)
                            .arg(&name)
                            .arg(&cname)
                            .arg(0)
                            .arg(id)
                            .arg("IDLE")
                            .arg(idle)
                            .arg("RETRYCOUNT")
                            .arg(deliveries)
                            .arg("FORCE")
                            .arg("JUSTID");
                        self.write(w).await?;
                    }
                    if pending.len() < self.chunk {
                        break;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Placeholder entries of a stream copy: before its first entry (trimmed messages) and after
/// it (deleted ones).
#[derive(Debug, Default)]
struct Placeholders {
    below_first: Vec<StreamId>,
    between: Vec<StreamId>,
}

impl Placeholders {
    fn add(&mut self, id: StreamId, before_any_entry: bool) {
        if before_any_entry {
            self.below_first.push(id);
        } else {
            self.between.push(id);
        }
    }
}

/// A stream entry id, `ms-seq`, ordered as Redis orders them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct StreamId(u64, u64);

impl StreamId {
    fn parse(s: &str) -> Option<Self> {
        let (ms, seq) = s.split_once('-')?;
        Some(Self(ms.parse().ok()?, seq.parse().ok()?))
    }

    /// The smallest id after this one.
    fn next(self) -> Self {
        match self.1.checked_add(1) {
            Some(seq) => Self(self.0, seq),
            None => Self(self.0 + 1, 0),
        }
    }
}

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.0, self.1)
    }
}

/// A reply of field/value pairs (`XINFO GROUPS`, `XINFO CONSUMERS`) read as text.
struct HashMapValue(Vec<(String, Value)>);

impl HashMapValue {
    fn get(&self, name: &str) -> Option<String> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| redis::from_redis_value::<String>(v.clone()).ok())
    }
}

impl FromRedisValue for HashMapValue {
    fn from_redis_value(v: Value) -> Result<Self, redis::ParsingError> {
        let pairs: Vec<(String, Value)> = match v {
            Value::Map(m) => m
                .into_iter()
                .filter_map(|(k, v)| redis::from_redis_value::<String>(k).ok().map(|k| (k, v)))
                .collect(),
            Value::Array(items) => items
                .chunks(2)
                .filter_map(|kv| {
                    let k = redis::from_redis_value::<String>(kv.first()?.clone()).ok()?;
                    Some((k, kv.get(1)?.clone()))
                })
                .collect(),
            _ => Vec::new(),
        };
        Ok(HashMapValue(pairs))
    }
}
