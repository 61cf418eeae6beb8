//! `[events]` of the config file: the events job's settings (every key is listed with its
//! default in `config/reference.toml`).

use serde::Deserialize;

use super::EventsOptions;
use crate::config::{check_durations, secs};
use ferry_core::jobs::events::Channels;
use ferry_core::secret::SecretUrl;

/// `[events]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsSection {
    /// PostgreSQL URL of the event log; `ferry serve` runs the events job when it is set.
    pub postgres: Option<SecretUrl>,
    /// Redis URL to publish on.
    pub redis: Option<SecretUrl>,
    /// The Pub/Sub channel of every event.
    pub channel: Option<String>,
    /// Also publish on `{channel}:{camera_id}`.
    pub camera_channels: Option<bool>,
    /// Also publish on `{channel}:{event_type}`.
    pub type_channels: Option<bool>,
    /// A Stream that also receives every event, for replay; empty: none.
    pub history_stream: Option<String>,
    /// Approximate length of the history Stream.
    pub history_maxlen: Option<u64>,
    /// Accepted event types; empty: any.
    pub allowed_types: Option<Vec<String>>,
    /// Events per relay transaction.
    pub relay_batch: Option<usize>,
    /// Concurrent publishing loops per relay.
    pub relay_workers: Option<usize>,
    /// Seconds between rescans of the outbox when no notification arrives.
    pub rescan_interval_s: Option<f64>,
    /// PostgreSQL connections.
    pub connections: Option<usize>,
    /// Most events in one API request.
    pub max_batch: Option<usize>,
}

impl EventsSection {
    /// The events job's options: this section over the defaults.
    pub fn options(&self) -> EventsOptions {
        let d = EventsOptions::default();
        let e = self;
        EventsOptions {
            postgres: e
                .postgres
                .clone()
                .filter(|p| !p.is_empty())
                .unwrap_or(d.postgres),
            redis: e.redis.clone().filter(|r| !r.is_empty()).unwrap_or(d.redis),
            channels: Channels {
                main: e.channel.clone().unwrap_or(d.channels.main),
                per_camera: e.camera_channels.unwrap_or(d.channels.per_camera),
                per_type: e.type_channels.unwrap_or(d.channels.per_type),
            },
            history_stream: e.history_stream.clone().filter(|s| !s.is_empty()),
            history_maxlen: e.history_maxlen.unwrap_or(d.history_maxlen),
            allowed_types: e.allowed_types.clone().unwrap_or(d.allowed_types),
            relay_batch: e.relay_batch.unwrap_or(d.relay_batch),
            relay_workers: e.relay_workers.unwrap_or(d.relay_workers),
            rescan_interval: secs(e.rescan_interval_s, d.rescan_interval),
            connections: e.connections.unwrap_or(d.connections),
            max_batch: e.max_batch.unwrap_or(d.max_batch),
        }
    }

    /// Checks the section's durations (see [`crate::config::check_seconds`]).
    pub fn check(&self) -> Result<(), String> {
        check_durations([(
            "[events] rescan_interval_s",
            self.rescan_interval_s,
            Some("the relay would rescan the outbox without pause"),
        )])
    }
}
