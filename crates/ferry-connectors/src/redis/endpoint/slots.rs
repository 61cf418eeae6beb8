//! Redis Cluster hash slots: the slot of a key ([`key_slot`]) and the slot map, which master
//! owns each slot, read from `CLUSTER SLOTS`.

use redis::Value;

use super::node::{Node, connect_node};
use crate::redis::{ConnError, RedisUrl};

/// Hash slots of a Redis Cluster.
pub(super) const SLOTS: usize = 16384;

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

/// The slot map of a cluster: its masters and which of them owns each slot.
pub(super) struct Topology {
    /// The masters.
    pub(super) nodes: Vec<Node>,
    /// Index into `nodes` of the master owning each slot (`u16::MAX` = unassigned).
    pub(super) owner: Vec<u16>,
}

impl Topology {
    /// The master owning `slot`, if any.
    pub(super) fn master_of(&self, slot: u16) -> Option<Node> {
        let idx = self.owner[slot as usize];
        self.nodes.get(idx as usize).cloned()
    }
}

/// Reads the slot map with `CLUSTER SLOTS` sent to `via`, connecting to the masters it names
/// (reusing the connections of `known`).
pub(super) async fn load_topology(
    url: &RedisUrl,
    via: &Node,
    known: &[Node],
) -> Result<Topology, ConnError> {
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
