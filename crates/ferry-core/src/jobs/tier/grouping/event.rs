//! The state of one event while it grows: its captions, centroid and distinct wordings.

use serde::{Deserialize, Serialize};

use super::GroupInput;
use crate::jobs::tier::embed::{cosine, normalize_l2};
use crate::jobs::tier::{CaptionCount, EntryId, EventStatus, TierEvent, event_id};

/// A distinct caption of an open event, with the embedding used to pick the representative.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DistinctCaption {
    /// First wording seen.
    pub text: String,
    /// Normalised form.
    pub norm: String,
    /// Frames with this normalised form.
    pub count: u64,
    /// Its embedding (empty when none).
    pub embedding: Vec<f32>,
    /// Seen only in absorbed outliers so far: does not make identical captions join.
    #[serde(default)]
    pub outlier_only: bool,
}

/// Everything needed to keep growing an event in a later pass; stored with the camera.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenEventState {
    /// The event's id.
    pub id: String,
    /// The camera.
    pub camera_id: String,
    /// First merged entry.
    pub first_entry: EntryId,
    /// Last merged entry.
    pub last_entry: EntryId,
    /// First caption time.
    pub start_ms: i64,
    /// Last caption time.
    pub end_ms: i64,
    /// Captions merged.
    pub frame_count: u64,
    /// Sum of the merged embeddings (not outliers).
    pub sum: Vec<f32>,
    /// How many embeddings `sum` holds.
    pub embedded: u64,
    /// Distinct captions, capped.
    pub distinct: Vec<DistinctCaption>,
    /// The event this one continues (after `max_duration`).
    pub previous_event_id: Option<String>,
}

impl OpenEventState {
    pub(super) fn start(
        camera_id: &str,
        item: GroupInput,
        previous_event_id: Option<String>,
    ) -> Self {
        let mut state = OpenEventState {
            id: event_id(camera_id, item.entry),
            camera_id: camera_id.to_owned(),
            first_entry: item.entry,
            last_entry: item.entry,
            start_ms: item.ts_ms,
            end_ms: item.ts_ms,
            frame_count: 0,
            sum: Vec::new(),
            embedded: 0,
            distinct: Vec::new(),
            previous_event_id,
        };
        state.absorb(item, true, usize::MAX);
        state
    }

    /// Adds a caption; `into_centroid` is false for absorbed outliers.
    pub(super) fn absorb(&mut self, item: GroupInput, into_centroid: bool, max_distinct: usize) {
        self.frame_count += 1;
        self.last_entry = self.last_entry.max(item.entry);
        self.start_ms = self.start_ms.min(item.ts_ms);
        self.end_ms = self.end_ms.max(item.ts_ms);
        if into_centroid
            && let Some(e) = &item.embedding
            && (self.sum.is_empty() || self.sum.len() == e.len())
        {
            if self.sum.is_empty() {
                self.sum = vec![0.0; e.len()];
            }
            self.sum.iter_mut().zip(e).for_each(|(s, x)| *s += x);
            self.embedded += 1;
        }
        if let Some(d) = self.distinct.iter_mut().find(|d| d.norm == item.norm) {
            d.count += 1;
            d.outlier_only &= !into_centroid;
        } else if self.distinct.len() < max_distinct.max(1) {
            self.distinct.push(DistinctCaption {
                text: item.text,
                norm: item.norm,
                count: 1,
                embedding: item.embedding.unwrap_or_default(),
                outlier_only: !into_centroid,
            });
        }
    }

    /// Takes in every caption of `other`, a later event on the same camera.
    pub(super) fn merge(&mut self, other: OpenEventState, max_distinct: usize) {
        self.frame_count += other.frame_count;
        self.last_entry = self.last_entry.max(other.last_entry);
        self.start_ms = self.start_ms.min(other.start_ms);
        self.end_ms = self.end_ms.max(other.end_ms);
        if !other.sum.is_empty() && (self.sum.is_empty() || self.sum.len() == other.sum.len()) {
            if self.sum.is_empty() {
                self.sum = vec![0.0; other.sum.len()];
            }
            self.sum
                .iter_mut()
                .zip(&other.sum)
                .for_each(|(s, x)| *s += x);
            self.embedded += other.embedded;
        }
        for d in other.distinct {
            if let Some(mine) = self.distinct.iter_mut().find(|m| m.norm == d.norm) {
                mine.count += d.count;
                mine.outlier_only &= d.outlier_only;
            } else if self.distinct.len() < max_distinct.max(1) {
                self.distinct.push(d);
            }
        }
    }

    /// The unit-length mean of the merged embeddings (empty when there are none).
    pub fn centroid(&self) -> Vec<f32> {
        let mut c = self.sum.clone();
        normalize_l2(&mut c);
        c
    }

    pub(super) fn similarity(&self, item: &GroupInput) -> f32 {
        match &item.embedding {
            Some(e) if self.embedded > 0 => cosine(&self.sum, e),
            _ => 0.0,
        }
    }

    /// Whether `norm` is the text of one of the event's own (non-outlier) captions.
    pub(super) fn accepts_text(&self, norm: &str) -> bool {
        self.distinct
            .iter()
            .any(|d| !d.outlier_only && d.norm == norm)
    }

    /// Whether `item` fits this event: its text is already one of the event's own captions, or
    /// it is similar enough to the centroid.
    pub(super) fn accepts(&self, item: &GroupInput, threshold: f32) -> bool {
        self.accepts_text(&item.norm) || self.similarity(item) >= threshold
    }

    /// The event as it stands, with the given status.
    pub fn to_event(&self, run_id: &str, status: EventStatus) -> TierEvent {
        let centroid = self.centroid();
        let representative = self
            .distinct
            .iter()
            .max_by(|a, b| {
                let sa = cosine(&a.embedding, &centroid);
                let sb = cosine(&b.embedding, &centroid);
                sa.total_cmp(&sb).then(a.count.cmp(&b.count))
            })
            .map(|d| d.text.clone())
            .unwrap_or_default();
        let mut captions: Vec<CaptionCount> = self
            .distinct
            .iter()
            .map(|d| CaptionCount {
                text: d.text.clone(),
                count: d.count,
            })
            .collect();
        captions.sort_by_key(|c| std::cmp::Reverse(c.count));
        TierEvent {
            id: self.id.clone(),
            camera_id: self.camera_id.clone(),
            caption: representative,
            start_ms: self.start_ms,
            end_ms: self.end_ms,
            frame_count: self.frame_count,
            captions,
            centroid,
            previous_event_id: self.previous_event_id.clone(),
            run_id: run_id.to_owned(),
            status,
            first_entry: self.first_entry,
            last_entry: self.last_entry,
        }
    }
}
