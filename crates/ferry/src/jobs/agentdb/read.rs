//! The Redis side: SCAN each kind's pattern on every master, then read each key in chunks from
//! its checkpoint — list elements by position, Stream entries after the last id read, hash
//! fields by HSCAN cursor, a policy whole — and hand each chunk to the writer.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use ferry_connectors::postgres::agentdb::{AgentKind, Batch, Progress};
use ferry_connectors::redis::{Cmd, RedisEndpoint, cmd};
use ferry_core::report::display_key;
use redis::FromRedisValue;
use tokio::sync::mpsc::Sender;
use tokio_util::sync::CancellationToken;

use super::{AgentDbError, ListPush, Patterns, records};

/// Keys asked for per SCAN step.
const SCAN_COUNT: usize = 1000;

/// What the reader hands the writer: one key's rows and bad items since its last chunk.
#[derive(Debug)]
pub struct Chunk {
    /// What the key holds.
    pub kind: AgentKind,
    /// The key.
    pub key: Vec<u8>,
    /// The key for people.
    pub shown: String,
    /// The rows, and the key's progress after them (none for a key that failed as a whole).
    pub batch: Batch,
    /// Failed items: `(item, error)`.
    pub failures: Vec<(String, String)>,
    /// Items read.
    pub read: u64,
    /// Items an earlier run already moved (first chunk of a key only).
    pub skipped: u64,
    /// Whether this is the key's first chunk in this run.
    pub first: bool,
}

impl Chunk {
    fn new(kind: AgentKind, key: &[u8]) -> Self {
        Chunk {
            kind,
            key: key.to_vec(),
            shown: display_key(key),
            batch: Batch::default(),
            failures: Vec::new(),
            read: 0,
            skipped: 0,
            first: true,
        }
    }

    /// The agent this chunk's key belongs to, when it had a usable id.
    pub fn agent(&self) -> Option<&str> {
        self.batch.progress.first().map(|p| p.agent_id.as_str())
    }
}

/// Reads every key of the chosen kinds (see the module doc).
#[derive(Debug)]
pub struct Reader {
    /// The Redis holding the agents.
    pub redis: Arc<RedisEndpoint>,
    /// The key patterns.
    pub patterns: Patterns,
    /// The kinds to read, in order.
    pub kinds: Vec<AgentKind>,
    /// Items per read.
    pub batch: usize,
    /// How experience lists grow.
    pub list_push: ListPush,
    /// Each key's checkpoint from earlier runs.
    pub progress: HashMap<(String, AgentKind), Progress>,
    /// To the writer.
    pub tx: Sender<Chunk>,
    /// Stops reading between chunks.
    pub stop: CancellationToken,
}

/// Whether to go on with the key.
enum Next {
    More,
    Done,
}

impl Reader {
    /// Reads everything; returns early, without error, when stopped or when the writer is gone.
    pub async fn run(self) -> Result<(), AgentDbError> {
        for &kind in &self.kinds {
            let glob = self.patterns.get(kind).glob();
            let mut seen = HashSet::new();
            for node in self.redis.masters() {
                let mut cursor = 0;
                loop {
                    let (next, keys) =
                        node.scan(cursor, Some(&glob), SCAN_COUNT)
                            .await
                            .map_err(|source| ferry_connectors::redis::ConnError::Command {
                                endpoint: self.redis.display().to_string(),
                                source,
                            })?;
                    for key in keys {
                        // SCAN may return a key twice; read it once.
                        if seen.insert(key.clone()) && !self.key(kind, &key).await? {
                            return Ok(());
                        }
                    }
                    cursor = next;
                    if cursor == 0 {
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    /// Reads one key; `false` when the run must end (stopped, or the writer is gone).
    async fn key(&self, kind: AgentKind, key: &[u8]) -> Result<bool, AgentDbError> {
        if self.stop.is_cancelled() {
            return Ok(false);
        }
        let Some(raw) = self.patterns.get(kind).agent(key) else {
            return Ok(true);
        };
        let agent = match records::agent_id(raw) {
            Ok(a) => a,
            Err(e) => return self.key_failed(kind, key, e).await,
        };
        let ty: String = match self.fetch(key, typed("TYPE", key)).await? {
            Ok(ty) => ty,
            Err(e) => return self.key_failed(kind, key, e).await,
        };
        let earlier = self.progress.get(&(agent.clone(), kind));
        if let Some(p) = earlier.filter(|p| p.key_type != ty && (ty == "list" || ty == "stream")) {
            let e = format!(
                "was a {} when Ferry last read it and is a {ty} now, so its checkpoint does not apply; delete its row (agent_id, kind) = ('{agent}', '{}') from ferry_agentdb_progress and its rows from {} to move it again",
                p.key_type,
                kind.as_str(),
                kind.table()
            );
            return self.key_failed(kind, key, e).await;
        }
        let read = match (kind, ty.as_str()) {
            (_, "none") => return Ok(true), // gone since SCAN saw it
            (AgentKind::Experiences, "list") => self.list(key, agent, earlier).await?,
            (AgentKind::Experiences, "stream") => self.stream(key, agent, earlier).await?,
            (AgentKind::QValues, "hash") => self.hash(key, agent, earlier).await?,
            (AgentKind::Policy, "string") => self.policy(key, agent).await?,
            (_, other) => {
                let want = match kind {
                    AgentKind::Experiences => "a list or a stream",
                    AgentKind::QValues => "a hash",
                    AgentKind::Policy => "a string",
                };
                let e = format!("is a {other}, but {} keys must be {want}", kind.as_str());
                return self.key_failed(kind, key, e).await;
            }
        };
        Ok(read)
    }

    /// Reports `key` as one failed item.
    async fn key_failed(
        &self,
        kind: AgentKind,
        key: &[u8],
        error: String,
    ) -> Result<bool, AgentDbError> {
        let mut chunk = Chunk::new(kind, key);
        chunk.failures.push((chunk.shown.clone(), error));
        Ok(self.tx.send(chunk).await.is_ok())
    }

    /// Runs one command on the key's node: `Err` for the connection, the inner `Err` for an
    /// error reply or a reply of an unexpected shape.
    async fn fetch<T: FromRedisValue>(
        &self,
        key: &[u8],
        cmd: Cmd,
    ) -> Result<Result<T, String>, AgentDbError> {
        Ok(match self.redis.query(key, cmd).await? {
            Ok(v) => redis::from_redis_value(v)
                .map_err(|e| format!("Redis sent an unexpected reply: {e}")),
            Err(e) => Err(format!("Redis refused to read it: {e}")),
        })
    }

    /// Sends `chunk`: `None` when the run must end (the writer is gone, or stopped), else
    /// whether the key is finished.
    async fn send(&self, chunk: Chunk, done: bool) -> Option<Next> {
        self.tx.send(chunk).await.ok()?;
        if self.stop.is_cancelled() {
            return None;
        }
        Some(if done { Next::Done } else { Next::More })
    }

    async fn list(
        &self,
        key: &[u8],
        agent: String,
        earlier: Option<&Progress>,
    ) -> Result<bool, AgentDbError> {
        let (mut seq, mut failed) = earlier.map_or((0, 0), |p| (p.seq, p.failed));
        let batch = self.batch as i64;
        let mut chunk = Chunk::new(AgentKind::Experiences, key);
        chunk.skipped = seq as u64;
        loop {
            let (start, end) = match self.list_push {
                ListPush::Rpush => (seq, seq + batch - 1),
                ListPush::Lpush => (-(seq + batch), -(seq + 1)),
            };
            let mut c = typed("LRANGE", key);
            c.arg(start).arg(end);
            let mut items: Vec<Vec<u8>> = match self.fetch(key, c).await? {
                Ok(v) => v,
                Err(e) => return self.read_failed(chunk, e).await,
            };
            if self.list_push == ListPush::Lpush {
                items.reverse();
            }
            for (i, item) in items.iter().enumerate() {
                let s = seq + i as i64;
                match records::experience_from_json(&agent, s, None, item) {
                    Ok(row) => chunk.batch.experiences.push(row),
                    Err(e) => {
                        failed += 1;
                        let index = match self.list_push {
                            ListPush::Rpush => s,
                            ListPush::Lpush => -(s + 1),
                        };
                        chunk
                            .failures
                            .push((format!("{}[{index}]", chunk.shown), e));
                    }
                }
            }
            seq += items.len() as i64;
            chunk.read = items.len() as u64;
            let done = (items.len() as i64) < batch;
            chunk.batch.progress = vec![progress(
                &agent,
                AgentKind::Experiences,
                "list",
                None,
                seq,
                failed,
                done,
            )];
            let next = Chunk::next(&chunk);
            match self.send(chunk, done).await {
                None => return Ok(false),
                Some(Next::Done) => return Ok(true),
                Some(Next::More) => chunk = next,
            }
        }
    }

    async fn stream(
        &self,
        key: &[u8],
        agent: String,
        earlier: Option<&Progress>,
    ) -> Result<bool, AgentDbError> {
        let (mut seq, mut failed) = earlier.map_or((0, 0), |p| (p.seq, p.failed));
        let mut last = earlier.and_then(|p| p.position.clone());
        let mut chunk = Chunk::new(AgentKind::Experiences, key);
        chunk.skipped = seq as u64;
        loop {
            // From the last id read, inclusive (works on every Redis version), one more to
            // make up for it.
            let count = self.batch + usize::from(last.is_some());
            let mut c = typed("XRANGE", key);
            c.arg(last.as_deref().unwrap_or("-"))
                .arg("+")
                .arg("COUNT")
                .arg(count);
            let entries: Vec<(String, Vec<Vec<u8>>)> = match self.fetch(key, c).await? {
                Ok(v) => v,
                Err(e) => return self.read_failed(chunk, e).await,
            };
            let done = entries.len() < count;
            for (id, flat) in entries {
                if last.as_deref() == Some(id.as_str()) {
                    continue;
                }
                let fields: Vec<(Vec<u8>, Vec<u8>)> = flat
                    .chunks_exact(2)
                    .map(|p| (p[0].clone(), p[1].clone()))
                    .collect();
                match records::experience_from_entry(&agent, seq, &id, &fields) {
                    Ok(row) => chunk.batch.experiences.push(row),
                    Err(e) => {
                        failed += 1;
                        chunk.failures.push((format!("{}[{id}]", chunk.shown), e));
                    }
                }
                chunk.read += 1;
                seq += 1;
                last = Some(id);
            }
            chunk.batch.progress = vec![progress(
                &agent,
                AgentKind::Experiences,
                "stream",
                last.clone(),
                seq,
                failed,
                done,
            )];
            let next = Chunk::next(&chunk);
            match self.send(chunk, done).await {
                None => return Ok(false),
                Some(Next::Done) => return Ok(true),
                Some(Next::More) => chunk = next,
            }
        }
    }

    async fn hash(
        &self,
        key: &[u8],
        agent: String,
        earlier: Option<&Progress>,
    ) -> Result<bool, AgentDbError> {
        // An unfinished pass goes on from its cursor; a finished one starts over, so values
        // changed since are copied again.
        let resume = earlier.filter(|p| !p.done);
        let mut cursor: u64 = resume
            .and_then(|p| p.position.as_deref())
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let (mut seen, mut failed) = resume.map_or((0, 0), |p| (p.seq, p.failed));
        let mut chunk = Chunk::new(AgentKind::QValues, key);
        loop {
            let mut c = typed("HSCAN", key);
            c.arg(cursor).arg("COUNT").arg(self.batch);
            let (next, flat): (u64, Vec<Vec<u8>>) = match self.fetch(key, c).await? {
                Ok(v) => v,
                Err(e) => return self.read_failed(chunk, e).await,
            };
            for pair in flat.chunks_exact(2) {
                match records::q_value(&agent, &pair[0], &pair[1]) {
                    Ok(row) => chunk.batch.q_values.push(row),
                    Err(e) => {
                        failed += 1;
                        let field = display_key(&pair[0]);
                        chunk
                            .failures
                            .push((format!("{}[{field}]", chunk.shown), e));
                    }
                }
                chunk.read += 1;
                seen += 1;
            }
            cursor = next;
            let done = cursor == 0;
            chunk.batch.progress = vec![progress(
                &agent,
                AgentKind::QValues,
                "hash",
                Some(cursor.to_string()),
                seen,
                failed,
                done,
            )];
            let next = Chunk::next(&chunk);
            match self.send(chunk, done).await {
                None => return Ok(false),
                Some(Next::Done) => return Ok(true),
                Some(Next::More) => chunk = next,
            }
        }
    }

    async fn policy(&self, key: &[u8], agent: String) -> Result<bool, AgentDbError> {
        let mut chunk = Chunk::new(AgentKind::Policy, key);
        let value: Option<Vec<u8>> = match self.fetch(key, typed("GET", key)).await? {
            Ok(v) => v,
            Err(e) => return self.read_failed(chunk, e).await,
        };
        let Some(value) = value else {
            return Ok(true); // gone since TYPE
        };
        let failed = match records::policy(&agent, &value) {
            Ok(row) => {
                chunk.batch.policies.push(row);
                0
            }
            Err(e) => {
                chunk.failures.push((chunk.shown.clone(), e));
                1
            }
        };
        chunk.read = 1;
        chunk.batch.progress = vec![progress(
            &agent,
            AgentKind::Policy,
            "string",
            None,
            1,
            failed,
            true,
        )];
        Ok(self.send(chunk, true).await.is_some())
    }

    /// A read of the key failed (it changed type meanwhile): the key is reported as failed;
    /// what its earlier chunks brought stays.
    async fn read_failed(&self, mut chunk: Chunk, e: String) -> Result<bool, AgentDbError> {
        chunk.failures.push((chunk.shown.clone(), e));
        chunk.batch.progress.clear();
        Ok(self.tx.send(chunk).await.is_ok())
    }
}

impl Chunk {
    /// An empty chunk for the same key, after `self`.
    fn next(&self) -> Chunk {
        Chunk {
            first: false,
            ..Chunk::new(self.kind, &self.key)
        }
    }
}

/// `NAME key`.
fn typed(name: &str, key: &[u8]) -> Cmd {
    let mut c = cmd(name);
    c.arg(key);
    c
}

fn progress(
    agent: &str,
    kind: AgentKind,
    key_type: &str,
    position: Option<String>,
    seq: i64,
    failed: i64,
    done: bool,
) -> Progress {
    Progress {
        agent_id: agent.to_string(),
        kind,
        key_type: key_type.to_string(),
        position,
        seq,
        failed,
        done,
    }
}
