//! A Redis server or Cluster as callers see it ([`RedisEndpoint`]): connecting, what the
//! server is, and running commands routed by key.
//!
//! - `node.rs`: one server and its connection;
//! - `script.rs`: Lua scripts, run with `EVALSHA` and `EVAL`;
//! - `slots.rs`: hash slots and the slot map read from `CLUSTER SLOTS`;
//! - `cluster.rs`: per-node pipelines on a cluster, following MOVED, ASK and TRYAGAIN.

mod cluster;
mod node;
mod script;
mod slots;

use std::sync::RwLock;

use redis::{Cmd, RedisResult, Value};

pub use node::Node;
pub use script::LuaScript;
pub use slots::key_slot;

use super::error::is_auth_error;
use super::{ConnError, RedisUrl};
use node::{addr_string, connect_node, server_info};
use slots::{Topology, load_topology};

enum Shape {
    Standalone(Node),
    Cluster(RwLock<Topology>),
}

/// A Redis server or Cluster that commands can be routed to by key.
pub struct RedisEndpoint {
    url: RedisUrl,
    shape: Shape,
    version: (u32, u32),
    run_ids: Vec<String>,
}

impl std::fmt::Debug for RedisEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisEndpoint")
            .field("url", &self.url.redacted)
            .field("cluster", &self.is_cluster())
            .finish()
    }
}

impl RedisEndpoint {
    /// Connects to the server or cluster named by `url` and checks the credentials.
    pub async fn connect(url: &str, password: Option<&str>) -> Result<Self, ConnError> {
        let url = RedisUrl::parse(url, password)?;
        let first_addr = addr_string(url.info.addr());
        let first = connect_node(&url, &first_addr).await?;
        let (version, run_id) = server_info(&url, &first).await?;
        if !url.cluster {
            return Ok(Self {
                url,
                shape: Shape::Standalone(first),
                version,
                run_ids: vec![run_id],
            });
        }
        let topology = load_topology(&url, &first, &[]).await?;
        let mut run_ids = Vec::new();
        for node in &topology.nodes {
            run_ids.push(server_info(&url, node).await?.1);
        }
        Ok(Self {
            url,
            shape: Shape::Cluster(RwLock::new(topology)),
            version,
            run_ids,
        })
    }

    /// The URL with its password redacted.
    pub fn display(&self) -> &str {
        &self.url.redacted
    }

    /// Whether this is a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.shape, Shape::Cluster(_))
    }

    /// The database number (0 on a cluster).
    pub fn db(&self) -> i64 {
        self.url.db()
    }

    /// The server's `major.minor` version.
    pub fn version(&self) -> (u32, u32) {
        self.version
    }

    /// Each master's `run_id` now (`host:port` → id), asked afresh: a master that restarted since
    /// it was connected has a new one.
    pub async fn master_run_ids(
        &self,
    ) -> Result<std::collections::BTreeMap<String, String>, ConnError> {
        let mut out = std::collections::BTreeMap::new();
        for node in self.masters() {
            let (_, run_id) = server_info(&self.url, &node).await?;
            out.insert(node.addr.clone(), run_id);
        }
        Ok(out)
    }

    /// Whether `other` is the very same server(s) (compared by `run_id`), so that server-side
    /// commands such as COPY can move data between them.
    pub fn same_server(&self, other: &RedisEndpoint) -> bool {
        let mut a = self.run_ids.clone();
        let mut b = other.run_ids.clone();
        a.sort();
        b.sort();
        a == b
    }

    /// A command reading `key`'s expiry: `PEXPIRETIME` (exact) on Redis ≥ 7, else `PTTL`.
    pub fn expiry_cmd(&self, key: &[u8]) -> Cmd {
        let mut c = redis::cmd(if self.version >= (7, 0) {
            "PEXPIRETIME"
        } else {
            "PTTL"
        });
        c.arg(key);
        c
    }

    /// Reads the reply of [`Self::expiry_cmd`] sent at `now_ms`: `Some(None)` for no expiry,
    /// `Some(Some(at))` for an absolute Unix time in ms, `None` when the key does not exist.
    pub fn expiry_from(&self, reply: &RedisResult<Value>, now_ms: i64) -> Option<Option<i64>> {
        match reply {
            Ok(Value::Int(-1)) => Some(None),
            Ok(Value::Int(t)) if *t >= 0 => Some(Some(if self.version >= (7, 0) {
                *t
            } else {
                now_ms + t
            })),
            _ => None,
        }
    }

    /// The masters to scan: the one server, or every cluster master.
    pub fn masters(&self) -> Vec<Node> {
        match &self.shape {
            Shape::Standalone(n) => vec![n.clone()],
            Shape::Cluster(t) => t.read().unwrap_or_else(|e| e.into_inner()).nodes.clone(),
        }
    }

    /// Whether the server answers a `PING`, asked twice: the first command over a connection a
    /// restart broke fails once, the next one reconnects.
    pub async fn ping(&self) -> Result<(), String> {
        let once = || async {
            let mut ping = redis::cmd("PING");
            ping.arg("ferry");
            match self.query(b"ferry", ping).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(e) => Err(e.to_string()),
            }
        };
        match once().await {
            Ok(()) => Ok(()),
            Err(_) => once().await,
        }
    }

    /// Runs one command on the node owning `key`.
    pub async fn query(&self, key: &[u8], cmd: Cmd) -> Result<RedisResult<Value>, ConnError> {
        let mut out = self.run(vec![(key.to_vec(), cmd)]).await?;
        Ok(out.pop().expect("one reply per command"))
    }

    /// Runs commands, each on the node owning its routing key, pipelined per node; replies come
    /// back in input order. Per-command errors are returned in place; MOVED, ASK and TRYAGAIN
    /// are followed. `Err` means a connection-level failure.
    pub async fn run(
        &self,
        cmds: Vec<(Vec<u8>, Cmd)>,
    ) -> Result<Vec<RedisResult<Value>>, ConnError> {
        match &self.shape {
            Shape::Standalone(node) => node
                .pipeline(cmds.into_iter().map(|(_, c)| c).collect())
                .await
                .map_err(|source| self.command_error(source)),
            Shape::Cluster(_) => self.run_cluster(cmds).await,
        }
    }

    /// A failed round trip as a [`ConnError`]: refused credentials, or a broken command.
    fn command_error(&self, source: redis::RedisError) -> ConnError {
        if is_auth_error(&source) {
            ConnError::Auth {
                endpoint: self.url.redacted.clone(),
                detail: source.to_string(),
            }
        } else {
            ConnError::Command {
                endpoint: self.url.redacted.clone(),
                source,
            }
        }
    }
}
