//! The keys job's command line: its actions and their options.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use ferry_core::secret::SecretUrl;

use super::{KeysOptions, OnCollision, OnConflict};
use ferry_core::report::ReportFormat;

/// Actions of the keys job.
#[derive(Debug, Subcommand)]
pub enum KeysAction {
    /// Offline: print each key's new name, or "unmatched" (no Redis needed).
    TestRules {
        /// The rules file.
        #[arg(long, env = "FERRY_RULES")]
        rules: PathBuf,
        /// Keys to map; `\xNN` escapes give arbitrary bytes.
        #[arg(required = true)]
        keys: Vec<String>,
    },
    /// Survey the keys: counts per rule, types, sizes, TTLs, samples, biggest keys, collisions.
    Analyze {
        #[command(flatten)]
        common: Common,
        /// Measure MEMORY USAGE of about this many keys (default: every key).
        #[arg(long)]
        sample: Option<u64>,
    },
    /// Dry run: everything apply would do, writing nothing.
    Plan {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        write: WriteOpts,
    },
    /// Copy every matched key to its new name, keeping type, value and TTL.
    Apply {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        write: WriteOpts,
        /// Keys per second at most.
        #[arg(long, value_name = "KEYS_PER_S")]
        rate: Option<u64>,
        #[command(flatten)]
        values: ValueOpts,
        /// Start over although the unfinished last run used other rules.
        #[arg(long)]
        restart: bool,
        /// Do it without asking.
        #[arg(short = 'y', long = "yes")]
        yes: bool,
    },
    /// Check that every migrated key exists with the same type, value and TTL.
    Verify {
        #[command(flatten)]
        common: Common,
        /// Check about N randomly chosen migrated keys instead of all.
        #[arg(long)]
        sample: Option<u64>,
        /// Allowed TTL difference in seconds.
        #[arg(long, value_name = "SECONDS", value_parser = seconds, allow_hyphen_values = true)]
        ttl_tolerance: Option<f64>,
        #[command(flatten)]
        values: ValueOpts,
    },
    /// Undo an apply: delete the keys it created, restore what it overwrote or deleted.
    Rollback {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        values: ValueOpts,
        /// Do it (without -y only counts what would be undone).
        #[arg(short = 'y', long = "yes")]
        yes: bool,
    },
    /// Progress of the current or last run.
    Status {
        #[command(flatten)]
        common: Common,
    },
}

/// Options every Redis-facing keys action takes.
#[derive(Debug, Args)]
pub struct Common {
    /// Source Redis: redis://[user:pass@]host:port/db, rediss://, redis+cluster://host:port.
    #[arg(long, env = "FERRY_SOURCE", hide_env_values = true)]
    pub source: Option<SecretUrl>,
    /// Target Redis (default: the source).
    #[arg(long, env = "FERRY_TARGET", hide_env_values = true)]
    pub target: Option<SecretUrl>,
    /// The rules file.
    #[arg(long, env = "FERRY_RULES")]
    pub rules: Option<PathBuf>,
    /// Only keys matching this SCAN glob.
    #[arg(long = "match", value_name = "GLOB")]
    pub match_glob: Option<String>,
    /// Checkpoint store: redis://…, redis+cluster://… or file://DIR (default: the target).
    #[arg(long, env = "FERRY_CHECKPOINT", hide_env_values = true)]
    pub checkpoint: Option<SecretUrl>,
    /// Names this migration so several can run side by side.
    #[arg(long, env = "FERRY_RUN_NAME")]
    pub run_name: Option<String>,
    /// Keys per batch.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Batches in flight.
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Write a report to this file.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Report format.
    #[arg(long, value_enum, default_value_t = ReportFormat::Json)]
    pub report_format: ReportFormat,
}

/// How big values are handled (apply copies, verify compares, rollback restores them).
#[derive(Debug, Args)]
pub struct ValueOpts {
    /// Values bigger than this (bytes, by MEMORY USAGE) are copied, compared or restored in
    /// chunks instead of one DUMP payload.
    #[arg(long, value_name = "BYTES")]
    pub max_payload: Option<u64>,
    /// Elements per chunk when a value is handled in chunks.
    #[arg(long)]
    pub chunk_size: Option<usize>,
}

impl ValueOpts {
    /// Overrides the options' values with the flags given.
    pub fn apply_to(&self, o: &mut KeysOptions) {
        if let Some(m) = self.max_payload {
            o.max_payload = m;
        }
        if let Some(c) = self.chunk_size {
            o.chunk_size = c;
        }
    }
}

/// Options of actions that would write.
#[derive(Debug, Args)]
pub struct WriteOpts {
    /// When the new name exists: skip, overwrite or fail.
    #[arg(long, value_enum)]
    pub on_conflict: Option<OnConflict>,
    /// When several old keys map to one new name: refuse to start (the default), first-wins
    /// (the first rule in file order wins, the others stay under their old names) or fail-key
    /// (none of them is migrated; each counts as failed).
    #[arg(long, value_enum)]
    pub on_collision: Option<OnCollision>,
    /// Delete each source key after its copy is written.
    #[arg(long)]
    pub delete_source: bool,
}

/// `--ttl-tolerance`: a number of seconds, finite, not negative, at most 100 years (see
/// [`crate::config::check_seconds`]); clap reports a bad value with the flag and exits with 2.
fn seconds(value: &str) -> Result<f64, String> {
    crate::cli::parse_seconds("--ttl-tolerance", value, None)
}
