//! `copy_in_chunks` of streams with consumer groups, consumers and pending entries, and
//! `RedisEndpoint` routing for keys of a slot that is being migrated (ASK / TRYAGAIN), against
//! real redis-server processes.

use std::collections::BTreeMap;
use std::time::Instant;

use ferry_connectors::redis::{
    ChunkError, ChunkedCopy, RedisEndpoint, Value, cmd, copy_in_chunks, key_slot,
};
use ferry_testkit::{RedisCluster, RedisServer};
use redis::{Commands, Connection};

/// The tag of the temporary key name in these tests.
const TAG: &str = "chunk-test";

/// Runs one command given as words; panics with the command on an error reply.
fn run(c: &mut Connection, args: &[&str]) -> Value {
    let mut command = redis::cmd(args[0]);
    for a in &args[1..] {
        command.arg(*a);
    }
    command.query(c).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn text(v: &Value) -> String {
    redis::from_redis_value::<String>(v.clone()).unwrap_or_else(|e| panic!("{v:?}: {e}"))
}

fn int(v: &Value) -> i64 {
    redis::from_redis_value::<i64>(v.clone()).unwrap_or_else(|e| panic!("{v:?}: {e}"))
}

/// A reply of field/value pairs as a map.
fn fields(v: Value) -> BTreeMap<String, Value> {
    match v {
        Value::Array(items) => items
            .chunks(2)
            .map(|kv| (text(&kv[0]), kv[1].clone()))
            .collect(),
        Value::Map(m) => m.into_iter().map(|(k, v)| (text(&k), v)).collect(),
        other => panic!("expected field/value pairs, got {other:?}"),
    }
}

fn list(v: Value) -> Vec<Value> {
    match v {
        Value::Array(items) => items,
        Value::Nil => Vec::new(),
        other => panic!("expected an array, got {other:?}"),
    }
}

/// Everything observable about a stream and its consumer groups, except times.
#[derive(Debug, PartialEq)]
struct StreamState {
    /// `XINFO STREAM` without the encoding-dependent `radix-tree-*` fields.
    info: BTreeMap<String, Value>,
    /// `XRANGE - +`.
    entries: Value,
    /// `XINFO GROUPS`, every field.
    groups: Vec<BTreeMap<String, Value>>,
    /// `XINFO CONSUMERS` per group without the time fields (the time a consumer was last
    /// seen cannot be set by any command).
    consumers: BTreeMap<String, Vec<BTreeMap<String, Value>>>,
    /// `XPENDING key group` (count, smallest and greatest id, count per consumer).
    pending_summary: BTreeMap<String, Value>,
    /// `XPENDING key group - + 1000`: id, consumer, delivery count.
    pending: BTreeMap<String, Vec<(String, String, i64)>>,
    /// The idle time (ms) of each of those pending entries, compared approximately.
    idle: BTreeMap<String, Vec<i64>>,
}

fn stream_state(c: &mut Connection, key: &str) -> StreamState {
    let mut info = fields(run(c, &["XINFO", "STREAM", key]));
    info.retain(|k, _| !k.starts_with("radix-tree"));
    let entries = run(c, &["XRANGE", key, "-", "+"]);
    let groups: Vec<BTreeMap<String, Value>> = list(run(c, &["XINFO", "GROUPS", key]))
        .into_iter()
        .map(fields)
        .collect();
    let mut consumers = BTreeMap::new();
    let mut pending_summary = BTreeMap::new();
    let mut pending = BTreeMap::new();
    let mut idle = BTreeMap::new();
    for g in &groups {
        let name = text(&g["name"]);
        let cs: Vec<BTreeMap<String, Value>> = list(run(c, &["XINFO", "CONSUMERS", key, &name]))
            .into_iter()
            .map(|v| {
                let mut m = fields(v);
                m.retain(|k, _| {
                    !["idle", "inactive", "seen-time", "active-time"].contains(&k.as_str())
                });
                m
            })
            .collect();
        consumers.insert(name.clone(), cs);
        pending_summary.insert(name.clone(), run(c, &["XPENDING", key, &name]));
        let mut ids = Vec::new();
        let mut idles = Vec::new();
        for e in list(run(c, &["XPENDING", key, &name, "-", "+", "1000"])) {
            let e = list(e);
            ids.push((text(&e[0]), text(&e[1]), int(&e[3])));
            idles.push(int(&e[2]));
        }
        pending.insert(name.clone(), ids);
        idle.insert(name, idles);
    }
    StreamState {
        info,
        entries,
        groups,
        consumers,
        pending_summary,
        pending,
        idle,
    }
}

/// Asserts that two stream states are equal, idle times within `tolerance_ms`.
fn assert_same_stream(source: &StreamState, target: &StreamState, tolerance_ms: i64) {
    assert_eq!(source.info, target.info, "XINFO STREAM");
    assert_eq!(source.entries, target.entries, "XRANGE");
    assert_eq!(source.groups, target.groups, "XINFO GROUPS");
    assert_eq!(source.consumers, target.consumers, "XINFO CONSUMERS");
    assert_eq!(source.pending, target.pending, "XPENDING - + 1000");
    assert_eq!(
        source.pending_summary, target.pending_summary,
        "XPENDING summary"
    );
    for (group, idles) in &source.idle {
        let theirs = &target.idle[group];
        assert_eq!(idles.len(), theirs.len());
        for (i, (a, b)) in idles.iter().zip(theirs).enumerate() {
            assert!(
                (a - b).abs() <= tolerance_ms,
                "group {group}, pending entry {i}: idle {a} ms on the source, {b} ms on the target (tolerance {tolerance_ms} ms)"
            );
        }
    }
}

/// A stream with deleted and trimmed entries (none of them pending), four consumer groups
/// (created at 0, at `$`, at an id with ENTRIESREAD), consumers with and without pending
/// entries, acknowledged entries, redelivered entries and entries claimed with a long idle
/// time and a retry count.
fn build_stream(c: &mut Connection, key: &str) {
    for i in 1..=30 {
        let id = format!("{i}-1");
        let v = format!("v{i}");
        if i % 3 == 0 {
            run(c, &["XADD", key, &id, "f", &v, "g", "second field"]);
        } else {
            run(c, &["XADD", key, &id, "f", &v]);
        }
    }
    // Deleted before any group saw them.
    run(c, &["XDEL", key, "4-1", "17-1"]);
    // g1: two consumers, some entries acknowledged, some delivered twice.
    run(c, &["XGROUP", "CREATE", key, "g1", "0"]);
    run(
        c,
        &[
            "XREADGROUP",
            "GROUP",
            "g1",
            "c1",
            "COUNT",
            "5",
            "STREAMS",
            key,
            ">",
        ],
    );
    run(
        c,
        &[
            "XREADGROUP",
            "GROUP",
            "g1",
            "c2",
            "COUNT",
            "5",
            "STREAMS",
            key,
            ">",
        ],
    );
    run(c, &["XACK", key, "g1", "1-1", "2-1", "3-1"]);
    run(c, &["XREADGROUP", "GROUP", "g1", "c1", "STREAMS", key, "0"]);
    // g2: at the end, one consumer that never read.
    run(c, &["XGROUP", "CREATE", key, "g2", "$"]);
    run(c, &["XGROUP", "CREATECONSUMER", key, "g2", "lurker"]);
    // g3: created at an id with an explicit entries-read.
    run(
        c,
        &["XGROUP", "CREATE", key, "g3", "10-1", "ENTRIESREAD", "9"],
    );
    run(
        c,
        &[
            "XREADGROUP",
            "GROUP",
            "g3",
            "c3",
            "COUNT",
            "4",
            "STREAMS",
            key,
            ">",
        ],
    );
    run(c, &["XACK", key, "g3", "11-1"]);
    // g4: everything delivered (more pending entries than one chunk), two of them claimed by
    // another consumer with a long idle time and a retry count.
    run(c, &["XGROUP", "CREATE", key, "g4", "0"]);
    run(c, &["XREADGROUP", "GROUP", "g4", "c4", "STREAMS", key, ">"]);
    run(
        c,
        &[
            "XCLAIM",
            key,
            "g4",
            "c5",
            "0",
            "12-1",
            "13-1",
            "IDLE",
            "7200000",
            "RETRYCOUNT",
            "5",
            "JUSTID",
        ],
    );
    run(c, &["XACK", key, "g4", "1-1", "2-1"]);
    // Trimmed: 1-1 and 2-1 go (acknowledged everywhere), then one more entry.
    run(c, &["XTRIM", key, "MINID", "3-1"]);
    run(c, &["XADD", key, "31-1", "f", "v31"]);
    // Deleted after delivery but acknowledged: not pending anywhere.
    run(c, &["XACK", key, "g1", "9-1"]);
    run(c, &["XACK", key, "g4", "9-1"]);
    run(c, &["XDEL", key, "9-1"]);
}

async fn endpoint(url: &str) -> RedisEndpoint {
    RedisEndpoint::connect(url, None).await.unwrap()
}

fn pexpiretime(c: &mut Connection, key: &str) -> i64 {
    int(&run(c, &["PEXPIRETIME", key]))
}

/// Copies `src` from `a` to `dst` on `b` in chunks (keeping its expiry) and compares the
/// streams; idle times may differ by at most the time the reads and the copy took.
async fn copy_and_compare(a: &RedisServer, src: &str, b: &RedisServer, dst: &str, chunk: usize) {
    let (from, to) = (endpoint(&a.url()).await, endpoint(&b.url()).await);
    let mut s = a.conn();
    let mut t = b.conn();
    let expire_at = match pexpiretime(&mut s, src) {
        -1 => None,
        at => Some(at),
    };
    let clock = Instant::now();
    let before = stream_state(&mut s, src);
    let out = copy_in_chunks(
        &from,
        src.as_bytes(),
        &to,
        dst.as_bytes(),
        expire_at,
        false,
        chunk,
        TAG,
    )
    .await;
    assert!(
        matches!(out, Ok(ChunkedCopy::Copied { .. })),
        "copy of {src}: {out:?}"
    );
    let after = stream_state(&mut t, dst);
    let elapsed = clock.elapsed().as_millis() as i64;
    // The source is unchanged (its idle times have grown by at most the time elapsed).
    assert_same_stream(
        &before,
        &stream_state(&mut s, src),
        clock.elapsed().as_millis() as i64 + 20,
    );
    assert_same_stream(&before, &after, elapsed + 20);
    let kind: String = redis::cmd("TYPE").arg(dst).query(&mut t).unwrap();
    assert_eq!(kind, "stream");
    assert_eq!(
        pexpiretime(&mut t, dst),
        expire_at.unwrap_or(-1),
        "expiry of {dst}"
    );
    let leftovers: Vec<String> = t
        .scan_match::<_, String>("*ferry-tmp*")
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(leftovers.is_empty(), "temporary keys left: {leftovers:?}");
}

#[tokio::test]
async fn a_stream_with_groups_consumers_and_pending_entries_is_copied_exactly() {
    let (a, b) = (RedisServer::start(), RedisServer::start());
    let mut s = a.conn();
    build_stream(&mut s, "src:stream");
    let () = s.pexpire("src:stream", 3_600_000).unwrap();
    // Sanity: the fixture has what the test is about.
    let src = stream_state(&mut s, "src:stream");
    assert_eq!(src.groups.len(), 4);
    assert!(
        src.pending["g4"].len() > 7,
        "more pending entries than one chunk"
    );
    assert!(src.idle["g4"].iter().any(|&i| i >= 7_200_000));
    assert!(src.pending["g1"].iter().any(|(_, _, n)| *n == 2));
    assert_ne!(
        src.info["max-deleted-entry-id"],
        Value::BulkString(b"0-0".to_vec())
    );
    copy_and_compare(&a, "src:stream", &b, "dst:stream", 7).await;
    // Chunk of one element: every page boundary is crossed.
    copy_and_compare(&a, "src:stream", &b, "dst:stream:1", 1).await;
}

/// An empty stream that never had an entry (created by `XGROUP CREATE … MKSTREAM`), with a
/// group and a consumer.
#[tokio::test]
async fn a_stream_that_never_had_entries_is_copied_exactly_with_its_group() {
    let (a, b) = (RedisServer::start(), RedisServer::start());
    let mut s = a.conn();
    run(&mut s, &["XGROUP", "CREATE", "empty", "g", "$", "MKSTREAM"]);
    run(
        &mut s,
        &["XGROUP", "CREATECONSUMER", "empty", "g", "waiting"],
    );
    copy_and_compare(&a, "empty", &b, "empty-copy", 10).await;
}

/// A stream whose entries were all delivered, acknowledged and deleted: empty, but with a last
/// id, a deleted-entry id, an entries-added count and groups that read it.
#[tokio::test]
async fn an_emptied_stream_is_copied_exactly_with_its_groups() {
    let (a, b) = (RedisServer::start(), RedisServer::start());
    let mut s = a.conn();
    for i in 1..=3 {
        run(&mut s, &["XADD", "emptied", &format!("{i}-5"), "f", "v"]);
    }
    run(&mut s, &["XGROUP", "CREATE", "emptied", "g", "0"]);
    run(&mut s, &["XGROUP", "CREATE", "emptied", "late", "$"]);
    run(
        &mut s,
        &["XREADGROUP", "GROUP", "g", "c", "STREAMS", "emptied", ">"],
    );
    run(&mut s, &["XACK", "emptied", "g", "1-5", "2-5", "3-5"]);
    run(&mut s, &["XDEL", "emptied", "1-5", "2-5", "3-5"]);
    let state = stream_state(&mut s, "emptied");
    assert_eq!(state.info["length"], Value::Int(0));
    copy_and_compare(&a, "emptied", &b, "emptied-copy", 10).await;
}

/// Pending entries whose messages were deleted (XDEL) or trimmed away stay in the group's
/// pending list on the source (`XPENDING` lists them; `XREADGROUP … 0` returns them with a nil
/// body), and DUMP/RESTORE keeps them: a chunked copy must keep them too.
#[tokio::test]
async fn pending_entries_of_deleted_and_trimmed_messages_are_kept() {
    let (a, b) = (RedisServer::start(), RedisServer::start());
    let mut s = a.conn();
    for i in 1..=10 {
        run(
            &mut s,
            &["XADD", "s", &format!("{i}-0"), "f", &format!("v{i}")],
        );
    }
    run(&mut s, &["XGROUP", "CREATE", "s", "g", "0"]);
    run(
        &mut s,
        &[
            "XREADGROUP",
            "GROUP",
            "g",
            "c",
            "COUNT",
            "6",
            "STREAMS",
            "s",
            ">",
        ],
    );
    run(&mut s, &["XDEL", "s", "3-0"]);
    run(&mut s, &["XTRIM", "s", "MINID", "2-0"]);
    let state = stream_state(&mut s, "s");
    assert_eq!(state.pending["g"].len(), 6, "{state:?}");
    // The reference: DUMP/RESTORE keeps them.
    let payload: Vec<u8> = redis::cmd("DUMP").arg("s").query(&mut s).unwrap();
    let mut t = b.conn();
    let () = redis::cmd("RESTORE")
        .arg("restored")
        .arg(0)
        .arg(payload)
        .query(&mut t)
        .unwrap();
    assert_eq!(stream_state(&mut t, "restored").pending, state.pending);
    copy_and_compare(&a, "s", &b, "s-copy", 4).await;
}

// --- A slot being migrated between cluster nodes -------------------------------------------

fn node_id(c: &mut Connection) -> String {
    text(&run(c, &["CLUSTER", "MYID"]))
}

/// The index of the node owning `slot`, from `CLUSTER NODES` of the first node.
fn slot_owner(cluster: &RedisCluster, slot: u16) -> usize {
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

/// Puts `slot` in the MIGRATING state on `from` and IMPORTING on `to`.
fn begin_migration(cluster: &RedisCluster, slot: u16, from: usize, to: usize) {
    let (mut f, mut t) = (cluster.nodes()[from].conn(), cluster.nodes()[to].conn());
    let (fid, tid) = (node_id(&mut f), node_id(&mut t));
    let slot = slot.to_string();
    run(&mut t, &["CLUSTER", "SETSLOT", &slot, "IMPORTING", &fid]);
    run(&mut f, &["CLUSTER", "SETSLOT", &slot, "MIGRATING", &tid]);
}

/// Moves `keys` from node `from` to node `to` with MIGRATE.
fn migrate(cluster: &RedisCluster, from: usize, to: usize, keys: &[&[u8]]) {
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

/// Moves every key left in `slot` and gives the slot to `to` on every node.
fn finish_migration(cluster: &RedisCluster, slot: u16, from: usize, to: usize) {
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
        let refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
        migrate(cluster, from, to, &refs);
    }
    let tid = node_id(&mut cluster.nodes()[to].conn());
    let slot = slot.to_string();
    for i in [to, from] {
        run(
            &mut cluster.nodes()[i].conn(),
            &["CLUSTER", "SETSLOT", &slot, "NODE", &tid],
        );
    }
    for (i, n) in cluster.nodes().iter().enumerate() {
        if i != to && i != from {
            run(&mut n.conn(), &["CLUSTER", "SETSLOT", &slot, "NODE", &tid]);
        }
    }
}

/// `INFO errorstats` count of replies with error `code` on a node.
fn error_count(c: &mut Connection, code: &str) -> u64 {
    let info: String = redis::cmd("INFO").arg("errorstats").query(c).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("errorstat_{code}:count=")))
        .map_or(0, |n| n.trim().parse().unwrap())
}

/// Whether `key` is on this node (asked with ASKING, so an importing node answers too).
fn holds(c: &mut Connection, key: &[u8]) -> bool {
    let replies: Vec<redis::RedisResult<Value>> = redis::pipe()
        .cmd("ASKING")
        .cmd("EXISTS")
        .arg(key)
        .ignore_errors()
        .query(c)
        .unwrap();
    // A migrating node that lacks the key answers ASK.
    matches!(replies[1], Ok(Value::Int(1)))
}

#[tokio::test]
async fn keys_of_a_migrating_slot_are_reached_through_ask() {
    let cluster = RedisCluster::start();
    // Keys sharing one slot: `moved` goes to the importing node before the endpoint reads it,
    // `stays` stays on the migrating node, `fresh` is created while the slot migrates.
    let (moved, stays, fresh, hash) = (
        b"m:{mig}:moved".as_slice(),
        b"m:{mig}:stays".as_slice(),
        b"m:{mig}:fresh".as_slice(),
        b"m:{mig}:hash".as_slice(),
    );
    let slot = key_slot(moved);
    let from = slot_owner(&cluster, slot);
    let to = (from + 1) % 3;
    {
        let mut c = cluster.nodes()[from].conn();
        let () = c.set(moved, "one").unwrap();
        let () = c.set(stays, "two").unwrap();
        for i in 0..50 {
            let () = c.hset(hash, format!("f{i}"), format!("v{i}")).unwrap();
        }
        let () = c.pexpire(hash, 3_600_000).unwrap();
    }
    let ep = endpoint(&cluster.url()).await;
    begin_migration(&cluster, slot, from, to);
    migrate(&cluster, from, to, &[moved, hash]);
    let asks_before = error_count(&mut cluster.nodes()[from].conn(), "ASK");

    // query: one key on the importing node, one on the migrating node.
    let got = ep
        .query(moved, cmd("GET").arg(moved).clone())
        .await
        .unwrap();
    assert_eq!(got.unwrap(), Value::BulkString(b"one".to_vec()));
    let got = ep
        .query(stays, cmd("GET").arg(stays).clone())
        .await
        .unwrap();
    assert_eq!(got.unwrap(), Value::BulkString(b"two".to_vec()));
    // run: a pipeline mixing both, and a write creating a key in the migrating slot.
    let replies = ep
        .run(vec![
            (moved.to_vec(), cmd("GET").arg(moved).clone()),
            (fresh.to_vec(), cmd("SET").arg(fresh).arg("three").clone()),
            (stays.to_vec(), cmd("GET").arg(stays).clone()),
            (moved.to_vec(), cmd("APPEND").arg(moved).arg("+").clone()),
        ])
        .await
        .unwrap();
    let replies: Vec<Value> = replies.into_iter().map(Result::unwrap).collect();
    assert_eq!(
        replies,
        vec![
            Value::BulkString(b"one".to_vec()),
            Value::Okay,
            Value::BulkString(b"two".to_vec()),
            Value::Int(4),
        ]
    );
    let asks = error_count(&mut cluster.nodes()[from].conn(), "ASK") - asks_before;
    assert!(asks >= 3, "the migrating node answered ASK {asks} times");
    // Keys that do not exist on the migrating node were written on the importing one.
    let mut importing = cluster.nodes()[to].conn();
    let mut migrating = cluster.nodes()[from].conn();
    assert!(holds(&mut importing, fresh) && !holds(&mut migrating, fresh));
    assert!(holds(&mut importing, moved) && !holds(&mut migrating, moved));
    assert!(holds(&mut migrating, stays));

    // A chunked copy reads a source key that lives on the importing node.
    let standalone = RedisServer::start();
    let target = endpoint(&standalone.url()).await;
    let at: Vec<i64> = redis::pipe()
        .cmd("ASKING")
        .ignore()
        .cmd("PEXPIRETIME")
        .arg(hash)
        .query(&mut importing)
        .unwrap();
    let at = at[0];
    assert!(at > 0);
    let out = copy_in_chunks(&ep, hash, &target, b"copied", Some(at), false, 7, TAG).await;
    assert!(matches!(out, Ok(ChunkedCopy::Copied { .. })), "{out:?}");
    let mut t = standalone.conn();
    let copied: BTreeMap<String, String> = t.hgetall("copied").unwrap();
    assert_eq!(copied.len(), 50);
    assert_eq!(copied["f7"], "v7");
    assert_eq!(int(&run(&mut t, &["PEXPIRETIME", "copied"])), at);

    // A chunked copy *into* the migrating slot: the final RENAME of the temporary key gets
    // TRYAGAIN while the slot migrates. Either it succeeds exactly, or it fails for this key
    // and leaves nothing behind.
    let src_ep = endpoint(&standalone.url()).await;
    let dst = b"m:{mig}:chunked".as_slice();
    let out = copy_in_chunks(&src_ep, b"copied", &ep, dst, None, false, 7, TAG).await;
    match &out {
        Ok(ChunkedCopy::Copied { .. }) => {
            let got = ep.query(dst, cmd("HLEN").arg(dst).clone()).await.unwrap();
            assert_eq!(got.unwrap(), Value::Int(50));
        }
        Err(ChunkError::Key(e)) => assert!(e.to_lowercase().contains("tryagain"), "{e}"),
        other => panic!("unexpected outcome {other:?}"),
    }
    for n in cluster.nodes() {
        let mut nc = n.conn();
        let left: Vec<Vec<u8>> = nc
            .scan_match::<_, Vec<u8>>(b"*ferry-tmp*")
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert!(left.is_empty(), "node {}: {left:?}", n.port());
    }

    // A multi-key command whose keys are split between the two nodes gets TRYAGAIN from the
    // server: the endpoint retries, then returns the error in place (it does not hang).
    let tryagain_before = error_count(&mut migrating, "TRYAGAIN");
    let reply = ep
        .query(moved, cmd("MGET").arg(moved).arg(stays).clone())
        .await
        .unwrap();
    let err = reply.expect_err("keys split between two nodes");
    assert_eq!(err.code(), Some("TRYAGAIN"), "{err}");
    let retries = error_count(&mut migrating, "TRYAGAIN") - tryagain_before;
    assert!(retries >= 2, "TRYAGAIN retried: {retries} attempts");

    // Once the slot has moved, the same endpoint follows MOVED for every key.
    finish_migration(&cluster, slot, from, to);
    let reply = ep
        .query(moved, cmd("MGET").arg(moved).arg(stays).arg(fresh).clone())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        reply,
        Value::Array(vec![
            Value::BulkString(b"one+".to_vec()),
            Value::BulkString(b"two".to_vec()),
            Value::BulkString(b"three".to_vec()),
        ])
    );
    // And a chunked copy into the slot works now.
    let dst = b"m:{mig}:chunked2".as_slice();
    let out = copy_in_chunks(&src_ep, b"copied", &ep, dst, None, false, 7, TAG).await;
    assert!(matches!(out, Ok(ChunkedCopy::Copied { .. })), "{out:?}");
    let mut owner = cluster.nodes()[to].conn();
    let h: BTreeMap<String, String> = owner.hgetall(dst).unwrap();
    assert_eq!(h, copied);
}
