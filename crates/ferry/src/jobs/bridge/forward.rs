//! Kafka → Redis Stream: read a batch from the group's partitions, transform it (on every core
//! for frames), write it once ([`super::sink`]), then commit the offsets after it. Consuming
//! pauses while the Stream or Redis is over its limit ([`super::backpressure`]).

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

    /// Writes and commits one transformed batch; `false` when stopped while retrying (nothing
    /// committed: the batch is read again by the next run).
    async fn write_batch(
        &mut self,
        (out, read, started, transform_time): Transformed,
        stop: &CancellationToken,
    ) -> Result<bool, BridgeError> {
        let writing = Instant::now();
        self.check_restarts(&out).await?;
        failpoint("bridge-before-write");
        let Some(written) = self.write(&out, stop).await? else {
            return Ok(false);
        };
        tracing::debug!(
            records = read,
            transform_ms = transform_time.as_secs_f64() * 1e3,
            write_ms = writing.elapsed().as_secs_f64() * 1e3,
            "batch written"
        );
        failpoint("bridge-after-write");
        self.commit(&out, CommitMode::Async);
        let dead = written.dead_lettered;
        let bytes_in: u64 = out.iter().map(|o| o.bytes_in as u64).sum();
        let bytes_out = written.bytes;
        for o in &out {
            if let Some((before, after)) = o.image {
                self.image_in += before as u64;
                self.image_out += after as u64;
            }
        }
        let ratio = if self.image_out > 0 {
            self.image_in as f64 / self.image_out as f64
        } else {
            1.0
        };
        let to_stream = written.written;
        let s = &mut self.summary;
        s.read += read;
        s.written += to_stream;
        s.dead_lettered += dead;
        s.duplicates_skipped += written.skipped;
        s.bytes_in += bytes_in;
        s.bytes_out += bytes_out;
        let labels = &self.labels;
        metrics::counter!(BridgeMetric::MessagesInTotal.name(), labels).increment(read);
        metrics::counter!(BridgeMetric::MessagesOutTotal.name(), labels).increment(to_stream);
        metrics::counter!(BridgeMetric::BytesInTotal.name(), labels).increment(bytes_in);
        metrics::counter!(BridgeMetric::BytesOutTotal.name(), labels).increment(bytes_out);
        metrics::counter!(BridgeMetric::DeadLettersTotal.name(), labels).increment(dead);
        metrics::counter!(BridgeMetric::DuplicatesSkippedTotal.name(), labels)
            .increment(written.skipped);
        metrics::histogram!(BridgeMetric::BatchSeconds.name(), labels)
            .record(started.elapsed().as_secs_f64());
        metrics::gauge!(BridgeMetric::CompressionRatio.name(), labels).set(ratio);
        let summary = self.summary.clone();
        self.status.update(|v| {
            v.state = "running".into();
            v.reason = None;
            v.totals = summary;
            v.compression_ratio = ratio;
            v.last_batch_at = Some(chrono::Utc::now().to_rfc3339());
        });
        Ok(true)
    }

    /// Looks, once per partition and assignment, at where its records start against what the
    /// offsets hash records, before they are written:
    ///
    /// - records at or below the last offset written are normally a batch delivered again (the
    ///   consumer starts at the group's committed offset, which the last write may be ahead
    ///   of). They are something else when the consumer starts below the committed offset, or
    ///   the group has none and the partition's first record differs from the first one
    ///   written (its timestamp): the topic was deleted and created again, or its broker lost
    ///   its data, and offsets started over. The partition's record is then forgotten, so its
    ///   records are bridged rather than skipped as written;
    /// - a committed offset beyond the last offset written + 1 means Redis lost entries after
    ///   they were acknowledged (a restore from an older snapshot, a failover to a replica that
    ///   lagged): said as an error in the log and the status; they cannot be read again.
    async fn check_restarts(&mut self, out: &[Outgoing]) -> Result<(), BridgeError> {
        let generation = self.consumer.context().count();
        let mut first: BTreeMap<i32, &Outgoing> = BTreeMap::new();
        for o in out {
            let e = first.entry(o.partition).or_insert(o);
            if o.offset < e.offset {
                *e = o;
            }
        }
        first.retain(|p, _| self.checked.get(p) != Some(&generation));
        if first.is_empty() {
            return Ok(());
        }
        let consumer = self.consumer.clone();
        let topic = self.options.topic.clone();
        let partitions: Vec<i32> = first.keys().copied().collect();
        let committed = tokio::task::spawn_blocking(move || {
            let mut tpl = TopicPartitionList::new();
            for p in partitions {
                tpl.add_partition(&topic, p);
            }
            consumer.committed_offsets(tpl, KAFKA_TIMEOUT)
        })
        .await
        .map_err(|e| BridgeError::Internal(e.to_string()))?;
        let Ok(committed) = committed else {
            // Not known now: the script's check stands; look again with the next batch.
            return Ok(());
        };
        let o = self.options;
        for (&p, record) in &first {
            let field = partition_field(&o.topic, p);
            let recorded = super::sink::recorded(&mut self.conn, &o.stream, &field)
                .await
                .map_err(|e| BridgeError::redis(&o.redis, e))?;
            let committed = match committed.find_partition(&o.topic, p).map(|e| e.offset()) {
                Some(Offset::Offset(c)) => Some(c),
                _ => None,
            };
            let Some(last) = recorded.last else {
                self.checked.insert(p, generation);
                continue;
            };
            let started_over = record.offset <= last
                && match committed {
                    Some(c) => record.offset < c,
                    None => recorded.first.is_some_and(|(offset, ts)| {
                        offset == record.offset && ts != record.timestamp.unwrap_or(-1)
                    }),
                };
            if started_over {
                tracing::warn!(
                    partition = p,
                    offset = record.offset,
                    recorded = last,
                    committed = ?committed,
                    "{field} starts over at offset {} below the {last} recorded as written to {}: the topic was created again or its broker lost its data; its records are bridged again, not skipped",
                    record.offset,
                    o.stream
                );
                super::sink::forget_partition(&mut self.conn, &o.stream, &o.topic, p)
                    .await
                    .map_err(|e| BridgeError::redis(&o.redis, e))?;
            } else if let Some(c) = committed
                && c > last + 1
            {
                let reason = format!(
                    "{field}: Kafka has offsets up to {c} committed but {} records only up to {last}: Redis lost entries {} to {} after it acknowledged them (a restore from an older snapshot or a failover?)",
                    o.stream,
                    last + 1,
                    c - 1
                );
                tracing::error!("{reason}");
                self.status.set_state("running", Some(reason));
            }
            self.checked.insert(p, generation);
        }
        Ok(())
    }

    /// Reads up to `batch` records: waits up to [`IDLE_WAIT`] for the first, then up to
    /// `linger` for the rest.
    async fn collect(
        &mut self,
        stop: &CancellationToken,
    ) -> Result<Vec<OwnedMessage>, BridgeError> {
        let max = self.options.batch;
        let take = self.carry.len().min(max);
        let mut batch: Vec<OwnedMessage> = self.carry.drain(..take).collect();
        let mut deadline = (!batch.is_empty()).then(|| Instant::now() + self.options.linger);
        while batch.len() < max {
            let wait = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => IDLE_WAIT,
            };
            if wait.is_zero() {
                break;
            }
            let received = tokio::select! {
                _ = stop.cancelled() => break,
                r = tokio::time::timeout(wait, self.consumer.recv()) => r,
            };
            match received {
                Err(_) => break,
                Ok(Ok(msg)) => {
                    batch.push(msg.detach());
                    self.failing_since = None;
                    deadline.get_or_insert_with(|| Instant::now() + self.options.linger);
                }
                Ok(Err(e)) => {
                    let e = kafka::KafkaError::new(&self.options.kafka, e);
                    let since = *self.failing_since.get_or_insert_with(Instant::now);
                    // A service waits for the broker to come back; a `--once` run gives up.
                    if !e.retryable() || (self.options.once && since.elapsed() > ONCE_GIVE_UP) {
                        return Err(e.into());
                    }
                    tracing::warn!(error = %e, "reading from Kafka failed; retrying");
                    break;
                }
            }
        }
        Ok(batch)
    }

    /// The entry of one record, here and now.
    fn transform_now(&self, msg: &OwnedMessage) -> Outgoing {
        let o = self.options;
        to_entry(msg, &o.stream, o.transform, &o.image)
    }

    /// Writes with retries; `None` when stopped before it succeeded.
    async fn write(
        &mut self,
        out: &[Outgoing],
        stop: &CancellationToken,
    ) -> Result<Option<super::sink::Written>, BridgeError> {
        let mut backoff = Backoff::for_services();
        loop {
            match self
                .sink
                .write(&mut self.conn, &self.options.topic, out)
                .await
            {
                Ok(w) => return Ok(Some(w)),
                Err(e) => {
                    let e = BridgeError::redis(&self.options.redis, e);
                    if !e.retryable() || self.options.once {
                        return Err(e);
                    }
                    self.retried(&e);
                    let delay = backoff.next();
                    tokio::select! {
                        _ = stop.cancelled() => return Ok(None),
                        _ = tokio::time::sleep(delay) => {}
                    }
                    if let Ok(c) = connect(&self.client).await {
                        self.conn = c;
                    }
                }
            }
        }
    }

    fn retried(&mut self, e: &BridgeError) {
        tracing::warn!(error = %e, "bridge write failed; records stay uncommitted in Kafka, retrying");
        self.summary.retries += 1;
        metrics::counter!(BridgeMetric::RetriesTotal.name(), &self.labels).increment(1);
        self.status.set_state("retrying", Some(e.to_string()));
    }

    /// Commits, per partition, the offset after the last record of `out` (all written).
    fn commit(&mut self, out: &[Outgoing], mode: CommitMode) {
        let mut last: BTreeMap<i32, i64> = BTreeMap::new();
        for o in out {
            let e = last.entry(o.partition).or_insert(o.offset);
            *e = (*e).max(o.offset);
        }
        for (&p, &offset) in &last {
            self.next.insert(p, offset + 1);
            let end = self.seen_end.entry(p).or_insert(offset + 1);
            *end = (*end).max(offset + 1);
        }
        self.commit_next(last.keys().copied(), mode);
    }

    fn commit_next(&self, partitions: impl Iterator<Item = i32>, mode: CommitMode) {
        let mut tpl = TopicPartitionList::new();
        for p in partitions {
            if let Some(&next) = self.next.get(&p) {
                let _ = tpl.add_partition_offset(&self.options.topic, p, Offset::Offset(next));
            }
        }
        if tpl.count() == 0 {
            return;
        }
        // A failed commit (a rebalance took the partition) only means the records are read
        // again, and then skipped as written.
        if let Err(e) = self.consumer.commit(&tpl, mode) {
            tracing::info!(error = %e, "committing Kafka offsets failed; the records will be skipped when read again");
        }
    }

    /// With limits set: stops taking records while a limit is exceeded; `false` when stopped
    /// meanwhile. The records wait in Kafka (and in librdkafka's bounded prefetch queue).
    ///
    /// For the first [`QUIET_PAUSE`] the consumer is only polled for one batch more, kept for the
    /// next batch: pausing partitions drops what librdkafka prefetched and fetches it again
    /// after the resume, which halved the throughput of a bridge that pauses often. A longer
    /// pause pauses the assigned partitions (`rd_kafka_pause_partitions`) and goes on polling,
    /// so the member stays in its group past `max.poll.interval.ms`.
    async fn wait_below_limits(&mut self, stop: &CancellationToken) -> Result<bool, BridgeError> {
        let o = self.options;
        let Some(reason) = self.exceeded().await? else {
            return Ok(true);
        };
        tracing::warn!(%reason, "pausing the Kafka consumer (backpressure)");
        self.summary.pauses += 1;
        self.status.set_state("paused", Some(reason));
        metrics::gauge!(BridgeMetric::Paused.name(), &self.labels).set(1.0);
        let since = Instant::now();
        let mut paused_partitions = false;
        loop {
            let long = since.elapsed() >= QUIET_PAUSE;
            if long {
                // Partitions a rebalance assigns come unpaused: pause whatever is assigned now.
                if let Ok(assigned) = self.consumer.assignment() {
                    let _ = self.consumer.pause(&assigned);
                    paused_partitions = true;
                }
            }
            if long || self.carry.len() < o.batch {
                tokio::select! {
                    _ = stop.cancelled() => return Ok(false),
                    r = tokio::time::timeout(PAUSE_CHECK, self.consumer.recv()) => {
                        if let Ok(Ok(msg)) = r {
                            self.carry.push(msg.detach());
                            if !long {
                                continue;
                            }
                        }
                    }
                }
            } else {
                tokio::select! {
                    _ = stop.cancelled() => return Ok(false),
                    _ = tokio::time::sleep(PAUSE_CHECK) => {}
                }
            }
            self.refresh_lag(false);
            if self.exceeded().await?.is_none() {
                break;
            }
        }
        if paused_partitions && let Ok(assigned) = self.consumer.assignment() {
            let _ = self.consumer.resume(&assigned);
        }
        tracing::info!(stream = %o.stream, "resuming the Kafka consumer");
        metrics::gauge!(BridgeMetric::Paused.name(), &self.labels).set(0.0);
        self.status.set_state("running", None);
        Ok(true)
    }

    async fn exceeded(&mut self) -> Result<Option<String>, BridgeError> {
        let mut backoff = Backoff::for_services();
        loop {
            match self
                .limits
                .exceeded(&mut self.conn, &self.options.stream)
                .await
            {
                Ok(r) => return Ok(r),
                Err(e) => {
                    let e = BridgeError::redis(&self.options.redis, e);
                    if !e.retryable() || self.options.once {
                        return Err(e);
                    }
                    self.retried(&e);
                    tokio::time::sleep(backoff.next()).await;
                    if let Ok(c) = connect(&self.client).await {
                        self.conn = c;
                    }
                }
            }
        }
    }

    /// Every assigned partition is at or past its end seen at start: the next offset to bridge
    /// (this run's, else librdkafka's position, else the group's committed offset) is there.
    async fn caught_up(&mut self) -> Result<bool, BridgeError> {
        let consumer = self.consumer.clone();
        let committed = tokio::task::spawn_blocking(move || {
            let assigned = consumer.assignment()?;
            consumer.committed_offsets(assigned, KAFKA_TIMEOUT)
        })
        .await
        .map_err(|e| BridgeError::Internal(e.to_string()))?;
        let committed = match committed {
            Ok(c) => {
                self.failing_since = None;
                c
            }
            Err(e) => {
                let since = *self.failing_since.get_or_insert_with(Instant::now);
                if since.elapsed() > ONCE_GIVE_UP {
                    return Err(kafka::KafkaError::new(&self.options.kafka, e).into());
                }
                tracing::info!(error = %e, "reading committed offsets failed; checking again");
                return Ok(false);
            }
        };
        let stats = self.consumer.context().partition_stats(&self.options.topic);
        Ok(committed.elements().iter().all(|e| {
            let p = e.partition();
            let target = self.targets.get(&p).copied().unwrap_or(0);
            let next = self
                .next
                .get(&p)
                .copied()
                .or_else(|| stats.get(&p).map(|s| s.app_offset).filter(|&o| o >= 0))
                .or(match e.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                })
                .unwrap_or(0);
            next >= target
        }))
    }

    /// Updates the lag gauges every [`LAG_INTERVAL`] (`force`: now) from librdkafka's latest
    /// statistics, without a request to the broker (a watermark query can wait behind fetches).
    /// The lag of a partition is its end — the high watermark, or the last offset seen + 1
    /// when the broker's watermark lags behind — minus the next offset to bridge (this run's,
    /// else the consumer's position, else the group's committed offset).
    fn refresh_lag(&mut self, force: bool) {
        if !force && self.last_lag.elapsed() < LAG_INTERVAL {
            return;
        }
        self.last_lag = Instant::now();
        let stats = self.consumer.context().partition_stats(&self.options.topic);
        let mut lag = BTreeMap::new();
        for (&p, s) in &stats {
            let end = s.high.max(self.seen_end.get(&p).copied().unwrap_or(0));
            let known = |o: i64| (o >= 0).then_some(o);
            let Some(next) = self
                .next
                .get(&p)
                .copied()
                .or_else(|| known(s.app_offset))
                .or_else(|| known(s.committed))
            else {
                continue;
            };
            if end < 0 {
                continue;
            }
            let behind = (end - next).max(0);
            lag.insert(p, behind);
            let labels = [
                ("bridge", self.options.name.clone()),
                ("partition", p.to_string()),
            ];
            metrics::gauge!(BridgeMetric::ConsumerLag.name(), &labels).set(behind as f64);
        }
        self.status.update(|v| v.lag = lag);
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

/// A transformed batch: its entries, records read, when its handling started and how long the
/// transform took.
type Transformed = (Vec<Outgoing>, u64, Instant, Duration);

/// A batch being transformed: at once, or on the blocking pool with rayon (frames).
enum InFlight {
    Done(Transformed),
    Spawned(tokio::task::JoinHandle<Transformed>),
}

impl InFlight {
    fn start(batch: Vec<OwnedMessage>, transform: impl Fn(&OwnedMessage) -> Outgoing) -> Self {
        let started = Instant::now();
        let out: Vec<Outgoing> = batch.iter().map(transform).collect();
        InFlight::Done((out, batch.len() as u64, started, started.elapsed()))
    }

    fn spawn(batch: Vec<OwnedMessage>, o: &BridgeOptions) -> Self {
        let (stream, image, transform) = (o.stream.clone(), o.image, o.transform);
        InFlight::Spawned(tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let out: Vec<Outgoing> = batch
                .par_iter()
                .map(|m| to_entry(m, &stream, transform, &image))
                .collect();
            (out, batch.len() as u64, started, started.elapsed())
        }))
    }

    async fn await_output(self) -> Result<Transformed, BridgeError> {
        match self {
            InFlight::Done(t) => Ok(t),
            InFlight::Spawned(h) => h
                .await
                .map_err(|e| BridgeError::Internal(format!("a frame transform panicked: {e}"))),
        }
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
