//! `[[bridge]]` sections of the config file: one per bridge (every key is listed with its
//! default in `config/reference.toml`). `ferry serve` runs each; `ferry bridge run --bridge
//! NAME` runs one.

use std::collections::BTreeMap;
use std::time::Duration;

use ferry_connectors::frames::ImageTarget;
use ferry_core::secret::SecretUrl;
use serde::{Deserialize, Deserializer};

use super::args::RunArgs;
use super::{BridgeOptions, Transform};
use crate::config::{check_durations, secs};

/// `[[bridge]]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeSection {
    /// Its name (status, metrics, `--bridge`); default `TOPIC->STREAM`.
    pub name: Option<String>,
    /// Kafka bootstrap servers `HOST:PORT[,HOST:PORT]`.
    pub kafka: Option<String>,
    /// The topic.
    pub topic: Option<String>,
    /// The consumer group.
    pub group: Option<String>,
    /// The Redis of the Stream.
    pub redis: Option<SecretUrl>,
    /// The Stream.
    pub stream: Option<String>,
    /// Stream → topic.
    pub reverse: Option<bool>,
    /// Messages per batch.
    pub batch: Option<usize>,
    /// Approximate Stream length to trim to.
    pub maxlen: Option<u64>,
    /// `none` or `frame-proto`.
    pub transform: Option<Transform>,
    /// `keep`, `jpeg:Q`, `webp:Q` or `png`.
    #[serde(default, deserialize_with = "image_target")]
    pub image: Option<ImageTarget>,
    /// Pause while the Stream holds more entries.
    pub max_stream_len: Option<u64>,
    /// Pause while Redis uses more memory: bytes, or a string such as "512m".
    #[serde(default, deserialize_with = "byte_size")]
    pub max_redis_memory: Option<u64>,
    /// Kafka's session timeout, seconds.
    pub session_timeout_s: Option<f64>,
    /// Longest wait for a batch to fill, seconds.
    pub linger_s: Option<f64>,
    /// Reverse: the consumer's name.
    pub consumer: Option<String>,
    /// Reverse: take over entries pending this long, seconds.
    pub claim_idle_s: Option<f64>,
    /// Further librdkafka properties.
    pub kafka_properties: Option<BTreeMap<String, String>>,
}

fn image_target<'de, D: Deserializer<'de>>(d: D) -> Result<Option<ImageTarget>, D::Error> {
    let s: Option<String> = Option::deserialize(d)?;
    s.map(|s| s.parse().map_err(serde::de::Error::custom))
        .transpose()
}

fn byte_size<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Bytes(u64),
        Text(String),
    }
    match Option::<Size>::deserialize(d)? {
        None => Ok(None),
        Some(Size::Bytes(0)) => Err(serde::de::Error::custom("a size of 0 would pause at once")),
        Some(Size::Bytes(n)) => Ok(Some(n)),
        Some(Size::Text(t)) => super::backpressure::parse_bytes(&t)
            .map(Some)
            .map_err(serde::de::Error::custom),
    }
}

impl BridgeSection {
    /// Checks the section's durations.
    pub fn check(&self) -> Result<(), String> {
        let name = self.name.as_deref().unwrap_or("?");
        check_durations([
            (
                format!("[[bridge]] {name} session_timeout_s").as_str(),
                self.session_timeout_s,
                Some("a timeout of 0 would expire at once"),
            ),
            (
                format!("[[bridge]] {name} linger_s").as_str(),
                self.linger_s,
                None,
            ),
            (
                format!("[[bridge]] {name} claim_idle_s").as_str(),
                self.claim_idle_s,
                Some("entries would be taken over from consumers still working on them"),
            ),
        ])
    }

    /// The bridge's options: flags over this section over the defaults. A required option
    /// missing from both is an error that names its flag and key.
    pub fn options(&self, args: &RunArgs) -> Result<BridgeOptions, String> {
        let need = |flag: &Option<String>, key: &Option<String>, what: &str| {
            flag.clone()
                .or_else(|| key.clone())
                .filter(|v| !v.trim().is_empty())
                .ok_or_else(|| {
                    format!("no {what}: give --{what} or `{what}` in a [[bridge]] section")
                })
        };
        let kafka = need(&args.kafka, &self.kafka, "kafka")?;
        let topic = need(&args.topic, &self.topic, "topic")?;
        let group = need(&args.group, &self.group, "group")?;
        let stream = need(&args.stream, &self.stream, "stream")?;
        let redis = args
            .redis
            .clone()
            .or_else(|| self.redis.clone())
            .filter(|r| !r.is_empty())
            .ok_or("no redis: give --redis or `redis` in a [[bridge]] section")?;
        let mut o = BridgeOptions::new(&kafka, &topic, &group, redis, &stream);
        if let Some(name) = &self.name {
            o.name = name.clone();
        }
        o.reverse = args.reverse || self.reverse.unwrap_or(false);
        o.batch = args.batch.or(self.batch).unwrap_or(o.batch);
        o.maxlen = args.maxlen.or(self.maxlen);
        o.transform = args.transform.or(self.transform).unwrap_or_default();
        o.image = args.image.or(self.image).unwrap_or(ImageTarget::Keep);
        o.once = args.once;
        o.max_stream_len = args.max_stream_len.or(self.max_stream_len);
        o.max_redis_memory = args.max_redis_memory.or(self.max_redis_memory);
        o.session_timeout = secs(
            args.session_timeout.or(self.session_timeout_s),
            o.session_timeout,
        );
        o.linger = secs(args.linger.or(self.linger_s), o.linger);
        o.claim_idle = secs(args.claim_idle.or(self.claim_idle_s), o.claim_idle);
        if let Some(c) = args.consumer.clone().or_else(|| self.consumer.clone()) {
            o.consumer = c;
        }
        o.kafka_properties = self
            .kafka_properties
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone()))
            .chain(args.kafka_properties.iter().cloned())
            .collect();
        if o.session_timeout < Duration::from_secs(1) {
            return Err("the Kafka session timeout must be at least 1 s".into());
        }
        Ok(o)
    }
}

/// The section `name` picks (`None`: the only one, or none), or why there is none.
pub fn pick<'a>(
    sections: &'a [BridgeSection],
    name: Option<&str>,
) -> Result<Option<&'a BridgeSection>, String> {
    match name {
        Some(n) => sections
            .iter()
            .find(|s| s.name.as_deref() == Some(n))
            .map(Some)
            .ok_or_else(|| {
                let names: Vec<&str> = sections.iter().filter_map(|s| s.name.as_deref()).collect();
                format!(
                    "no [[bridge]] section is named `{n}` (named ones: {})",
                    if names.is_empty() {
                        "none".into()
                    } else {
                        names.join(", ")
                    }
                )
            }),
        None if sections.len() <= 1 => Ok(sections.first()),
        None => Err(format!(
            "the config file has {} [[bridge]] sections: pick one with --bridge NAME",
            sections.len()
        )),
    }
}

/// Checks every section, and that their names are unique.
pub fn check_all(sections: &[BridgeSection]) -> Result<(), String> {
    let mut names = std::collections::BTreeSet::new();
    for s in sections {
        s.check()?;
        let name = s.options(&RunArgs::default())?.name;
        if !names.insert(name.clone()) {
            return Err(format!(
                "two [[bridge]] sections are named `{name}`: give each a distinct `name`"
            ));
        }
    }
    Ok(())
}
