//! The configuration file (`--config FILE`, TOML). Every option is listed with its default in
//! `config/reference.toml`. Precedence: command-line flags, then `FERRY_*` environment
//! variables, then this file, then the defaults.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::jobs::events::EventsOptions;
use crate::jobs::keys::KeysOptions;
use crate::jobs::tier::TierOptions;
use crate::observe::LogFormat;
use crate::server::ServeOptions;
use ferry_core::secret::SecretUrl;

pub use crate::jobs::agentdb::config::AgentDbSection;
pub use crate::jobs::bridge::config::BridgeSection;
pub use crate::jobs::events::config::EventsSection;
pub use crate::jobs::keys::config::KeysSection;
pub use crate::jobs::tier::config::TierSection;
pub use crate::jobs::vectors::config::VectorsSection;
pub use crate::server::config::ServeSection;

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
    /// The tier job.
    #[serde(default)]
    pub tier: TierSection,
    /// `ferry serve`.
    #[serde(default)]
    pub serve: ServeSection,
    /// The events job.
    #[serde(default)]
    pub events: EventsSection,
    /// The bridges (`[[bridge]]`, one section each).
    #[serde(default)]
    pub bridge: Vec<BridgeSection>,
    /// The vectors job.
    #[serde(default)]
    pub vectors: VectorsSection,
    /// The agentdb job.
    #[serde(default)]
    pub agentdb: AgentDbSection,
}

/// The longest duration accepted from a config file or a flag: 100 years, in seconds.
pub const MAX_SECONDS: f64 = 100.0 * 365.25 * 86_400.0;

/// Checks a number of seconds given as `option` (a config key or a flag): it must be finite,
/// not negative and at most [`MAX_SECONDS`]; when `positive` says what 0 would do (a loop that
/// would spin), 0 is refused too. The error names the option and the value.
pub fn check_seconds(
    option: &str,
    value: f64,
    positive: Option<&str>,
) -> Result<std::time::Duration, String> {
    if !value.is_finite() {
        return Err(format!(
            "{option} = {value} is not a number of seconds: give a finite number such as 60 or 0.5"
        ));
    }
    if value < 0.0 {
        return Err(format!(
            "{option} = {value} is negative: give 0 or more seconds"
        ));
    }
    if value > MAX_SECONDS {
        return Err(format!(
            "{option} = {value} is more than 100 years ({MAX_SECONDS} seconds): give a shorter time"
        ));
    }
    // Below a millisecond a loop's pause rounds to nothing: as bad as 0.
    if value < 0.001
        && let Some(why) = positive
    {
        return Err(format!(
            "{option} = {value} is refused: {why} (less than 1 ms is as good as 0); give a positive number of seconds, at least 0.001"
        ));
    }
    Ok(std::time::Duration::from_secs_f64(value))
}

/// Checks each `(option, value, positive)` that is set with [`check_seconds`].
pub(crate) fn check_durations<const N: usize>(
    durations: [(&str, Option<f64>, Option<&str>); N],
) -> Result<(), String> {
    for (option, value, positive) in durations {
        if let Some(v) = value {
            check_seconds(option, v, positive)?;
        }
    }
    Ok(())
}

/// `seconds` in ms (`default_ms` when absent); never panics (values are checked by
/// [`FileConfig::check`] when the file is parsed).
pub(crate) fn ms(seconds: Option<f64>, default_ms: i64) -> i64 {
    seconds.filter(|s| s.is_finite()).map_or(default_ms, |s| {
        (s.clamp(0.0, MAX_SECONDS) * 1000.0).round() as i64
    })
}

/// `seconds` as a duration (`default` when absent or not a duration); never panics.
pub(crate) fn secs(seconds: Option<f64>, default: std::time::Duration) -> std::time::Duration {
    seconds
        .and_then(|s| std::time::Duration::try_from_secs_f64(s).ok())
        .unwrap_or(default)
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
    pub url: Option<SecretUrl>,
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

    /// Parses config text and checks its durations ([`FileConfig::check`]).
    pub fn parse(text: &str) -> Result<Self, String> {
        let cfg: Self = toml::from_str(text).map_err(|e| e.to_string().trim_end().to_string())?;
        cfg.check()?;
        Ok(cfg)
    }

    /// Checks every section: durations with [`check_seconds`] (finite, not negative, at most
    /// 100 years, and positive where a loop or an interval repeats with it) and other values.
    pub fn check(&self) -> Result<(), String> {
        self.keys.check()?;
        self.tier.check()?;
        self.serve.check()?;
        self.events.check()?;
        self.agentdb.check()?;
        crate::jobs::bridge::config::check_all(&self.bridge)
    }

    /// `[checkpoint] url`, when set.
    fn checkpoint_url(&self) -> Option<SecretUrl> {
        self.checkpoint.url.clone().filter(|u| !u.is_empty())
    }

    /// Tier options from this file over the defaults.
    pub fn tier_options(&self) -> TierOptions {
        self.tier.options(self.checkpoint_url())
    }

    /// Events options from this file over the defaults.
    pub fn events_options(&self) -> EventsOptions {
        self.events.options()
    }

    /// Serve options from this file over the defaults.
    pub fn serve_options(&self) -> Result<ServeOptions, String> {
        self.serve.options()
    }

    /// Keys options from this file over the defaults.
    pub fn keys_options(&self) -> KeysOptions {
        self.keys.options(self.checkpoint_url())
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
        assert!(k.on_collision.is_some());
        assert!(k.rate.is_some() && k.max_payload.is_some() && k.chunk_size.is_some());
        assert!(k.ttl_tolerance_ms.is_some());
        assert!(cfg.log.format.is_some() && cfg.log.level.is_some());
        assert!(cfg.checkpoint.url.is_some());
        let t = &cfg.tier;
        assert!(t.redis.is_some() && t.store.is_some() && t.layout.is_some());
        assert!(t.prefix.is_some() && t.hot_window_s.is_some() && t.migrate_before_s.is_some());
        assert!(t.similarity.is_some() && t.similarity_threshold.is_some());
        assert!(t.model_dir.is_some() && t.split_confirm.is_some() && t.max_gap_s.is_some());
        assert!(t.min_duration_s.is_some() && t.max_duration_s.is_some());
        assert!(t.max_distinct_captions.is_some() && t.boilerplate_prefixes.is_some());
        assert!(t.chunk_size.is_some() && t.commit_events.is_some());
        let s = &cfg.serve;
        // Tokens have no default: the reference shows them commented out.
        assert!(s.listen.is_some() && s.metrics_public.is_some() && s.interval_s.is_some());
        assert!(s.stats_interval_s.is_some() && s.max_body_bytes.is_some());
        let e = &cfg.events;
        assert!(e.postgres.is_some() && e.redis.is_some() && e.channel.is_some());
        assert!(e.camera_channels.is_some() && e.type_channels.is_some());
        assert!(e.history_stream.is_some() && e.history_maxlen.is_some());
        assert!(e.allowed_types.is_some() && e.relay_batch.is_some());
        assert!(e.relay_workers.is_some());
        assert!(e.rescan_interval_s.is_some() && e.connections.is_some());
        assert!(e.max_batch.is_some());
        let [b] = cfg.bridge.as_slice() else {
            panic!("one [[bridge]] section")
        };
        assert!(b.name.is_some() && b.kafka.is_some() && b.topic.is_some() && b.group.is_some());
        assert!(b.redis.is_some() && b.stream.is_some() && b.reverse.is_some());
        assert!(b.batch.is_some() && b.maxlen.is_some() && b.transform.is_some());
        assert!(b.image.is_some() && b.max_stream_len.is_some() && b.max_redis_memory.is_some());
        assert!(b.session_timeout_s.is_some() && b.linger_s.is_some() && b.consumer.is_some());
        assert!(b.claim_idle_s.is_some() && b.kafka_properties.is_some());
        let bridge = b
            .options(&crate::jobs::bridge::args::RunArgs::default())
            .unwrap();
        let bd = crate::jobs::bridge::BridgeOptions::new("k", "t", "g", "r".into(), "s");
        assert_eq!(bridge.batch, bd.batch, "reference shows the defaults");
        assert_eq!(bridge.session_timeout, bd.session_timeout);
        assert_eq!(bridge.linger, bd.linger);
        assert_eq!(bridge.max_redis_memory, Some(4 << 30));
        let events = cfg.events_options();
        let ed = EventsOptions::default();
        assert_eq!(events.channels, ed.channels, "reference shows the defaults");
        assert_eq!(events.relay_batch, ed.relay_batch);
        assert_eq!(events.rescan_interval, ed.rescan_interval);
        let tier = cfg.tier_options();
        let td = TierOptions::default();
        assert_eq!(
            tier.hot_window_ms, td.hot_window_ms,
            "reference shows the defaults"
        );
        assert_eq!(tier.migrate_before_ms, td.migrate_before_ms);
        assert_eq!(tier.max_duration_ms, td.max_duration_ms);
        assert_eq!(tier.boilerplate_prefixes, td.boilerplate_prefixes);
        assert_eq!(tier.similarity_threshold, None);
        let serve = cfg.serve_options().expect("serve options");
        assert_eq!(serve.listen, ServeOptions::default().listen);
        assert_eq!(serve.interval, ServeOptions::default().interval);
        let opts = cfg.keys_options();
        let d = KeysOptions::default();
        assert_eq!(
            opts.batch_size, d.batch_size,
            "reference shows the defaults"
        );
        assert_eq!(opts.max_payload, d.max_payload);
    }

    #[test]
    fn bad_durations_are_refused_naming_the_option_and_value() {
        for (section, key, loops) in [
            ("serve", "interval_s", true),
            ("serve", "stats_interval_s", true),
            ("events", "rescan_interval_s", true),
            ("tier", "hot_window_s", true),
            ("tier", "max_gap_s", true),
            ("tier", "max_duration_s", true),
            ("tier", "migrate_before_s", false),
            ("tier", "min_duration_s", false),
        ] {
            for bad in ["-1", "-0.5", "inf", "-inf", "nan", "1e300"] {
                let err = FileConfig::parse(&format!("[{section}]\n{key} = {bad}\n")).unwrap_err();
                assert!(
                    err.contains(&format!("[{section}] {key}")),
                    "{section}.{key} = {bad}: {err}"
                );
            }
            for nothing in ["0", "1e-12", "0.0009"] {
                let zero = FileConfig::parse(&format!("[{section}]\n{key} = {nothing}\n"));
                assert_eq!(
                    zero.is_err(),
                    loops,
                    "{section}.{key} = {nothing}: {zero:?}"
                );
                if let Err(e) = zero {
                    assert!(e.contains("is refused") && e.contains("0.001"), "{e}");
                }
            }
            let ok = FileConfig::parse(&format!("[{section}]\n{key} = 0.25\n"));
            assert!(ok.is_ok(), "{section}.{key} = 0.25: {ok:?}");
        }
        let err = FileConfig::parse("[keys]\nttl_tolerance_ms = -5\n").unwrap_err();
        assert!(
            err.contains("ttl_tolerance_ms") && err.contains("negative"),
            "{err}"
        );
        let err = FileConfig::parse("[serve]\ninterval_s = -1\n").unwrap_err();
        assert_eq!(
            err,
            "[serve] interval_s = -1 is negative: give 0 or more seconds"
        );
        // A huge but accepted value converts without overflow.
        let cfg =
            FileConfig::parse("[serve]\ninterval_s = 3e9\n[tier]\nhot_window_s = 3e9\n").unwrap();
        assert_eq!(
            cfg.serve_options().unwrap().interval.as_secs(),
            3_000_000_000
        );
        assert_eq!(cfg.tier_options().hot_window_ms, 3_000_000_000_000);
    }

    #[test]
    fn durations_set_in_code_never_panic() {
        let mut cfg = FileConfig::default();
        cfg.serve.interval_s = Some(-1.0);
        cfg.events.rescan_interval_s = Some(f64::NAN);
        cfg.tier.hot_window_s = Some(f64::INFINITY);
        let serve = cfg.serve_options().unwrap();
        assert_eq!(serve.interval, ServeOptions::default().interval);
        assert_eq!(
            cfg.events_options().rescan_interval,
            EventsOptions::default().rescan_interval
        );
        assert_eq!(
            cfg.tier_options().hot_window_ms,
            TierOptions::default().hot_window_ms
        );
        assert!(cfg.check().is_err());
    }

    #[test]
    fn unknown_fields_are_rejected_with_their_line() {
        let err = FileConfig::parse("[keys]\nsource = \"redis://x\"\nbatchsize = 5\n").unwrap_err();
        assert!(err.contains("batchsize"), "{err}");
        assert!(err.contains("line 3"), "{err}");
    }
}
