//! `copy_in_chunks` of streams with consumer groups, consumers and pending entries, and
//! `RedisEndpoint` routing for keys of a slot that is being migrated (ASK / TRYAGAIN), against
//! real redis-server processes.

use std::collections::BTreeMap;
use std::time::Instant;

use ferry_connectors::redis::{
    ChunkError, ChunkedCopy, RedisEndpoint, Value, cmd, copy_in_chunks, key_slot,
};
use ferry_testkit::{
    RedisCluster, RedisServer, StreamFixture, assert_same_stream, begin_slot_migration,
    build_stream, error_count, finish_slot_migration, migrate_keys, reply_int, run_command,
    slot_owner, stream_state,
};
use redis::{Commands, Connection};

/// The tag of the temporary key name in these tests.
const TAG: &str = "chunk-test";

async fn endpoint(url: &str) -> RedisEndpoint {
    RedisEndpoint::connect(url, None).await.unwrap()
}

fn pexpiretime(c: &mut Connection, key: &str) -> i64 {
    reply_int(&run_command(c, &["PEXPIRETIME", key]))
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
        src,
        &before,
        &stream_state(&mut s, src),
        clock.elapsed().as_millis() as i64 + 20,
    );
    assert_same_stream(dst, &before, &after, elapsed + 20);
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
    build_stream(&mut s, "src:stream", StreamFixture::Full);
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
    run_command(&mut s, &["XGROUP", "CREATE", "empty", "g", "$", "MKSTREAM"]);
    run_command(
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
        run_command(&mut s, &["XADD", "emptied", &format!("{i}-5"), "f", "v"]);
    }
    run_command(&mut s, &["XGROUP", "CREATE", "emptied", "g", "0"]);
    run_command(&mut s, &["XGROUP", "CREATE", "emptied", "late", "$"]);
    run_command(
        &mut s,
        &["XREADGROUP", "GROUP", "g", "c", "STREAMS", "emptied", ">"],
    );
    run_command(&mut s, &["XACK", "emptied", "g", "1-5", "2-5", "3-5"]);
    run_command(&mut s, &["XDEL", "emptied", "1-5", "2-5", "3-5"]);
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
        run_command(
            &mut s,
            &["XADD", "s", &format!("{i}-0"), "f", &format!("v{i}")],
        );
    }
    run_command(&mut s, &["XGROUP", "CREATE", "s", "g", "0"]);
    run_command(
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
    run_command(&mut s, &["XDEL", "s", "3-0"]);
    run_command(&mut s, &["XTRIM", "s", "MINID", "2-0"]);
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
    begin_slot_migration(&cluster, slot, from, to);
    migrate_keys(&cluster, from, to, &[moved, hash]);
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
    assert_eq!(
        reply_int(&run_command(&mut t, &["PEXPIRETIME", "copied"])),
        at
    );

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
    finish_slot_migration(&cluster, slot, from, to);
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

/// A key deleted while it is copied in chunks (a scan of a deleted key just ends) or whose
/// expiry passed meanwhile is `Vanished`: never a partial value under the new name.
#[tokio::test]
async fn a_source_deleted_or_expired_during_the_copy_is_vanished() {
    let a = RedisServer::start();
    let b = RedisServer::start();
    let (mut s, mut t) = (a.conn(), b.conn());
    for j in (0..100_000).step_by(1000) {
        let fields: Vec<(String, String)> = (j..j + 1000)
            .map(|i| (format!("f{i}"), format!("v{i}")))
            .collect();
        let () = s.hset_multiple("big", &fields).unwrap();
    }
    let (from, to) = (endpoint(&a.url()).await, endpoint(&b.url()).await);
    let deleter = {
        let mut c = a.conn();
        let mut watch = b.conn();
        std::thread::spawn(move || {
            // Once the copy is under way, the application deletes the key.
            let deadline = Instant::now() + std::time::Duration::from_secs(30);
            loop {
                let tmp: Vec<String> = watch.keys("copied:ferry-tmp:*").unwrap();
                if tmp
                    .first()
                    .is_some_and(|k| watch.hlen::<_, usize>(k).unwrap_or(0) > 1000)
                {
                    break;
                }
                assert!(Instant::now() < deadline, "the copy did not start");
            }
            let () = c.del("big").unwrap();
        })
    };
    let out = copy_in_chunks(&from, b"big", &to, b"copied", None, false, 10, TAG).await;
    deleter.join().unwrap();
    assert!(matches!(out, Ok(ChunkedCopy::Vanished)), "{out:?}");
    assert!(!t.exists::<_, bool>("copied").unwrap(), "no partial value");
    let left: Vec<String> = t.keys("*ferry-tmp*").unwrap();
    assert!(left.is_empty(), "{left:?}");

    // An expiry that passed while copying.
    let () = s.hset("short", "f", "v").unwrap();
    let past = ferry_core::checkpoint::now_ms() - 1;
    let out = copy_in_chunks(&from, b"short", &to, b"copied", Some(past), false, 10, TAG).await;
    assert!(matches!(out, Ok(ChunkedCopy::Vanished)), "{out:?}");
    assert!(!t.exists::<_, bool>("copied").unwrap());
}
