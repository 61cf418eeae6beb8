//! The agentdb job's command line: its action and options.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use ferry_core::report::ReportFormat;
use ferry_core::secret::SecretUrl;

use super::{AgentDbOptions, ListPush};
use crate::config::FileConfig;

/// Actions of the agentdb job.
#[derive(Debug, Subcommand)]
pub enum AgentDbAction {
    /// Move every agent's experiences, Q-values and policy from Redis into PostgreSQL
    /// (resumable; re-runs copy what is new or changed), then compare the counts.
    Migrate {
        #[command(flatten)]
        args: MigrateArgs,
    },
}

/// Options of `ferry agentdb migrate` (over `[agentdb]` of the config file).
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The Redis holding the agents: redis://[user:password@]host:port/db, rediss://,
    /// redis+cluster://host:port.
    #[arg(long, env = "FERRY_AGENTDB_REDIS", hide_env_values = true)]
    pub redis: Option<SecretUrl>,
    /// The PostgreSQL to move them into: postgres://user[:password]@host:port/db.
    #[arg(long, env = "FERRY_AGENTDB_POSTGRES", hide_env_values = true)]
    pub postgres: Option<SecretUrl>,
    /// Leave the experience histories out (Q-values and policies only).
    #[arg(long)]
    pub skip_history: bool,
    /// Read and check everything, write nothing (PostgreSQL is not contacted).
    #[arg(long)]
    pub dry_run: bool,
    /// Rows per transaction, and items per Redis read.
    #[arg(long, value_name = "ROWS")]
    pub batch: Option<usize>,
    /// How experience lists grow: rpush (oldest first) or lpush (newest first).
    #[arg(long, value_enum)]
    pub list_push: Option<ListPush>,
    /// Key of an agent's experiences; `{agent}` marks the agent id.
    #[arg(long, value_name = "PATTERN")]
    pub experiences_pattern: Option<String>,
    /// Key of an agent's Q-values.
    #[arg(long, value_name = "PATTERN")]
    pub q_values_pattern: Option<String>,
    /// Key of an agent's policy.
    #[arg(long, value_name = "PATTERN")]
    pub policy_pattern: Option<String>,
    /// Write a report to this file.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Report format.
    #[arg(long, value_enum, default_value_t = ReportFormat::Json)]
    pub report_format: ReportFormat,
}

impl MigrateArgs {
    /// `[agentdb]` of the file, then FERRY_* variables and flags.
    pub fn options(&self, file: &FileConfig) -> AgentDbOptions {
        let mut o = file.agentdb.options();
        let set = |target: &mut String, value: &Option<String>| {
            if let Some(v) = value {
                *target = v.clone();
            }
        };
        set(&mut o.experiences_pattern, &self.experiences_pattern);
        set(&mut o.q_values_pattern, &self.q_values_pattern);
        set(&mut o.policy_pattern, &self.policy_pattern);
        if let Some(r) = &self.redis {
            o.redis = r.clone();
        }
        if let Some(p) = &self.postgres {
            o.postgres = p.clone();
        }
        o.batch = self.batch.unwrap_or(o.batch);
        o.list_push = self.list_push.unwrap_or(o.list_push);
        o.skip_history |= self.skip_history;
        o.dry_run = self.dry_run;
        o
    }
}
