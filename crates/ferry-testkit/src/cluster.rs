//! A throwaway Redis Cluster made of [`RedisServer`]s.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::bins::redis_cli_bin;
use crate::server::RedisServer;

/// How long `redis-cli --cluster create` may run.
const CREATE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the nodes may take to agree once the slots are assigned.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(30);
/// Hash slots in a Redis Cluster.
const SLOTS: usize = 16384;

/// A Redis Cluster of masters without replicas, each a [`RedisServer`] started with
/// `--cluster-enabled yes --cluster-config-file <dir>/nodes.conf --cluster-node-timeout 5000`.
///
/// Built with `redis-cli --cluster create ... --cluster-yes` (three or more masters; one or two
/// masters get their slots with `CLUSTER ADDSLOTSRANGE` and `CLUSTER MEET`, which `redis-cli`
/// refuses to do). [`start`](Self::start) returns only when every node reports
/// `cluster_state:ok` and all nodes agree on the slot map. Dropping it kills every node.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts a cluster of 3 masters.
    pub fn start() -> Self {
        Self::start_with_masters(3)
    }

    /// Starts a cluster of `n` masters (`n >= 1`), slots split evenly in port order.
    pub fn start_with_masters(n: usize) -> Self {
        assert!(n >= 1, "a Redis Cluster needs at least one master");
        let nodes: Vec<RedisServer> = (0..n)
            .map(|_| RedisServer::start_with(&["--cluster-enabled", "yes"]))
            .collect();
        let cluster = RedisCluster { nodes };
        if n >= 3 {
            cluster.create_with_redis_cli();
        } else {
            cluster.create_by_hand();
        }
        cluster.wait_converged();
        cluster
    }

    fn create_with_redis_cli(&self) {
        let cli = redis_cli_bin();
        let out_path = self.nodes[0].dir().join("cluster-create.log");
        let out = File::create(&out_path).expect("create cluster-create.log");
        let mut cmd = Command::new(&cli);
        cmd.arg("--cluster").arg("create");
        for node in &self.nodes {
            cmd.arg(format!("127.0.0.1:{}", node.port()));
        }
        cmd.args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("clone log handle"))
            .stderr(out);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", cli.display()));
        let deadline = Instant::now() + CREATE_TIMEOUT;
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for redis-cli") {
                break Some(status);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            sleep(Duration::from_millis(20));
        };
        if status.is_none_or(|s| !s.success()) {
            let output = fs::read_to_string(&out_path).unwrap_or_default();
            panic!(
                "`redis-cli --cluster create` failed ({}):\n{output}\n{}",
                status.map_or("timed out".to_string(), |s| s.to_string()),
                self.logs()
            );
        }
    }

    fn create_by_hand(&self) {
        let n = self.nodes.len();
        for (i, node) in self.nodes.iter().enumerate() {
            let (first, last) = (i * SLOTS / n, (i + 1) * SLOTS / n - 1);
            let _: () = redis::cmd("CLUSTER")
                .arg("ADDSLOTSRANGE")
                .arg(first)
                .arg(last)
                .query(&mut node.conn())
                .unwrap_or_else(|e| panic!("CLUSTER ADDSLOTSRANGE on node {i}: {e}"));
        }
        let mut first = self.nodes[0].conn();
        for node in &self.nodes[1..] {
            let mut meet = redis::cmd("CLUSTER");
            meet.arg("MEET").arg("127.0.0.1").arg(node.port());
            if let Some(bus) = node.cluster_bus_port() {
                meet.arg(bus);
            }
            let _: () = meet
                .query(&mut first)
                .unwrap_or_else(|e| panic!("CLUSTER MEET: {e}"));
        }
    }

    /// Waits for `cluster_state:ok` on every node and the same view of the masters and their
    /// slots from every node.
    fn wait_converged(&self) {
        let deadline = Instant::now() + CONVERGE_TIMEOUT;
        loop {
            let last = match self.views() {
                Ok(views) => {
                    let agreed = views.windows(2).all(|w| w[0] == w[1]);
                    let complete = views.first().is_some_and(|v| v.len() == self.nodes.len());
                    if agreed && complete {
                        return;
                    }
                    format!("views differ: {views:?}")
                }
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                panic!(
                    "the Redis Cluster did not converge within {CONVERGE_TIMEOUT:?}: {last}\n{}",
                    self.logs()
                );
            }
            sleep(Duration::from_millis(50));
        }
    }

    /// Each node's view: the set of (master port, its slot ranges), or why it is not ready.
    fn views(&self) -> Result<Vec<BTreeSet<(u16, String)>>, String> {
        let mut views = Vec::with_capacity(self.nodes.len());
        for node in &self.nodes {
            let mut conn = node.conn();
            let info: String = redis::cmd("CLUSTER")
                .arg("INFO")
                .query(&mut conn)
                .map_err(|e| e.to_string())?;
            if !info.lines().any(|l| l.trim_end() == "cluster_state:ok") {
                return Err(format!("node {} is not ok yet", node.port()));
            }
            let text: String = redis::cmd("CLUSTER")
                .arg("NODES")
                .query(&mut conn)
                .map_err(|e| e.to_string())?;
            let mut view = BTreeSet::new();
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let (Some(addr), Some(flags), Some(link)) =
                    (fields.get(1), fields.get(2), fields.get(7))
                else {
                    return Err(format!("unexpected CLUSTER NODES line: {line}"));
                };
                if flags.contains("fail") || flags.contains("handshake") || *link != "connected" {
                    return Err(format!("node {} sees {line}", node.port()));
                }
                if !flags.contains("master") {
                    continue;
                }
                let port = addr
                    .split('@')
                    .next()
                    .and_then(|a| a.rsplit(':').next())
                    .and_then(|p| p.parse().ok())
                    .ok_or_else(|| format!("unexpected address in {line}"))?;
                let mut slots: Vec<&str> = fields[8..].to_vec();
                slots.sort_unstable();
                view.insert((port, slots.join(" ")));
            }
            views.push(view);
        }
        Ok(views)
    }

    /// `redis+cluster://127.0.0.1:PORT` with the port of the first node.
    pub fn url(&self) -> String {
        format!("redis+cluster://127.0.0.1:{}", self.nodes[0].port())
    }

    /// The nodes (all masters), in the order they were started.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// A cluster-aware sync client for assertions, seeded with every node.
    pub fn client(&self) -> redis::cluster::ClusterClient {
        redis::cluster::ClusterClient::new(
            self.nodes.iter().map(RedisServer::url).collect::<Vec<_>>(),
        )
        .expect("a cluster client for the test cluster")
    }

    /// Sum of `DBSIZE` over the masters.
    pub fn dbsize(&self) -> u64 {
        self.nodes
            .iter()
            .map(|n| {
                redis::cmd("DBSIZE")
                    .query::<u64>(&mut n.conn())
                    .expect("DBSIZE")
            })
            .sum()
    }

    fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("=== node 127.0.0.1:{}\n{}", n.port(), n.log_tail()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::Commands;

    #[test]
    fn three_masters_store_and_count_keys_through_the_cluster_client() {
        let cluster = RedisCluster::start();
        assert_eq!(cluster.nodes().len(), 3);
        assert_eq!(
            cluster.url(),
            format!("redis+cluster://127.0.0.1:{}", cluster.nodes()[0].port())
        );
        let mut conn = cluster.client().get_connection().unwrap();
        for i in 0..100 {
            let _: () = conn.set(format!("key:{i}"), i).unwrap();
        }
        for i in 0..100 {
            let v: i64 = conn.get(format!("key:{i}")).unwrap();
            assert_eq!(v, i);
        }
        assert_eq!(cluster.dbsize(), 100);
        for node in cluster.nodes() {
            let n: u64 = redis::cmd("DBSIZE").query(&mut node.conn()).unwrap();
            assert!(n > 0, "keys are spread over every master");
        }
    }

    #[test]
    fn a_single_master_cluster_owns_every_slot() {
        let cluster = RedisCluster::start_with_masters(1);
        let mut conn = cluster.client().get_connection().unwrap();
        let _: () = conn.set("a", 1).unwrap();
        let _: () = conn.set("b", 2).unwrap();
        assert_eq!(cluster.dbsize(), 2);
    }
}
