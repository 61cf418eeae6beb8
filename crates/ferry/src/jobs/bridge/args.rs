//! The bridge job's command line: its actions and their options. Every option of `run` can
//! also come from a `[[bridge]]` section of the config file (`--bridge NAME` picks it; the
//! only section is picked by default); a flag wins over the file.

use clap::{Args, Subcommand};
use ferry_connectors::frames::ImageTarget;
use ferry_core::secret::SecretUrl;

use super::Transform;

/// Actions of the bridge job.
#[derive(Debug, Subcommand)]
pub enum BridgeAction {
    /// Move messages from a Kafka topic to a Redis Stream (`--reverse`: back to the topic).
    Run(Box<RunArgs>),
    /// A Stream's length, memory, groups, consumers, pending entries, oldest pending age and
    /// lag.
    Health {
        /// The `[[bridge]]` section whose Redis and Stream to look at.
        #[arg(long)]
        bridge: Option<String>,
        /// The Redis holding the Stream.
        #[arg(long, env = "FERRY_BRIDGE_REDIS", hide_env_values = true)]
        redis: Option<SecretUrl>,
        /// The Stream.
        #[arg(long)]
        stream: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Options of `ferry bridge run`.
#[derive(Debug, Args, Default)]
pub struct RunArgs {
    /// The `[[bridge]]` section of the config file to run (its `name`).
    #[arg(long)]
    pub bridge: Option<String>,
    /// Kafka bootstrap servers: HOST:PORT[,HOST:PORT].
    #[arg(long, env = "FERRY_BRIDGE_KAFKA")]
    pub kafka: Option<String>,
    /// The Kafka topic.
    #[arg(long)]
    pub topic: Option<String>,
    /// The consumer group: Kafka's (forward) or the Stream's (reverse).
    #[arg(long)]
    pub group: Option<String>,
    /// The Redis holding the Stream.
    #[arg(long, env = "FERRY_BRIDGE_REDIS", hide_env_values = true)]
    pub redis: Option<SecretUrl>,
    /// The Redis Stream.
    #[arg(long)]
    pub stream: Option<String>,
    /// Move the Stream back to the topic (a rollback), reading it as the consumer group
    /// `--group`.
    #[arg(long)]
    pub reverse: bool,
    /// Messages per batch [default: 500].
    #[arg(long)]
    pub batch: Option<usize>,
    /// Trim the Stream to about N entries (approximate MAXLEN) [default: never].
    #[arg(long, value_name = "N")]
    pub maxlen: Option<u64>,
    /// What each message becomes [default: none].
    #[arg(long, value_enum)]
    pub transform: Option<Transform>,
    /// Frame images with `frame-proto`: keep, jpeg:Q, webp:Q or png [default: keep].
    #[arg(long, value_name = "keep|jpeg:Q|webp:Q|png")]
    pub image: Option<ImageTarget>,
    /// Stop when caught up with the ends seen at start (forward) or when the Stream has
    /// nothing left (reverse).
    #[arg(long)]
    pub once: bool,
    /// Pause consuming while the Stream holds more than N entries.
    #[arg(long, value_name = "N")]
    pub max_stream_len: Option<u64>,
    /// Pause consuming while Redis uses more memory than this (bytes, or 512m, 2g ...).
    #[arg(long, value_name = "SIZE", value_parser = super::backpressure::parse_bytes)]
    pub max_redis_memory: Option<u64>,
    /// Kafka's session timeout in seconds [default: 10].
    #[arg(long, value_name = "SECONDS", value_parser = positive_seconds)]
    pub session_timeout: Option<f64>,
    /// Longest wait for a batch to fill, in seconds [default: 0.02].
    #[arg(long, value_name = "SECONDS", value_parser = seconds)]
    pub linger: Option<f64>,
    /// Reverse: this consumer's name in the Stream's group [default: ferry-HOSTNAME].
    #[arg(long)]
    pub consumer: Option<String>,
    /// Reverse: take over entries another consumer left pending this many seconds [default: 60].
    #[arg(long, value_name = "SECONDS", value_parser = positive_seconds)]
    pub claim_idle: Option<f64>,
    /// A librdkafka property NAME=VALUE (repeatable), e.g. security.protocol=ssl.
    #[arg(long = "kafka-property", value_name = "NAME=VALUE", value_parser = property)]
    pub kafka_properties: Vec<(String, String)>,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

fn seconds(value: &str) -> Result<f64, String> {
    crate::cli::parse_seconds("a duration", value, None)
}

fn positive_seconds(value: &str) -> Result<f64, String> {
    crate::cli::parse_seconds(
        "a duration",
        value,
        Some("a timeout of 0 would expire at once"),
    )
}

fn property(value: &str) -> Result<(String, String), String> {
    let (name, v) = value
        .split_once('=')
        .ok_or_else(|| format!("`{value}` is not NAME=VALUE"))?;
    if name.trim().is_empty() {
        return Err(format!("`{value}`: the property name is empty"));
    }
    Ok((name.trim().to_string(), v.to_string()))
}
