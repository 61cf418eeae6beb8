//! The events job's command line: its actions and their options.

use clap::{Args, Subcommand};
use ferry_core::secret::SecretUrl;

use super::EventsOptions;
use crate::config::FileConfig;

/// Actions of the events job.
#[derive(Debug, Subcommand)]
pub enum EventsAction {
    /// Publish stored events on Redis (Pub/Sub, optional Stream) and mark them published.
    Relay {
        #[command(flatten)]
        events: EventsArgs,
        /// Stop when everything stored is published instead of waiting for more.
        #[arg(long)]
        once: bool,
    },
    /// Move events from a Redis Stream into the log: XREADGROUP, save, then XACK.
    Ingest {
        #[command(flatten)]
        events: EventsArgs,
        /// The Stream producers write.
        #[arg(long, default_value = "stream:events")]
        stream: String,
        /// The consumer group.
        #[arg(long, default_value = "ferry")]
        group: String,
        /// This consumer's name (default ferry-HOSTNAME; keep it stable across restarts).
        #[arg(long)]
        consumer: Option<String>,
        /// Where a new group starts: 0 (the whole Stream) or $ (new entries only).
        #[arg(long, default_value = "0")]
        start_id: String,
        /// Entries per read.
        #[arg(long, default_value_t = 500)]
        batch: usize,
        /// Take over entries another consumer left pending this many seconds.
        #[arg(long, default_value_t = 60.0, value_name = "SECONDS", value_parser = claim_idle_seconds, allow_hyphen_values = true)]
        claim_idle: f64,
        /// Stream that receives entries that are not events (default STREAM:dead).
        #[arg(long)]
        dead_letter: Option<String>,
        /// Stop when the Stream has nothing left.
        #[arg(long)]
        once: bool,
    },
    /// Stored events, newest first, with the API's filters.
    Query {
        #[command(flatten)]
        events: EventsArgs,
        /// Only this camera.
        #[arg(long)]
        camera_id: Option<String>,
        /// Only this type.
        #[arg(long)]
        event_type: Option<String>,
        /// Events at or after this time (RFC 3339).
        #[arg(long)]
        since: Option<String>,
        /// Events before this time (RFC 3339).
        #[arg(long)]
        until: Option<String>,
        /// Page size.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// The previous page's next_cursor.
        #[arg(long)]
        cursor: Option<i64>,
        /// Print JSON (the API's page).
        #[arg(long)]
        json: bool,
    },
    /// Counts by type and camera, unpublished backlog and publish lag.
    Stats {
        #[command(flatten)]
        events: EventsArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Options of every events action (over `[events]` of the config file).
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// PostgreSQL of the event log.
    #[arg(long, env = "FERRY_EVENTS_POSTGRES", hide_env_values = true)]
    pub postgres: Option<SecretUrl>,
    /// The Redis to publish on (and, for ingest, to read from).
    #[arg(long, env = "FERRY_EVENTS_REDIS", hide_env_values = true)]
    pub redis: Option<SecretUrl>,
}

/// `--claim-idle`: as [`seconds`], and not 0.
fn claim_idle_seconds(value: &str) -> Result<f64, String> {
    crate::cli::parse_seconds(
        "--claim-idle",
        value,
        Some(
            "the claim loop would run without pause, taking over entries other consumers are still working on",
        ),
    )
}

impl EventsArgs {
    /// `[events]` of the file, then FERRY_* variables and flags.
    pub fn options(&self, file: &FileConfig) -> EventsOptions {
        let mut o = file.events.options();
        if let Some(p) = &self.postgres {
            o.postgres = p.clone();
        }
        if let Some(r) = &self.redis {
            o.redis = r.clone();
        }
        o
    }
}
