//! The `keys` job: restructure key names (old flat prefix → new hierarchy) and copy keys
//! between Redis servers or clusters; analyze, plan, apply, verify, roll back, status.
//!
//! Safety rests on three records in the checkpoint store, under the scope `keys/<run name>`:
//! the *state* (SCAN cursors and counts, saved after every committed stretch of batches), the
//! *`created` ledger* (every new key apply wrote, recorded before it is written, with the source
//! name and flags) and the *`backup` ledger* (the prior value of every key `--on-conflict
//! overwrite` replaced). Rollback and verify read the ledgers; a resumed apply redoes ledgered
//! keys with REPLACE, so a crash at any point ends exact.

mod analyze;
mod apply;
pub mod args;
mod clash;
pub mod cli;
pub mod config;
pub mod demo;
mod lifecycle;
pub mod metrics;
mod rollback;
pub mod routes;
mod scan;
mod status;
mod verify;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use ferry_connectors::redis::{ConnError, RedisCheckpointStore, RedisEndpoint};
use ferry_core::checkpoint::StoreError;
use ferry_core::error::{Classify, ErrorClass};
use ferry_core::jobs::keys::rules::{LoadedRules, RuleSet, RulesError};
use ferry_core::secret::{ExposeSecret, Secret, SecretUrl};
use serde::{Deserialize, Serialize};

use crate::store::{AnyStore, OpenStoreError};

pub use analyze::{AnalyzeOutcome, PlanOutcome, analyze, plan};
pub use apply::{ApplyOutcome, apply};
pub use clash::{Clash, OnCollision, find_clashes};
pub use rollback::{RollbackOutcome, rollback};
pub use status::{StatusOutcome, status};
pub use verify::{VerifyOutcome, verify};

/// What to do when a new key name already exists on the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OnConflict {
    /// Leave the existing key alone and count it `skipped_existing` (the default).
    #[default]
    Skip,
    /// Replace it; its old value is kept in the `backup` ledger for rollback.
    Overwrite,
    /// Count the key as failed.
    Fail,
}

/// Checked options of the keys job (CLI flags, `FERRY_*` variables and the config file merged).
#[derive(Debug, Clone)]
pub struct KeysOptions {
    /// Source URL (`{:?}` shows it redacted).
    pub source: SecretUrl,
    /// Target URL; `None` means the source.
    pub target: Option<SecretUrl>,
    /// Source password overriding the URL's.
    pub source_password: Option<Secret>,
    /// Target password overriding the URL's.
    pub target_password: Option<Secret>,
    /// The rules file.
    pub rules: PathBuf,
    /// Narrows the scan (a SCAN MATCH glob).
    pub match_glob: Option<String>,
    /// Checkpoint store URL; `None` means the target Redis.
    pub checkpoint: Option<SecretUrl>,
    /// Names this migration, so several can run side by side.
    pub run_name: String,
    /// Keys per SCAN/pipeline batch.
    pub batch_size: usize,
    /// Batches in flight at once.
    pub concurrency: usize,
    /// Conflict policy.
    pub on_conflict: OnConflict,
    /// What to do with old keys that map to one new name.
    pub on_collision: OnCollision,
    /// Delete each source key after its copy is written.
    pub delete_source: bool,
    /// Keys per second at most.
    pub rate: Option<u64>,
    /// Largest DUMP payload (bytes, estimated by MEMORY USAGE) copied in one piece.
    pub max_payload: u64,
    /// Elements per chunk when a value is copied in chunks.
    pub chunk_size: usize,
    /// Allowed TTL difference when verifying.
    pub ttl_tolerance_ms: i64,
    /// Verify or analyze only about this many keys.
    pub sample: Option<u64>,
    /// Start over even though the last run is unfinished with other rules.
    pub restart: bool,
}

impl Default for KeysOptions {
    fn default() -> Self {
        Self {
            source: "redis://127.0.0.1:6379/0".into(),
            target: None,
            source_password: None,
            target_password: None,
            rules: PathBuf::from("rules.toml"),
            match_glob: None,
            checkpoint: None,
            run_name: "default".to_string(),
            batch_size: 1000,
            concurrency: 4,
            on_conflict: OnConflict::Skip,
            on_collision: OnCollision::Refuse,
            delete_source: false,
            rate: None,
            max_payload: 8 * 1024 * 1024,
            chunk_size: 1000,
            ttl_tolerance_ms: 1000,
            sample: None,
            restart: false,
        }
    }
}

/// Errors that stop a keys action (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    /// The rules file is wrong.
    #[error(transparent)]
    Rules(#[from] RulesError),
    /// A Redis endpoint failed.
    #[error(transparent)]
    Conn(#[from] ConnError),
    /// The checkpoint store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The checkpoint store could not be opened.
    #[error(transparent)]
    OpenStore(#[from] OpenStoreError),
    /// The previous run cannot be resumed with these options.
    #[error("{0}")]
    Dirty(String),
    /// Bad options.
    #[error("{0}")]
    Usage(String),
    /// Stopped by a signal or a lost lease; the checkpoint is saved.
    #[error(
        "interrupted after {done} keys; the checkpoint is saved: run the same command again to resume"
    )]
    Interrupted {
        /// Keys handled before the stop.
        done: u64,
    },
}

impl Classify for KeysError {
    fn class(&self) -> ErrorClass {
        match self {
            KeysError::Rules(_) | KeysError::Dirty(_) | KeysError::Usage(_) => ErrorClass::User,
            KeysError::Conn(e) => e.class(),
            KeysError::Store(e) => e.class(),
            KeysError::OpenStore(_) | KeysError::Interrupted { .. } => ErrorClass::External,
        }
    }
}

/// Counts of one run (or one batch).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Stats {
    /// Keys returned by SCAN.
    pub scanned: u64,
    /// Keys some rule matched.
    pub matched: u64,
    /// Keys no rule matched (left alone).
    pub unmatched: u64,
    /// Keys copied to their new name.
    pub migrated: u64,
    /// Keys whose new name existed (policy `skip`).
    pub skipped_existing: u64,
    /// Existing keys replaced (policy `overwrite`).
    pub overwritten: u64,
    /// Keys that expired or were deleted while the run went on.
    pub vanished: u64,
    /// Keys that failed (see the report's errors).
    pub failed: u64,
    /// Bytes of DUMP payloads and chunks moved through Ferry (server-side COPY moves none).
    pub bytes: u64,
    /// Keys copied by server-side COPY.
    pub server_side_copies: u64,
    /// Keys copied element by element (too big, or refused by the target).
    pub chunked: u64,
    /// Source keys deleted after their copy (`--delete-source`).
    pub source_deleted: u64,
    /// Old keys left alone because another old key takes their new name
    /// (`--on-collision first-wins`, or written by this run from another source meanwhile).
    #[serde(default)]
    pub collisions: u64,
    /// Source keys kept under their old name although `--delete-source` was given, because
    /// an application changed them while they were being moved (each is re-copied once first).
    #[serde(default)]
    pub source_kept_changed: u64,
}

impl Stats {
    fn add(&mut self, o: &Stats) {
        self.scanned += o.scanned;
        self.matched += o.matched;
        self.unmatched += o.unmatched;
        self.migrated += o.migrated;
        self.skipped_existing += o.skipped_existing;
        self.overwritten += o.overwritten;
        self.vanished += o.vanished;
        self.failed += o.failed;
        self.bytes += o.bytes;
        self.server_side_copies += o.server_side_copies;
        self.chunked += o.chunked;
        self.source_deleted += o.source_deleted;
        self.collisions += o.collisions;
        self.source_kept_changed += o.source_kept_changed;
    }
}

/// Counts of one rule.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct RuleStats {
    /// Keys the rule matched.
    pub matched: u64,
    /// Keys it migrated.
    pub migrated: u64,
    /// Keys skipped because the new name existed.
    pub skipped_existing: u64,
    /// Keys that failed.
    pub failed: u64,
}

/// Per-rule counts by rule name.
pub type PerRule = BTreeMap<String, RuleStats>;

fn add_per_rule(into: &mut PerRule, from: &PerRule) {
    for (name, s) in from {
        let e = into.entry(name.clone()).or_default();
        e.matched += s.matched;
        e.migrated += s.migrated;
        e.skipped_existing += s.skipped_existing;
        e.failed += s.failed;
    }
}

/// Ledger flags: the key was created by apply.
pub(crate) const CREATED: u8 = 1;
/// The key existed and was replaced (its old value is in the `backup` ledger).
pub(crate) const OVERWROTE: u8 = 2;
/// The source key was deleted after the copy.
pub(crate) const SOURCE_DELETED: u8 = 4;
/// Ledger of keys written by apply: new key → flags byte + source key.
pub(crate) const LEDGER_CREATED: &str = "created";
/// Ledger of replaced values: new key → expire-at (i64 LE, -1 none) + DUMP payload; or, for a
/// value too big for one payload, [`BACKUP_BY_KEY`] + the name of a key on the target that
/// holds the old value (a server-side COPY, TTL included).
pub(crate) const LEDGER_BACKUP: &str = "backup";
/// The expire-at of a `backup` entry whose old value is kept in a key on the target.
pub(crate) const BACKUP_BY_KEY: i64 = -2;
/// Ledger of temporary keys of chunked copies on the target: temporary name → new name.
/// Recorded before a chunked copy starts and removed after it ended, so that what a crash
/// leaves behind is known and removed by the next apply or rollback.
pub(crate) const LEDGER_TMP: &str = "tmp";

pub(crate) fn ledger_value(flags: u8, src: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(src.len() + 1);
    v.push(flags);
    v.extend_from_slice(src);
    v
}

pub(crate) fn parse_ledger_value(v: &[u8]) -> (u8, &[u8]) {
    match v.split_first() {
        Some((f, rest)) => (*f, rest),
        None => (0, &[]),
    }
}

/// The saved position and counts of an apply run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KeysState {
    /// `running`, `interrupted`, `completed` or `failed`.
    pub state: String,
    /// Fingerprint of the rules the run uses.
    pub rules_fingerprint: String,
    /// Source URL (redacted).
    pub source: String,
    /// Target URL (redacted).
    pub target: String,
    /// When the run started (RFC 3339).
    pub started_at: String,
    /// When the state was last saved (RFC 3339).
    pub updated_at: String,
    /// SCAN cursor per source master (`host:port`); absent = not started, 0 after start = done.
    pub cursors: BTreeMap<String, u64>,
    /// Masters whose scan is complete.
    pub finished_nodes: Vec<String>,
    /// Each source master's `run_id` when its cursor was saved: a master that restarted since
    /// has a new one, and its cursor means nothing any more (its scan starts over).
    #[serde(default)]
    pub run_ids: BTreeMap<String, String>,
    /// Counts so far.
    pub stats: Stats,
    /// Per-rule counts so far.
    pub per_rule: PerRule,
    /// Estimated keys to scan (DBSIZE at the start).
    pub estimated_total: u64,
}

/// Everything an action needs: connected endpoints, compiled rules and the store.
#[derive(Debug)]
pub struct KeysContext {
    /// Checked options.
    pub opts: KeysOptions,
    /// The source.
    pub source: Arc<RedisEndpoint>,
    /// The target (the same endpoint as the source when no target is given).
    pub target: Arc<RedisEndpoint>,
    /// Whether source and target are the same server(s), so COPY works.
    pub same_server: bool,
    /// Compiled rules.
    pub rules: Arc<RuleSet>,
    /// Warnings from loading the rules.
    pub rule_warnings: Vec<String>,
    /// The checkpoint store.
    pub store: Arc<AnyStore>,
    /// The store scope: `keys/<run name>`.
    pub scope: String,
    /// Keys to skip when scanning (the store's own keys when it lives on the source).
    pub skip_prefix: Option<Vec<u8>>,
}

/// Loads a rules file, turning warnings into printable lines.
pub fn load_rules(path: &std::path::Path) -> Result<(RuleSet, Vec<String>), RulesError> {
    let LoadedRules { rules, warnings } = RuleSet::load(path)?;
    Ok((rules, warnings.iter().map(|w| w.to_string()).collect()))
}

/// Refuses a run name other than letters, digits, `-`, `_` and `.` (it names store keys).
fn check_run_name(name: &str) -> Result<(), KeysError> {
    // `.` and `..` would be path steps in a URL or a directory.
    if name.chars().all(|c| c == '.') {
        return Err(KeysError::Usage(format!(
            "run name `{name}` is only dots: give it a letter or a digit"
        )));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    {
        return Err(KeysError::Usage(format!(
            "run name `{name}` may use only letters, digits, `-`, `_` and `.` (--run-name)"
        )));
    }
    Ok(())
}

impl KeysContext {
    /// Loads the rules and connects to the source, target and checkpoint store.
    pub async fn connect(opts: KeysOptions) -> Result<Self, KeysError> {
        if opts.batch_size == 0 || opts.concurrency == 0 || opts.chunk_size == 0 {
            return Err(KeysError::Usage(
                "--batch-size, --concurrency and --chunk-size must be at least 1".into(),
            ));
        }
        check_run_name(&opts.run_name)?;
        let (rules, rule_warnings) = load_rules(&opts.rules)?;
        let source_password = opts.source_password.as_ref().map(|p| p.expose_secret());
        let target_password = opts.target_password.as_ref().map(|p| p.expose_secret());
        let source = Arc::new(RedisEndpoint::connect(opts.source.expose(), source_password).await?);
        let target = match &opts.target {
            Some(t) if t != &opts.source || target_password.is_some() => {
                Arc::new(RedisEndpoint::connect(t.expose(), target_password).await?)
            }
            _ => source.clone(),
        };
        let same_server = source.same_server(&target);
        let store_password = if opts.target.is_some() {
            target_password
        } else {
            source_password
        };
        let store_url = opts.target.as_ref().unwrap_or(&opts.source);
        let store = AnyStore::open(
            opts.checkpoint.as_ref().map(SecretUrl::expose),
            store_url.expose(),
            store_password,
        )
        .await?;
        let scope = format!("keys/{}", opts.run_name);
        let skip_prefix = match store.redis_endpoint() {
            Some(ep) if ep.same_server(&source) => Some(RedisCheckpointStore::prefix(&scope)),
            _ => None,
        };
        Ok(Self {
            opts,
            source,
            target,
            same_server,
            rules: Arc::new(rules),
            rule_warnings,
            store: Arc::new(store),
            scope,
            skip_prefix,
        })
    }

    /// The same connections, for the run named `run_name` (its own checkpoint scope).
    pub fn for_run(&self, run_name: &str) -> Result<Self, KeysError> {
        check_run_name(run_name)?;
        let scope = format!("keys/{run_name}");
        let skip_prefix = self
            .skip_prefix
            .as_ref()
            .map(|_| RedisCheckpointStore::prefix(&scope));
        Ok(Self {
            opts: KeysOptions {
                run_name: run_name.to_string(),
                ..self.opts.clone()
            },
            source: self.source.clone(),
            target: self.target.clone(),
            same_server: self.same_server,
            rules: self.rules.clone(),
            rule_warnings: self.rule_warnings.clone(),
            store: self.store.clone(),
            scope,
            skip_prefix,
        })
    }

    /// The SCAN MATCH pattern: `--match`, else the single glob covering every rule.
    pub fn scan_pattern(&self) -> Option<Vec<u8>> {
        if let Some(m) = &self.opts.match_glob {
            return Some(m.as_bytes().to_vec());
        }
        let globs = self.rules.scan_globs();
        if globs.len() == 1 {
            globs.into_iter().next()
        } else {
            None
        }
    }
}

/// Deletes every temporary key of an interrupted chunked copy that the `tmp` ledger lists, and
/// empties the ledger; returns how many keys were deleted.
pub(crate) async fn sweep_tmp_keys(ctx: &KeysContext) -> Result<u64, KeysError> {
    use ferry_core::checkpoint::CheckpointStore;
    let mut deleted = 0;
    let mut cursor = 0;
    loop {
        let (next, entries) = ctx
            .store
            .ledger_page(&ctx.scope, LEDGER_TMP, cursor, ctx.opts.batch_size)
            .await?;
        cursor = next;
        if !entries.is_empty() {
            let names: Vec<Vec<u8>> = entries.into_iter().map(|(k, _)| k).collect();
            let del = |k: &Vec<u8>| {
                (
                    k.clone(),
                    ferry_connectors::redis::cmd("DEL").arg(k).clone(),
                )
            };
            let replies = ctx.target.run(names.iter().map(del).collect()).await?;
            deleted += replies
                .iter()
                .filter(|r| matches!(r, Ok(ferry_connectors::redis::Value::Int(1))))
                .count() as u64;
            ctx.store
                .ledger_remove(&ctx.scope, LEDGER_TMP, &names)
                .await?;
        }
        if cursor == 0 && ctx.store.ledger_len(&ctx.scope, LEDGER_TMP).await? == 0 {
            return Ok(deleted);
        }
    }
}

/// Whether `key` belongs to the checkpoint store (its prefix, when the store lives on the
/// source): SCAN returns such keys, but the job skips them.
pub(crate) fn is_store_key(store_prefix: Option<&[u8]>, key: &[u8]) -> bool {
    store_prefix.is_some_and(|p| key.starts_with(p))
}
