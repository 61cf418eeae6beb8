//! Running commands on a Redis Cluster: each command goes to the master owning its key's
//! slot, one pipeline per node and all nodes at once; MOVED (the slot map is re-read), ASK
//! (the command is sent once more to the named node, after `ASKING`) and TRYAGAIN are
//! followed for up to [`MAX_REDIRECTS`] rounds.
//!
//! These per-node pipelines are written by hand because the redis crate's cluster client
//! cannot pipeline across nodes with the per-node batching Ferry needs.

use std::collections::HashMap;
use std::time::Duration;

use futures::future::join_all;
use redis::{Cmd, ErrorKind, RedisResult, ServerErrorKind, Value};

use super::node::{Node, connect_node};
use super::slots::{key_slot, load_topology};
use super::{RedisEndpoint, Shape};
use crate::redis::ConnError;

/// Rounds of MOVED/ASK/TRYAGAIN redirection before a command is given up.
const MAX_REDIRECTS: usize = 6;

/// Commands of one round bound for one node.
struct NodeBatch {
    node: Node,
    /// Indices of the commands, in the order they are sent.
    indices: Vec<usize>,
    /// Each command follows an ASK redirection: `ASKING` is sent before it.
    asking: bool,
}

/// The commands to send again after a round, and where.
#[derive(Default)]
struct Retry {
    /// Indices of the commands to send again.
    pending: Vec<usize>,
    /// The node an ASK redirection named, by command index.
    ask: HashMap<usize, String>,
    /// A MOVED reply came back: the slot map is out of date.
    refresh: bool,
}

impl Retry {
    /// Notes what `reply` to command `i` asks for; on the `last_round` TRYAGAIN is final.
    fn note(&mut self, i: usize, reply: &RedisResult<Value>, last_round: bool) {
        let Err(e) = reply else { return };
        match e.kind() {
            ErrorKind::Server(ServerErrorKind::Moved) => {
                self.refresh = true;
                self.pending.push(i);
            }
            ErrorKind::Server(ServerErrorKind::Ask) => {
                if let Some((addr, _)) = e.redirect_node() {
                    self.ask.insert(i, addr.to_string());
                }
                self.pending.push(i);
            }
            ErrorKind::Server(ServerErrorKind::TryAgain) if !last_round => self.pending.push(i),
            _ => {}
        }
    }
}

impl NodeBatch {
    /// Sends the batch as one pipeline to its node.
    async fn send(self, cmds: &[(Vec<u8>, Cmd)]) -> (Self, RedisResult<Vec<RedisResult<Value>>>) {
        let per_command = if self.asking { 2 } else { 1 };
        let mut pipeline = Vec::with_capacity(self.indices.len() * per_command);
        for &i in &self.indices {
            if self.asking {
                pipeline.push(redis::cmd("ASKING"));
            }
            pipeline.push(cmds[i].1.clone());
        }
        let replies = self.node.pipeline(pipeline).await;
        (self, replies)
    }

    /// Stores each command's reply in `results` (by index) and notes in `retry` the ones to
    /// send again.
    fn take_replies(
        &self,
        replies: Vec<RedisResult<Value>>,
        last_round: bool,
        results: &mut [Option<RedisResult<Value>>],
        retry: &mut Retry,
    ) {
        let mut replies = replies.into_iter();
        for &i in &self.indices {
            if self.asking {
                replies.next(); // the reply to ASKING
            }
            let reply = replies.next().unwrap_or(Ok(Value::Nil));
            retry.note(i, &reply, last_round);
            results[i] = Some(reply);
        }
    }
}

impl RedisEndpoint {
    /// [`RedisEndpoint::run`] on a cluster.
    pub(super) async fn run_cluster(
        &self,
        cmds: Vec<(Vec<u8>, Cmd)>,
    ) -> Result<Vec<RedisResult<Value>>, ConnError> {
        let mut results: Vec<Option<RedisResult<Value>>> = (0..cmds.len()).map(|_| None).collect();
        let mut retry = Retry {
            pending: (0..cmds.len()).collect(),
            ..Retry::default()
        };
        for round in 0..MAX_REDIRECTS {
            let batches = self.batches(&cmds, &retry).await?;
            let last_round = round + 1 == MAX_REDIRECTS;
            let mut next = Retry::default();
            for (batch, replies) in join_all(batches.into_iter().map(|b| b.send(&cmds))).await {
                let replies = replies.map_err(|e| self.command_error(e))?;
                batch.take_replies(replies, last_round, &mut results, &mut next);
            }
            if next.pending.is_empty() {
                break;
            }
            if next.refresh {
                self.refresh_topology().await?;
            } else {
                tokio::time::sleep(Duration::from_millis(20 * (round as u64 + 1))).await;
            }
            retry = next;
        }
        Ok(results
            .into_iter()
            .map(|r| r.unwrap_or(Ok(Value::Nil)))
            .collect())
    }

    /// Groups the pending commands by the node to run them on: the master of the key's slot,
    /// or the node an ASK redirection named (in a batch of its own).
    async fn batches(
        &self,
        cmds: &[(Vec<u8>, Cmd)],
        retry: &Retry,
    ) -> Result<Vec<NodeBatch>, ConnError> {
        let mut groups: HashMap<String, NodeBatch> = HashMap::new();
        for &i in &retry.pending {
            let (node, asking) = match retry.ask.get(&i) {
                Some(addr) => (self.node_at(addr).await?, true),
                None => (self.slot_master(&cmds[i].0)?, false),
            };
            let group_key = format!("{}{}", node.addr, if asking { "#ask" } else { "" });
            groups
                .entry(group_key)
                .or_insert_with(|| NodeBatch {
                    node,
                    indices: Vec::new(),
                    asking,
                })
                .indices
                .push(i);
        }
        Ok(groups.into_values().collect())
    }

    /// The master owning `key`'s slot.
    fn slot_master(&self, key: &[u8]) -> Result<Node, ConnError> {
        let slot = key_slot(key);
        self.node_for_slot(slot).ok_or_else(|| ConnError::Cluster {
            endpoint: self.url.redacted.clone(),
            reason: format!("no master serves slot {slot}; is the cluster complete?"),
        })
    }

    fn node_for_slot(&self, slot: u16) -> Option<Node> {
        match &self.shape {
            Shape::Standalone(n) => Some(n.clone()),
            Shape::Cluster(t) => t.read().unwrap_or_else(|e| e.into_inner()).master_of(slot),
        }
    }

    /// The master at `addr`, or a new connection to that node (an ASK target not yet in the
    /// slot map).
    async fn node_at(&self, addr: &str) -> Result<Node, ConnError> {
        match self.masters().into_iter().find(|n| n.addr == addr) {
            Some(n) => Ok(n),
            None => connect_node(&self.url, addr).await,
        }
    }

    /// Re-reads the slot map from the first master that answers.
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
}
