//! The `tier` job's pure parts: captions, events, grouping and the durable event store trait.
//!
//! Cameras write captions into Redis; the job groups each camera's consecutive near-duplicate
//! captions into time-range [`TierEvent`]s, stores them durably through an [`EventStore`] and
//! only then removes the captions it consumed from Redis.
//!
//! - [`normalize`]: caption text normalisation (case, whitespace, boilerplate prefixes);
//! - [`embed`]: the [`Embedder`] trait and the fast [`LexicalEmbedder`];
//! - [`grouping`]: the per-camera [`Grouper`] (centroid similarity, outlier tolerance, gaps,
//!   minimum and maximum durations, continuations);
//! - [`store`]: the [`EventStore`] trait every durable store implements;
//! - [`wordings`]: which wordings describe one scene, learned per camera from the events they
//!   share (the lexical backend's paraphrases).

pub mod embed;
pub mod grouping;
pub mod normalize;
pub mod store;
pub mod wordings;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use embed::{EmbedError, Embedder, LexicalEmbedder};
pub use grouping::{Grouper, GroupingConfig, GroupingConfigError, OpenEventState};
pub use store::{CameraState, EventStore, EventStoreError, RunRecord, StoreCounts};

/// The position of a caption in its Redis source, totally ordered in time.
///
/// For a Stream entry this is its id `ms-seq`; for a `caption:{camera}:{ts_ms}` key it is
/// `ts_ms-0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct EntryId {
    /// Milliseconds part.
    pub ms: u64,
    /// Sequence part.
    pub seq: u64,
}

impl EntryId {
    /// An entry id from its two parts.
    pub const fn new(ms: u64, seq: u64) -> Self {
        EntryId { ms, seq }
    }
}

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// An entry id that is not `MS-SEQ` or `MS`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an entry id (expected MS-SEQ, e.g. 1700000000000-0)")]
pub struct BadEntryId(pub String);

impl FromStr for EntryId {
    type Err = BadEntryId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadEntryId(s.to_owned());
        let (ms, seq) = match s.split_once('-') {
            Some((ms, seq)) => (ms, seq),
            None => (s, "0"),
        };
        Ok(EntryId {
            ms: ms.parse().map_err(|_| bad())?,
            seq: seq.parse().map_err(|_| bad())?,
        })
    }
}

impl Serialize for EntryId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for EntryId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// One caption read from Redis.
#[derive(Debug, Clone, PartialEq)]
pub struct Caption {
    /// Where it sits in its source (stream entry id, or key timestamp).
    pub entry: EntryId,
    /// The camera that produced it.
    pub camera_id: String,
    /// Capture time, Unix milliseconds.
    pub ts_ms: i64,
    /// The caption text as the captioner wrote it.
    pub text: String,
    /// An embedding stored with the caption (used by the `provided` similarity backend).
    pub embedding: Option<Vec<f32>>,
}

/// Whether an event can still grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum EventStatus {
    /// Written early because its captions neared expiry; later passes may extend it in place.
    Open,
    /// Final.
    #[default]
    Closed,
}

impl EventStatus {
    /// `open` or `closed`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventStatus::Open => "open",
            EventStatus::Closed => "closed",
        }
    }

    /// Parses `open` / `closed`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "open" => Some(EventStatus::Open),
            "closed" => Some(EventStatus::Closed),
            _ => None,
        }
    }
}

/// One distinct caption text of an event and how many frames carried it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptionCount {
    /// The caption text (first wording seen for its normalised form).
    pub text: String,
    /// Frames with this normalised caption.
    pub count: u64,
}

/// A time-range event: consecutive near-duplicate captions of one camera, merged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TierEvent {
    /// Deterministic id: a hash of the camera and the event's first entry.
    pub id: String,
    /// The camera.
    pub camera_id: String,
    /// The representative caption: the one closest to the centroid.
    pub caption: String,
    /// Time of the first caption, Unix ms.
    pub start_ms: i64,
    /// Time of the last caption, Unix ms.
    pub end_ms: i64,
    /// Number of captions merged.
    pub frame_count: u64,
    /// Distinct captions with counts, most frequent first (capped).
    pub captions: Vec<CaptionCount>,
    /// Mean embedding of the merged captions (empty when no embedding was available).
    pub centroid: Vec<f32>,
    /// For a continuation after `max_duration`: the event it continues.
    pub previous_event_id: Option<String>,
    /// The run that last wrote the event.
    pub run_id: String,
    /// Open (may still grow) or closed.
    pub status: EventStatus,
    /// The first entry merged.
    pub first_entry: EntryId,
    /// The last entry merged.
    pub last_entry: EntryId,
}

impl TierEvent {
    /// Duration in milliseconds.
    pub fn duration_ms(&self) -> i64 {
        self.end_ms - self.start_ms
    }
}

/// The deterministic id of the event that starts at `first` on `camera_id`.
///
/// The first 128 bits of SHA-256 over the camera and the entry id, in hex: stable across
/// versions and platforms, so re-running a pass after a crash upserts the same rows.
pub fn event_id(camera_id: &str, first: EntryId) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(camera_id.as_bytes());
    hasher.update([0]);
    hasher.update(first.to_string().as_bytes());
    let digest = hasher.finalize();
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_ids_parse_print_and_order() {
        let a: EntryId = "1700000000000-3".parse().unwrap();
        assert_eq!(a, EntryId::new(1_700_000_000_000, 3));
        assert_eq!(a.to_string(), "1700000000000-3");
        assert_eq!("5".parse::<EntryId>().unwrap(), EntryId::new(5, 0));
        assert!("x-1".parse::<EntryId>().is_err());
        assert!(EntryId::new(1, 9) < EntryId::new(2, 0));
    }

    #[test]
    fn event_ids_are_deterministic_and_distinct() {
        let a = event_id("cam1", EntryId::new(10, 0));
        assert_eq!(a, event_id("cam1", EntryId::new(10, 0)));
        assert_eq!(a.len(), 32);
        assert_ne!(a, event_id("cam2", EntryId::new(10, 0)));
        assert_ne!(a, event_id("cam1", EntryId::new(10, 1)));
    }
}
