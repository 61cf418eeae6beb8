//! The consumer on its own, against a real Redis, with a handler that stores the `v` field of
//! each entry: own pending entries first, a refused entry isolated and dead-lettered, the
//! acknowledgement after the commit, deleted pending entries acknowledged, retries, shutdown.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ferry_core::error::{Classify, ErrorClass};
use ferry_testkit::RedisServer;
use redis::{Connection, RedisError, Value};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::jobs::events::metrics::EventsMetric;

const STREAM: &str = "s:in";
const GROUP: &str = "g";
const ME: &str = "me";

const NAMES: ConsumerNames = ConsumerNames {
    job: "test",
    item: "a value",
    after_commit_failpoint: "streams-test-after-commit",
    retries: Counter {
        metric: EventsMetric::RetriesTotal.name(),
        labels: &[("stage", "test")],
    },
    dead_letters: Counter {
        metric: EventsMetric::RejectedTotal.name(),
        labels: &[("source", "test")],
    },
};

#[derive(Debug, thiserror::Error)]
enum TestError {
    #[error("redis: {0}")]
    Redis(String),
    #[error("the store is unavailable")]
    Unavailable,
}

impl Classify for TestError {
    fn class(&self) -> ErrorClass {
        ErrorClass::External
    }
}

/// Stores the `v` field of each entry; refuses any batch holding `refuse` (without saying
/// which), and fails the first `unavailable` commits as unavailable.
struct Values {
    conn: Connection,
    /// Committed batches.
    committed: Vec<Vec<String>>,
    /// Entries of the group still pending at each commit.
    pending_at_commit: Vec<u64>,
    unavailable: usize,
}

impl Values {
    fn new(redis: &RedisServer) -> Self {
        Values {
            conn: redis.conn(),
            committed: Vec::new(),
            pending_at_commit: Vec::new(),
            unavailable: 0,
        }
    }

    fn all(&self) -> Vec<String> {
        self.committed.concat()
    }
}

impl BatchHandler for Values {
    type Item = String;
    type Error = TestError;

    fn decode(&self, entry: &StreamEntry) -> Result<String, String> {
        let (_, v) = entry
            .fields
            .iter()
            .find(|(k, _)| k == b"v")
            .ok_or("no field v")?;
        String::from_utf8(v.clone()).map_err(|e| e.to_string())
    }

    async fn commit(&mut self, items: &[String]) -> Result<(), CommitError<TestError>> {
        if self.unavailable > 0 {
            self.unavailable -= 1;
            return Err(CommitError::Failed(TestError::Unavailable));
        }
        if items.iter().any(|v| v == "refuse") {
            return Err(CommitError::Refused("refused: poison".into()));
        }
        self.pending_at_commit.push(pending(&mut self.conn));
        self.committed.push(items.to_vec());
        Ok(())
    }

    fn redis_error(&self, error: RedisError) -> TestError {
        TestError::Redis(error.to_string())
    }
}

fn pending(conn: &mut Connection) -> u64 {
    let (n, ..): (u64, Value, Value, Value) = redis::cmd("XPENDING")
        .arg(STREAM)
        .arg(GROUP)
        .query(conn)
        .unwrap();
    n
}

fn xadd(redis: &RedisServer, fields: &[(&str, &str)]) -> String {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(STREAM).arg("*");
    for (k, v) in fields {
        cmd.arg(*k).arg(*v);
    }
    cmd.query(&mut redis.conn()).unwrap()
}

fn add_values(redis: &RedisServer, values: &[&str]) -> Vec<String> {
    values.iter().map(|v| xadd(redis, &[("v", v)])).collect()
}

fn create_group(redis: &RedisServer) {
    let () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(STREAM)
        .arg(GROUP)
        .arg("0")
        .arg("MKSTREAM")
        .query(&mut redis.conn())
        .unwrap();
}

/// Reads every new entry as `consumer`, leaving them pending with it.
fn read_as(redis: &RedisServer, consumer: &str) {
    let _: Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(GROUP)
        .arg(consumer)
        .arg("COUNT")
        .arg(1000)
        .arg("STREAMS")
        .arg(STREAM)
        .arg(">")
        .query(&mut redis.conn())
        .unwrap();
}

fn xdel(redis: &RedisServer, ids: &[String]) {
    let _: u64 = redis::cmd("XDEL")
        .arg(STREAM)
        .arg(ids)
        .query(&mut redis.conn())
        .unwrap();
}

fn options(once: bool) -> ConsumerOptions {
    let mut o = ConsumerOptions::new(STREAM, GROUP, ME, NAMES);
    o.once = once;
    o.block = Duration::from_millis(100);
    o
}

fn consumer(redis: &RedisServer, options: ConsumerOptions) -> StreamConsumer {
    StreamConsumer::new(redis.client(), options)
}

fn dead_letters(redis: &RedisServer) -> Vec<HashMap<String, String>> {
    let entries: Vec<(String, HashMap<String, String>)> = redis::cmd("XRANGE")
        .arg(format!("{STREAM}:dead"))
        .arg("-")
        .arg("+")
        .query(&mut redis.conn())
        .unwrap();
    entries.into_iter().map(|(_, f)| f).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_pending_entries_come_first_and_everything_is_acknowledged_after_its_commit() {
    let redis = RedisServer::start();
    create_group(&redis);
    add_values(&redis, &["1", "2", "3"]);
    read_as(&redis, ME);
    add_values(&redis, &["4", "5"]);
    let mut values = Values::new(&redis);
    let stats = consumer(&redis, options(true))
        .run(&mut values, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(values.committed, [vec!["1", "2", "3"], vec!["4", "5"]]);
    assert_eq!(
        values.pending_at_commit,
        [3, 2],
        "each batch is still pending while it is committed"
    );
    assert_eq!(pending(&mut redis.conn()), 0);
    assert_eq!(
        stats,
        ConsumerStats {
            read: 5,
            ..ConsumerStats::default()
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_entry_is_isolated_and_dead_lettered_with_its_fields_and_reason() {
    let redis = RedisServer::start();
    let ids = add_values(&redis, &["1", "2", "3", "refuse", "4", "5", "6"]);
    let undecodable = xadd(&redis, &[("w", "x"), ("ferry_error", "forged")]);
    add_values(&redis, &["7"]);
    let mut values = Values::new(&redis);
    let stats = consumer(&redis, options(true))
        .run(&mut values, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(
        values.all(),
        ["1", "2", "3", "4", "5", "6", "7"],
        "once, in order"
    );
    assert_eq!(pending(&mut redis.conn()), 0);
    assert_eq!((stats.read, stats.dead_lettered), (9, 2));
    let dead = dead_letters(&redis);
    assert_eq!(dead.len(), 2, "{dead:?}");
    // Entries that do not decode first, then those the commit refused.
    assert_eq!(dead[0]["ferry_source_id"], undecodable);
    assert_eq!(dead[0]["ferry_error"], "no field v");
    assert_eq!(dead[0]["w"], "x");
    assert_eq!(dead[1]["ferry_source_id"], ids[3]);
    assert_eq!(dead[1]["ferry_error"], "refused: poison");
    assert_eq!(dead[1]["v"], "refuse");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_commit_acknowledges_nothing_and_is_retried_with_backoff() {
    let redis = RedisServer::start();
    add_values(&redis, &["1", "2"]);
    let mut values = Values::new(&redis);
    values.unavailable = 1;
    let once = consumer(&redis, options(true))
        .run(&mut values, CancellationToken::new())
        .await;
    assert!(matches!(once, Err(TestError::Unavailable)), "{once:?}");
    assert_eq!(pending(&mut redis.conn()), 2, "left pending");

    // Without `once`: retried (100 ms, then 200 ms) until the store is back.
    values.unavailable = 2;
    let stop = CancellationToken::new();
    let run = tokio::spawn({
        let consumer = consumer(&redis, options(false));
        let stop = stop.clone();
        async move {
            let stats = consumer.run(&mut values, stop).await;
            (stats, values)
        }
    });
    let mut conn = redis.conn();
    let deadline = Instant::now() + Duration::from_secs(10);
    while pending(&mut conn) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    let (stats, values) = run.await.unwrap();
    let stats = stats.unwrap();
    assert_eq!(stats.retries, 2);
    assert_eq!(values.all(), ["1", "2"]);
    assert_eq!(pending(&mut conn), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_entries_deleted_from_the_stream_are_acknowledged() {
    let redis = RedisServer::start();
    create_group(&redis);
    // Another consumer reads five entries and dies; two are deleted meanwhile.
    let ids = add_values(&redis, &["1", "2", "3", "4", "5"]);
    read_as(&redis, "worker-that-died");
    xdel(&redis, &ids[1..3]);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut opts = options(true);
    opts.claim_idle = Duration::from_millis(50);
    let mut values = Values::new(&redis);
    let stats = consumer(&redis, opts.clone())
        .run(&mut values, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(values.all(), ["1", "4", "5"]);
    assert_eq!((stats.reclaimed, stats.deleted), (3, 2));
    assert_eq!(pending(&mut redis.conn()), 0);

    // This consumer's own pending entries, one deleted before it comes back: read back as an
    // id without fields.
    let ids = add_values(&redis, &["6", "7"]);
    read_as(&redis, ME);
    xdel(&redis, &ids[..1]);
    let mut values = Values::new(&redis);
    let stats = consumer(&redis, opts)
        .run(&mut values, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(values.all(), ["7"]);
    assert_eq!((stats.read, stats.deleted, stats.dead_lettered), (2, 1, 0));
    assert_eq!(pending(&mut redis.conn()), 0);
    assert!(dead_letters(&redis).is_empty());
}

/// Runs a consumer until the Stream has `want` entries acknowledged, a little longer, then
/// cancels it; checks it committed `want` values and returns how long it took to stop.
async fn stop_after(redis: &RedisServer, mut values: Values, want: usize) -> Duration {
    let stop = CancellationToken::new();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let run = tokio::spawn({
        let consumer = consumer(redis, options(false));
        let stop = stop.clone();
        async move {
            let stats = consumer.run(&mut values, stop).await;
            let _ = tx.send(values.all().len());
            stats
        }
    });
    let mut conn = redis.conn();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut acked = || {
        let len: u64 = redis::cmd("XLEN").arg(STREAM).query(&mut conn).unwrap();
        len as usize - pending(&mut conn) as usize
    };
    while acked() < want && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cancelled = Instant::now();
    stop.cancel();
    let stats = run.await.unwrap().unwrap();
    let took = cancelled.elapsed();
    assert_eq!(rx.recv().await, Some(want), "{stats:?}");
    took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn it_stops_soon_after_cancellation_while_waiting_or_backing_off() {
    let redis = RedisServer::start();
    create_group(&redis);
    add_values(&redis, &["1", "2"]);
    // Waiting for new entries: stops within one blocking read.
    let took = stop_after(&redis, Values::new(&redis), 2).await;
    assert!(took < Duration::from_secs(2), "{took:?}");
    // Backing off from a store that stays unavailable: stops at once.
    add_values(&redis, &["3"]);
    let mut failing = Values::new(&redis);
    failing.unavailable = usize::MAX;
    let took = stop_after(&redis, failing, 0).await;
    assert!(took < Duration::from_secs(2), "{took:?}");
}
