//! Ferry test harness: real `redis-server` processes and Redis Clusters on free ports, FalkorDB
//! servers, throwaway PostgreSQL databases, Kafka-protocol brokers ([`KafkaBroker`]) and Milvus Lite
//! servers ([`MilvusServer`]); helpers that run commands given as words
//! ([`run_command`]), compare streams with their consumer groups ([`stream_state`],
//! [`assert_same_stream`]) and migrate a cluster's slot by hand ([`begin_slot_migration`]).
//!
//! Every Ferry integration test starts its own servers through this crate, so tests never share
//! state and never touch a Redis that happens to run on the machine (for example on port 6379).
//! The API is synchronous (`std::process`) and works from plain `#[test]` functions as well as
//! from `#[tokio::test]` ones.
//!
//! ```no_run
//! use ferry_testkit::{RedisServer, unique_name};
//! use redis::Commands;
//!
//! let server = RedisServer::start();
//! let key = unique_name("greeting");
//! let _: () = server.conn().set(&key, "hello").unwrap();
//! let value: String = server.conn().get(&key).unwrap();
//! assert_eq!(value, "hello");
//! // The server process is killed and its directory removed when `server` is dropped.
//! ```
//!
//! A binary that cannot be found is a test failure whose message names the setup command
//! (`make test-setup`), never a silent skip.

#![warn(missing_docs)]

mod bins;
mod cluster;
mod graph;
mod kafka;
mod milvus;
mod replies;
mod server;
mod slots;
mod streams;

pub use bins::{redis_cli_bin, redis_server_bin, redis8_server_bin};
pub use cluster::RedisCluster;
pub use graph::{FalkorDbServer, PgDatabase, falkordb_module};
pub use kafka::{KafkaBroker, KafkaRecord, committed_offsets, produce, read_topic, tansu_bin};
pub use milvus::{MilvusServer, milvus_lite_bin};
pub use replies::{reply_fields, reply_int, reply_list, reply_string, run_command};
pub use server::RedisServer;
pub use slots::{
    begin_slot_migration, error_count, finish_slot_migration, migrate_keys, node_id, slot_owner,
};
pub use streams::{StreamFixture, StreamState, assert_same_stream, build_stream, stream_state};

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A finished process's exit status, stdout and stderr, for assertion messages.
pub fn output_text(o: &std::process::Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs `command` with `FERRY_FAILPOINT=name` until it prints `failpoint NAME reached` on
/// stderr, then SIGKILLs it. Panics when the process ends before reaching the failpoint.
pub fn kill_at_failpoint(mut command: std::process::Command, name: &str) {
    use std::io::{BufRead, BufReader};
    let mut child = command
        .env("FERRY_FAILPOINT", name)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the process starts");
    let stderr = child.stderr.take().expect("stderr is piped");
    let wanted = format!("failpoint {name} reached");
    let reached = BufReader::new(stderr)
        .lines()
        .any(|line| line.is_ok_and(|l| l.contains(&wanted)));
    if !reached {
        panic!(
            "the process ended before the failpoint {name}: {:?}",
            child.wait()
        );
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("the killed process is reaped");
}

/// A deterministic vector of `dim` components in [-1, 1) for `seed` (xorshift; distinct
/// directions for distinct seeds), for tests and examples that need embeddings.
pub fn test_vector(seed: u64, dim: usize) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..dim)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % 2000) as f32 / 1000.0 - 1.0
        })
        .collect()
}

/// A fresh unique name for test data: `{prefix}-{pid}-{counter}-{random}`.
///
/// Unique across the tests of one process (a counter), across processes (the pid) and across
/// runs (a random part), so tests that share a server or a checkpoint store never collide.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut hasher = RandomState::new().build_hasher();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    hasher.write_u128(nanos);
    hasher.write_u64(n);
    let random = hasher.finish() & 0xffff_ffff;
    format!("{prefix}-{}-{n}-{random:08x}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_differ_and_keep_the_prefix() {
        let a = unique_name("run");
        let b = unique_name("run");
        assert_ne!(a, b);
        assert!(a.starts_with("run-") && b.starts_with("run-"));
        assert!(a.contains(&std::process::id().to_string()));
    }
}
