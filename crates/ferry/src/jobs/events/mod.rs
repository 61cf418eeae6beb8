//! The events job: every analytics event is saved in PostgreSQL first, then published on Redis
//! Pub/Sub (and optionally a Stream) by a relay that marks it published only after Redis
//! accepted it. A crash between the two steps delays a publication; it never loses one.
//!
//! - ways in: the HTTP API, [`EventLog::save`] / [`EventLog::save_batch`] in-process, plain
//!   SQL `INSERT`s (a trigger queues them), and [`ingest`] from a Redis Stream;
//! - [`relay`]: the outbox → Redis publisher (`ferry events relay`, also inside `ferry serve`);
//! - [`publisher`]: what one event becomes on Redis.

pub mod args;
pub mod cli;
pub mod config;
pub mod demo;
pub mod ingest;
pub mod live;
pub mod metrics;
pub mod publisher;
pub mod relay;
pub mod routes;
pub mod service;

use std::time::Duration;

use ferry_connectors::postgres::events::EventLogError;
use ferry_core::error::{Classify, ErrorClass};
use ferry_core::jobs::events::Channels;
use ferry_core::secret::SecretUrl;

pub use ferry_connectors::postgres::events::{EventLog, EventPage, EventQuery, EventStats, Saved};
pub use ferry_core::jobs::events::{NewEvent, StoredEvent};
pub use ingest::{IngestOptions, IngestSummary, ingest, ingest_options};
pub use publisher::Publisher;
pub use relay::{RelaySummary, relay};

/// Checked options of the events job.
#[derive(Debug, Clone)]
pub struct EventsOptions {
    /// The PostgreSQL holding the `events` table and its outbox (`{:?}` shows it redacted).
    pub postgres: SecretUrl,
    /// The Redis to publish on.
    pub redis: SecretUrl,
    /// Pub/Sub channels.
    pub channels: Channels,
    /// A Stream that also receives every event (for replay), if any.
    pub history_stream: Option<String>,
    /// Approximate length the history Stream is trimmed to.
    pub history_maxlen: u64,
    /// Event types accepted; empty: any.
    pub allowed_types: Vec<String>,
    /// Events per relay transaction.
    pub relay_batch: usize,
    /// Concurrent publishing loops of one relay (each takes different cameras).
    pub relay_workers: usize,
    /// The relay looks for unpublished events this often even without a notification.
    pub rescan_interval: Duration,
    /// PostgreSQL connections in the pool.
    pub connections: usize,
    /// Most events in one API request.
    pub max_batch: usize,
}

impl Default for EventsOptions {
    fn default() -> Self {
        EventsOptions {
            postgres: "postgres://postgres@127.0.0.1:5432/postgres".into(),
            redis: "redis://127.0.0.1:6379".into(),
            channels: Channels::default(),
            history_stream: None,
            history_maxlen: 100_000,
            allowed_types: Vec::new(),
            relay_batch: 1000,
            relay_workers: 2,
            rescan_interval: Duration::from_secs(1),
            connections: 8,
            max_batch: 10_000,
        }
    }
}

/// What the events job works with.
#[derive(Debug)]
pub struct EventsContext {
    /// The options.
    pub options: EventsOptions,
    /// The PostgreSQL log.
    pub log: EventLog,
    /// The Redis side.
    pub publisher: Publisher,
    /// The live view's shared subscription.
    pub live: live::LiveHub,
}

/// A failure of the events job.
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    /// PostgreSQL.
    #[error(transparent)]
    Log(#[from] EventLogError),
    /// Redis could not be reached (or its URL is wrong).
    #[error("Redis at {url}: {message}; is it running and is the URL right?")]
    Redis {
        /// The server, password redacted.
        url: String,
        /// The cause.
        message: String,
    },
    /// Redis answered a command with an error (a key of another type, an id it refuses).
    #[error("Redis at {url} refused a command: {message}")]
    RedisRefused {
        /// The server, password redacted.
        url: String,
        /// Its answer.
        message: String,
    },
    /// A bad option.
    #[error("{0}")]
    Usage(String),
}

impl Classify for EventsError {
    fn class(&self) -> ErrorClass {
        match self {
            EventsError::Log(e) => e.class(),
            EventsError::Redis { .. } | EventsError::RedisRefused { .. } => ErrorClass::External,
            EventsError::Usage(_) => ErrorClass::User,
        }
    }
}

impl EventsContext {
    /// Opens the log (creating or upgrading its schema) and the Redis client. PostgreSQL must
    /// answer; Redis may be down (events are then stored and published when it returns).
    pub async fn connect(options: EventsOptions) -> Result<Self, EventsError> {
        if options.channels.main.is_empty() {
            return Err(EventsError::Usage(
                "[events] channel must not be empty".into(),
            ));
        }
        if options.relay_batch == 0 || options.max_batch == 0 {
            return Err(EventsError::Usage(
                "[events] relay_batch and max_batch must be positive".into(),
            ));
        }
        let log = EventLog::open(options.postgres.expose(), options.connections).await?;
        let publisher = Publisher::new(&options)?;
        Ok(EventsContext {
            options,
            log,
            publisher,
            live: live::LiveHub::default(),
        })
    }
}
