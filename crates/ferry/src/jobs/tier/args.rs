//! The tier job's command line: its actions and their options.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use ferry_core::secret::SecretUrl;

use super::TierOptions;
use crate::config::FileConfig;
use ferry_core::report::ReportFormat;

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
    pub layout: Option<super::Layout>,
    /// Similarity backend.
    #[arg(long, value_enum)]
    pub similarity: Option<super::Backend>,
    /// Similarity threshold (default: the backend's calibrated one).
    #[arg(long)]
    pub threshold: Option<f32>,
    /// Where per-camera leases live (default: the caption Redis).
    #[arg(long, env = "FERRY_CHECKPOINT", hide_env_values = true)]
    pub checkpoint: Option<SecretUrl>,
}

impl TierArgs {
    /// `[tier]` of the file, then FERRY_* variables and flags.
    pub fn options(&self, file: &FileConfig) -> TierOptions {
        let mut o = file.tier_options();
        if let Some(r) = &self.redis {
            o.redis = r.clone();
        }
        if let Some(s) = &self.store {
            o.store = s.clone();
        }
        if let Some(l) = self.layout {
            o.layout = l;
        }
        if let Some(s) = self.similarity {
            o.similarity = s;
        }
        if let Some(t) = self.threshold {
            o.similarity_threshold = Some(t);
        }
        if let Some(c) = &self.checkpoint {
            o.checkpoint = Some(c.clone());
        }
        o.redis_password = std::env::var("FERRY_REDIS_PASSWORD").ok().map(Into::into);
        o
    }

    /// Whether a flag (or its FERRY_* variable) names the job's Redis or store.
    pub fn configured(&self) -> bool {
        self.redis.is_some() || self.store.is_some()
    }
}
