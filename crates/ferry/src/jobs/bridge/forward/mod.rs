//! Kafka → Redis Stream: read a batch from the group's partitions, transform it (on every core
//! for frames), write it once ([`super::sink`]), then commit the offsets after it. Consuming
//! pauses while the Stream or Redis is over its limit ([`super::backpressure`]).
//!
//! This file holds the run (start, the loop, finish); the stages are `read.rs` (a batch from
//! Kafka, pausing over a limit), `transform.rs` (records → entries, frames on every core with
//! one batch of lookahead), `restarts.rs` (a partition's start checked before its first
//! write), `write.rs` (the script, then the commit, counts and metrics) and `progress.rs`
//! (caught up for `--once`, lag).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_connectors::kafka::{
    self, GroupConsumer, Offset, OwnedMessage, PartitionEnds, TopicPartitionList,
};
use ferry_core::error::Classify;
use ferry_core::retry::Backoff;
use rayon::prelude::*;
use rdkafka::consumer::{CommitMode, Consumer};
use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;
use tokio_util::sync::CancellationToken;

use super::backpressure::Limits;
use super::entry::{Outgoing, to_entry};
use super::metrics::BridgeMetric;
use super::sink::{StreamSink, partition_field};
use super::{BridgeError, BridgeOptions, BridgeStatus, BridgeSummary, Transform};
use crate::runtime::failpoint;

mod progress;
mod read;
mod restarts;
mod transform;
mod write;

use transform::{InFlight, Transformed};

/// How long a read waits for a first record before the loop looks at its stop token, limits
/// and `once` again.
const IDLE_WAIT: Duration = Duration::from_millis(200);
/// How often the consumer lag is refreshed.
const LAG_INTERVAL: Duration = Duration::from_secs(2);
/// How often a paused bridge checks its limits again.
const PAUSE_CHECK: Duration = Duration::from_millis(200);
/// How long a backpressure pause only stops taking records before it pauses the partitions.
const QUIET_PAUSE: Duration = Duration::from_secs(60);
/// How long a `--once` run goes on while every read from Kafka fails.
const ONCE_GIVE_UP: Duration = Duration::from_secs(60);
/// Timeout of a Kafka metadata or offsets request.
const KAFKA_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs the forward bridge until `stop` (or, with `once`, until caught up with the partition
/// ends seen at start).
pub async fn forward(
    options: &BridgeOptions,
    status: &BridgeStatus,
    stop: CancellationToken,
) -> Result<BridgeSummary, BridgeError> {
    options.check()?;
    let mut run = match Forward::start(options, status).await {
        Ok(run) => run,
        Err(e) => {
            status.set_state("failed", Some(e.to_string()));
            return Err(e);
        }
    };
    let outcome = run.run(&stop).await;
    let summary = run.finish().await;
    match &outcome {
        Ok(_) => status.set_state("stopped", None),
        Err(e) => status.set_state("failed", Some(e.to_string())),
    }
    outcome.map(|()| summary)
}

struct Forward<'a> {
    options: &'a BridgeOptions,
    status: &'a BridgeStatus,
    consumer: Arc<GroupConsumer>,
    client: redis::Client,
    conn: MultiplexedConnection,
    sink: StreamSink,
    limits: Limits,
    summary: BridgeSummary,
    /// Next offset to bridge, by partition, from the records handled.
    next: HashMap<i32, i64>,
    /// Highest offset + 1 seen, by partition (the high watermark may lag behind it).
    seen_end: HashMap<i32, i64>,
    /// `once`: the partition ends seen at start.
    targets: BTreeMap<i32, i64>,
    /// Records read while paused, kept for the next batch.
    carry: Vec<OwnedMessage>,
    last_lag: Instant,
    /// Since when reading from Kafka has failed without a record in between.
    failing_since: Option<Instant>,
    /// Partitions whose start was checked ([`Forward::check_restarts`]), with the rebalance
    /// count then.
    checked: HashMap<i32, u64>,
    labels: [(&'static str, String); 1],
    image_in: u64,
    image_out: u64,
}

impl<'a> Forward<'a> {
    async fn start(
        options: &'a BridgeOptions,
        status: &'a BridgeStatus,
    ) -> Result<Self, BridgeError> {
        let redis_err = |e| BridgeError::redis(&options.redis, e);
        let client = redis::Client::open(options.redis.expose()).map_err(redis_err)?;
        let conn = connect(&client).await.map_err(redis_err)?;
        let mut forward = Forward {
            options,
            status,
            consumer: kafka::subscribe(&options.kafka_settings(), &options.topic)?,
            client,
            conn,
            sink: StreamSink::new(&options.stream, &options.dead_letter(), options.maxlen),
            limits: Limits {
                max_stream_len: options.max_stream_len,
                max_redis_memory: options.max_redis_memory,
            },
            summary: BridgeSummary::default(),
            next: HashMap::new(),
            seen_end: HashMap::new(),
            targets: BTreeMap::new(),
            carry: Vec::new(),
            last_lag: Instant::now(),
            failing_since: None,
            checked: HashMap::new(),
            labels: [("bridge", options.name.clone())],
            image_in: 0,
            image_out: 0,
        };
        forward.check_keys().await?;
        let ends = forward.partition_ends().await?;
        forward.targets = ends.iter().map(|e| (e.partition, e.high)).collect();
        status.set_state("running", None);
        Ok(forward)
    }

    /// The Stream, its dead-letter Stream and the offsets hash must be of the right type (or
    /// absent).
    async fn check_keys(&mut self) -> Result<(), BridgeError> {
        let o = self.options;
        let keys = [
            (o.stream.clone(), "stream"),
            (o.dead_letter(), "stream"),
            (super::sink::offsets_key(&o.stream), "hash"),
        ];
        super::check_key_types(&mut self.conn, &o.redis, &keys).await
    }

    async fn partition_ends(&self) -> Result<Vec<PartitionEnds>, BridgeError> {
        let consumer = self.consumer.clone();
        let (brokers, topic) = (self.options.kafka.clone(), self.options.topic.clone());
        let ends = tokio::task::spawn_blocking(move || {
            kafka::partition_ends(&consumer, &brokers, &topic, KAFKA_TIMEOUT)
        })
        .await
        .map_err(|e| BridgeError::Internal(e.to_string()))??;
        if ends.is_empty() {
            return Err(BridgeError::Usage(format!(
                "the topic {} has no partitions on {}: create it first",
                self.options.topic, self.options.kafka
            )));
        }
        Ok(ends)
    }

    async fn run(&mut self, stop: &CancellationToken) -> Result<(), BridgeError> {
        let started = Instant::now();
        let assign_wait = self.options.session_timeout * 2 + Duration::from_secs(10);
        let mut in_flight: Option<InFlight> = None;
        while !stop.is_cancelled() {
            if self.limits.any() && !self.wait_below_limits(stop).await? {
                break;
            }
            let collecting = Instant::now();
            let batch = self.collect(stop).await?;
            tracing::debug!(
                records = batch.len(),
                collect_ms = collecting.elapsed().as_secs_f64() * 1e3,
                "batch read"
            );
            if batch.is_empty() {
                // Nothing new: write what is being transformed before deciding anything.
                if let Some(t) = in_flight.take()
                    && !self.write_batch(t.await_output().await?, stop).await?
                {
                    break;
                }
                self.refresh_lag(false);
                if self.options.once {
                    let assigned = self.consumer.context().count() > 0;
                    if assigned && self.caught_up().await? {
                        break;
                    }
                    if !assigned && started.elapsed() > assign_wait {
                        return Err(BridgeError::Kafka(kafka::KafkaError::new(
                            &self.options.kafka,
                            rdkafka::error::KafkaError::Subscription(format!(
                                "no partition of {} was assigned within {} s: other members of group {} hold them all, or the broker's group coordinator does not answer",
                                self.options.topic,
                                assign_wait.as_secs(),
                                self.options.group
                            )),
                        )));
                    }
                }
                continue;
            }
            match self.options.transform {
                // Cheap: transformed in place, written at once.
                Transform::None => {
                    let t = InFlight::start(batch, |m| self.transform_now(m));
                    if !self.write_batch(t.await_output().await?, stop).await? {
                        break;
                    }
                }
                // Frames take the cores: this batch is transformed while the previous one is
                // written and the next one is read. Batches are still written in order, each
                // committed after its write.
                Transform::FrameProto => {
                    let next = InFlight::spawn(batch, self.options);
                    if let Some(t) = in_flight.replace(next)
                        && !self.write_batch(t.await_output().await?, stop).await?
                    {
                        break;
                    }
                }
            }
            self.refresh_lag(false);
        }
        // Stopped: a batch still being transformed is neither written nor committed (it is
        // read again by the next run). Done (`--once`): it was written above.
        drop(in_flight);
        Ok(())
    }

    /// Commits what was written (synchronously) and leaves the group within a bounded time.
    async fn finish(mut self) -> BridgeSummary {
        let partitions: Vec<i32> = self.next.keys().copied().collect();
        self.commit_next(partitions.into_iter(), CommitMode::Sync);
        self.refresh_lag(true);
        let Forward {
            consumer, summary, ..
        } = self;
        // Dropping a consumer once hung in librdkafka: never wait for it more than 10 s.
        let closing = tokio::task::spawn_blocking(move || {
            consumer.unsubscribe();
            drop(consumer);
        });
        if tokio::time::timeout(Duration::from_secs(10), closing)
            .await
            .is_err()
        {
            tracing::warn!("the Kafka consumer did not close within 10 s; leaving it");
        }
        summary
    }
}

async fn connect(client: &redis::Client) -> redis::RedisResult<MultiplexedConnection> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_response_timeout(Some(Duration::from_secs(30)));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
}
