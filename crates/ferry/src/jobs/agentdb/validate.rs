//! After a key is moved: the count Redis holds now against the rows PostgreSQL holds for the
//! agent plus the items that failed (and so were never written).

use ferry_connectors::postgres::agentdb::{AgentDbStore, AgentKind};
use ferry_connectors::redis::{RedisEndpoint, cmd};

use super::AgentDbError;

/// A key read to its end, to validate once its last batch is committed.
#[derive(Debug, Clone)]
pub struct Finished {
    /// What it holds.
    pub kind: AgentKind,
    /// Its agent.
    pub agent: String,
    /// The key.
    pub key: Vec<u8>,
    /// The key for people.
    pub shown: String,
    /// Its Redis type when read.
    pub key_type: String,
    /// Its items that failed, in every run.
    pub failed: i64,
}

/// A key whose counts differ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The key for people.
    pub shown: String,
    /// What it holds.
    pub kind: AgentKind,
    /// Items in Redis now.
    pub redis: i64,
    /// Rows of the agent in PostgreSQL.
    pub postgres: i64,
    /// Items that failed.
    pub failed: i64,
}

impl Mismatch {
    /// What differs, and the likely reason.
    pub fn message(&self) -> String {
        let why = if self.redis > self.postgres + self.failed {
            "Redis holds more: items added while it was read are moved by the next run"
        } else {
            "PostgreSQL holds more: items were removed from Redis after they were moved (rows are never deleted; a trimmed list also shifts positions)"
        };
        format!(
            "validation: Redis holds {} {}, PostgreSQL {} rows and {} failed; {why}",
            self.redis,
            self.kind.as_str(),
            self.postgres,
            self.failed
        )
    }
}

/// Compares the counts of `keys` (one Redis pipeline, one query per kind); returns the keys
/// that differ.
pub async fn check(
    redis: &RedisEndpoint,
    store: &AgentDbStore,
    keys: &[Finished],
) -> Result<Vec<Mismatch>, AgentDbError> {
    let cmds = keys
        .iter()
        .map(|k| {
            let name = match k.key_type.as_str() {
                "list" => "LLEN",
                "stream" => "XLEN",
                "hash" => "HLEN",
                _ => "EXISTS",
            };
            let mut c = cmd(name);
            c.arg(&k.key);
            (k.key.clone(), c)
        })
        .collect();
    let in_redis = redis.run(cmds).await?;
    let mut mismatches = Vec::new();
    for kind in AgentKind::ALL {
        let of_kind: Vec<(&Finished, i64)> = keys
            .iter()
            .zip(&in_redis)
            .filter(|(k, _)| k.kind == kind)
            .map(|(k, r)| {
                (
                    k,
                    r.as_ref()
                        .ok()
                        .and_then(|v| redis::from_redis_value_ref(v).ok())
                        .unwrap_or(0),
                )
            })
            .collect();
        if of_kind.is_empty() {
            continue;
        }
        let agents: Vec<&str> = of_kind.iter().map(|(k, _)| k.agent.as_str()).collect();
        let rows = store.counts(kind, &agents).await?;
        for (k, in_redis) in of_kind {
            let postgres = rows.get(&k.agent).copied().unwrap_or(0);
            if in_redis != postgres + k.failed {
                mismatches.push(Mismatch {
                    shown: k.shown.clone(),
                    kind,
                    redis: in_redis,
                    postgres,
                    failed: k.failed,
                });
            }
        }
    }
    Ok(mismatches)
}
