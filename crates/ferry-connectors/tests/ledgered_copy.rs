//! The ledgered COPY and RESTORE scripts and the journal of the Redis checkpoint store, on a real server.

use ferry_connectors::redis::{
    LedgerWrite, LedgeredCopy, LedgeredRestore, RedisCheckpointStore, RedisEndpoint,
    copy_with_ledger, restore_with_ledger,
};
use ferry_core::checkpoint::CheckpointStore;
use ferry_testkit::RedisServer;
use redis::Commands;

const SCOPE: &str = "keys/test";
const LEDGER: &str = "created";
const TO: LedgerWrite = LedgerWrite {
    scope: SCOPE,
    ledger: LEDGER,
    value_prefix: &[1],
    fence: 0,
};

fn dump(c: &mut redis::Connection, key: &str) -> Option<Vec<u8>> {
    redis::cmd("DUMP").arg(key).query(c).unwrap()
}

#[tokio::test]
async fn copies_are_recorded_with_their_source_and_only_when_created() {
    let server = RedisServer::start();
    let mut c = server.conn();
    let () = c.set_ex("old:a", "1", 3600).unwrap();
    let () = c.rpush("old:b", &["x", "y"]).unwrap();
    let () = c.set("old:c", "mine").unwrap();
    let () = c.set("new:c", "theirs").unwrap();
    let endpoint = RedisEndpoint::connect(&server.url(), None).await.unwrap();
    let pairs: Vec<(&[u8], &[u8])> = vec![
        (b"old:a", b"new:a"),
        (b"old:b", b"new:b"),
        (b"old:c", b"new:c"),
        (b"old:gone", b"new:gone"),
    ];
    let out = copy_with_ledger(&endpoint, &TO, false, &pairs)
        .await
        .unwrap();
    use LedgeredCopy::*;
    assert_eq!(out, vec![Created, Created, Exists, Vanished]);
    assert_eq!(dump(&mut c, "old:a"), dump(&mut c, "new:a"));
    assert_eq!(dump(&mut c, "old:b"), dump(&mut c, "new:b"));
    let ttl: i64 = c.pttl("new:a").unwrap();
    assert!(ttl > 3_590_000, "ttl kept: {ttl}");
    let theirs: String = c.get("new:c").unwrap();
    assert_eq!(theirs, "theirs", "an existing key is never written");
    let journal = RedisCheckpointStore::journal_key(SCOPE, LEDGER);
    let records: usize = c.llen(&journal).unwrap();
    assert_eq!(records, 1, "one record per script call");

    // Any ledger call folds the journal into the hash first.
    let store =
        RedisCheckpointStore::new(RedisEndpoint::connect(&server.url(), None).await.unwrap());
    assert_eq!(store.ledger_len(SCOPE, LEDGER).await.unwrap(), 2);
    let records: usize = c.llen(&journal).unwrap();
    assert_eq!(records, 0);
    let got = store
        .ledger_get(
            SCOPE,
            LEDGER,
            &[b"new:a".to_vec(), b"new:b".to_vec(), b"new:c".to_vec()],
        )
        .await
        .unwrap();
    assert_eq!(
        got,
        vec![
            Some(b"\x01old:a".to_vec()),
            Some(b"\x01old:b".to_vec()),
            None
        ]
    );

    // A second pass redoes the keys the ledger lists and still leaves the other one alone.
    let () = c.set_ex("old:a", "2", 3600).unwrap();
    let out = copy_with_ledger(&endpoint, &TO, false, &pairs)
        .await
        .unwrap();
    assert_eq!(out, vec![Redone, Redone, Exists, Vanished]);
    let a: String = c.get("new:a").unwrap();
    assert_eq!(a, "2");
    let theirs: String = c.get("new:c").unwrap();
    assert_eq!(theirs, "theirs");
}

#[tokio::test]
async fn journal_entries_fold_before_later_ledger_changes_and_clear_removes_them() {
    let server = RedisServer::start();
    let mut c = server.conn();
    for i in 0..600 {
        let () = c.set(format!("old:{i}"), i).unwrap();
    }
    let endpoint = RedisEndpoint::connect(&server.url(), None).await.unwrap();
    let names: Vec<(Vec<u8>, Vec<u8>)> = (0..600)
        .map(|i| {
            (
                format!("old:{i}").into_bytes(),
                format!("new:{i}").into_bytes(),
            )
        })
        .collect();
    let pairs: Vec<(&[u8], &[u8])> = names
        .iter()
        .map(|(s, d)| (s.as_slice(), d.as_slice()))
        .collect();
    let out = copy_with_ledger(&endpoint, &TO, false, &pairs)
        .await
        .unwrap();
    assert!(out.iter().all(|o| *o == LedgeredCopy::Created));
    let journal = RedisCheckpointStore::journal_key(SCOPE, LEDGER);
    let records: usize = c.llen(&journal).unwrap();
    assert!(records > 1, "600 pairs take several script calls");

    // A removal while the journal is unfolded: the entry must not come back afterwards.
    let store =
        RedisCheckpointStore::new(RedisEndpoint::connect(&server.url(), None).await.unwrap());
    store
        .ledger_remove(SCOPE, LEDGER, &[b"new:7".to_vec()])
        .await
        .unwrap();
    assert_eq!(store.ledger_len(SCOPE, LEDGER).await.unwrap(), 599);
    // A later value for a key replaces the journal's.
    let () = c.set("old:600", "x").unwrap();
    let out = copy_with_ledger(&endpoint, &TO, false, &[(b"old:600", b"new:600")])
        .await
        .unwrap();
    assert_eq!(out, vec![LedgeredCopy::Created]);
    store
        .ledger_put(
            SCOPE,
            LEDGER,
            &[(b"new:600".to_vec(), b"\x05old:600".to_vec())],
        )
        .await
        .unwrap();
    let got = store
        .ledger_get(SCOPE, LEDGER, &[b"new:600".to_vec()])
        .await
        .unwrap();
    assert_eq!(got, vec![Some(b"\x05old:600".to_vec())]);

    // Clearing the scope removes an unfolded journal too.
    let _ = copy_with_ledger(&endpoint, &TO, false, &[(b"old:1", b"other:1")])
        .await
        .unwrap();
    let records: usize = c.llen(&journal).unwrap();
    assert_eq!(records, 1);
    store.clear(SCOPE).await.unwrap();
    let left: Vec<String> = c.keys("ferry:*").unwrap();
    assert!(left.is_empty(), "left behind: {left:?}");
    // Every store key carries the scope's prefix, which the keys job skips when scanning.
    assert!(journal.starts_with(&RedisCheckpointStore::prefix(SCOPE)));
}

#[tokio::test]
async fn a_refused_copy_is_reported_and_not_recorded() {
    let server = RedisServer::start();
    let mut c = server.conn();
    let () = c.set("old:a", "1").unwrap();
    let () = c.set("old:b", "2").unwrap();
    let endpoint = RedisEndpoint::connect(&server.url(), None).await.unwrap();
    // COPY refuses a key onto itself; the other pair of the call still goes through.
    let pairs: Vec<(&[u8], &[u8])> = vec![(b"old:a", b"old:a"), (b"old:b", b"new:b")];
    let out = copy_with_ledger(&endpoint, &TO, false, &pairs)
        .await
        .unwrap();
    match &out[0] {
        LedgeredCopy::Failed(e) => assert!(e.contains("same"), "{e}"),
        other => panic!("expected a failure, got {other:?}"),
    }
    assert_eq!(out[1], LedgeredCopy::Created);
    let store =
        RedisCheckpointStore::new(RedisEndpoint::connect(&server.url(), None).await.unwrap());
    let got = store
        .ledger_get(SCOPE, LEDGER, &[b"old:a".to_vec(), b"new:b".to_vec()])
        .await
        .unwrap();
    assert_eq!(got, vec![None, Some(b"\x01old:b".to_vec())]);
}

#[tokio::test]
async fn restores_are_recorded_only_when_created_and_redone_from_the_ledger() {
    let (source, target) = (RedisServer::start(), RedisServer::start());
    let (mut s, mut t) = (source.conn(), target.conn());
    let () = s.set("old:a", "1").unwrap();
    let () = s.hset("old:b", "f", "v").unwrap();
    let () = t.set("new:c", "theirs").unwrap();
    let a = dump(&mut s, "old:a").unwrap();
    let b = dump(&mut s, "old:b").unwrap();
    let in_an_hour = chrono_now_ms() + 3_600_000;
    let items = [
        LedgeredRestore {
            dst: b"new:a",
            src: b"old:a",
            expire_at: Some(in_an_hour),
            payload: &a,
        },
        LedgeredRestore {
            dst: b"new:b",
            src: b"old:b",
            expire_at: None,
            payload: &b,
        },
        LedgeredRestore {
            dst: b"new:c",
            src: b"old:a",
            expire_at: None,
            payload: &a,
        },
        LedgeredRestore {
            dst: b"new:d",
            src: b"old:a",
            expire_at: Some(1_000),
            payload: &a,
        },
        LedgeredRestore {
            dst: b"new:e",
            src: b"old:a",
            expire_at: None,
            payload: b"not a dump",
        },
    ];
    let endpoint = RedisEndpoint::connect(&target.url(), None).await.unwrap();
    let out = restore_with_ledger(&endpoint, &TO, &items).await.unwrap();
    use LedgeredCopy::*;
    assert_eq!(out[..4], [Created, Created, Exists, Vanished]);
    assert!(
        matches!(&out[4], Failed(e) if e.contains("payload")),
        "{:?}",
        out[4]
    );
    assert_eq!(dump(&mut t, "new:a"), Some(a.clone()));
    assert_eq!(dump(&mut t, "new:b"), Some(b.clone()));
    let at: i64 = redis::cmd("PEXPIRETIME")
        .arg("new:a")
        .query(&mut t)
        .unwrap();
    assert_eq!(at, in_an_hour);
    let theirs: String = t.get("new:c").unwrap();
    assert_eq!(theirs, "theirs");
    let gone: bool = t.exists("new:d").unwrap();
    assert!(!gone);
    let store =
        RedisCheckpointStore::new(RedisEndpoint::connect(&target.url(), None).await.unwrap());
    assert_eq!(store.ledger_len(SCOPE, LEDGER).await.unwrap(), 2);
    let out = restore_with_ledger(&endpoint, &TO, &items[..3])
        .await
        .unwrap();
    assert_eq!(out, [Redone, Redone, Exists]);
}

fn chrono_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Regression: two old keys mapping to one new name. The second must not count the first's
/// copy as its own (redone with REPLACE): the ledger entry names its source.
#[tokio::test]
async fn a_name_the_ledger_lists_from_another_source_is_not_redone() {
    let server = RedisServer::start();
    let mut c = server.conn();
    let () = c.set("old:a:1", "first").unwrap();
    let () = c.set("legacy:1", "second").unwrap();
    let endpoint = RedisEndpoint::connect(&server.url(), None).await.unwrap();
    let store =
        RedisCheckpointStore::new(RedisEndpoint::connect(&server.url(), None).await.unwrap());
    let out = copy_with_ledger(&endpoint, &TO, false, &[(b"old:a:1", b"new:1")])
        .await
        .unwrap();
    assert_eq!(out, vec![LedgeredCopy::Created]);
    // Folded into the hash, as a later batch would find it.
    assert_eq!(store.ledger_len(SCOPE, LEDGER).await.unwrap(), 1);
    let out = copy_with_ledger(&endpoint, &TO, false, &[(b"legacy:1", b"new:1")])
        .await
        .unwrap();
    assert_eq!(out, vec![LedgeredCopy::Exists]);
    let v: String = c.get("new:1").unwrap();
    assert_eq!(v, "first");

    // The RESTORE script too.
    let other = RedisServer::start();
    let target = RedisEndpoint::connect(&other.url(), None).await.unwrap();
    let payload: Vec<u8> = redis::cmd("DUMP").arg("legacy:1").query(&mut c).unwrap();
    let first: Vec<u8> = redis::cmd("DUMP").arg("old:a:1").query(&mut c).unwrap();
    let item = |src: &'static [u8], payload| LedgeredRestore {
        dst: b"new:1",
        src,
        expire_at: None,
        payload,
    };
    let out = restore_with_ledger(&target, &TO, &[item(b"old:a:1", &first)])
        .await
        .unwrap();
    assert_eq!(out, vec![LedgeredCopy::Created]);
    let out = restore_with_ledger(&target, &TO, &[item(b"legacy:1", &payload)])
        .await
        .unwrap();
    assert_eq!(out, vec![LedgeredCopy::Exists]);
    // Once the journal is folded, the script itself sees the entry of the same source.
    let target_store =
        RedisCheckpointStore::new(RedisEndpoint::connect(&other.url(), None).await.unwrap());
    assert_eq!(target_store.ledger_len(SCOPE, LEDGER).await.unwrap(), 1);
    let out = restore_with_ledger(&target, &TO, &[item(b"old:a:1", &first)])
        .await
        .unwrap();
    assert_eq!(out, vec![LedgeredCopy::Redone], "the same source is redone");
    let mut t = other.conn();
    let v: String = t.get("new:1").unwrap();
    assert_eq!(v, "first");
}

#[tokio::test]
async fn moves_remove_the_source_in_the_same_step_and_record_it() {
    let server = RedisServer::start();
    let mut c = server.conn();
    let () = c.set_ex("old:a", "1", 3600).unwrap();
    let () = c.set("old:b", "2").unwrap();
    let () = c.set("new:b", "theirs").unwrap();
    let endpoint = RedisEndpoint::connect(&server.url(), None).await.unwrap();
    let to = LedgerWrite {
        value_prefix: &[5],
        ..TO
    };
    let pairs: Vec<(&[u8], &[u8])> = vec![
        (b"old:a", b"new:a"),
        (b"old:b", b"new:b"),
        (b"old:gone", b"new:gone"),
    ];
    let out = copy_with_ledger(&endpoint, &to, true, &pairs)
        .await
        .unwrap();
    use LedgeredCopy::*;
    assert_eq!(out, vec![Created, Exists, Vanished]);
    assert!(!c.exists::<_, bool>("old:a").unwrap(), "moved");
    let ttl: i64 = c.pttl("new:a").unwrap();
    assert!(ttl > 3_590_000, "ttl kept: {ttl}");
    assert_eq!(
        c.get::<_, String>("old:b").unwrap(),
        "2",
        "kept: its name exists"
    );
    let store =
        RedisCheckpointStore::new(RedisEndpoint::connect(&server.url(), None).await.unwrap());
    let got = store
        .ledger_get(SCOPE, LEDGER, &[b"new:a".to_vec(), b"new:b".to_vec()])
        .await
        .unwrap();
    assert_eq!(got, vec![Some(b"\x05old:a".to_vec()), None]);
    // An application writes the old name again after the move: a second pass moves the newer
    // value over the copy (redone), nothing is lost.
    let () = c.set("old:a", "newer").unwrap();
    let out = copy_with_ledger(&endpoint, &to, true, &pairs[..1])
        .await
        .unwrap();
    assert_eq!(out, vec![Redone]);
    assert_eq!(c.get::<_, String>("new:a").unwrap(), "newer");
    assert!(!c.exists::<_, bool>("old:a").unwrap());
}

#[tokio::test]
async fn a_fenced_off_run_writes_nothing() {
    let server = RedisServer::start();
    let mut c = server.conn();
    let () = c.set("old:a", "1").unwrap();
    let mut fence = RedisCheckpointStore::prefix(SCOPE);
    fence.extend_from_slice(b"fence");
    let () = c.set(&fence, "8").unwrap();
    let endpoint = RedisEndpoint::connect(&server.url(), None).await.unwrap();
    let stale = LedgerWrite { fence: 7, ..TO };
    let err = copy_with_ledger(&endpoint, &stale, false, &[(b"old:a", b"new:a")])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("FENCED"), "{err}");
    let payload: Vec<u8> = redis::cmd("DUMP").arg("old:a").query(&mut c).unwrap();
    let item = LedgeredRestore {
        dst: b"new:a",
        src: b"old:a",
        expire_at: None,
        payload: &payload,
    };
    let err = restore_with_ledger(&endpoint, &stale, &[item])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("FENCED"), "{err}");
    assert!(!c.exists::<_, bool>("new:a").unwrap(), "nothing written");
    let current = LedgerWrite { fence: 8, ..TO };
    let out = copy_with_ledger(&endpoint, &current, false, &[(b"old:a", b"new:a")])
        .await
        .unwrap();
    assert_eq!(out, vec![LedgeredCopy::Created]);
}
