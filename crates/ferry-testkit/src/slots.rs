//! Moving a hash slot between the nodes of a [`RedisCluster`] by hand (`CLUSTER SETSLOT`,
//! `MIGRATE`), to test clients while a slot is being migrated (ASK / TRYAGAIN redirections).

use redis::{Connection, ToRedisArgs};

use crate::RedisCluster;
use crate::replies::{reply_string, run_command};

/// The id of the cluster node behind `c` (`CLUSTER MYID`).
pub fn node_id(c: &mut Connection) -> String {
    reply_string(&run_command(c, &["CLUSTER", "MYID"]))
}

/// The index in [`RedisCluster::nodes`] of the node owning `slot`, from `CLUSTER NODES` of the
/// first node.
///
/// # Panics
///
/// When no node owns `slot`.
pub fn slot_owner(cluster: &RedisCluster, slot: u16) -> usize {
    let nodes: String = redis::cmd("CLUSTER")
        .arg("NODES")
        .query(&mut cluster.nodes()[0].conn())
        .unwrap();
    for line in nodes.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let port: u16 = f[1]
            .split('@')
            .next()
            .and_then(|a| a.rsplit(':').next())
            .and_then(|p| p.parse().ok())
            .unwrap();
        for range in &f[8..] {
            if range.starts_with('[') {
                continue;
            }
            let (lo, hi) = match range.split_once('-') {
                Some((lo, hi)) => (lo.parse::<u16>().unwrap(), hi.parse::<u16>().unwrap()),
                None => (range.parse().unwrap(), range.parse().unwrap()),
            };
            if (lo..=hi).contains(&slot) {
                return cluster
                    .nodes()
                    .iter()
                    .position(|n| n.port() == port)
                    .unwrap();
            }
        }
    }
    panic!("no node owns slot {slot}")
}

/// Puts `slot` in the MIGRATING state on node `from` and IMPORTING on node `to` (indexes in
/// [`RedisCluster::nodes`]).
pub fn begin_slot_migration(cluster: &RedisCluster, slot: u16, from: usize, to: usize) {
    let (mut f, mut t) = (cluster.nodes()[from].conn(), cluster.nodes()[to].conn());
    let (fid, tid) = (node_id(&mut f), node_id(&mut t));
    let slot = slot.to_string();
    run_command(&mut t, &["CLUSTER", "SETSLOT", &slot, "IMPORTING", &fid]);
    run_command(&mut f, &["CLUSTER", "SETSLOT", &slot, "MIGRATING", &tid]);
}

/// Moves `keys` from node `from` to node `to` with one `MIGRATE … KEYS`; no keys, nothing.
pub fn migrate_keys<K: ToRedisArgs>(cluster: &RedisCluster, from: usize, to: usize, keys: &[K]) {
    if keys.is_empty() {
        return;
    }
    let mut c = redis::cmd("MIGRATE");
    c.arg("127.0.0.1")
        .arg(cluster.nodes()[to].port())
        .arg("")
        .arg(0)
        .arg(10_000)
        .arg("KEYS")
        .arg(keys);
    let reply: String = c.query(&mut cluster.nodes()[from].conn()).unwrap();
    assert_eq!(reply, "OK");
}

/// Moves every key left in `slot` from node `from` to node `to`, then gives the slot to `to`
/// on `to`, on `from` and on every other node (`CLUSTER SETSLOT … NODE`).
pub fn finish_slot_migration(cluster: &RedisCluster, slot: u16, from: usize, to: usize) {
    let mut f = cluster.nodes()[from].conn();
    loop {
        let keys: Vec<Vec<u8>> = redis::cmd("CLUSTER")
            .arg("GETKEYSINSLOT")
            .arg(slot)
            .arg(100)
            .query(&mut f)
            .unwrap();
        if keys.is_empty() {
            break;
        }
        migrate_keys(cluster, from, to, &keys);
    }
    let tid = node_id(&mut cluster.nodes()[to].conn());
    let slot = slot.to_string();
    let mut order = vec![to, from];
    order.extend((0..cluster.nodes().len()).filter(|i| *i != to && *i != from));
    for i in order {
        run_command(
            &mut cluster.nodes()[i].conn(),
            &["CLUSTER", "SETSLOT", &slot, "NODE", &tid],
        );
    }
}

/// How many error replies with `code` (`ASK`, `TRYAGAIN`, …) the node behind `c` has sent
/// (`INFO errorstats`).
pub fn error_count(c: &mut Connection, code: &str) -> u64 {
    let info: String = redis::cmd("INFO").arg("errorstats").query(c).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("errorstat_{code}:count=")))
        .map_or(0, |n| n.trim().parse().unwrap())
}
