//! The Redis side of the events job: one pipeline per batch of `PUBLISH` on each of an event's
//! channels and, when configured, `XADD` to the history Stream.

use std::time::Duration;

use ferry_core::jobs::events::{Channels, StoredEvent};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisResult};
use tokio::sync::Mutex;

use super::{EventsError, EventsOptions};

/// Publishes events on Redis; reconnects after a failure.
#[derive(Debug)]
pub struct Publisher {
    client: redis::Client,
    shown: String,
    channels: Channels,
    history: Option<(String, u64)>,
    conn: Mutex<Option<MultiplexedConnection>>,
}

impl Publisher {
    /// A publisher for `options.redis` (nothing is connected yet).
    pub fn new(options: &EventsOptions) -> Result<Self, EventsError> {
        let shown = options.redis.redacted().to_string();
        let client =
            redis::Client::open(options.redis.expose()).map_err(|e| EventsError::Redis {
                url: shown.clone(),
                message: e.to_string(),
            })?;
        Ok(Publisher {
            client,
            shown,
            channels: options.channels.clone(),
            history: options
                .history_stream
                .clone()
                .map(|s| (s, options.history_maxlen)),
            conn: Mutex::new(None),
        })
    }

    /// The server, password redacted.
    pub fn url(&self) -> &str {
        &self.shown
    }

    /// A failure talking to this Redis, as the job's error: unreachable, or a command it
    /// refused (then the message does not send the user looking for a server that is up).
    pub fn error(&self, e: redis::RedisError) -> EventsError {
        let url = self.shown.clone();
        let message = e.to_string();
        if ferry_connectors::redis::is_unreachable(&e) {
            EventsError::Redis { url, message }
        } else {
            EventsError::RedisRefused { url, message }
        }
    }

    /// The main channel.
    pub fn channel(&self) -> &str {
        &self.channels.main
    }

    /// A client for subscribers (the API's live view).
    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    async fn connection(&self) -> RedisResult<MultiplexedConnection> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(5)));
        let c = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        *slot = Some(c.clone());
        Ok(c)
    }

    /// A `PING` over the publisher's connection (no new connection per health check); a
    /// failure drops it, so the next call connects afresh.
    pub async fn ping(&self) -> RedisResult<()> {
        let mut conn = self.connection().await?;
        let result = redis::cmd("PING").query_async::<()>(&mut conn).await;
        if result.is_err() {
            *self.conn.lock().await = None;
        }
        result
    }

    /// Publishes `events` in order; `Ok` only when Redis accepted every command.
    pub async fn publish(&self, events: &[StoredEvent]) -> RedisResult<()> {
        let mut pipe = redis::pipe();
        for e in events {
            let json = e.to_json();
            for channel in self.channels.for_event(&e.camera_id, &e.event_type) {
                pipe.cmd("PUBLISH").arg(channel).arg(&json).ignore();
            }
            if let Some((stream, maxlen)) = &self.history {
                pipe.cmd("XADD")
                    .arg(stream)
                    .arg("MAXLEN")
                    .arg("~")
                    .arg(*maxlen)
                    .arg("*")
                    .arg("id")
                    .arg(e.id)
                    .arg("data")
                    .arg(&json)
                    .ignore();
            }
        }
        let mut conn = self.connection().await?;
        let result: RedisResult<()> = pipe.query_async(&mut conn).await;
        if result.is_err() {
            // The next attempt connects afresh.
            *self.conn.lock().await = None;
        }
        result
    }
}
