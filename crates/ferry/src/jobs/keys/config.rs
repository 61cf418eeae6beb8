//! `[keys]` of the config file: the keys job's settings (every key is listed with its default
//! in `config/reference.toml`).

use std::path::PathBuf;

use serde::Deserialize;

use super::{KeysOptions, OnCollision, OnConflict};
use ferry_core::secret::SecretUrl;

/// `[keys]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysSection {
    /// Source URL.
    pub source: Option<SecretUrl>,
    /// Target URL (default: the source).
    pub target: Option<SecretUrl>,
    /// Rules file, relative to the config file.
    pub rules: Option<PathBuf>,
    /// SCAN MATCH glob narrowing the keys.
    #[serde(rename = "match")]
    pub match_glob: Option<String>,
    /// Name of the migration run.
    pub run_name: Option<String>,
    /// Keys per batch.
    pub batch_size: Option<usize>,
    /// Batches in flight.
    pub concurrency: Option<usize>,
    /// `skip`, `overwrite` or `fail`.
    pub on_conflict: Option<OnConflict>,
    /// `refuse`, `first-wins` or `fail-key`: old keys that map to one new name.
    pub on_collision: Option<OnCollision>,
    /// Delete source keys after their copy.
    pub delete_source: Option<bool>,
    /// Keys per second at most (0 = unlimited).
    pub rate: Option<u64>,
    /// Largest value copied with one DUMP, in bytes.
    pub max_payload: Option<u64>,
    /// Elements per chunk for chunked copies.
    pub chunk_size: Option<usize>,
    /// TTL tolerance of verify, in milliseconds.
    pub ttl_tolerance_ms: Option<i64>,
}

impl KeysSection {
    /// The keys job's options: this section over the defaults; `checkpoint` is
    /// `[checkpoint] url`.
    pub fn options(&self, checkpoint: Option<SecretUrl>) -> KeysOptions {
        let d = KeysOptions::default();
        let k = self;
        KeysOptions {
            source: k.source.clone().unwrap_or(d.source),
            target: k.target.clone().filter(|t| !t.is_empty()),
            rules: k.rules.clone().unwrap_or(d.rules),
            match_glob: k.match_glob.clone().filter(|m| !m.is_empty()),
            checkpoint: checkpoint.filter(|u| !u.is_empty()),
            run_name: k.run_name.clone().unwrap_or(d.run_name),
            batch_size: k.batch_size.unwrap_or(d.batch_size),
            concurrency: k.concurrency.unwrap_or(d.concurrency),
            on_conflict: k.on_conflict.unwrap_or(d.on_conflict),
            on_collision: k.on_collision.unwrap_or(d.on_collision),
            delete_source: k.delete_source.unwrap_or(d.delete_source),
            rate: k.rate.filter(|&r| r > 0),
            max_payload: k.max_payload.unwrap_or(d.max_payload),
            chunk_size: k.chunk_size.unwrap_or(d.chunk_size),
            ttl_tolerance_ms: k.ttl_tolerance_ms.unwrap_or(d.ttl_tolerance_ms),
            ..d
        }
    }

    /// Checks the section's values.
    pub fn check(&self) -> Result<(), String> {
        if let Some(ms) = self.ttl_tolerance_ms
            && ms < 0
        {
            return Err(format!(
                "[keys] ttl_tolerance_ms = {ms} is negative: give 0 or more milliseconds"
            ));
        }
        Ok(())
    }
}
