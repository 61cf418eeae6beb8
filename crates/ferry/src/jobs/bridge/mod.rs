//! The bridge job: moves a message flow from a Kafka topic to a Redis Stream ([`forward`]) and
//! back ([`reverse`], for a rollback), optionally turning the seed's JSON camera frames into
//! Protocol Buffers with recompressed images ([`entry`]), losing nothing.
//!
//! - Kafka → Stream: a Kafka offset is committed only after Redis stored the entries that carry
//!   it; the entries are written by one Lua script per batch that also records, per partition,
//!   the last offset written, so a batch delivered again (after a crash, a rebalance or a
//!   zombie consumer) is not written twice ([`sink`]).
//! - Stream → Kafka: the shared [`crate::streams::StreamConsumer`], acknowledging an entry
//!   only after the broker acknowledged its record.
//! - Backpressure ([`backpressure`]): consuming pauses while the Stream or Redis is too big.
//! - [`health`]: the Stream's length, memory, groups, consumers and pending entries.

pub mod args;
pub mod backpressure;
pub mod cli;
pub mod config;
pub mod demo;
pub mod entry;
pub mod forward;
pub mod health;
pub mod metrics;
pub mod reverse;
pub mod routes;
pub mod service;
pub mod sink;
pub mod status;

use std::time::Duration;

use ferry_connectors::frames::ImageTarget;
use ferry_connectors::kafka::{KafkaError, KafkaSettings};
use ferry_core::error::{Classify, ErrorClass};
use ferry_core::secret::SecretUrl;
use serde::Serialize;

pub use forward::forward;
pub use reverse::reverse;
pub use status::BridgeStatus;

/// What a message becomes on its way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Transform {
    /// The bytes as they are.
    #[default]
    None,
    /// The seed's JSON frame (`image_base64` or `image_array`) → `ferry.frames.v1.ProcessedFrame`
    /// (Protocol Buffers) with the image re-encoded as `--image` says; back to JSON in reverse.
    FrameProto,
}

impl Transform {
    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Transform::None => "none",
            Transform::FrameProto => "frame-proto",
        }
    }
}

/// librdkafka properties the bridge sets itself and `--kafka-property` may not change.
const OWN_PROPERTIES: &[&str] = &[
    "group.id",
    "bootstrap.servers",
    "enable.auto.commit",
    "enable.auto.offset.store",
];

/// Checked options of one bridge.
#[derive(Debug, Clone)]
pub struct BridgeOptions {
    /// Its name (status, metrics labels); default `TOPIC->STREAM`.
    pub name: String,
    /// Kafka bootstrap servers `HOST:PORT[,HOST:PORT]`.
    pub kafka: String,
    /// The topic.
    pub topic: String,
    /// The consumer group (Kafka's for the forward bridge, the Stream's for the reverse one).
    pub group: String,
    /// The Redis holding the Stream.
    pub redis: SecretUrl,
    /// The Stream.
    pub stream: String,
    /// Stream → topic instead of topic → Stream.
    pub reverse: bool,
    /// Messages per batch.
    pub batch: usize,
    /// Trim the Stream to about this many entries (`MAXLEN ~`); `None`: never trim.
    pub maxlen: Option<u64>,
    /// What each message becomes.
    pub transform: Transform,
    /// How frame images are re-encoded (with `frame-proto`).
    pub image: ImageTarget,
    /// Stop when caught up with the ends seen at start.
    pub once: bool,
    /// Pause consuming while the Stream holds more entries than this.
    pub max_stream_len: Option<u64>,
    /// Pause consuming while Redis uses more memory than this many bytes.
    pub max_redis_memory: Option<u64>,
    /// Kafka's `session.timeout.ms`.
    pub session_timeout: Duration,
    /// Longest wait for a batch to fill.
    pub linger: Duration,
    /// Reverse: this consumer's name in the Stream's group.
    pub consumer: String,
    /// Reverse: take over entries another consumer left pending this long.
    pub claim_idle: Duration,
    /// Further librdkafka properties.
    pub kafka_properties: Vec<(String, String)>,
}

impl BridgeOptions {
    /// Options for `topic` ⇄ `stream` with the defaults: batches of 500, no trimming, no
    /// transform, no backpressure limit.
    pub fn new(kafka: &str, topic: &str, group: &str, redis: SecretUrl, stream: &str) -> Self {
        BridgeOptions {
            name: format!("{topic}->{stream}"),
            kafka: kafka.to_string(),
            topic: topic.to_string(),
            group: group.to_string(),
            redis,
            stream: stream.to_string(),
            reverse: false,
            batch: 500,
            maxlen: None,
            transform: Transform::None,
            image: ImageTarget::Keep,
            once: false,
            max_stream_len: None,
            max_redis_memory: None,
            session_timeout: Duration::from_secs(10),
            linger: Duration::from_millis(20),
            consumer: format!("ferry-{}", crate::runtime::hostname()),
            claim_idle: Duration::from_secs(60),
            kafka_properties: Vec::new(),
        }
    }

    /// The Kafka client settings.
    pub fn kafka_settings(&self) -> KafkaSettings {
        let mut s = KafkaSettings::new(&self.kafka, &self.group);
        s.client_id = format!("ferry-bridge-{}", crate::runtime::hostname());
        s.session_timeout = self.session_timeout;
        s.properties = self.kafka_properties.clone();
        s
    }

    /// The dead-letter Stream: `{stream}:dlq`.
    pub fn dead_letter(&self) -> String {
        dead_letter_of(&self.stream)
    }

    /// Checks what clap and serde cannot: names not empty, a batch of at least one.
    pub fn check(&self) -> Result<(), BridgeError> {
        let usage = |m: String| Err(BridgeError::Usage(m));
        for (what, value) in [
            ("--kafka", &self.kafka),
            ("--topic", &self.topic),
            ("--group", &self.group),
            ("--stream", &self.stream),
        ] {
            if value.trim().is_empty() {
                return usage(format!("{what} is empty: name the {}", &what[2..]));
            }
        }
        if self.redis.is_empty() {
            return usage("--redis is empty: give the Redis URL of the stream".into());
        }
        if self.batch == 0 {
            return usage("--batch 0 would move nothing: give at least 1".into());
        }
        if self.batch > 100_000 {
            return usage(format!(
                "--batch {} is over 100000: one batch is one Redis script call and is held in memory",
                self.batch
            ));
        }
        if self.maxlen == Some(0) {
            return usage("--maxlen 0 would trim every entry away: give a length, or leave it out to keep everything".into());
        }
        if self.max_stream_len == Some(0) {
            return usage(
                "--max-stream-len 0 would pause for ever: give a length above 0, or leave it out"
                    .into(),
            );
        }
        if self.session_timeout > Duration::from_secs(3600) {
            return usage(format!(
                "--session-timeout {} s is over an hour: a dead member would hold its partitions that long (brokers refuse over 30 min by default)",
                self.session_timeout.as_secs()
            ));
        }
        if self.reverse && self.consumer.trim().is_empty() {
            return usage("--consumer is empty: name this consumer of the stream's group".into());
        }
        for (name, _) in &self.kafka_properties {
            if OWN_PROPERTIES.contains(&name.as_str()) {
                return usage(format!(
                    "--kafka-property {name} is the bridge's own: {}",
                    match name.as_str() {
                        "group.id" => "use --group",
                        "bootstrap.servers" => "use --kafka",
                        _ => "the bridge commits offsets itself, after Redis stored the records",
                    }
                ));
            }
        }
        if self.reverse
            && self.transform == Transform::FrameProto
            && self.image != ImageTarget::Keep
        {
            return usage("--reverse turns frames back into JSON with the image as stored: --image must be keep".into());
        }
        Ok(())
    }
}

/// Why a bridge stopped.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    /// Kafka failed.
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    /// Redis failed.
    #[error("Redis ({url}): {cause}")]
    Redis {
        /// The redacted URL.
        url: String,
        /// The failure (in the message, not also as a source: printed once).
        cause: redis::RedisError,
    },
    /// Bad options.
    #[error("{0}")]
    Usage(String),
    /// Something that should not happen.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Classify for BridgeError {
    fn class(&self) -> ErrorClass {
        match self {
            BridgeError::Kafka(e) => e.class(),
            BridgeError::Redis { cause, .. } => {
                if ferry_connectors::redis::is_transient(cause) {
                    ErrorClass::External
                } else {
                    ErrorClass::User
                }
            }
            BridgeError::Usage(_) => ErrorClass::User,
            BridgeError::Internal(_) => ErrorClass::Internal,
        }
    }
}

impl BridgeError {
    /// A Redis failure on the Redis of `url`.
    pub fn redis(url: &SecretUrl, source: redis::RedisError) -> Self {
        BridgeError::Redis {
            url: url.redacted().to_string(),
            cause: source,
        }
    }
}

/// The dead-letter Stream of `stream`: `{stream}:dlq`.
pub fn dead_letter_of(stream: &str) -> String {
    format!("{stream}:dlq")
}

/// Refuses to start when one of `keys` holds a Redis type other than the one wanted (absent
/// is fine): a key of another type is the operator's to rename, not the bridge's to clobber,
/// and a failed write there mid-run would come too late.
pub(crate) async fn check_key_types(
    conn: &mut redis::aio::MultiplexedConnection,
    url: &SecretUrl,
    keys: &[(String, &str)],
) -> Result<(), BridgeError> {
    for (key, wanted) in keys {
        let kind: String = redis::cmd("TYPE")
            .arg(key)
            .query_async(conn)
            .await
            .map_err(|e| BridgeError::redis(url, e))?;
        if kind != "none" && kind != *wanted {
            return Err(BridgeError::Usage(format!(
                "the Redis key {key} is a {kind}, not a {wanted}: the bridge uses a {wanted} there; choose another --stream or rename the key"
            )));
        }
    }
    Ok(())
}

/// What one bridge run did.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct BridgeSummary {
    /// Messages read (Kafka records forward, Stream entries in reverse).
    pub read: u64,
    /// Messages written to the destination.
    pub written: u64,
    /// Messages not written again because an earlier delivery already was.
    pub duplicates_skipped: u64,
    /// Messages moved to the dead-letter Stream.
    pub dead_lettered: u64,
    /// Bytes read.
    pub bytes_in: u64,
    /// Bytes written.
    pub bytes_out: u64,
    /// Times consuming paused for backpressure.
    pub pauses: u64,
    /// Failed attempts, retried.
    pub retries: u64,
}
