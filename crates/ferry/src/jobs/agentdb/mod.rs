//! The agentdb job: moves reinforcement-learning agent state from Redis into PostgreSQL —
//! experience histories (lists or Streams), Q-value hashes and policy documents, found by
//! SCANning key patterns with an `{agent}` placeholder.
//!
//! - [`pattern`]: the key patterns; [`records`]: what one Redis item becomes (pure);
//! - [`read`]: the Redis side, key by key in chunks from each key's checkpoint;
//! - [`write`]: batches into PostgreSQL with `COPY` (ferry-connectors' `postgres::agentdb`),
//!   rows and checkpoints in one transaction, then [`validate`] of every finished key;
//! - [`outcome`]: the counts and the report.

pub mod args;
pub mod cli;
pub mod config;
pub mod metrics;
pub mod outcome;
pub mod pattern;
pub mod read;
pub mod records;
pub mod validate;
pub mod write;

use std::collections::HashMap;
use std::sync::Arc;

use ferry_connectors::postgres::agentdb::{AgentDbStore, AgentKind};
use ferry_connectors::redis::{ConnError, RedisEndpoint};
use ferry_core::error::{Classify, ErrorClass};
use ferry_core::secret::SecretUrl;
use tokio_util::sync::CancellationToken;

pub use ferry_connectors::postgres::agentdb::AgentDbError as StoreError;
pub use outcome::MigrateOutcome;
pub use pattern::KeyPattern;

/// How an application adds experiences to a list, which fixes each one's position (`seq`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ListPush {
    /// `RPUSH`: oldest at the head (index 0 is `seq` 0).
    #[default]
    Rpush,
    /// `LPUSH`: newest at the head (index -1 is `seq` 0).
    Lpush,
}

/// Checked options of the agentdb job.
#[derive(Debug, Clone)]
pub struct AgentDbOptions {
    /// The Redis holding the agents' state (`{:?}` shows it redacted).
    pub redis: SecretUrl,
    /// The PostgreSQL receiving it.
    pub postgres: SecretUrl,
    /// Key of an agent's experiences (a list or a Stream).
    pub experiences_pattern: String,
    /// Key of an agent's Q-values (a hash).
    pub q_values_pattern: String,
    /// Key of an agent's policy (a string of JSON).
    pub policy_pattern: String,
    /// How experience lists grow.
    pub list_push: ListPush,
    /// Rows per transaction (and items per Redis read).
    pub batch: usize,
    /// Leave the experiences out.
    pub skip_history: bool,
    /// Read and check everything, write nothing (PostgreSQL is not contacted).
    pub dry_run: bool,
}

impl Default for AgentDbOptions {
    fn default() -> Self {
        AgentDbOptions {
            redis: "redis://127.0.0.1:6379".into(),
            postgres: "postgres://postgres@127.0.0.1:5432/postgres".into(),
            experiences_pattern: "agent:{agent}:experiences".into(),
            q_values_pattern: "agent:{agent}:q_values".into(),
            policy_pattern: "agent:{agent}:policy".into(),
            list_push: ListPush::Rpush,
            batch: 1000,
            skip_history: false,
            dry_run: false,
        }
    }
}

/// The checked key patterns, one per kind.
#[derive(Debug, Clone)]
pub struct Patterns {
    /// Experiences.
    pub experiences: KeyPattern,
    /// Q-values.
    pub q_values: KeyPattern,
    /// Policies.
    pub policy: KeyPattern,
}

impl Patterns {
    /// The pattern of `kind`.
    pub fn get(&self, kind: AgentKind) -> &KeyPattern {
        match kind {
            AgentKind::Experiences => &self.experiences,
            AgentKind::QValues => &self.q_values,
            AgentKind::Policy => &self.policy,
        }
    }
}

impl AgentDbOptions {
    /// Checks the batch size and parses the patterns (each names its option when refused).
    pub fn check(&self) -> Result<Patterns, AgentDbError> {
        if !(1..=100_000).contains(&self.batch) {
            return Err(AgentDbError::Usage(format!(
                "batch = {} is out of range: give 1 to 100000 rows per transaction",
                self.batch
            )));
        }
        let parse =
            |option: &str, p: &str| KeyPattern::parse(option, p).map_err(AgentDbError::Usage);
        let patterns = Patterns {
            experiences: parse("experiences_pattern", &self.experiences_pattern)?,
            q_values: parse("q_values_pattern", &self.q_values_pattern)?,
            policy: parse("policy_pattern", &self.policy_pattern)?,
        };
        let globs = [&patterns.experiences, &patterns.q_values, &patterns.policy];
        for (i, a) in globs.iter().enumerate() {
            if globs[i + 1..].iter().any(|b| b.glob() == a.glob()) {
                return Err(AgentDbError::Usage(format!(
                    "two key patterns are both \"{}\": give experiences, Q-values and policies different patterns",
                    a.as_str()
                )));
            }
        }
        Ok(patterns)
    }
}

/// A failure of the agentdb job (per-item failures are not errors: see [`MigrateOutcome`]).
#[derive(Debug, thiserror::Error)]
pub enum AgentDbError {
    /// Redis could not be reached, refused the credentials or broke the connection.
    #[error(transparent)]
    Redis(#[from] ConnError),
    /// PostgreSQL.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A bad option.
    #[error("{0}")]
    Usage(String),
    /// A bug in Ferry.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Classify for AgentDbError {
    fn class(&self) -> ErrorClass {
        match self {
            AgentDbError::Redis(e) => e.class(),
            AgentDbError::Store(e) => e.class(),
            AgentDbError::Usage(_) => ErrorClass::User,
            AgentDbError::Internal(_) => ErrorClass::Internal,
        }
    }
}

/// Moves every agent's state (`ferry agentdb migrate`): connects to Redis and (unless a dry
/// run) PostgreSQL, then reads key by key from each key's checkpoint while the batches are
/// written; stops after the current batch when `stop` is cancelled.
pub async fn migrate(
    options: &AgentDbOptions,
    stop: CancellationToken,
) -> Result<MigrateOutcome, AgentDbError> {
    let patterns = options.check()?;
    let redis = Arc::new(RedisEndpoint::connect(options.redis.expose(), None).await?);
    let mut store = match options.dry_run {
        true => None,
        false => Some(AgentDbStore::open(options.postgres.expose()).await?),
    };
    let mut progress = HashMap::new();
    if let Some(s) = &store {
        for p in s.load_progress().await? {
            progress.insert((p.agent_id.clone(), p.kind), p);
        }
    }
    let kinds: Vec<AgentKind> = AgentKind::ALL
        .into_iter()
        .filter(|k| !(options.skip_history && *k == AgentKind::Experiences))
        .collect();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let reader = read::Reader {
        redis: redis.clone(),
        patterns,
        kinds,
        batch: options.batch,
        list_push: options.list_push,
        progress,
        tx,
        stop: stop.clone(),
    };
    let reading = tokio::spawn(reader.run());
    let mut outcome = MigrateOutcome::new(options);
    let written = write::Writer::new(store.as_mut(), &redis, options.batch)
        .run(rx, &mut outcome)
        .await;
    let read = reading.await.unwrap_or_else(|e| {
        Err(AgentDbError::Internal(format!(
            "the Redis reader failed: {e}"
        )))
    });
    written?;
    read?;
    outcome.stopped = stop.is_cancelled();
    Ok(outcome)
}
