//! `[tier]` of the config file: the tier job's settings (every key is listed with its default
//! in `config/reference.toml`).

use std::path::PathBuf;

use serde::Deserialize;

use super::{Backend, Layout, TierOptions};
use crate::config::{check_durations, ms};
use ferry_core::secret::SecretUrl;

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

impl TierSection {
    /// The tier job's options: this section over the defaults; `checkpoint` is
    /// `[checkpoint] url`.
    pub fn options(&self, checkpoint: Option<SecretUrl>) -> TierOptions {
        let d = TierOptions::default();
        let t = self;
        TierOptions {
            redis: t.redis.clone().unwrap_or(d.redis),
            store: t.store.clone().unwrap_or(d.store),
            checkpoint: checkpoint.filter(|u| !u.is_empty()),
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

    /// Checks the section's durations (see [`crate::config::check_seconds`]).
    pub fn check(&self) -> Result<(), String> {
        check_durations([
            (
                "[tier] hot_window_s",
                self.hot_window_s,
                Some("every caption would be due at once"),
            ),
            ("[tier] migrate_before_s", self.migrate_before_s, None),
            (
                "[tier] max_gap_s",
                self.max_gap_s,
                Some("every caption would close its event"),
            ),
            ("[tier] min_duration_s", self.min_duration_s, None),
            (
                "[tier] max_duration_s",
                self.max_duration_s,
                Some("every event would end at once"),
            ),
        ])
    }

    /// Whether the section names the job's Redis or store (`ferry serve` then runs the job).
    pub fn configured(&self) -> bool {
        self.redis.is_some() || self.store.is_some()
    }
}
