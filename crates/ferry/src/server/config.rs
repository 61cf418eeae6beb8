//! `[serve]` of the config file: the HTTP API's settings (every key is listed with its default
//! in `config/reference.toml`).

use serde::Deserialize;

use super::ServeOptions;
use crate::config::{check_durations, secs};
use ferry_core::secret::{ExposeSecret, Secret};

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
    /// GET requests answer without a token (a read-only dashboard); default false.
    pub public_read: Option<bool>,
    /// Seconds between samples of the metric history the dashboard draws (default 5).
    pub history_interval_s: Option<f64>,
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

impl ServeSection {
    /// `ferry serve`'s options: this section over the defaults.
    pub fn options(&self) -> Result<ServeOptions, String> {
        let d = ServeOptions::default();
        let s = self;
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
            public_read: s.public_read.unwrap_or(d.public_read),
            history_interval: secs(s.history_interval_s, d.history_interval),
        })
    }

    /// Checks the section's durations (see [`crate::config::check_seconds`]).
    pub fn check(&self) -> Result<(), String> {
        check_durations([
            (
                "[serve] interval_s",
                self.interval_s,
                Some("the tier pass loop of `ferry serve` would run without pause"),
            ),
            (
                "[serve] stats_interval_s",
                self.stats_interval_s,
                Some("the statistics sampler of `ferry serve` would run without pause"),
            ),
            (
                "[serve] history_interval_s",
                self.history_interval_s,
                Some("the metric history of `ferry serve` would sample without pause"),
            ),
        ])
    }
}
