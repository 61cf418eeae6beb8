use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Duration;

use futures::future::join_all;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, Cmd, ConnectionAddr, RedisResult, Value};

use super::error::is_auth_error;
use super::{ConnError, RedisUrl};

const SLOTS: usize = 16384;
/// Rounds of MOVED/ASK/TRYAGAIN redirection before a command is given up.
const MAX_REDIRECTS: usize = 6;

/// The Redis Cluster hash slot of `key` (CRC16/XMODEM of the key or its `{hash tag}`).
pub fn key_slot(key: &[u8]) -> u16 {
    const CRC: crc::Crc<u16> = crc::Crc::<u16>::new(&crc::CRC_16_XMODEM);
    let mut hashed = key;
    if let Some(open) = key.iter().position(|&b| b == b'{')
        && let Some(len) = key[open + 1..].iter().position(|&b| b == b'}')
        && len > 0
    {
        hashed = &key[open + 1..open + 1 + len];
    }
    CRC.checksum(hashed) % SLOTS as u16
}

/// A Lua script and its SHA1, run with [`RedisEndpoint::eval`].
#[derive(Debug)]
pub struct LuaScript {
    source: String,
    sha: redis::Script,
}

impl LuaScript {
    /// A script with this source.
    pub fn new(source: impl Into<String>) -> Self {
        let source = source.into();
        Self {
            sha: redis::Script::new(&source),
            source,
        }
    }

    /// The script's Lua source.
    pub fn source(&self) -> &str {
        &self.source
    }
}

/// One server: its address and a multiplexed connection (cheap to clone).
#[derive(Clone)]
pub struct Node {
    /// `host:port`.
    pub addr: String,
    conn: MultiplexedConnection,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("addr", &self.addr).finish()
    }
}

impl Node {
    /// A clone of the node's connection.
    pub fn conn(&self) -> MultiplexedConnection {
        self.conn.clone()
    }

    /// One SCAN step: the next cursor (0 at the end) and the keys returned.
    pub async fn scan(
        &self,
        cursor: u64,
        pattern: Option<&[u8]>,
        count: usize,
    ) -> RedisResult<(u64, Vec<Vec<u8>>)> {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(cursor);
        if let Some(p) = pattern {
            cmd.arg("MATCH").arg(p);
        }
        cmd.arg("COUNT").arg(count);
        cmd.query_async(&mut self.conn()).await
    }

    /// Runs a pipeline whose individual command errors are returned, not raised.
    pub async fn pipeline(&self, cmds: Vec<Cmd>) -> RedisResult<Vec<RedisResult<Value>>> {
        if cmds.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::Pipeline::with_capacity(cmds.len());
        for c in cmds {
            pipe.add_command(c);
        }
        pipe.ignore_errors().query_async(&mut self.conn()).await
    }
}

struct Topology {
    nodes: Vec<Node>,
    /// Index into `nodes` of the master owning each slot (`u16::MAX` = unassigned).
    owner: Vec<u16>,
}

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

    fn node_for_slot(&self, slot: u16) -> Option<Node> {
        match &self.shape {
            Shape::Standalone(n) => Some(n.clone()),
            Shape::Cluster(t) => {
                let t = t.read().unwrap_or_else(|e| e.into_inner());
                let idx = t.owner[slot as usize];
                t.nodes.get(idx as usize).cloned()
            }
        }
    }

    fn node_by_addr(&self, addr: &str) -> Option<Node> {
        self.masters().into_iter().find(|n| n.addr == addr)
    }

    async fn refresh_topology(&self) -> Result<(), ConnError> {
        if let Shape::Cluster(lock) = &self.shape {
            let known = self.masters();
            let mut last_err = None;
            for node in &known {
                match load_topology(&self.url, node, &known).await {
                    Ok(t) => {
                        *lock.write().unwrap_or_else(|e| e.into_inner()) = t;
                        return Ok(());
                    }
                    Err(e) => last_err = Some(e),
                }
            }
            if let Some(e) = last_err {
                return Err(e);
            }
        }
        Ok(())
    }

    /// Runs one command on the node owning `key`.
    pub async fn query(&self, key: &[u8], cmd: Cmd) -> Result<RedisResult<Value>, ConnError> {
        let mut out = self.run(vec![(key.to_vec(), cmd)]).await?;
        Ok(out.pop().expect("one reply per command"))
    }

    /// Runs a Lua script on the node owning `keys[0]`: `EVALSHA`, then `EVAL` with the whole
    /// source when the server does not know the script yet (`NOSCRIPT`).
    pub async fn eval(
        &self,
        script: &LuaScript,
        keys: &[&[u8]],
        args: &[&[u8]],
    ) -> Result<RedisResult<Value>, ConnError> {
        let route = keys.first().copied().unwrap_or_default().to_vec();
        let build = |verb: &str, body: &str| {
            let mut c = redis::cmd(verb);
            c.arg(body).arg(keys.len()).arg(keys).arg(args);
            c
        };
        let reply = self
            .query(&route, build("EVALSHA", script.sha.get_hash()))
            .await?;
        match reply {
            Err(e) if e.code() == Some("NOSCRIPT") => {
                self.query(&route, build("EVAL", &script.source)).await
            }
            other => Ok(other),
        }
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

    async fn run_cluster(
        &self,
        cmds: Vec<(Vec<u8>, Cmd)>,
    ) -> Result<Vec<RedisResult<Value>>, ConnError> {
        let mut results: Vec<Option<RedisResult<Value>>> = (0..cmds.len()).map(|_| None).collect();
        let mut pending: Vec<usize> = (0..cmds.len()).collect();
        let mut ask: HashMap<usize, String> = HashMap::new();
        for round in 0..MAX_REDIRECTS {
            // Group the pending commands by the node that should run them.
            let mut groups: HashMap<String, (Node, Vec<usize>, bool)> = HashMap::new();
            for &i in &pending {
                let (node, asking) = match ask.get(&i) {
                    Some(addr) => (self.node_at(addr).await?, true),
                    None => {
                        let slot = key_slot(&cmds[i].0);
                        let node = self.node_for_slot(slot).ok_or_else(|| ConnError::Cluster {
                            endpoint: self.url.redacted.clone(),
                            reason: format!(
                                "no master serves slot {slot}; is the cluster complete?"
                            ),
                        })?;
                        (node, false)
                    }
                };
                let group_key = format!("{}{}", node.addr, if asking { "#ask" } else { "" });
                groups
                    .entry(group_key)
                    .or_insert_with(|| (node, Vec::new(), asking))
                    .1
                    .push(i);
            }
            let calls = groups.into_values().map(|(node, idx, asking)| {
                let mut batch = Vec::with_capacity(idx.len() * if asking { 2 } else { 1 });
                for &i in &idx {
                    if asking {
                        batch.push(redis::cmd("ASKING"));
                    }
                    batch.push(cmds[i].1.clone());
                }
                async move { (idx, asking, node.pipeline(batch).await) }
            });
            let mut next = Vec::new();
            let mut refresh = false;
            ask.clear();
            for (idx, asking, replies) in join_all(calls).await {
                let replies = replies.map_err(|e| self.command_error(e))?;
                let mut replies = replies.into_iter();
                for &i in &idx {
                    if asking {
                        replies.next(); // the reply to ASKING
                    }
                    let reply = replies.next().unwrap_or(Ok(Value::Nil));
                    match &reply {
                        Err(e)
                            if e.kind()
                                == redis::ErrorKind::Server(redis::ServerErrorKind::Moved) =>
                        {
                            refresh = true;
                            next.push(i);
                        }
                        Err(e)
                            if e.kind()
                                == redis::ErrorKind::Server(redis::ServerErrorKind::Ask) =>
                        {
                            if let Some((addr, _)) = e.redirect_node() {
                                ask.insert(i, addr.to_string());
                            }
                            next.push(i);
                        }
                        Err(e)
                            if e.kind()
                                == redis::ErrorKind::Server(redis::ServerErrorKind::TryAgain)
                                && round + 1 < MAX_REDIRECTS =>
                        {
                            next.push(i);
                        }
                        _ => {}
                    }
                    results[i] = Some(reply);
                }
            }
            if next.is_empty() {
                break;
            }
            if refresh {
                self.refresh_topology().await?;
            } else {
                tokio::time::sleep(Duration::from_millis(20 * (round as u64 + 1))).await;
            }
            pending = next;
        }
        Ok(results
            .into_iter()
            .map(|r| r.unwrap_or(Ok(Value::Nil)))
            .collect())
    }

    async fn node_at(&self, addr: &str) -> Result<Node, ConnError> {
        match self.node_by_addr(addr) {
            Some(n) => Ok(n),
            None => connect_node(&self.url, addr).await,
        }
    }
}

fn addr_string(addr: &ConnectionAddr) -> String {
    match addr {
        ConnectionAddr::Tcp(host, port) => format!("{host}:{port}"),
        ConnectionAddr::TcpTls { host, port, .. } => format!("{host}:{port}"),
        ConnectionAddr::Unix(path) => path.display().to_string(),
        _ => String::new(),
    }
}

async fn connect_node(url: &RedisUrl, addr: &str) -> Result<Node, ConnError> {
    let mut info = url.info.clone();
    if let Some((host, port)) = addr.rsplit_once(':')
        && let Ok(port) = port.parse::<u16>()
    {
        let host = host.to_string();
        let new_addr = match info.addr() {
            ConnectionAddr::Tcp(..) => Some(ConnectionAddr::Tcp(host, port)),
            ConnectionAddr::TcpTls {
                insecure,
                tls_params,
                ..
            } => Some(ConnectionAddr::TcpTls {
                host,
                port,
                insecure: *insecure,
                tls_params: tls_params.clone(),
            }),
            _ => None,
        };
        if let Some(a) = new_addr {
            info = info.set_addr(a);
        }
    }
    let endpoint = url.redacted.clone();
    let client = Client::open(info).map_err(|source| ConnError::Connect {
        endpoint: endpoint.clone(),
        source,
    })?;
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_response_timeout(Some(Duration::from_secs(120)));
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(|source| {
            if is_auth_error(&source) {
                ConnError::Auth {
                    endpoint: endpoint.clone(),
                    detail: source.to_string(),
                }
            } else {
                ConnError::Connect {
                    endpoint: endpoint.clone(),
                    source,
                }
            }
        })?;
    // A server with a password accepts the connection but refuses the first command.
    let pong: RedisResult<String> = redis::cmd("PING").query_async(&mut conn).await;
    if let Err(source) = pong {
        return Err(if is_auth_error(&source) {
            ConnError::Auth {
                endpoint,
                detail: source.to_string(),
            }
        } else {
            ConnError::Connect { endpoint, source }
        });
    }
    Ok(Node {
        addr: addr.to_string(),
        conn,
    })
}

async fn server_info(url: &RedisUrl, node: &Node) -> Result<((u32, u32), String), ConnError> {
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut node.conn())
        .await
        .map_err(|source| ConnError::Command {
            endpoint: url.redacted.clone(),
            source,
        })?;
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(':')))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    let version = field("redis_version");
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let v = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    Ok((v, field("run_id")))
}

async fn load_topology(url: &RedisUrl, via: &Node, known: &[Node]) -> Result<Topology, ConnError> {
    let cluster_err = |reason: String| ConnError::Cluster {
        endpoint: url.redacted.clone(),
        reason,
    };
    let reply: Value = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query_async(&mut via.conn())
        .await
        .map_err(|e| cluster_err(format!("CLUSTER SLOTS failed ({e}); is it a cluster?")))?;
    let seed_host = via
        .addr
        .rsplit_once(':')
        .map(|(h, _)| h.to_string())
        .unwrap_or_default();
    let Value::Array(ranges) = reply else {
        return Err(cluster_err("unexpected CLUSTER SLOTS reply".into()));
    };
    let mut nodes: Vec<Node> = Vec::new();
    let mut owner = vec![u16::MAX; SLOTS];
    for range in ranges {
        let Value::Array(parts) = range else { continue };
        let (Some(Value::Int(start)), Some(Value::Int(end)), Some(Value::Array(master))) =
            (parts.first(), parts.get(1), parts.get(2))
        else {
            continue;
        };
        let host = match master.first() {
            Some(Value::BulkString(h)) if !h.is_empty() => String::from_utf8_lossy(h).to_string(),
            _ => seed_host.clone(),
        };
        let Some(Value::Int(port)) = master.get(1) else {
            continue;
        };
        let addr = format!("{host}:{port}");
        let idx = match nodes.iter().position(|n| n.addr == addr) {
            Some(i) => i,
            None => {
                let node = match known.iter().find(|n| n.addr == addr) {
                    Some(n) => n.clone(),
                    None => connect_node(url, &addr).await?,
                };
                nodes.push(node);
                nodes.len() - 1
            }
        };
        let end = (*end as usize).min(SLOTS - 1);
        if let Some(range) = owner.get_mut(*start as usize..=end) {
            range.fill(idx as u16);
        }
    }
    if nodes.is_empty() {
        return Err(cluster_err("the cluster has no slots assigned".into()));
    }
    Ok(Topology { nodes, owner })
}

#[cfg(test)]
mod tests {
    use super::key_slot;

    #[test]
    fn slots_match_redis_cluster_keyslot() {
        // Values from `CLUSTER KEYSLOT`.
        assert_eq!(key_slot(b"123456789"), 12739);
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(key_slot(b"foo{}{bar}"), key_slot(b"foo{}{bar}"));
        assert_ne!(key_slot(b"foo{}{bar}"), key_slot(b"bar"));
    }
}
