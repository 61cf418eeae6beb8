//! The configuration file (`--config FILE`, TOML). Every option is listed with its default in
//! `config/reference.toml`. Precedence: command-line flags, then `FERRY_*` environment
//! variables, then this file, then the defaults.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::jobs::keys::{KeysOptions, OnConflict};
use crate::observe::LogFormat;

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Logging.
    #[serde(default)]
    pub log: LogSection,
    /// Where checkpoints, leases and ledgers live.
    #[serde(default)]
    pub checkpoint: CheckpointSection,
    /// The keys job.
    #[serde(default)]
    pub keys: KeysSection,
}

/// `[log]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    /// `text` or `json`.
    pub format: Option<LogFormat>,
    /// A filter such as `info` or `ferry=debug`.
    pub level: Option<String>,
}

/// `[checkpoint]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointSection {
    /// `redis://…`, `redis+cluster://…` or `file://DIR`; empty means the target Redis.
    pub url: Option<String>,
}

/// `[keys]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysSection {
    /// Source URL.
    pub source: Option<String>,
    /// Target URL (default: the source).
    pub target: Option<String>,
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

/// A config file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Unreadable.
    #[error("cannot read config file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Invalid TOML or an unknown or mistyped field (the message names line and column).
    #[error("config file {path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, with its position.
        message: String,
    },
}

impl FileConfig {
    /// Reads and parses a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mut cfg = Self::parse(&text).map_err(|message| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        })?;
        if let (Some(rules), Some(dir)) = (&cfg.keys.rules, path.parent())
            && rules.is_relative()
        {
            cfg.keys.rules = Some(dir.join(rules));
        }
        Ok(cfg)
    }

    /// Parses config text.
    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string().trim_end().to_string())
    }

    /// Keys options from this file over the defaults.
    pub fn keys_options(&self) -> KeysOptions {
        let d = KeysOptions::default();
        let k = &self.keys;
        KeysOptions {
            source: k.source.clone().unwrap_or(d.source),
            target: k.target.clone().filter(|t| !t.is_empty()),
            rules: k.rules.clone().unwrap_or(d.rules),
            match_glob: k.match_glob.clone().filter(|m| !m.is_empty()),
            checkpoint: self.checkpoint.url.clone().filter(|u| !u.is_empty()),
            run_name: k.run_name.clone().unwrap_or(d.run_name),
            batch_size: k.batch_size.unwrap_or(d.batch_size),
            concurrency: k.concurrency.unwrap_or(d.concurrency),
            on_conflict: k.on_conflict.unwrap_or(d.on_conflict),
            delete_source: k.delete_source.unwrap_or(d.delete_source),
            rate: k.rate.filter(|&r| r > 0),
            max_payload: k.max_payload.unwrap_or(d.max_payload),
            chunk_size: k.chunk_size.unwrap_or(d.chunk_size),
            ttl_tolerance_ms: k.ttl_tolerance_ms.unwrap_or(d.ttl_tolerance_ms),
            ..d
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_config_lists_every_option_and_parses() {
        let text = include_str!("../../../config/reference.toml");
        let cfg = FileConfig::parse(text).expect("reference.toml parses");
        // Every option is present in the reference, so every field is Some.
        let k = &cfg.keys;
        assert!(k.source.is_some() && k.target.is_some() && k.rules.is_some());
        assert!(k.match_glob.is_some() && k.run_name.is_some() && k.batch_size.is_some());
        assert!(k.concurrency.is_some() && k.on_conflict.is_some() && k.delete_source.is_some());
        assert!(k.rate.is_some() && k.max_payload.is_some() && k.chunk_size.is_some());
        assert!(k.ttl_tolerance_ms.is_some());
        assert!(cfg.log.format.is_some() && cfg.log.level.is_some());
        assert!(cfg.checkpoint.url.is_some());
        let opts = cfg.keys_options();
        let d = KeysOptions::default();
        assert_eq!(
            opts.batch_size, d.batch_size,
            "reference shows the defaults"
        );
        assert_eq!(opts.max_payload, d.max_payload);
    }

    #[test]
    fn unknown_fields_are_rejected_with_their_line() {
        let err = FileConfig::parse("[keys]\nsource = \"redis://x\"\nbatchsize = 5\n").unwrap_err();
        assert!(err.contains("batchsize"), "{err}");
        assert!(err.contains("line 3"), "{err}");
    }
}
