//! Fencing tokens and lease take-over of the Redis checkpoint store, on a real server.

use std::time::Duration;

use ferry_connectors::redis::{RedisCheckpointStore, RedisEndpoint};
use ferry_core::checkpoint::{CheckpointStore, StoreError, StoreResult};
use ferry_testkit::RedisServer;
use redis::Commands;

const SCOPE: &str = "keys/fencing";
const LEDGER: &str = "created";

async fn store(server: &RedisServer) -> RedisCheckpointStore {
    RedisCheckpointStore::new(RedisEndpoint::connect(&server.url(), None).await.unwrap())
}

fn entries(prefix: &str, n: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
    (0..n)
        .map(|i| {
            (
                format!("{prefix}:{i}").into_bytes(),
                format!("v{i}").into_bytes(),
            )
        })
        .collect()
}

/// Every key of the scope with its DUMP, sorted: what a refused write must leave unchanged.
fn snapshot(c: &mut redis::Connection) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
    let pattern = format!("ferry:{{{SCOPE}}}:*");
    let mut keys: Vec<Vec<u8>> = c.keys(pattern).unwrap();
    keys.sort();
    keys.into_iter()
        .map(|k| {
            let d: Option<Vec<u8>> = redis::cmd("DUMP").arg(&k).query(c).unwrap();
            (k, d)
        })
        .collect()
}

fn assert_fenced(r: StoreResult<()>, token: u64, current: u64) {
    match r {
        Err(StoreError::Fenced {
            scope,
            token: t,
            current: c,
        }) => assert_eq!((scope.as_str(), t, c), (SCOPE, token, current)),
        other => panic!("expected a fenced write, got {other:?}"),
    }
}

#[tokio::test]
async fn tokens_grow_with_every_acquisition_also_after_clear() {
    let server = RedisServer::start();
    let mut c = server.conn();
    let s = store(&server).await;
    let ttl = Duration::from_secs(30);
    let first = s.acquire_lease(SCOPE, "one", ttl).await.unwrap();
    // A new fence starts at the server's clock (µs), so it outgrows any earlier token.
    let now_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64;
    assert!(first.token.abs_diff(now_us) < 60_000_000, "{}", first.token);
    assert_eq!(s.fence(SCOPE), Some(first.token));
    s.release_lease(&first).await.unwrap();
    assert_eq!(s.fence(SCOPE), None, "a released lease no longer fences");
    let second = s.acquire_lease(SCOPE, "two", ttl).await.unwrap();
    assert_eq!(second.token, first.token + 1);
    let fence_key = RedisCheckpointStore::fence_key(SCOPE);
    assert_eq!(fence_key, format!("ferry:{{{SCOPE}}}:fence").into_bytes());
    let fence: u64 = c.get(&fence_key).unwrap();
    assert_eq!(fence, second.token);
    let pttl: i64 = c.pttl(&fence_key).unwrap();
    assert_eq!(pttl, -1, "the fence never expires");
    s.save(SCOPE, b"state").await.unwrap();
    // Another store instance (another run) is refused while the lease is held.
    let other = store(&server).await;
    let err = other.acquire_lease(SCOPE, "three", ttl).await.unwrap_err();
    assert!(matches!(err, StoreError::LeaseHeld { ref holder, .. } if holder == "two"));
    // clear (a rollback's last step) leaves nothing of the scope but the lease…
    s.clear(SCOPE).await.unwrap();
    assert!(!c.exists::<_, bool>(&fence_key).unwrap());
    s.release_lease(&second).await.unwrap();
    let left: Vec<String> = c.keys("ferry:*").unwrap();
    assert!(left.is_empty(), "{left:?}");
    // …and the next token is still larger than every earlier one.
    std::thread::sleep(Duration::from_millis(2));
    let third = other.acquire_lease(SCOPE, "three", ttl).await.unwrap();
    assert!(
        third.token > second.token,
        "{} > {}",
        third.token,
        second.token
    );
}

#[tokio::test]
async fn writes_through_a_lease_taken_over_are_refused_and_change_nothing() {
    let server = RedisServer::start();
    let mut c = server.conn();
    let a = store(&server).await;
    let b = store(&server).await;
    let lease_a = a
        .acquire_lease(SCOPE, "a", Duration::from_millis(100))
        .await
        .unwrap();
    a.save(SCOPE, b"a1").await.unwrap();
    // More entries than one HSET/HDEL call of the fenced scripts takes.
    a.ledger_put(SCOPE, LEDGER, &entries("a", 1500))
        .await
        .unwrap();
    a.ledger_remove(SCOPE, LEDGER, &[b"a:0".to_vec()])
        .await
        .unwrap();
    assert_eq!(a.ledger_len(SCOPE, LEDGER).await.unwrap(), 1499);

    // A pauses past its lease; B acquires.
    tokio::time::sleep(Duration::from_millis(250)).await;
    let lease_b = b
        .acquire_lease(SCOPE, "b", Duration::from_secs(30))
        .await
        .unwrap();
    let (ta, tb) = (lease_a.token, lease_b.token);
    assert_eq!(tb, ta + 1);
    b.save(SCOPE, b"b1").await.unwrap();
    let before = snapshot(&mut c);

    assert_fenced(a.save(SCOPE, b"a2").await, ta, tb);
    assert_fenced(
        a.ledger_put(SCOPE, LEDGER, &entries("x", 1500)).await,
        ta,
        tb,
    );
    assert_fenced(a.ledger_put(SCOPE, "other", &entries("y", 1)).await, ta, tb);
    assert_fenced(
        a.ledger_remove(SCOPE, LEDGER, &[b"a:1".to_vec(), b"a:2".to_vec()])
            .await,
        ta,
        tb,
    );
    assert_fenced(a.clear(SCOPE).await, ta, tb);
    assert!(matches!(
        a.renew_lease(&lease_a, Duration::from_secs(30)).await,
        Err(StoreError::LeaseLost { .. })
    ));
    assert_eq!(snapshot(&mut c), before, "refused writes changed nothing");
    let msg = a.save(SCOPE, b"a3").await.unwrap_err().to_string();
    assert!(
        msg.contains(&format!("taken over by a newer run (token {tb} > {ta})")),
        "{msg}"
    );

    // B's writes go through; so do those of a store holding no lease (verify, status).
    assert_eq!(b.load(SCOPE).await.unwrap().as_deref(), Some(&b"b1"[..]));
    b.ledger_put(SCOPE, LEDGER, &entries("b", 3)).await.unwrap();
    b.ledger_remove(SCOPE, LEDGER, &[b"a:1".to_vec()])
        .await
        .unwrap();
    assert_eq!(b.ledger_len(SCOPE, LEDGER).await.unwrap(), 1501);
    let reader = store(&server).await;
    reader.save(SCOPE, b"r").await.unwrap();
    b.clear(SCOPE).await.unwrap();
    assert_eq!(b.load(SCOPE).await.unwrap(), None);
    assert_eq!(b.ledger_len(SCOPE, LEDGER).await.unwrap(), 0);
    // A's release leaves B's lease alone.
    a.release_lease(&lease_a).await.unwrap();
    b.renew_lease(&lease_b, Duration::from_secs(30))
        .await
        .unwrap();
}

#[tokio::test]
async fn take_over_of_a_dead_holder_is_a_compare_and_swap() {
    let server = RedisServer::start();
    let mut c = server.conn();
    let dead = store(&server).await;
    let me = store(&server).await;
    let ttl = Duration::from_secs(30);
    let lease_key = format!("ferry:{{{SCOPE}}}:lease");
    let held = dead.acquire_lease(SCOPE, "host:111:1", ttl).await.unwrap();
    dead.save(SCOPE, b"dead").await.unwrap();

    // The holder changed since it was seen: refused, nothing changed.
    let err = me
        .take_over_lease(SCOPE, "host:222:2", "host:333:3", ttl)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::LeaseHeld { ref holder, .. } if holder == "host:111:1"),
        "{err:?}"
    );
    let value: String = c.get(&lease_key).unwrap();
    assert_eq!(value, "host:111:1");
    assert_eq!(me.fence(SCOPE), None);

    // The holder seen is still there: swapped, with the next token.
    let mine = me
        .take_over_lease(SCOPE, "host:111:1", "host:333:3", ttl)
        .await
        .unwrap();
    assert_eq!(
        (mine.owner.as_str(), mine.token),
        ("host:333:3", held.token + 1)
    );
    assert_eq!(me.fence(SCOPE), Some(mine.token));
    let value: String = c.get(&lease_key).unwrap();
    assert_eq!(value, "host:333:3");
    let pttl: i64 = c.pttl(&lease_key).unwrap();
    assert!(pttl > 20_000, "the new lease has the TTL: {pttl}");

    // A second taker that saw the old holder loses the race.
    let late = store(&server).await;
    let err = late
        .take_over_lease(SCOPE, "host:111:1", "host:444:4", ttl)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::LeaseHeld { ref holder, .. } if holder == "host:333:3"),
        "{err:?}"
    );
    // The old holder, should it come back, can neither renew nor write.
    assert!(dead.renew_lease(&held, ttl).await.is_err());
    assert_fenced(dead.save(SCOPE, b"late").await, held.token, mine.token);
    me.save(SCOPE, b"mine").await.unwrap();
    assert_eq!(me.load(SCOPE).await.unwrap().as_deref(), Some(&b"mine"[..]));
}

#[tokio::test]
async fn scopes_lists_states_under_a_prefix_on_a_server_and_a_cluster() {
    let server = RedisServer::start();
    let s = store(&server).await;
    for scope in ["keys/run-1", "keys/run*2", "keys/run-1/sub", "tier/x"] {
        s.save(scope, b"{}").await.unwrap();
    }
    s.ledger_put("keys/ledger-only", LEDGER, &entries("k", 2))
        .await
        .unwrap();
    assert_eq!(
        s.scopes("keys/").await.unwrap(),
        ["keys/run*2", "keys/run-1", "keys/run-1/sub"]
    );
    // Glob characters in the prefix are literal.
    assert_eq!(s.scopes("keys/run*").await.unwrap(), ["keys/run*2"]);
    assert!(s.scopes("nothing/").await.unwrap().is_empty());

    let cluster = ferry_testkit::RedisCluster::start();
    let c = RedisCheckpointStore::new(RedisEndpoint::connect(&cluster.url(), None).await.unwrap());
    let runs: Vec<String> = (0..20).map(|i| format!("keys/r{i:02}")).collect();
    for r in &runs {
        c.save(r, b"{}").await.unwrap();
    }
    assert_eq!(
        c.scopes("keys/").await.unwrap(),
        runs,
        "every master is scanned"
    );
}
