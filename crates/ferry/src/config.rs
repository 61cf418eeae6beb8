//! The configuration file (`--config FILE`, TOML). Every option is listed with its default in
//! `config/reference.toml`. Precedence: command-line flags, then `FERRY_*` environment
//! variables, then this file, then the defaults.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::jobs::events::EventsOptions;
use crate::jobs::keys::{KeysOptions, OnCollision, OnConflict};
use crate::jobs::tier::{Backend, Layout, TierOptions};
use crate::observe::LogFormat;
use crate::server::ServeOptions;
use ferry_connectors::secret::{ExposeSecret, Secret, SecretUrl};
use ferry_core::events::Channels;

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
}

/// `[events]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsSection {
    /// PostgreSQL URL of the event log; `ferry serve` runs the events job when it is set.
    pub postgres: Option<SecretUrl>,
    /// Redis URL to publish on.
    pub redis: Option<SecretUrl>,
    /// The Pub/Sub channel of every event.
    pub channel: Option<String>,
    /// Also publish on `{channel}:{camera_id}`.
    pub camera_channels: Option<bool>,
    /// Also publish on `{channel}:{event_type}`.
    pub type_channels: Option<bool>,
    /// A Stream that also receives every event, for replay; empty: none.
    pub history_stream: Option<String>,
    /// Approximate length of the history Stream.
    pub history_maxlen: Option<u64>,
    /// Accepted event types; empty: any.
    pub allowed_types: Option<Vec<String>>,
    /// Events per relay transaction.
    pub relay_batch: Option<usize>,
    /// Concurrent publishing loops per relay.
    pub relay_workers: Option<usize>,
    /// Seconds between rescans of the outbox when no notification arrives.
    pub rescan_interval_s: Option<f64>,
    /// PostgreSQL connections.
    pub connections: Option<usize>,
    /// Most events in one API request.
    pub max_batch: Option<usize>,
}

/// `[tier]` (durations in seconds; fractions allowed).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierSection {
    /// The Redis holding the captions.
    pub redis: Option<SecretUrl>,
    /// The durable store URL.
    pub store: Option<SecretUrl>,
    /// `stream` or `keys`.
    pub layout: Option<Layout>,
    /// Stream or key prefix; empty: the layout's default.
    pub prefix: Option<String>,
    /// How long Redis keeps captions.
    pub hot_window_s: Option<f64>,
    /// Migrate this long before expiry.
    pub migrate_before_s: Option<f64>,
    /// `minilm`, `provided` or `lexical`.
    pub similarity: Option<Backend>,
    /// Similarity threshold; 0 means the backend's calibrated default.
    pub similarity_threshold: Option<f32>,
    /// MiniLM model directory; empty: `FERRY_MODEL_DIR` or the standard location.
    pub model_dir: Option<PathBuf>,
    /// Consecutive dissimilar captions that split an event.
    pub split_confirm: Option<usize>,
    /// A longer gap closes an event.
    pub max_gap_s: Option<f64>,
    /// A split of a younger event is undone when the next event is alike.
    pub min_duration_s: Option<f64>,
    /// Longest event.
    pub max_duration_s: Option<f64>,
    /// Distinct captions kept per event.
    pub max_distinct_captions: Option<usize>,
    /// Boilerplate prefixes removed before comparing.
    pub boilerplate_prefixes: Option<Vec<String>>,
    /// Entries per Redis read.
    pub chunk_size: Option<usize>,
    /// Events per store transaction.
    pub commit_events: Option<usize>,
}

/// `[serve]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeSection {
    /// Address of the HTTP API.
    pub listen: Option<String>,
    /// Admin bearer token: every endpoint (prefer FERRY_SERVE_TOKEN); an empty one is refused.
    pub token: Option<Secret>,
    /// Read-only bearer token: GET and HEAD endpoints (prefer FERRY_SERVE_READ_TOKEN).
    pub read_token: Option<Secret>,
    /// `/metrics` answers without a token (default false).
    pub metrics_public: Option<bool>,
    /// Seconds between tier passes.
    pub interval_s: Option<f64>,
    /// Seconds between statistics samples.
    pub stats_interval_s: Option<f64>,
    /// Largest request body, bytes.
    pub max_body_bytes: Option<usize>,
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

/// `seconds` in ms (`default_ms` when absent); never panics (values are checked by
/// [`FileConfig::check`] when the file is parsed).
fn ms(seconds: Option<f64>, default_ms: i64) -> i64 {
    seconds.filter(|s| s.is_finite()).map_or(default_ms, |s| {
        (s.clamp(0.0, MAX_SECONDS) * 1000.0).round() as i64
    })
}

/// `seconds` as a duration (`default` when absent or not a duration); never panics.
fn secs(seconds: Option<f64>, default: std::time::Duration) -> std::time::Duration {
    seconds
        .and_then(|s| std::time::Duration::try_from_secs_f64(s).ok())
        .unwrap_or(default)
}

/// A token of `[serve]`; an empty one is an error (it is never taken as "no token").
fn serve_token(key: &str, token: &Option<Secret>) -> Result<Option<Secret>, String> {
    match token {
        Some(t) if t.expose_secret().is_empty() => Err(format!(
            "[serve] {key} is empty: an empty token is refused rather than taken as \"no \
             authentication\"; set a token or remove the line"
        )),
        t => Ok(t.clone()),
    }
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

    /// Checks every duration of the file with [`check_seconds`]: finite, not negative, at most
    /// 100 years, and positive where a loop or an interval repeats with it.
    pub fn check(&self) -> Result<(), String> {
        let t = &self.tier;
        let s = &self.serve;
        let e = &self.events;
        if let Some(ms) = self.keys.ttl_tolerance_ms
            && ms < 0
        {
            return Err(format!(
                "[keys] ttl_tolerance_ms = {ms} is negative: give 0 or more milliseconds"
            ));
        }
        let durations: [(&str, Option<f64>, Option<&str>); 8] = [
            (
                "[tier] hot_window_s",
                t.hot_window_s,
                Some("every caption would be due at once"),
            ),
            ("[tier] migrate_before_s", t.migrate_before_s, None),
            (
                "[tier] max_gap_s",
                t.max_gap_s,
                Some("every caption would close its event"),
            ),
            ("[tier] min_duration_s", t.min_duration_s, None),
            (
                "[tier] max_duration_s",
                t.max_duration_s,
                Some("every event would end at once"),
            ),
            (
                "[serve] interval_s",
                s.interval_s,
                Some("the tier pass loop of `ferry serve` would run without pause"),
            ),
            (
                "[serve] stats_interval_s",
                s.stats_interval_s,
                Some("the statistics sampler of `ferry serve` would run without pause"),
            ),
            (
                "[events] rescan_interval_s",
                e.rescan_interval_s,
                Some("the relay would rescan the outbox without pause"),
            ),
        ];
        for (option, value, positive) in durations {
            if let Some(v) = value {
                check_seconds(option, v, positive)?;
            }
        }
        Ok(())
    }

    /// Tier options from this file over the defaults.
    pub fn tier_options(&self) -> TierOptions {
        let d = TierOptions::default();
        let t = &self.tier;
        TierOptions {
            redis: t.redis.clone().unwrap_or(d.redis),
            store: t.store.clone().unwrap_or(d.store),
            checkpoint: self.checkpoint.url.clone().filter(|u| !u.is_empty()),
            layout: t.layout.unwrap_or(d.layout),
            prefix: t.prefix.clone().filter(|p| !p.is_empty()),
            hot_window_ms: ms(t.hot_window_s, d.hot_window_ms),
            migrate_before_ms: ms(t.migrate_before_s, d.migrate_before_ms),
            similarity: t.similarity.unwrap_or(d.similarity),
            similarity_threshold: t.similarity_threshold.filter(|&x| x > 0.0),
            model_dir: t.model_dir.clone().filter(|p| !p.as_os_str().is_empty()),
            split_confirm: t.split_confirm.unwrap_or(d.split_confirm),
            max_gap_ms: ms(t.max_gap_s, d.max_gap_ms),
            min_duration_ms: ms(t.min_duration_s, d.min_duration_ms),
            max_duration_ms: ms(t.max_duration_s, d.max_duration_ms),
            max_distinct_captions: t.max_distinct_captions.unwrap_or(d.max_distinct_captions),
            boilerplate_prefixes: t
                .boilerplate_prefixes
                .clone()
                .unwrap_or(d.boilerplate_prefixes),
            chunk_size: t.chunk_size.unwrap_or(d.chunk_size),
            commit_events: t.commit_events.unwrap_or(d.commit_events),
            ..d
        }
    }

    /// Events options from this file over the defaults.
    pub fn events_options(&self) -> EventsOptions {
        let d = EventsOptions::default();
        let e = &self.events;
        EventsOptions {
            postgres: e
                .postgres
                .clone()
                .filter(|p| !p.is_empty())
                .unwrap_or(d.postgres),
            redis: e.redis.clone().filter(|r| !r.is_empty()).unwrap_or(d.redis),
            channels: Channels {
                main: e.channel.clone().unwrap_or(d.channels.main),
                per_camera: e.camera_channels.unwrap_or(d.channels.per_camera),
                per_type: e.type_channels.unwrap_or(d.channels.per_type),
            },
            history_stream: e.history_stream.clone().filter(|s| !s.is_empty()),
            history_maxlen: e.history_maxlen.unwrap_or(d.history_maxlen),
            allowed_types: e.allowed_types.clone().unwrap_or(d.allowed_types),
            relay_batch: e.relay_batch.unwrap_or(d.relay_batch),
            relay_workers: e.relay_workers.unwrap_or(d.relay_workers),
            rescan_interval: secs(e.rescan_interval_s, d.rescan_interval),
            connections: e.connections.unwrap_or(d.connections),
            max_batch: e.max_batch.unwrap_or(d.max_batch),
        }
    }

    /// Serve options from this file over the defaults.
    pub fn serve_options(&self) -> Result<ServeOptions, String> {
        let d = ServeOptions::default();
        let s = &self.serve;
        Ok(ServeOptions {
            listen: match &s.listen {
                Some(l) => l
                    .parse()
                    .map_err(|_| format!("[serve] listen = `{l}` is not HOST:PORT"))?,
                None => d.listen,
            },
            token: serve_token("token", &s.token)?,
            read_token: serve_token("read_token", &s.read_token)?,
            metrics_public: s.metrics_public.unwrap_or(d.metrics_public),
            insecure: d.insecure,
            interval: secs(s.interval_s, d.interval),
            stats_interval: secs(s.stats_interval_s, d.stats_interval),
            max_body_bytes: s.max_body_bytes.unwrap_or(d.max_body_bytes),
        })
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
            on_collision: k.on_collision.unwrap_or(d.on_collision),
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
