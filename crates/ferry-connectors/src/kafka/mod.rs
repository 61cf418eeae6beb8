//! Kafka and Kafka-protocol brokers through librdkafka (the `rdkafka` crate, bundled build):
//! the client settings Ferry uses, a group consumer that logs its rebalances, a producer that
//! waits for every delivery of a batch, and partition ends.
//!
//! Consumers never commit by themselves (`enable.auto.commit=false`): the caller commits an
//! offset only after the destination acknowledged the records before it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferry_core::error::{Classify, ErrorClass};
use futures::future::try_join_all;
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaError as RdKafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaErrorCode;

pub use rdkafka::message::{Headers, Message, OwnedMessage};
pub use rdkafka::{Offset, TopicPartitionList};

/// Where and as whom a Kafka client connects.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    /// `bootstrap.servers`: `HOST:PORT[,HOST:PORT]`.
    pub brokers: String,
    /// The consumer group (`group.id`).
    pub group: String,
    /// `client.id`, shown in the broker's logs.
    pub client_id: String,
    /// `session.timeout.ms`: how long the group waits for a silent member before giving its
    /// partitions to the others.
    pub session_timeout: Duration,
    /// Further librdkafka properties (`name`, `value`), applied last.
    pub properties: Vec<(String, String)>,
}

impl KafkaSettings {
    /// Settings for `brokers` and `group` with a 10 s session timeout.
    pub fn new(brokers: &str, group: &str) -> Self {
        KafkaSettings {
            brokers: brokers.to_string(),
            group: group.to_string(),
            client_id: "ferry".into(),
            session_timeout: Duration::from_secs(10),
            properties: Vec::new(),
        }
    }

    fn base(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("client.id", &self.client_id)
            .set("message.max.bytes", "100000000")
            .set("log_level", "4");
        c
    }

    fn apply_properties(&self, c: &mut ClientConfig) {
        for (name, value) in &self.properties {
            c.set(name, value);
        }
    }

    /// A group consumer's configuration: no automatic commits nor offset stores, a new group
    /// starts at the earliest offset.
    pub fn consumer_config(&self) -> ClientConfig {
        let mut c = self.base();
        let session = self.session_timeout.as_millis().max(1000);
        c.set("group.id", &self.group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", session.to_string())
            .set("heartbeat.interval.ms", (session / 4).max(250).to_string())
            .set("fetch.message.max.bytes", "10485760")
            .set("queued.max.messages.kbytes", "65536")
            .set("enable.partition.eof", "false")
            .set("statistics.interval.ms", "1000");
        self.apply_properties(&mut c);
        c
    }

    /// A producer's configuration: every record acknowledged by all in-sync replicas, and
    /// idempotent, so a retry inside librdkafka never writes a record twice.
    pub fn producer_config(&self) -> ClientConfig {
        let mut c = self.base();
        c.set("acks", "all")
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .set("compression.type", "none");
        self.apply_properties(&mut c);
        c
    }
}

/// A Kafka failure, classified: a broker that does not answer is retryable; a client that
/// cannot be created (bad settings) is the operator's to fix.
#[derive(Debug, thiserror::Error)]
#[error("Kafka ({brokers}): {cause}")]
pub struct KafkaError {
    brokers: String,
    /// In the message, not also as a source: printed once.
    cause: RdKafkaError,
}

impl KafkaError {
    /// `source`, from a client of `brokers`.
    pub fn new(brokers: &str, source: RdKafkaError) -> Self {
        KafkaError {
            brokers: brokers.to_string(),
            cause: source,
        }
    }

    /// The librdkafka error.
    pub fn source_error(&self) -> &RdKafkaError {
        &self.cause
    }
}

impl Classify for KafkaError {
    fn class(&self) -> ErrorClass {
        match &self.cause {
            RdKafkaError::ClientConfig(..) | RdKafkaError::ClientCreation(_) => ErrorClass::User,
            RdKafkaError::Subscription(_) => ErrorClass::User,
            e => match e.rdkafka_error_code() {
                Some(
                    RDKafkaErrorCode::TopicAuthorizationFailed
                    | RDKafkaErrorCode::GroupAuthorizationFailed
                    | RDKafkaErrorCode::InvalidConfig
                    | RDKafkaErrorCode::MessageSizeTooLarge
                    | RDKafkaErrorCode::UnknownTopic,
                ) => ErrorClass::User,
                _ => ErrorClass::External,
            },
        }
    }
}

/// A consumer context that logs assignments, counts rebalances and keeps librdkafka's latest
/// statistics of each partition (sent every second, read without asking the broker).
#[derive(Debug, Default)]
pub struct RebalanceLog {
    rebalances: AtomicU64,
    partitions: Mutex<BTreeMap<(String, i32), PartitionStats>>,
}

/// What librdkafka last reported of one partition (`-1`: not known).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionStats {
    /// The broker's high watermark, from the last fetch.
    pub high: i64,
    /// The next offset the application will get (last delivered + 1).
    pub app_offset: i64,
    /// The group's committed offset.
    pub committed: i64,
}

impl RebalanceLog {
    /// Rebalances seen so far (assignments and revocations).
    pub fn count(&self) -> u64 {
        self.rebalances.load(Ordering::Relaxed)
    }

    /// The latest statistics of the partitions of `topic` this consumer fetches.
    pub fn partition_stats(&self, topic: &str) -> BTreeMap<i32, PartitionStats> {
        let partitions = self.partitions.lock().unwrap_or_else(|e| e.into_inner());
        partitions
            .iter()
            .filter(|((t, _), _)| t == topic)
            .map(|((_, p), s)| (*p, *s))
            .collect()
    }
}

impl ClientContext for RebalanceLog {
    fn stats(&self, statistics: Statistics) {
        let mut partitions = self.partitions.lock().unwrap_or_else(|e| e.into_inner());
        partitions.clear();
        for (name, topic) in statistics.topics {
            for (id, p) in topic.partitions {
                // -1 is librdkafka's internal "unassigned" partition.
                if id >= 0 && p.desired {
                    let stats = PartitionStats {
                        high: p.hi_offset,
                        app_offset: p.app_offset,
                        committed: p.committed_offset,
                    };
                    partitions.insert((name.clone(), id), stats);
                }
            }
        }
    }
}

impl ConsumerContext for RebalanceLog {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        self.rebalances.fetch_add(1, Ordering::Relaxed);
        match rebalance {
            Rebalance::Assign(tpl) => {
                tracing::info!(partitions = %describe(tpl), "Kafka partitions assigned")
            }
            Rebalance::Revoke(tpl) => {
                tracing::info!(partitions = %describe(tpl), "Kafka partitions revoked")
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "Kafka rebalance failed"),
        }
    }
}

/// `topic/partition` pairs of a list, for logs.
pub fn describe(tpl: &TopicPartitionList) -> String {
    let parts: Vec<String> = tpl
        .elements()
        .iter()
        .map(|e| format!("{}/{}", e.topic(), e.partition()))
        .collect();
    parts.join(",")
}

/// A group consumer of Ferry's.
pub type GroupConsumer = StreamConsumer<RebalanceLog>;

/// Creates a group consumer and subscribes it to `topic`.
pub fn subscribe(settings: &KafkaSettings, topic: &str) -> Result<Arc<GroupConsumer>, KafkaError> {
    let consumer: GroupConsumer = settings
        .consumer_config()
        .create_with_context(RebalanceLog::default())
        .map_err(|e| KafkaError::new(&settings.brokers, e))?;
    consumer
        .subscribe(&[topic])
        .map_err(|e| KafkaError::new(&settings.brokers, e))?;
    Ok(Arc::new(consumer))
}

/// One partition's offsets: the first stored and the next to be written (the high watermark).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionEnds {
    /// The partition.
    pub partition: i32,
    /// The low watermark.
    pub low: i64,
    /// The high watermark (one past the last record).
    pub high: i64,
}

/// The partitions of `topic` with their watermarks, asking the broker (blocking: call it from
/// a blocking thread).
pub fn partition_ends<C: ConsumerContext>(
    consumer: &StreamConsumer<C>,
    brokers: &str,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<PartitionEnds>, KafkaError> {
    let err = |e| KafkaError::new(brokers, e);
    let metadata = consumer.fetch_metadata(Some(topic), timeout).map_err(err)?;
    let mut out = Vec::new();
    for t in metadata.topics().iter().filter(|t| t.name() == topic) {
        if let Some(code) = t.error() {
            let code = RDKafkaErrorCode::from(code);
            return Err(err(RdKafkaError::MetadataFetch(code)));
        }
        for p in t.partitions() {
            let (low, high) = consumer
                .fetch_watermarks(topic, p.id(), timeout)
                .map_err(err)?;
            out.push(PartitionEnds {
                partition: p.id(),
                low,
                high,
            });
        }
    }
    out.sort_by_key(|p| p.partition);
    Ok(out)
}

/// One record to produce.
#[derive(Debug, Clone, Default)]
pub struct OutRecord {
    /// The partition; `None`: chosen by the key's hash (or spread when there is no key).
    pub partition: Option<i32>,
    /// The key.
    pub key: Option<Vec<u8>>,
    /// The value.
    pub value: Vec<u8>,
    /// Send a null value (a tombstone) instead of `value`.
    pub null_value: bool,
    /// Headers in order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The record's timestamp in milliseconds since the epoch; `None`: now.
    pub timestamp_ms: Option<i64>,
}

/// A producer that sends a batch and waits until the broker acknowledged every record of it.
pub struct BatchProducer {
    producer: FutureProducer,
    brokers: String,
}

impl std::fmt::Debug for BatchProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchProducer")
            .field("brokers", &self.brokers)
            .finish_non_exhaustive()
    }
}

impl BatchProducer {
    /// A producer with [`KafkaSettings::producer_config`].
    pub fn new(settings: &KafkaSettings) -> Result<Self, KafkaError> {
        let producer = settings
            .producer_config()
            .create()
            .map_err(|e| KafkaError::new(&settings.brokers, e))?;
        Ok(BatchProducer {
            producer,
            brokers: settings.brokers.clone(),
        })
    }

    /// Sends `records` to `topic`; `Ok` only when every one was acknowledged, each within
    /// `timeout`.
    pub async fn send_all(
        &self,
        topic: &str,
        records: &[OutRecord],
        timeout: Duration,
    ) -> Result<(), KafkaError> {
        let sends = records.iter().map(|r| {
            let mut headers = OwnedHeaders::new_with_capacity(r.headers.len());
            for (name, value) in &r.headers {
                headers = headers.insert(Header {
                    key: name,
                    value: Some(value),
                });
            }
            let mut record = FutureRecord::<[u8], [u8]>::to(topic).headers(headers);
            if !r.null_value {
                record = record.payload(&r.value);
            }
            if let Some(key) = &r.key {
                record = record.key(key);
            }
            if let Some(p) = r.partition {
                record = record.partition(p);
            }
            if let Some(ts) = r.timestamp_ms {
                record = record.timestamp(ts);
            }
            let sent = self.producer.send(record, timeout);
            async move { sent.await.map_err(|(e, _)| e) }
        });
        try_join_all(sends)
            .await
            .map(|_| ())
            .map_err(|e| KafkaError::new(&self.brokers, e))
    }

    /// The partitions of `topic` (blocking).
    pub fn partitions(&self, topic: &str, timeout: Duration) -> Result<Vec<i32>, KafkaError> {
        let metadata = self
            .producer
            .client()
            .fetch_metadata(Some(topic), timeout)
            .map_err(|e| KafkaError::new(&self.brokers, e))?;
        let mut ids: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|t| t.name() == topic && t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        ids.sort_unstable();
        Ok(ids)
    }

    /// Waits up to `timeout` for records still queued.
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.producer
            .flush(timeout)
            .map_err(|e| KafkaError::new(&self.brokers, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumers_never_commit_by_themselves() {
        let c = KafkaSettings::new("127.0.0.1:9092", "g").consumer_config();
        assert_eq!(c.get("enable.auto.commit"), Some("false"));
        assert_eq!(c.get("enable.auto.offset.store"), Some("false"));
        assert_eq!(c.get("group.id"), Some("g"));
        let p = KafkaSettings::new("127.0.0.1:9092", "g").producer_config();
        assert_eq!(p.get("acks"), Some("all"));
        assert_eq!(p.get("enable.idempotence"), Some("true"));
    }

    #[test]
    fn bad_settings_are_the_operators_to_fix() {
        let mut s = KafkaSettings::new("127.0.0.1:9092", "g");
        s.properties.push(("no.such.property".into(), "1".into()));
        let Err(e) = subscribe(&s, "t") else {
            panic!("an unknown property is refused")
        };
        assert_eq!(e.class(), ErrorClass::User, "{e}");
        assert!(e.to_string().contains("no.such.property"), "{e}");
    }
}
