//! One server: its address and connection ([`Node`]), how a connection is opened and checked,
//! and what `INFO server` says about it.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Cmd, ConnectionAddr, RedisResult, Value};

use crate::redis::error::is_auth_error;
use crate::redis::{ConnError, RedisUrl};

/// One server: its address and a multiplexed connection (cheap to clone) that reconnects
/// after the server restarted or the network dropped it: the command that meets the broken
/// connection fails (the caller retries it as it would any failure), the next ones use a new
/// connection.
#[derive(Clone)]
pub struct Node {
    /// `host:port`.
    pub addr: String,
    conn: ConnectionManager,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("addr", &self.addr).finish()
    }
}

impl Node {
    /// A clone of the node's connection.
    pub fn conn(&self) -> ConnectionManager {
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

/// `host:port` (or the socket's path) of a connection address.
pub(super) fn addr_string(addr: &ConnectionAddr) -> String {
    match addr {
        ConnectionAddr::Tcp(host, port) => format!("{host}:{port}"),
        ConnectionAddr::TcpTls { host, port, .. } => format!("{host}:{port}"),
        ConnectionAddr::Unix(path) => path.display().to_string(),
        _ => String::new(),
    }
}

/// Connects to the server at `addr` (`host:port`) with the settings of `url` (credentials,
/// TLS) and checks with a `PING` that it accepts them.
pub(super) async fn connect_node(url: &RedisUrl, addr: &str) -> Result<Node, ConnError> {
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
    // Reconnecting tries twice, quickly: a server that stays down fails the commands that
    // follow instead of holding them (the jobs retry with their own backoff).
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_response_timeout(Some(Duration::from_secs(120)))
        .set_number_of_retries(1)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_millis(500));
    let mut conn = ConnectionManager::new_with_config(client, config)
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

/// The server's `major.minor` version and `run_id`, from `INFO server`.
pub(super) async fn server_info(
    url: &RedisUrl,
    node: &Node,
) -> Result<((u32, u32), String), ConnError> {
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
