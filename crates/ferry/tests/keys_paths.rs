//! Paths of `ferry keys apply` that the ledgered scripts do not take, end to end through the
//! binary against real redis-server processes: SIGKILL and resume with a Redis Cluster target,
//! a file checkpoint store and `--delete-source`; apply while a cluster slot migrates (ASK /
//! TRYAGAIN); streams with consumer groups copied in chunks.

use std::collections::BTreeMap;
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use ferry_connectors::redis::key_slot;
use ferry_testkit::{
    RedisCluster, RedisServer, StreamFixture, StreamState, assert_same_stream,
    begin_slot_migration, build_stream, error_count, finish_slot_migration, migrate_keys,
    output_text as text, run_command, slot_owner, stream_state,
};
use redis::{Cmd, Commands, Connection, Value};

mod common;
use common::keys::{
    assert_output_has, digest, fill_seed, keys, read_report, seed_key_mapper, spawn_apply,
};

const OLD: &str = "josancamon:rayban-meta-glasses-api:";
const NEW: &str = "meta-glasses:";

/// Runs `ferry keys apply -y EXTRA` until it is no longer refused because the lease of a
/// killed run is still held (it expires within 2 s), at most 60 s.
fn apply_when_lease_free(src: &str, extra: &[&str]) -> Output {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let o = keys("apply", src, &[&["-y"][..], extra].concat());
        let refused = o.status.code() == Some(2) && text(&o).contains("in progress");
        if !refused || Instant::now() > deadline {
            return o;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn show(key: &[u8]) -> String {
    String::from_utf8_lossy(key).into_owned()
}

// --- Reading keys on a server or a cluster (also in a slot that is being migrated) ---------

/// Somewhere keys live: one server, or a cluster whose slots may be migrating.
trait Db {
    /// Runs a read-only command about `key` where `key` lives.
    fn q(&mut self, key: &[u8], c: &Cmd) -> Value;
    /// Runs many read-only commands, each where its key lives (pipelined); replies in order.
    fn many(&mut self, cmds: &[(Vec<u8>, Cmd)]) -> Vec<Value>;
    /// Every key matching `pattern`, sorted.
    fn keys_like(&mut self, pattern: &str) -> Vec<Vec<u8>>;
}

/// Runs `cmds` as pipelines of 1000 on one connection; every reply, errors in place.
fn pipelined(c: &mut Connection, cmds: &[&Cmd]) -> Vec<redis::RedisResult<Value>> {
    let mut out = Vec::with_capacity(cmds.len());
    for chunk in cmds.chunks(1000) {
        let mut p = redis::pipe();
        for cmd in chunk {
            p.add_command((*cmd).clone());
        }
        let replies: Vec<redis::RedisResult<Value>> = p.ignore_errors().query(c).unwrap();
        out.extend(replies);
    }
    out
}

impl Db for Connection {
    fn q(&mut self, key: &[u8], c: &Cmd) -> Value {
        c.query(self)
            .unwrap_or_else(|e| panic!("{} on {}: {e}", show(&c.get_packed_command()), show(key)))
    }

    fn many(&mut self, cmds: &[(Vec<u8>, Cmd)]) -> Vec<Value> {
        let refs: Vec<&Cmd> = cmds.iter().map(|(_, c)| c).collect();
        pipelined(self, &refs)
            .into_iter()
            .zip(cmds)
            .map(|(r, (k, _))| r.unwrap_or_else(|e| panic!("{}: {e}", show(k))))
            .collect()
    }

    fn keys_like(&mut self, pattern: &str) -> Vec<Vec<u8>> {
        let mut out: Vec<Vec<u8>> = self
            .scan_match::<_, Vec<u8>>(pattern)
            .unwrap()
            .map(|k| k.unwrap())
            .collect();
        out.sort();
        out
    }
}

/// The nodes of a cluster (port, connection). A command goes to the slot's owner; when that
/// answers MOVED or ASK (the slot is migrating), every node is asked with ASKING first, so
/// that a node importing the slot answers for the keys it already holds.
struct ClusterDb(Vec<(u16, Connection)>);

impl ClusterDb {
    fn new(cluster: &RedisCluster) -> Self {
        Self(
            cluster
                .nodes()
                .iter()
                .map(|n| (n.port(), n.conn()))
                .collect(),
        )
    }

    /// The index of the node owning each slot, from `CLUSTER SLOTS`.
    fn owners(&mut self) -> Vec<usize> {
        let slots: Value = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query(&mut self.0[0].1)
            .unwrap();
        let mut owner = vec![0; 16384];
        let Value::Array(ranges) = slots else {
            panic!("CLUSTER SLOTS: {slots:?}")
        };
        for range in ranges {
            let Value::Array(r) = range else { continue };
            let (Value::Int(lo), Value::Int(hi), Value::Array(master)) = (&r[0], &r[1], &r[2])
            else {
                panic!("CLUSTER SLOTS entry {r:?}")
            };
            let port: u16 = redis::from_redis_value(master[1].clone()).unwrap();
            let idx = self.0.iter().position(|(p, _)| *p == port).unwrap();
            owner[*lo as usize..=*hi as usize].fill(idx);
        }
        owner
    }
}

impl Db for ClusterDb {
    fn q(&mut self, key: &[u8], c: &Cmd) -> Value {
        for (_, conn) in &mut self.0 {
            let replies: Vec<redis::RedisResult<Value>> = redis::pipe()
                .cmd("ASKING")
                .add_command(c.clone())
                .ignore_errors()
                .query(conn)
                .unwrap();
            match replies.into_iter().nth(1).expect("two replies") {
                Err(e) if matches!(e.code(), Some("MOVED" | "ASK")) => continue,
                Err(e) => panic!("{}: {e}", show(key)),
                Ok(v) => return v,
            }
        }
        panic!("no node answers for {}", show(key))
    }

    fn many(&mut self, cmds: &[(Vec<u8>, Cmd)]) -> Vec<Value> {
        let owner = self.owners();
        let mut out: Vec<Option<Value>> = vec![None; cmds.len()];
        for node in 0..self.0.len() {
            let mine: Vec<usize> = (0..cmds.len())
                .filter(|&i| owner[key_slot(&cmds[i].0) as usize] == node)
                .collect();
            let refs: Vec<&Cmd> = mine.iter().map(|&i| &cmds[i].1).collect();
            for (&i, r) in mine.iter().zip(pipelined(&mut self.0[node].1, &refs)) {
                match r {
                    Ok(v) => out[i] = Some(v),
                    Err(e) if matches!(e.code(), Some("MOVED" | "ASK")) => {}
                    Err(e) => panic!("{}: {e}", show(&cmds[i].0)),
                }
            }
        }
        out.into_iter()
            .enumerate()
            .map(|(i, v)| v.unwrap_or_else(|| self.q(&cmds[i].0, &cmds[i].1)))
            .collect()
    }

    fn keys_like(&mut self, pattern: &str) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for (_, conn) in &mut self.0 {
            out.extend(conn.keys_like(pattern));
        }
        out.sort();
        out
    }
}

fn one(db: &mut dyn Db, verb: &str, key: &[u8]) -> Value {
    db.q(key, redis::cmd(verb).arg(key))
}

fn dump(db: &mut dyn Db, key: &[u8]) -> Option<Vec<u8>> {
    match one(db, "DUMP", key) {
        Value::Nil => None,
        v => Some(redis::from_redis_value(v).unwrap()),
    }
}

/// What a key held: its DUMP payload, its contents in a form independent of the encoding
/// (hash tables iterate in a per-server order, so DUMP payloads of equal sets or hashes may
/// differ between servers) and its absolute expiry (ms, -1 none).
#[derive(Debug, Clone, PartialEq)]
struct Held {
    dump: Vec<u8>,
    contents: Vec<String>,
    expire_at: i64,
}

/// What each of `keys` holds (`None`: no such key), read with pipelines.
fn held_many(db: &mut dyn Db, keys: &[Vec<u8>]) -> Vec<Option<Held>> {
    let mut first = Vec::with_capacity(keys.len() * 3);
    for k in keys {
        for verb in ["TYPE", "DUMP", "PEXPIRETIME"] {
            first.push((k.clone(), redis::cmd(verb).arg(k).clone()));
        }
    }
    let first = db.many(&first);
    let mut second = Vec::with_capacity(keys.len());
    let mut kinds = Vec::with_capacity(keys.len());
    for (k, r) in keys.iter().zip(first.chunks(3)) {
        let kind: String = redis::from_redis_value(r[0].clone()).unwrap();
        let read: &[&str] = match kind.as_str() {
            "string" => &["GET"],
            "hash" => &["HGETALL"],
            "set" => &["SMEMBERS"],
            "list" => &["LRANGE", "0", "-1"],
            "zset" => &["ZRANGE", "0", "-1", "WITHSCORES"],
            "stream" => &["XRANGE", "-", "+"],
            "none" => &["EXISTS"],
            other => panic!("unexpected type {other}"),
        };
        let mut c = redis::cmd(read[0]);
        c.arg(k).arg(&read[1..]);
        second.push((k.clone(), c));
        kinds.push(kind);
    }
    let second = db.many(&second);
    let mut out = Vec::with_capacity(keys.len());
    for ((kind, r), v) in kinds.into_iter().zip(first.chunks(3)).zip(second) {
        if kind == "none" {
            out.push(None);
            continue;
        }
        let mut contents: Vec<String> = match v {
            Value::Array(items) if kind == "hash" => items
                .chunks(2)
                .map(|p| format!("{:?}={:?}", p[0], p[1]))
                .collect(),
            Value::Array(items) => items.iter().map(|i| format!("{i:?}")).collect(),
            Value::Map(m) => m.iter().map(|(k, v)| format!("{k:?}={v:?}")).collect(),
            other => vec![format!("{other:?}")],
        };
        if matches!(kind.as_str(), "hash" | "set") {
            contents.sort();
        }
        contents.insert(0, kind);
        out.push(Some(Held {
            dump: redis::from_redis_value(r[1].clone()).unwrap(),
            contents,
            expire_at: redis::from_redis_value(r[2].clone()).unwrap(),
        }));
    }
    out
}

/// Every key under the old prefix and what it holds.
fn snapshot_old(db: &mut dyn Db) -> BTreeMap<Vec<u8>, Held> {
    let keys = db.keys_like(&format!("{OLD}*"));
    let held = held_many(db, &keys);
    let out: BTreeMap<Vec<u8>, Held> = keys
        .into_iter()
        .zip(held)
        .map(|(k, h)| (k, h.expect("listed keys exist")))
        .collect();
    assert!(!out.is_empty());
    out
}

/// Asserts `got` (what `key` holds) is `want`: the same DUMP payload, or else the same
/// contents, and an expiry within 1 s.
fn assert_same(key: &[u8], got: Option<&Held>, want: &Held) {
    let got = got.unwrap_or_else(|| panic!("{} is missing", show(key)));
    if got.dump != want.dump {
        assert_eq!(got.contents, want.contents, "value of {}", show(key));
    }
    let (a, b) = (want.expire_at, got.expire_at);
    assert!(
        (a == -1 && b == -1) || (a >= 0 && b >= 0 && (a - b).abs() <= 1000),
        "expiry {a} vs {b} for {}",
        show(key)
    );
}

fn assert_holds(db: &mut dyn Db, key: &[u8], want: &Held) {
    let got = held_many(db, &[key.to_vec()]).pop().unwrap();
    assert_same(key, got.as_ref(), want);
}

/// Every key of `old` is under its new name on `target` with its value and expiry; returns
/// how many.
fn assert_all_migrated(old: &BTreeMap<Vec<u8>, Held>, target: &mut dyn Db) -> usize {
    let rules = seed_key_mapper();
    let new: Vec<Vec<u8>> = old
        .keys()
        .map(|k| rules.new_key(k).expect("seed keys all match"))
        .collect();
    let got = held_many(target, &new);
    for ((want, key), got) in old.values().zip(&new).zip(&got) {
        assert_same(key, got.as_ref(), want);
    }
    old.len()
}

/// No temporary key of a chunked copy anywhere, and no checkpoint-store key but a run's fence
/// (which a rollback keeps); the fences are removed so that the digest compares data only.
fn assert_no_strays(db: &mut dyn Db, conns: &mut [&mut Connection]) {
    let tmp = db.keys_like("*ferry-tmp*");
    assert!(
        tmp.is_empty(),
        "temporary keys left: {:?}",
        tmp.iter().map(|k| show(k)).collect::<Vec<_>>()
    );
    let store: Vec<String> = db.keys_like("ferry:*").iter().map(|k| show(k)).collect();
    let kept: Vec<&String> = store.iter().filter(|k| !k.ends_with(":fence")).collect();
    assert!(kept.is_empty(), "checkpoint-store keys left: {kept:?}");
    for c in conns.iter_mut() {
        for fence in c.keys_like("ferry:*") {
            let () = c.del(&fence).unwrap();
        }
    }
}

/// Waits (up to 60 s) until `count()` reaches `n` while `child` is still running.
fn wait_for(child: &mut Child, n: usize, mut count: impl FnMut() -> usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the apply ended ({status}) before it could be killed mid-run");
        }
        if count() >= n {
            return;
        }
        assert!(Instant::now() < deadline, "the apply did not get going");
        std::thread::sleep(Duration::from_millis(20));
    }
}

// --- SIGKILL mid-run, resume, verify, rollback ---------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    /// Standalone source, Redis Cluster target (RESTORE routed by slot, store on the cluster).
    ClusterTarget,
    /// One server, checkpoint store in a directory (COPY, ledger in files).
    FileCheckpoint,
    /// One server, `--delete-source`, store on the server (the ledgered script moves each key).
    DeleteSource,
    /// One server, `--delete-source`, store in a directory (the move recorded first, then a
    /// COPY and UNLINK script per key).
    DeleteSourceFileCheckpoint,
}

impl Variant {
    fn deletes(self) -> bool {
        matches!(
            self,
            Variant::DeleteSource | Variant::DeleteSourceFileCheckpoint
        )
    }
}

fn sigkill_then_resume(variant: Variant) {
    let source = RedisServer::start();
    let cluster = (variant == Variant::ClusterTarget).then(RedisCluster::start);
    let store_dir = tempfile::tempdir().unwrap();
    let mut s = source.conn();
    fill_seed(&mut s, 30_000);
    let old = snapshot_old(&mut s);
    let total = old.len();
    let mut target: Box<dyn Db> = match &cluster {
        Some(c) => Box::new(ClusterDb::new(c)),
        None => Box::new(source.conn()),
    };
    // A key under the new prefix that no old key maps to: apply and rollback leave it alone.
    match &cluster {
        Some(c) => {
            let () = c
                .client()
                .get_connection()
                .unwrap()
                .set("meta-glasses:user:profile:kept", "app")
                .unwrap();
        }
        None => {
            let () = s.set("meta-glasses:user:profile:kept", "app").unwrap();
        }
    }
    let mut servers: Vec<&RedisServer> = vec![&source];
    if let Some(c) = &cluster {
        servers.extend(c.nodes());
    }
    let before: Vec<String> = servers.iter().map(|n| digest(&mut n.conn())).collect();
    let url = source.url();
    let target_url = cluster.as_ref().map(RedisCluster::url);
    let store = format!("file://{}", store_dir.path().display());
    let mut common: Vec<&str> = Vec::new();
    match variant {
        Variant::ClusterTarget => common.extend(["--target", target_url.as_deref().unwrap()]),
        Variant::FileCheckpoint | Variant::DeleteSourceFileCheckpoint => {
            common.extend(["--checkpoint", store.as_str()])
        }
        Variant::DeleteSource => {}
    }
    // verify and rollback take the same endpoints and store as apply.
    let others = common.clone();
    if variant.deletes() {
        common.push("--delete-source");
    }
    let slow = [&common[..], &["--rate", "6000", "--batch-size", "200"]].concat();
    let mut child = spawn_apply(&url, &slow, Stdio::null);
    wait_for(&mut child, 3000, || {
        target.keys_like(&format!("{NEW}*")).len()
    });
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let partial = target.keys_like(&format!("{NEW}*")).len() - 1;
    assert!(
        partial >= 3000 && partial < total,
        "killed mid-run: {partial} of {total} keys copied"
    );
    if variant.deletes() {
        // Nothing lost at the kill: every key is under its old or its new name (or both).
        let rules = seed_key_mapper();
        let mut probes = Vec::with_capacity(2 * total);
        for k in old.keys() {
            let new = rules.new_key(k).unwrap();
            probes.push((k.clone(), redis::cmd("EXISTS").arg(k).clone()));
            probes.push((new.clone(), redis::cmd("EXISTS").arg(&new).clone()));
        }
        let found = s.many(&probes);
        let mut deleted = 0;
        for (k, pair) in old.keys().zip(found.chunks(2)) {
            if pair[0] == Value::Int(0) {
                deleted += 1;
                assert_eq!(
                    pair[1],
                    Value::Int(1),
                    "{} was deleted but its new key is missing",
                    show(k)
                );
            }
        }
        assert!(deleted > 0, "the killed run deleted sources");
    }

    let report = tempfile::NamedTempFile::new().unwrap();
    let resume = [&common[..], &["--report", report.path().to_str().unwrap()]].concat();
    let o = apply_when_lease_free(&url, &resume);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let r = read_report(report.path());
    assert_eq!(r["resumed"], true, "{r}");
    assert_eq!(r["stats"]["failed"], 0, "{r}");
    // The keys the killed attempt wrote are known as this run's: redone, not skipped.
    assert_eq!(r["stats"]["skipped_existing"], 0, "{r}");
    if variant.deletes() {
        let left = s.keys_like(&format!("{OLD}*"));
        assert!(
            left.is_empty(),
            "{} source keys not deleted, e.g. {}",
            left.len(),
            show(&left[0])
        );
    } else {
        assert_eq!(r["stats"]["migrated"], total as u64, "{r}");
        assert_eq!(snapshot_old(&mut s).len(), total, "sources kept");
    }
    assert_eq!(assert_all_migrated(&old, target.as_mut()), total);
    assert_eq!(
        target.keys_like(&format!("{NEW}*")).len(),
        total + 1,
        "no extra keys"
    );
    let o = keys("verify", &url, &others);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    if variant.deletes() {
        // Moved keys have no source left to compare with: counted apart, never `ok`.
        assert_output_has(&o, "ok 0");
        assert_output_has(&o, &format!("moved (existence only) {total}"));
    } else {
        assert_output_has(&o, &format!("ok {total}"));
    }
    let o = keys("rollback", &url, &[&["-y"][..], &others].concat());
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let mut conns: Vec<Connection> = servers.iter().map(|n| n.conn()).collect();
    let mut refs: Vec<&mut Connection> = conns.iter_mut().collect();
    assert_no_strays(target.as_mut(), &mut refs);
    assert_no_strays(&mut s, &mut []);
    let after: Vec<String> = servers.iter().map(|n| digest(&mut n.conn())).collect();
    assert_eq!(
        after, before,
        "rollback restores every server's prior content"
    );
    if variant.deletes() {
        let back = snapshot_old(&mut s);
        assert_eq!(back.len(), total, "every deleted source is back");
        for ((k, want), (k2, got)) in old.iter().zip(&back) {
            assert_eq!(show(k), show(k2));
            assert_same(k, Some(got), want);
        }
    }
}

#[test]
fn sigkill_with_a_cluster_target_then_resume_verify_and_rollback_are_exact() {
    sigkill_then_resume(Variant::ClusterTarget);
}

#[test]
fn sigkill_with_a_file_checkpoint_then_resume_verify_and_rollback_are_exact() {
    sigkill_then_resume(Variant::FileCheckpoint);
}

#[test]
fn sigkill_with_delete_source_then_resume_verify_and_rollback_are_exact() {
    sigkill_then_resume(Variant::DeleteSource);
}

#[test]
fn sigkill_with_delete_source_and_a_file_checkpoint_then_resume_verify_and_rollback_are_exact() {
    sigkill_then_resume(Variant::DeleteSourceFileCheckpoint);
}

// --- A slot migrating while apply runs ------------------------------------------------------

/// `n` ids whose key built by `name` falls in `slot`.
fn ids_in_slot(slot: u16, n: usize, name: impl Fn(u64) -> String) -> Vec<u64> {
    (0u64..)
        .filter(|&i| key_slot(name(i).as_bytes()) == slot)
        .take(n)
        .collect()
}

/// Every key of the cluster (but a run's fence) and what it holds.
fn cluster_contents(db: &mut ClusterDb) -> BTreeMap<Vec<u8>, Held> {
    let keys: Vec<Vec<u8>> = db
        .keys_like("*")
        .into_iter()
        .filter(|k| !(show(k).starts_with("ferry:") && show(k).ends_with(":fence")))
        .collect();
    let held = held_many(db, &keys);
    keys.into_iter()
        .zip(held)
        .map(|(k, h)| (k, h.expect("listed keys exist")))
        .collect()
}

#[test]
fn apply_during_a_slot_migration_follows_ask_and_reports_tryagain() {
    let cluster = RedisCluster::start();
    let store_slot = key_slot(b"keys/default");
    // Three slots that migrate while apply runs:
    // - A: the OLD names of some reminders, half of them already moved to the importing node
    //   (reads of those get ASK);
    // - B: the NEW names of some profiles (the new keys do not exist yet: RESTOREs get ASK and
    //   create them on the importing node);
    // - C: old and new names of some cancellations sharing a hash tag (server-side COPY inside
    //   one slot; with keys on both nodes the server answers TRYAGAIN).
    let reminder = |i: u64| format!("{OLD}reminder:ask-{i}");
    let profile_new = |i: u64| format!("{NEW}user:profile:imp-{i}");
    let slot_a = key_slot(reminder(0).as_bytes());
    let slot_b = key_slot(profile_new(0).as_bytes());
    let tag_c = (0u64..)
        .map(|i| format!("tc{i}"))
        .find(|t| ![slot_a, slot_b, store_slot].contains(&key_slot(t.as_bytes())))
        .unwrap();
    let slot_c = key_slot(tag_c.as_bytes());
    assert!(
        slot_a != slot_b && ![slot_a, slot_b].contains(&store_slot),
        "pick other names"
    );
    let group_a: Vec<Vec<u8>> = ids_in_slot(slot_a, 20, reminder)
        .into_iter()
        .map(|i| reminder(i).into_bytes())
        .collect();
    let group_b: Vec<Vec<u8>> = ids_in_slot(slot_b, 20, profile_new)
        .into_iter()
        .map(|i| format!("{OLD}user_profile:imp-{i}").into_bytes())
        .collect();
    let group_c: Vec<Vec<u8>> = (0..20)
        .map(|i| format!("{OLD}cancellation:wa:{{{tag_c}}}-{i}").into_bytes())
        .collect();
    {
        let mut cc = cluster.client().get_connection().unwrap();
        for cmd in ferry::demo::seed_commands(2000, 7) {
            let () = cmd.query(&mut cc).unwrap();
        }
        for (n, k) in group_a.iter().chain(&group_b).chain(&group_c).enumerate() {
            let () = cc.set(k, format!("value {n}")).unwrap();
            if n % 2 == 0 {
                let () = cc.pexpire(k, 3_600_000 + n as i64).unwrap();
            }
        }
    }
    let rules = seed_key_mapper();
    for k in &group_c {
        assert_eq!(key_slot(k), key_slot(&rules.new_key(k).unwrap()));
    }
    let mut db = ClusterDb::new(&cluster);
    let old = snapshot_old(&mut db);
    let before = cluster_contents(&mut db);

    let mut moves = Vec::new();
    for (slot, moved) in [
        (slot_a, &group_a[..10]),
        (slot_b, &[][..]),
        (slot_c, &group_c[..10]),
    ] {
        let from = slot_owner(&cluster, slot);
        let to = (from + 1) % cluster.nodes().len();
        begin_slot_migration(&cluster, slot, from, to);
        migrate_keys(&cluster, from, to, moved);
        moves.push((slot, from, to));
    }

    let asks_before: Vec<u64> = moves
        .iter()
        .map(|&(_, from, _)| error_count(&mut cluster.nodes()[from].conn(), "ASK"))
        .collect();
    let url = cluster.url();
    let report = tempfile::NamedTempFile::new().unwrap();
    let o = keys(
        "apply",
        &url,
        &["-y", "--report", report.path().to_str().unwrap()],
    );
    let r = read_report(report.path());
    // The migrating nodes of slots A and B answered ASK (reads of moved keys, writes of new ones).
    for i in 0..2 {
        let asks = error_count(&mut cluster.nodes()[moves[i].1].conn(), "ASK") - asks_before[i];
        assert!(asks > 0, "slot {}: no ASK redirect happened", moves[i].0);
    }
    // Every key outside slot C is migrated exactly, reads and writes following ASK.
    for (k, want) in &old {
        if group_c.contains(k) {
            continue;
        }
        assert_holds(&mut db, &rules.new_key(k).unwrap(), want);
    }
    let mut importing = cluster.nodes()[moves[1].2].conn();
    let on_importing = group_b
        .iter()
        .filter(|k| {
            let new = rules.new_key(k).unwrap();
            let (_, n): ((), i64) = redis::pipe()
                .cmd("ASKING")
                .cmd("EXISTS")
                .arg(&new)
                .query(&mut importing)
                .unwrap();
            n == 1
        })
        .count();
    assert_eq!(
        on_importing,
        group_b.len(),
        "new keys of slot B were created on the importing node"
    );
    // Slot C: each key is migrated exactly, or reported as failed (TRYAGAIN) and not written.
    let failed = r["stats"]["failed"].as_u64().unwrap();
    let mut missing = 0;
    for k in &group_c {
        let new = rules.new_key(k).unwrap();
        if dump(&mut db, &new).is_none() {
            missing += 1;
        } else {
            assert_holds(&mut db, &new, &old[k]);
        }
    }
    assert_eq!(failed, missing, "failed keys are the unwritten ones: {r}");
    if failed > 0 {
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        let errors = r["errors"].to_string();
        assert!(errors.to_lowercase().contains("tryagain"), "{r}");
    } else {
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    }
    assert_eq!(
        r["stats"]["migrated"].as_u64().unwrap() + failed,
        r["stats"]["matched"].as_u64().unwrap(),
        "{r}"
    );
    // verify follows ASK too, while the slots are still migrating.
    let v = keys("verify", &url, &[]);
    assert_eq!(v.status.code(), Some(0), "{}", text(&v));

    // The migrations finish; a second apply writes what failed and redoes the rest.
    for &(slot, from, to) in &moves {
        finish_slot_migration(&cluster, slot, from, to);
    }
    let report = tempfile::NamedTempFile::new().unwrap();
    let o = keys(
        "apply",
        &url,
        &["-y", "--report", report.path().to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let r = read_report(report.path());
    assert_eq!(r["stats"]["failed"], 0, "{r}");
    assert_eq!(r["stats"]["skipped_existing"], 0, "{r}");
    assert_eq!(r["stats"]["migrated"], old.len() as u64, "{r}");
    assert_eq!(assert_all_migrated(&old, &mut db), old.len());
    let v = keys("verify", &url, &[]);
    assert_eq!(v.status.code(), Some(0), "{}", text(&v));
    assert_output_has(&v, &format!("ok {}", old.len()));

    let o = keys("rollback", &url, &["-y"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let mut conns: Vec<Connection> = cluster.nodes().iter().map(RedisServer::conn).collect();
    let mut refs: Vec<&mut Connection> = conns.iter_mut().collect();
    assert_no_strays(&mut db, &mut refs);
    let after = cluster_contents(&mut db);
    assert_eq!(
        after.len(),
        before.len(),
        "rollback leaves the keys there were"
    );
    // MIGRATE moves keys with their remaining time to live, so an expiry may move by a few ms.
    for ((k, want), (k2, got)) in before.iter().zip(&after) {
        assert_eq!(show(k), show(k2), "rollback leaves the same key names");
        assert_same(k, Some(got), want);
    }
}

// --- Streams copied in chunks --------------------------------------------------------------

#[test]
fn streams_bigger_than_max_payload_are_copied_in_chunks_with_their_groups() {
    let (a, b) = (RedisServer::start(), RedisServer::start());
    let mut s = a.conn();
    let stream = format!("{OLD}reminder:stream");
    build_stream(&mut s, &stream, StreamFixture::Basic);
    let () = s.pexpire(&stream, 3_600_000).unwrap();
    // Emptied: entries delivered, acknowledged and deleted; a group and a consumer remain.
    let empty = format!("{OLD}reminder:emptied");
    for i in 1..=3 {
        run_command(&mut s, &["XADD", &empty, &format!("{i}-5"), "f", "v"]);
    }
    run_command(&mut s, &["XGROUP", "CREATE", &empty, "g", "0"]);
    run_command(
        &mut s,
        &[
            "XREADGROUP",
            "GROUP",
            "g",
            "waiting",
            "STREAMS",
            &empty,
            ">",
        ],
    );
    run_command(&mut s, &["XACK", &empty, "g", "1-5", "2-5", "3-5"]);
    run_command(&mut s, &["XDEL", &empty, "1-5", "2-5", "3-5"]);
    let plain = format!("{OLD}user_profile:plain");
    let () = s.set(&plain, "p").unwrap();
    let mut t = b.conn();
    let target_before = digest(&mut t);
    let (src, dst) = (a.url(), b.url());
    let report = tempfile::NamedTempFile::new().unwrap();
    let clock = Instant::now();
    let states: Vec<StreamState> = [&stream, &empty]
        .iter()
        .map(|k| stream_state(&mut s, k))
        .collect();
    let o = keys(
        "apply",
        &src,
        &[
            "-y",
            "--target",
            &dst,
            "--max-payload",
            "1",
            "--chunk-size",
            "3",
            "--report",
            report.path().to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let r = read_report(report.path());
    assert_eq!(r["stats"]["chunked"], 3, "{r}");
    assert_eq!(r["stats"]["migrated"], 3, "{r}");
    let rules = seed_key_mapper();
    for (k, want) in [&stream, &empty].iter().zip(&states) {
        let new = show(&rules.new_key(k.as_bytes()).unwrap());
        let got = stream_state(&mut t, &new);
        let tolerance = clock.elapsed().as_millis() as i64 + 20;
        assert_same_stream(&new, want, &got, tolerance);
    }
    let old = snapshot_old(&mut s);
    assert_eq!(assert_all_migrated(&old, &mut t), 3);
    let v = keys("verify", &src, &["--target", &dst]);
    assert_eq!(v.status.code(), Some(0), "{}", text(&v));
    assert_output_has(&v, "ok 3");
    let o = keys("rollback", &src, &["-y", "--target", &dst]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let mut tc = b.conn();
    assert_no_strays(&mut t, &mut [&mut tc]);
    assert_eq!(digest(&mut t), target_before);
}
