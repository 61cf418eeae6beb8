//! Redis Stream → Kafka, for a rollback: the shared [`StreamConsumer`] reads the Stream as one
//! consumer of `--group`, and each batch is produced to the topic and acknowledged by the
//! broker (`acks=all`) before the entries are acknowledged (`XACK`). A crash in between sends
//! the batch again: every record carries a `ferry-origin` header (`STREAM/ENTRY-ID`) by which
//! consumers drop a record they already have.

use std::time::Duration;

use ferry_connectors::kafka::{BatchProducer, KafkaError, OutRecord};
use rdkafka::types::RDKafkaErrorCode;
use tokio_util::sync::CancellationToken;

use super::entry::to_record;
use super::metrics::BridgeMetric;
use super::{BridgeError, BridgeOptions, BridgeStatus, BridgeSummary};
use crate::streams::{
    BatchHandler, CommitError, ConsumerNames, ConsumerOptions, Counter, StreamConsumer, StreamEntry,
};

/// How long the broker may take to acknowledge a record.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

const NAMES: ConsumerNames = ConsumerNames {
    job: "reverse bridge",
    item: "a message for Kafka",
    after_commit_failpoint: "bridge-reverse-after-produce",
    retries: Counter {
        metric: BridgeMetric::RetriesTotal.name(),
        labels: &[("bridge", "reverse")],
    },
    dead_letters: Counter {
        metric: BridgeMetric::DeadLettersTotal.name(),
        labels: &[("bridge", "reverse")],
    },
};

/// Runs the reverse bridge until `stop` (or, with `once`, until the Stream has nothing left).
pub async fn reverse(
    options: &BridgeOptions,
    status: &BridgeStatus,
    stop: CancellationToken,
) -> Result<BridgeSummary, BridgeError> {
    options.check()?;
    let outcome = start_and_run(options, status, stop).await;
    if let Err(e) = &outcome {
        status.set_state("failed", Some(e.to_string()));
    }
    outcome
}

async fn start_and_run(
    options: &BridgeOptions,
    status: &BridgeStatus,
    stop: CancellationToken,
) -> Result<BridgeSummary, BridgeError> {
    let client = redis::Client::open(options.redis.expose())
        .map_err(|e| BridgeError::redis(&options.redis, e))?;
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| BridgeError::redis(&options.redis, e))?;
    let keys = [
        (options.stream.clone(), "stream"),
        (options.dead_letter(), "stream"),
    ];
    super::check_key_types(&mut conn, &options.redis, &keys).await?;
    drop(conn);
    let producer = BatchProducer::new(&options.kafka_settings())?;
    let topic = options.topic.clone();
    let (producer, partitions) = tokio::task::spawn_blocking(move || {
        let p = producer.partitions(&topic, Duration::from_secs(10));
        (producer, p)
    })
    .await
    .map_err(|e| BridgeError::Internal(e.to_string()))?;
    let partitions = partitions?;
    if partitions.is_empty() {
        return Err(BridgeError::Usage(format!(
            "the topic {} has no partitions on {}: create it first",
            options.topic, options.kafka
        )));
    }
    let mut consumer_options =
        ConsumerOptions::new(&options.stream, &options.group, &options.consumer, NAMES);
    consumer_options.batch = options.batch;
    consumer_options.once = options.once;
    consumer_options.claim_idle = options.claim_idle;
    consumer_options.dead_letter = options.dead_letter();
    let mut handler = ToKafka {
        options,
        status,
        producer,
        partitions,
        summary: BridgeSummary::default(),
    };
    status.set_state("running", None);
    let outcome = StreamConsumer::new(client, consumer_options)
        .run(&mut handler, stop)
        .await;
    let _ = handler.producer.flush(Duration::from_secs(10));
    match outcome {
        Ok(stats) => {
            status.set_state("stopped", None);
            let mut summary = handler.summary;
            summary.read = stats.read;
            summary.dead_lettered = stats.dead_lettered;
            summary.retries = stats.retries;
            Ok(summary)
        }
        Err(e) => Err(e),
    }
}

/// Produces the entries' records to the topic.
struct ToKafka<'a> {
    options: &'a BridgeOptions,
    status: &'a BridgeStatus,
    producer: BatchProducer,
    partitions: Vec<i32>,
    summary: BridgeSummary,
}

impl BatchHandler for ToKafka<'_> {
    type Item = OutRecord;
    type Error = BridgeError;

    fn decode(&self, entry: &StreamEntry) -> Result<OutRecord, String> {
        let o = self.options;
        to_record(entry, &o.stream, o.transform, &self.partitions)
    }

    async fn commit(&mut self, items: &[OutRecord]) -> Result<(), CommitError<BridgeError>> {
        let o = self.options;
        match self
            .producer
            .send_all(&o.topic, items, DELIVERY_TIMEOUT)
            .await
        {
            Ok(()) => {
                let bytes: u64 = items.iter().map(|r| r.value.len() as u64).sum();
                let n = items.len() as u64;
                self.summary.written += n;
                self.summary.bytes_out += bytes;
                let labels = [("bridge", o.name.clone())];
                // Entries committed are the ones read and decoded (dead letters are counted by
                // the consumer).
                metrics::counter!(BridgeMetric::MessagesInTotal.name(), &labels).increment(n);
                metrics::counter!(BridgeMetric::MessagesOutTotal.name(), &labels).increment(n);
                metrics::counter!(BridgeMetric::BytesOutTotal.name(), &labels).increment(bytes);
                let summary = self.summary.clone();
                self.status.update(|v| {
                    v.state = "running".into();
                    v.totals = summary;
                    v.last_batch_at = Some(chrono::Utc::now().to_rfc3339());
                });
                Ok(())
            }
            Err(e) if refused(&e) => Err(CommitError::Refused(e.to_string())),
            Err(e) => Err(CommitError::Failed(e.into())),
        }
    }

    fn redis_error(&self, error: redis::RedisError) -> BridgeError {
        BridgeError::redis(&self.options.redis, error)
    }
}

/// The broker refuses the record itself (too large, invalid): retrying cannot help, so the
/// consumer isolates it and dead-letters it.
fn refused(e: &KafkaError) -> bool {
    matches!(
        e.source_error().rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessage
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::InvalidRecord
        )
    )
}
