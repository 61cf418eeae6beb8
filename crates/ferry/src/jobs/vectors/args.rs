//! The vectors job's command line: its actions and their options.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use ferry_core::report::ReportFormat;
use ferry_core::secret::SecretUrl;

/// Actions of the vectors job.
#[derive(Debug, Subcommand)]
pub enum VectorsAction {
    /// Check every store, survey the source, estimate the target's size and the run's duration.
    Preflight {
        #[command(flatten)]
        stores: StoreArgs,
        #[command(flatten)]
        report: ReportArgs,
    },
    /// Copy every embedding into the target (resumable; parallel id ranges; idempotent).
    Migrate {
        #[command(flatten)]
        stores: StoreArgs,
        #[command(flatten)]
        report: ReportArgs,
        /// Items per read and per upsert.
        #[arg(long)]
        batch: Option<usize>,
        /// Id ranges copied at once.
        #[arg(long)]
        workers: Option<usize>,
        /// Read everything and count, write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Forget the saved progress of this migration and start over.
        #[arg(long)]
        restart: bool,
    },
    /// Compare the target's vectors with the source's; count missing, mismatched, orphans.
    Validate {
        #[command(flatten)]
        stores: StoreArgs,
        #[command(flatten)]
        report: ReportArgs,
        /// Compare about N random items (default 1000).
        #[arg(long, conflicts_with = "full")]
        sample: Option<usize>,
        /// Compare every item.
        #[arg(long)]
        full: bool,
        /// Copy missing and mismatched items again, delete orphans.
        #[arg(long)]
        fix: bool,
        /// Pass threshold in percent of matching items.
        #[arg(long, value_name = "PERCENT")]
        threshold: Option<f64>,
        /// Items per batch.
        #[arg(long)]
        batch: Option<usize>,
    },
    /// Set the storage mode back to primary_only; optionally drop the target's data.
    Rollback {
        #[command(flatten)]
        stores: StoreArgs,
        #[command(flatten)]
        report: ReportArgs,
        /// Also drop the target vector set or collection (and the migration's checkpoint).
        #[arg(long)]
        drop_target: bool,
        /// Do it (without -y only says what would be done).
        #[arg(short = 'y', long = "yes")]
        yes: bool,
    },
    /// Live progress of a running migration, refreshed until it completes.
    Monitor {
        #[command(flatten)]
        stores: StoreArgs,
        /// Seconds between refreshes.
        #[arg(long, default_value_t = 2.0)]
        interval: f64,
    },
    /// Progress of the migration, once.
    Status {
        #[command(flatten)]
        stores: StoreArgs,
        #[command(flatten)]
        report: ReportArgs,
    },
    /// Read or set the live storage mode applications follow.
    Mode {
        #[command(flatten)]
        stores: StoreArgs,
        /// `get` or `set`.
        #[command(subcommand)]
        action: ModeAction,
    },
}

/// `ferry vectors mode …`
#[derive(Debug, Subcommand)]
pub enum ModeAction {
    /// Print the current mode.
    Get,
    /// Set the mode.
    Set {
        /// primary_only, dual_write, shadow_read or cutover.
        mode: String,
    },
}

/// The stores of a run.
#[derive(Debug, Args, Default)]
pub struct StoreArgs {
    /// falkordb://HOST:PORT/GRAPH, neo4j://HOST:PORT, redis://HOST:PORT/DB (with
    /// --key-pattern) or postgres://… (with --table).
    #[arg(long, env = "FERRY_VECTORS_SOURCE", hide_env_values = true)]
    pub source: Option<SecretUrl>,
    /// Node label (graph sources).
    #[arg(long)]
    pub label: Option<String>,
    /// Id property (graphs) or column (PostgreSQL).
    #[arg(long)]
    pub id_property: Option<String>,
    /// Embedding property (graphs), FLOAT32 blob field (Redis) or real[] column (PostgreSQL).
    #[arg(long)]
    pub embedding_property: Option<String>,
    /// SCAN pattern of the hashes (Redis sources), e.g. 'media:*'; the id is what follows
    /// the pattern's fixed prefix.
    #[arg(long)]
    pub key_pattern: Option<String>,
    /// Table, optionally schema.table (PostgreSQL sources).
    #[arg(long)]
    pub table: Option<String>,
    /// redis://HOST:PORT/DB (with --vector-set) or milvus://HOST:PORT (with --collection).
    #[arg(long, env = "FERRY_VECTORS_TARGET", hide_env_values = true)]
    pub target: Option<SecretUrl>,
    /// The vector set's key (Redis targets).
    #[arg(long)]
    pub vector_set: Option<String>,
    /// The collection (Milvus targets).
    #[arg(long)]
    pub collection: Option<String>,
    /// How a vector set stores vectors.
    #[arg(long, value_enum)]
    pub quant: Option<QuantArg>,
    /// A vector set's EF build option (candidates explored per insert; Redis' default 200).
    #[arg(long)]
    pub ef: Option<u32>,
    /// A vector set's M build option (links per node; Redis' default 16).
    #[arg(long)]
    pub m: Option<u32>,
    /// VADD … CAS: find each vector's neighbours on a background thread.
    #[arg(long)]
    pub cas: bool,
    #[command(flatten)]
    pub state: StateOnly,
}

/// The state options shared by every action.
#[derive(Debug, Args, Default)]
pub struct StateOnly {
    /// Redis holding the checkpoint and the storage mode (default: the target when it is a
    /// Redis, else a FalkorDB or Redis source).
    #[arg(long, env = "FERRY_VECTORS_STATE", hide_env_values = true)]
    pub state: Option<SecretUrl>,
    /// The migration's name (default: the vector set or collection).
    #[arg(long)]
    pub name: Option<String>,
    /// The key holding the storage mode (default `ferry:vectors:NAME:mode`).
    #[arg(long)]
    pub mode_key: Option<String>,
}

/// `--quant`
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum QuantArg {
    /// 32-bit floats (exact).
    Noquant,
    /// 8 bits a component (Redis' default).
    Q8,
    /// One bit a component.
    Bin,
}

/// `--report FILE --report-format …` (`--metrics-listen ADDR` is a flag of every command)
#[derive(Debug, Args, Default)]
pub struct ReportArgs {
    /// Write a report to this file.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Report format.
    #[arg(long, value_enum, default_value_t = ReportFormat::Json)]
    pub report_format: ReportFormat,
}
