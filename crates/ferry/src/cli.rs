//! Command-line interface: `ferry <job> <action> [options]`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use ferry::jobs::keys::{OnCollision, OnConflict};
use ferry::observe::LogFormat;
use ferry::report::ReportFormat;
use ferry_connectors::secret::{Secret, SecretUrl};

/// Ferry moves live data in and around Redis without losing any of it.
#[derive(Debug, Parser)]
#[command(name = "ferry", version, about, propagate_version = true)]
pub struct Cli {
    /// A TOML config file (see config/reference.toml); flags and FERRY_* variables override it.
    #[arg(long, global = true, env = "FERRY_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log line format.
    #[arg(long, global = true, env = "FERRY_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Log filter (error, warn, info, debug, trace); RUST_LOG wins.
    #[arg(long, global = true, env = "FERRY_LOG_LEVEL")]
    pub log_level: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Jobs.
#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once
pub enum Command {
    /// Restructure key names and copy keys between Redis servers or clusters.
    Keys {
        /// The action.
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Drain the Redis hot cache of camera captions into durable time-range events.
    Tier {
        /// The action.
        #[command(subcommand)]
        action: TierAction,
    },
    /// Save every event in PostgreSQL, then publish it on Redis Pub/Sub, with nothing lost.
    Events {
        /// The action.
        #[command(subcommand)]
        action: EventsAction,
    },
    /// Run the tier job on a schedule (and the events relay when [events] postgres or
    /// --events-postgres is set); serve the HTTP API and Prometheus metrics.
    Serve {
        #[command(flatten)]
        tier: TierArgs,
        /// Run the events job on this PostgreSQL (API, relay).
        #[arg(long, env = "FERRY_EVENTS_POSTGRES", hide_env_values = true)]
        events_postgres: Option<SecretUrl>,
        /// The Redis the events job publishes on.
        #[arg(long, env = "FERRY_EVENTS_REDIS", hide_env_values = true)]
        events_redis: Option<SecretUrl>,
        #[command(flatten)]
        serve: ServeArgs,
    },
    /// Run the keys, tier and events jobs end to end on generated data in a throwaway
    /// redis-server (and a throwaway PostgreSQL database).
    Demo {
        /// Use this Redis instead of starting one (demo keys are written to it).
        #[arg(long, env = "FERRY_DEMO_REDIS", hide_env_values = true)]
        redis: Option<SecretUrl>,
        /// Keys to generate.
        #[arg(long, default_value_t = 20_000)]
        keys: usize,
        /// Where to write the JSON report.
        #[arg(long, default_value = "ferry-demo-report.json")]
        report: PathBuf,
        /// PostgreSQL server for the events part (a throwaway database is created on it).
        #[arg(
            long,
            env = "FERRY_DEMO_POSTGRES",
            default_value = "postgres://postgres@127.0.0.1:5432",
            hide_env_values = true
        )]
        postgres: SecretUrl,
    },
}

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

/// Actions of the tier job.
#[derive(Debug, Subcommand)]
pub enum TierAction {
    /// One pass: store the due captions of every camera (or one) as events, then delete them.
    Run {
        #[command(flatten)]
        tier: TierArgs,
        /// Only this camera.
        #[arg(long)]
        camera: Option<String>,
        /// Migrate everything now, due or not (events still growing are written open).
        #[arg(long)]
        all: bool,
        /// Group and report, writing and deleting nothing.
        #[arg(long)]
        dry_run: bool,
        /// Write a report to this file.
        #[arg(long)]
        report: Option<PathBuf>,
        /// Report format.
        #[arg(long, value_enum, default_value_t = ReportFormat::Json)]
        report_format: ReportFormat,
    },
    /// The events one camera's captions in Redis would make now; nothing is written.
    Preview {
        #[command(flatten)]
        tier: TierArgs,
        /// The camera.
        #[arg(long)]
        camera: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Cameras in Redis, what is due, store counts and the last run.
    Status {
        #[command(flatten)]
        tier: TierArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The recorded passes, newest first.
    History {
        #[command(flatten)]
        tier: TierArgs,
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The stored events, newest first.
    Events {
        #[command(flatten)]
        tier: TierArgs,
        /// Only this camera.
        #[arg(long)]
        camera: Option<String>,
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Empty one camera's captions from Redis: migrates everything first, or drops them.
    Clear {
        #[command(flatten)]
        tier: TierArgs,
        /// The camera.
        #[arg(long)]
        camera: String,
        /// Drop the captions without storing them (needs -y).
        #[arg(long)]
        discard: bool,
        /// Confirm --discard.
        #[arg(short = 'y', long = "yes")]
        yes: bool,
    },
}

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

/// Options of `ferry serve` (over `[serve]` of the config file).
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address of the HTTP API.
    #[arg(long, env = "FERRY_LISTEN")]
    pub listen: Option<std::net::SocketAddr>,
    /// Admin bearer token: may call every endpoint. With a token set, every endpoint but
    /// /healthz needs one.
    #[arg(long, env = "FERRY_SERVE_TOKEN", hide_env_values = true, value_parser = secret)]
    pub token: Option<Secret>,
    /// Read-only bearer token: GET and HEAD endpoints only (needs an admin token too).
    #[arg(long, env = "FERRY_SERVE_READ_TOKEN", hide_env_values = true, value_parser = secret)]
    pub read_token: Option<Secret>,
    /// Serve the API without any token on an address other than loopback (refused otherwise).
    #[arg(long)]
    pub insecure: bool,
    /// Seconds between tier passes.
    #[arg(long, value_name = "SECONDS", value_parser = interval_seconds, allow_hyphen_values = true)]
    pub interval: Option<f64>,
}

impl ServeArgs {
    /// Overrides `o` with the flags and `FERRY_*` variables given; an empty token, from a flag
    /// or a variable, is an error naming it.
    pub fn apply_to(&self, o: &mut ferry::server::ServeOptions) -> Result<(), String> {
        use ferry_connectors::secret::ExposeSecret;
        for (flag, var, given) in [
            ("--token", "FERRY_SERVE_TOKEN", &self.token),
            ("--read-token", "FERRY_SERVE_READ_TOKEN", &self.read_token),
        ] {
            let empty_var = std::env::var_os(var).is_some_and(|v| v.is_empty());
            if empty_var || given.as_ref().is_some_and(|t| t.expose_secret().is_empty()) {
                return Err(format!(
                    "{flag} (or {var}) is empty: an empty token is refused rather than taken as \
                     \"no authentication\"; set a token or unset it"
                ));
            }
        }
        if let Some(l) = self.listen {
            o.listen = l;
        }
        if let Some(t) = &self.token {
            o.token = Some(t.clone());
        }
        if let Some(t) = &self.read_token {
            o.read_token = Some(t.clone());
        }
        o.insecure |= self.insecure;
        if let Some(i) = self.interval {
            o.interval = std::time::Duration::from_secs_f64(i);
        }
        Ok(())
    }
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

/// Options of every tier action (over `[tier]` of the config file).
#[derive(Debug, Args)]
pub struct TierArgs {
    /// The Redis holding the captions.
    #[arg(long, env = "FERRY_REDIS", hide_env_values = true)]
    pub redis: Option<SecretUrl>,
    /// Durable store: sqlite://PATH, postgres://…, falkordb://host:port/graph, neo4j://….
    #[arg(long, env = "FERRY_STORE", hide_env_values = true)]
    pub store: Option<SecretUrl>,
    /// Input layout.
    #[arg(long, value_enum)]
    pub layout: Option<ferry::jobs::tier::Layout>,
    /// Similarity backend.
    #[arg(long, value_enum)]
    pub similarity: Option<ferry::jobs::tier::Backend>,
    /// Similarity threshold (default: the backend's calibrated one).
    #[arg(long)]
    pub threshold: Option<f32>,
    /// Where per-camera leases live (default: the caption Redis).
    #[arg(long, env = "FERRY_CHECKPOINT", hide_env_values = true)]
    pub checkpoint: Option<SecretUrl>,
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
    pub fn apply_to(&self, o: &mut ferry::jobs::keys::KeysOptions) {
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

/// A secret flag (`--token`): held as [`Secret`], so `{:?}` of the parsed command line never
/// shows it.
fn secret(value: &str) -> Result<Secret, std::convert::Infallible> {
    Ok(Secret::from(value))
}

/// `--ttl-tolerance`: a number of seconds, finite, not negative, at most 100 years (see
/// [`ferry::config::check_seconds`]); clap reports a bad value with the flag and exits with 2.
fn seconds(value: &str) -> Result<f64, String> {
    parse_seconds("--ttl-tolerance", value, None)
}

/// `--interval`: as [`seconds`], and not 0 (the pass loop would spin).
fn interval_seconds(value: &str) -> Result<f64, String> {
    parse_seconds(
        "--interval",
        value,
        Some("the tier pass loop of `ferry serve` would run without pause"),
    )
}

/// `--claim-idle`: as [`seconds`], and not 0.
fn claim_idle_seconds(value: &str) -> Result<f64, String> {
    parse_seconds(
        "--claim-idle",
        value,
        Some(
            "the claim loop would run without pause, taking over entries other consumers are still working on",
        ),
    )
}

fn parse_seconds(flag: &str, value: &str, positive: Option<&str>) -> Result<f64, String> {
    let v: f64 = value
        .trim()
        .parse()
        .map_err(|_| format!("`{value}` is not a number of seconds"))?;
    ferry::config::check_seconds(flag, v, positive)?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("ferry").chain(args.iter().copied()))
    }

    #[test]
    fn parsed_command_lines_debug_without_secrets() {
        let pw = "Zq9/h#s?x@y";
        let cases: [Vec<String>; 4] = [
            vec![
                "serve".into(),
                "--token=tokZq9".into(),
                format!("--events-postgres=postgres://u:{pw}@db/app?sslmode=require"),
                format!("--events-redis=redis://:{pw}@r:6379"),
                format!("--redis=redis://:{pw}@r:6379"),
                format!("--store=host=db password='{pw}' dbname=t"),
                format!("--checkpoint=redis://u:{pw}@c:1"),
            ],
            vec![
                "keys".into(),
                "plan".into(),
                format!("--source=redis://u:{pw}@s:6379"),
                format!("--target=redis+cluster://u:{pw}@t:7000"),
                format!("--checkpoint=redis://:{pw}@c:1"),
            ],
            vec![
                "events".into(),
                "query".into(),
                format!("--postgres=postgres://u:{pw}@db/app"),
                format!("--redis=redis://:{pw}@r:6379"),
            ],
            vec![
                "demo".into(),
                format!("--redis=redis://:{pw}@r:6379"),
                format!("--postgres=postgres://postgres:{pw}@127.0.0.1:5432"),
            ],
        ];
        for args in cases {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let cli = parse(&args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
            let shown = format!("{cli:?}");
            assert!(!shown.contains("Zq9"), "{shown}");
        }
    }

    #[test]
    fn duration_flags_refuse_negative_infinite_nan_huge_and_zero_loops() {
        let cases: [(&[&str], &str, bool); 3] = [
            (&["serve"], "--interval", true),
            (&["events", "ingest"], "--claim-idle", true),
            (&["keys", "verify"], "--ttl-tolerance", false),
        ];
        for (head, flag, zero_refused) in cases {
            for bad in ["-1", "inf", "NaN", "-inf", "1e300", "soon"] {
                let arg = format!("{flag}={bad}");
                let mut args = head.to_vec();
                args.push(&arg);
                let err = parse(&args).expect_err(&arg);
                assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation, "{arg}");
                assert_eq!(err.exit_code(), 2, "{arg}");
                let text = err.to_string();
                assert!(text.contains(flag) && text.contains(bad), "{arg}: {text}");
            }
            // `--interval -5` (a separate word) is a bad value too, not an unknown flag.
            for bad in ["-5", "-inf"] {
                let mut args = head.to_vec();
                args.extend([flag, bad]);
                let err = parse(&args).expect_err(bad);
                assert_eq!(
                    err.kind(),
                    clap::error::ErrorKind::ValueValidation,
                    "{flag} {bad}"
                );
            }
            let arg = format!("{flag}=0");
            let mut args = head.to_vec();
            args.push(&arg);
            match parse(&args) {
                Err(e) => {
                    assert!(zero_refused, "{arg}: {e}");
                    assert!(e.to_string().contains("positive"), "{e}");
                }
                Ok(_) => assert!(!zero_refused, "{arg} was accepted"),
            }
            let arg = format!("{flag}=0.5");
            let mut args = head.to_vec();
            args.push(&arg);
            assert!(parse(&args).is_ok(), "{arg}");
        }
    }
}
