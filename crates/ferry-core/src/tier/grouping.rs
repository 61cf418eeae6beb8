//! Grouping one camera's captions, in time order, into time-range events.
//!
//! Each caption is compared with the running centroid of the open event. It joins when its
//! normalised text already occurs in the event or when the cosine similarity reaches the
//! threshold. A caption below the threshold is held back as a possible outlier: `split_confirm`
//! consecutive ones close the event, while a caption that joins again absorbs the held-back ones
//! (they count as frames but do not move the centroid). A gap longer than `max_gap` closes the
//! event; an event reaching `max_duration` closes and a continuation linked to it starts, going on
//! from the scene's centroid (a continuation is the same scene, worded as before).
//!
//! A split of an event younger than `min_duration` is checked when it is settled (below): when
//! the next event turns out alike (centroids within the threshold, or one of the next event's
//! captions is one of the young event's word for word or similar to its centroid) the split was
//! a false alarm and is undone; otherwise the young event stands however short it is, so a short
//! distinct scene is not glued to the next one.
//!
//! Which event the captions that confirmed a split belong to is settled once the next event has
//! [`SETTLE_AFTER`] captions: from the first one that fits it (same text, similar to its
//! centroid, or closer to it than to the closing event) they start it, and the captions since
//! the split are grouped again from there; the ones before stay with the closing event as its
//! outliers — unless none fits the next event and they agree with each other: then they are a
//! short scene of their own. So an outlier at the very end of a scene stays with it, while the
//! next scene's first caption, however it is worded, is not given to the scene before.

use std::mem;

use serde::{Deserialize, Serialize};

use super::embed::{cosine, normalize_l2};
use super::{CaptionCount, EntryId, EventStatus, TierEvent, event_id};

/// Captions the event after a split gathers before the split's held-back captions are assigned.
pub const SETTLE_AFTER: u64 = 5;

/// Grouping parameters (times in milliseconds).
#[derive(Debug, Clone, PartialEq)]
pub struct GroupingConfig {
    /// Cosine similarity to the event's centroid at or above which a caption joins.
    pub similarity_threshold: f32,
    /// Consecutive captions below the threshold needed to split an event.
    pub split_confirm: usize,
    /// A gap between captions longer than this closes the event.
    pub max_gap_ms: i64,
    /// A split of an event younger than this is checked: undone when the next event is alike
    /// (a false alarm), kept otherwise, however short the event.
    pub min_duration_ms: i64,
    /// An event never spans more than this; a linked continuation starts instead.
    pub max_duration_ms: i64,
    /// How many distinct captions an event keeps (with counts).
    pub max_distinct_captions: usize,
}

impl Default for GroupingConfig {
    fn default() -> Self {
        GroupingConfig {
            similarity_threshold: 0.5,
            split_confirm: 2,
            max_gap_ms: 60_000,
            min_duration_ms: 60_000,
            max_duration_ms: 300_000,
            max_distinct_captions: 16,
        }
    }
}

/// A grouping parameter is out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tier grouping: {0}")]
pub struct GroupingConfigError(pub String);

impl GroupingConfig {
    /// Checks every parameter; the message names the field and its allowed range.
    pub fn validate(&self) -> Result<(), GroupingConfigError> {
        let fail = |m: &str| Err(GroupingConfigError(m.to_owned()));
        if !(self.similarity_threshold > 0.0 && self.similarity_threshold <= 1.0) {
            return fail("similarity_threshold must be in (0, 1]");
        }
        if self.split_confirm == 0 {
            return fail("split_confirm must be at least 1");
        }
        if self.max_gap_ms <= 0 {
            return fail("max_gap must be positive");
        }
        if self.max_duration_ms <= 0 {
            return fail("max_duration must be positive");
        }
        if self.min_duration_ms < 0 || self.min_duration_ms > self.max_duration_ms {
            return fail("min_duration must be between 0 and max_duration");
        }
        if self.max_distinct_captions == 0 {
            return fail("max_distinct_captions must be at least 1");
        }
        Ok(())
    }
}

/// One caption ready for grouping: normalised, with its embedding when the backend has one.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupInput {
    /// Its position in the source.
    pub entry: EntryId,
    /// Capture time, Unix ms.
    pub ts_ms: i64,
    /// The original text.
    pub text: String,
    /// The normalised text.
    pub norm: String,
    /// Its unit-length embedding, if any.
    pub embedding: Option<Vec<f32>>,
}

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
    fn start(camera_id: &str, item: GroupInput, previous_event_id: Option<String>) -> Self {
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
    fn absorb(&mut self, item: GroupInput, into_centroid: bool, max_distinct: usize) {
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
    fn merge(&mut self, other: OpenEventState, max_distinct: usize) {
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

    fn similarity(&self, item: &GroupInput) -> f32 {
        match &item.embedding {
            Some(e) if self.embedded > 0 => cosine(&self.sum, e),
            _ => 0.0,
        }
    }

    /// Whether `norm` is the text of one of the event's own (non-outlier) captions.
    fn accepts_text(&self, norm: &str) -> bool {
        self.distinct
            .iter()
            .any(|d| !d.outlier_only && d.norm == norm)
    }

    /// Whether `item` fits this event: its text is already one of the event's own captions, or
    /// it is similar enough to the centroid.
    fn accepts(&self, item: &GroupInput, threshold: f32) -> bool {
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

/// Groups one camera's captions; feed them in time order with [`Grouper::push`].
#[derive(Debug)]
pub struct Grouper {
    camera_id: String,
    config: GroupingConfig,
    run_id: String,
    open: Option<OpenEventState>,
    pending: Vec<GroupInput>,
    closing: Option<Closing>,
}

/// An event closed by a split, kept until the next event shows where the held-back captions
/// that confirmed the split belong.
#[derive(Debug)]
struct Closing {
    event: OpenEventState,
    /// The held-back captions that confirmed the split.
    undecided: Vec<GroupInput>,
    /// The captions pushed since the split, in order (the next event's so far).
    since: Vec<GroupInput>,
}

impl Grouper {
    /// A grouper with no open event.
    pub fn new(camera_id: &str, config: GroupingConfig, run_id: &str) -> Self {
        Grouper {
            camera_id: camera_id.to_owned(),
            config,
            run_id: run_id.to_owned(),
            open: None,
            pending: Vec::new(),
            closing: None,
        }
    }

    /// A grouper that goes on growing an event written open by an earlier pass.
    pub fn resume(config: GroupingConfig, run_id: &str, open: OpenEventState) -> Self {
        Grouper {
            camera_id: open.camera_id.clone(),
            config,
            run_id: run_id.to_owned(),
            open: Some(open),
            pending: Vec::new(),
            closing: None,
        }
    }

    /// The open event, if any.
    pub fn open(&self) -> Option<&OpenEventState> {
        self.open.as_ref()
    }

    /// Captions held back as possible outliers.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Time of the newest caption seen (open event or held back).
    pub fn last_ts(&self) -> Option<i64> {
        self.pending
            .last()
            .map(|p| p.ts_ms)
            .or(self.open.as_ref().map(|o| o.end_ms))
            .or(self
                .closing
                .as_ref()
                .and_then(|c| c.undecided.last().map(|u| u.ts_ms)))
    }

    /// Adds the next caption; returns the events it closed (oldest first).
    pub fn push(&mut self, item: GroupInput) -> Vec<TierEvent> {
        let mut closed = Vec::new();
        self.push_into(item, &mut closed);
        closed
    }

    fn push_into(&mut self, item: GroupInput, closed: &mut Vec<TierEvent>) {
        let Some(last_ts) = self.last_ts() else {
            self.open = Some(OpenEventState::start(&self.camera_id, item, None));
            return;
        };
        if item.ts_ms - last_ts > self.config.max_gap_ms {
            self.settle_all(closed);
            let held = mem::take(&mut self.pending);
            if self.open.is_some() {
                closed.push(self.close_open());
            }
            for p in held.into_iter().chain([item]) {
                self.push_into(p, closed);
            }
            return;
        }
        let Some(open) = self.open.as_ref() else {
            // Just after a split: this caption starts the next event.
            if let Some(closing) = self.closing.as_mut() {
                closing.since.push(item.clone());
            }
            self.open = Some(OpenEventState::start(&self.camera_id, item, None));
            return;
        };
        if item.ts_ms - open.start_ms > self.config.max_duration_ms {
            if self.closing.is_some() {
                // Settling may regroup the open event: look at this caption again afterwards.
                self.settle_all(closed);
                return self.push_into(item, closed);
            }
            let previous = open.id.clone();
            let mut rest = mem::take(&mut self.pending);
            rest.push(item);
            // A continuation that starts with a caption of the scene compares with the whole
            // scene so far, not with its first caption alone; one that starts with a caption
            // held back (maybe a new scene) starts afresh.
            let (prior_sum, prior_embedded) =
                if open.accepts(&rest[0], self.config.similarity_threshold) {
                    (open.sum.clone(), open.embedded)
                } else {
                    (Vec::new(), 0)
                };
            closed.push(self.close_open());
            let mut rest = rest.into_iter();
            let first = rest.next().expect("at least the new caption");
            let mut next = OpenEventState::start(&self.camera_id, first, Some(previous));
            if !prior_sum.is_empty() && next.sum.len() == prior_sum.len() {
                next.sum
                    .iter_mut()
                    .zip(&prior_sum)
                    .for_each(|(s, p)| *s += p);
                next.embedded += prior_embedded;
            }
            self.open = Some(next);
            for p in rest {
                self.push_into(p, closed);
            }
            return;
        }
        if let Some(closing) = self.closing.as_mut() {
            closing.since.push(item.clone());
        }
        if open.accepts(&item, self.config.similarity_threshold) {
            let max = self.config.max_distinct_captions;
            let open = self.open.as_mut().expect("checked above");
            for p in mem::take(&mut self.pending) {
                open.absorb(p, false, max);
            }
            open.absorb(item, true, max);
            if self.closing.is_some() && open.frame_count >= SETTLE_AFTER {
                self.settle(closed);
            }
            return;
        }
        self.pending.push(item);
        if self.pending.len() >= self.config.split_confirm {
            if self.settle(closed) {
                // The events after the earlier split were regrouped, this caption included.
                return;
            }
            let undecided = mem::take(&mut self.pending);
            let event = self.open.take().expect("an open event to split");
            self.closing = Some(Closing {
                event,
                undecided,
                since: Vec::new(),
            });
        }
    }

    /// Makes the last split final. The captions that confirmed it are assigned: from the first
    /// one the next event fits on, they start it (and what came after the split is grouped
    /// again from there, exactly as a pass starting at that caption would); the ones before
    /// are the closing event's outliers. Emits the closing event; true when it regrouped.
    fn settle(&mut self, closed: &mut Vec<TierEvent>) -> bool {
        let Some(Closing {
            mut event,
            mut undecided,
            since,
        }) = self.closing.take()
        else {
            return false;
        };
        let max = self.config.max_distinct_captions;
        let threshold = self.config.similarity_threshold;
        if self.is_false_alarm(&event, &undecided) {
            // The young event and the one after its split are alike: one scene, worded
            // differently for a moment. Undo the split; captions still held back stay held.
            for u in undecided {
                event.absorb(u, true, max);
            }
            if let Some(next) = self.open.take() {
                event.merge(next, max);
            }
            self.open = Some(event);
            return false;
        }
        let starts_next = match self.open.as_ref() {
            Some(next) => undecided
                .iter()
                .position(|u| {
                    let to_next = next.similarity(u);
                    next.accepts(u, threshold) || to_next > event.similarity(u)
                })
                .unwrap_or(undecided.len()),
            // No caption followed the split: the held-back ones start the next event.
            None => 0,
        };
        let to_next = undecided.split_off(starts_next);
        if to_next.is_empty() && self.open.is_some() && self.consistent(&undecided) {
            // Held captions that fit neither side but agree with each other: a short scene of
            // its own between the two, not outliers.
            closed.push(event.to_event(&self.run_id, EventStatus::Closed));
            let mut held = undecided.into_iter();
            let first = held.next().expect("consistent needs captions");
            let mut short = OpenEventState::start(&self.camera_id, first, None);
            for u in held {
                short.absorb(u, true, max);
            }
            closed.push(short.to_event(&self.run_id, EventStatus::Closed));
            return false;
        }
        for u in undecided {
            event.absorb(u, false, max);
        }
        closed.push(event.to_event(&self.run_id, EventStatus::Closed));
        if to_next.is_empty() {
            return false;
        }
        self.open = None;
        self.pending.clear();
        for u in to_next.into_iter().chain(since) {
            self.push_into(u, closed);
        }
        true
    }

    /// Whether a split was a false alarm: the closing event was younger than `min_duration`
    /// when the split began (and does not continue an earlier event), the event after the
    /// split is alike (its centroid within the threshold of the closing event's, or it has one
    /// of the closing event's own captions word for word), and the two (with the captions
    /// still held back) together stay within `max_duration`.
    fn is_false_alarm(&self, event: &OpenEventState, undecided: &[GroupInput]) -> bool {
        let (Some(next), Some(first_held)) = (self.open.as_ref(), undecided.first()) else {
            return false;
        };
        let young = event.previous_event_id.is_none()
            && first_held.ts_ms - event.start_ms < self.config.min_duration_ms;
        let alike = (event.embedded > 0
            && next.embedded > 0
            && cosine(&event.sum, &next.sum) >= self.config.similarity_threshold)
            || next.distinct.iter().filter(|d| !d.outlier_only).any(|d| {
                event.accepts_text(&d.norm)
                    || (event.embedded > 0
                        && cosine(&event.sum, &d.embedding) >= self.config.similarity_threshold)
            });
        // Captions held back from the next event stay held by the merged one: they count too.
        let newest = self
            .pending
            .iter()
            .map(|p| p.ts_ms)
            .fold(next.end_ms.max(first_held.ts_ms), i64::max);
        young && alike && newest - event.start_ms <= self.config.max_duration_ms
    }

    /// Whether held-back captions agree with each other: at least `split_confirm` of them and
    /// each fits the ones before it.
    fn consistent(&self, held: &[GroupInput]) -> bool {
        let Some((first, rest)) = held.split_first() else {
            return false;
        };
        if held.len() < self.config.split_confirm.max(2) {
            return false;
        }
        let mut group = OpenEventState::start(&self.camera_id, first.clone(), None);
        for u in rest {
            if !group.accepts(u, self.config.similarity_threshold) {
                return false;
            }
            group.absorb(u.clone(), true, usize::MAX);
        }
        true
    }

    /// Settles until no split is pending: grouping the captions since a split again may
    /// confirm a later split, which is settled too.
    fn settle_all(&mut self, closed: &mut Vec<TierEvent>) {
        while self.closing.is_some() {
            self.settle(closed);
        }
    }

    fn close_open(&mut self) -> TierEvent {
        let open = self.open.take().expect("an open event to close");
        open.to_event(&self.run_id, EventStatus::Closed)
    }

    /// Closes what is open when no caption can join it any more because `now_ms` is more than
    /// `max_gap` after the newest caption. Held-back captions become their own events.
    pub fn close_if_idle(&mut self, now_ms: i64) -> Vec<TierEvent> {
        match self.last_ts() {
            Some(last) if now_ms - last > self.config.max_gap_ms => self.close_all(),
            _ => Vec::new(),
        }
    }

    /// Closes everything: the open event, then events made of the held-back captions.
    pub fn close_all(&mut self) -> Vec<TierEvent> {
        let mut closed = Vec::new();
        loop {
            self.settle_all(&mut closed);
            if self.open.is_none() {
                return closed;
            }
            let held = mem::take(&mut self.pending);
            closed.push(self.close_open());
            for p in held {
                self.push_into(p, &mut closed);
            }
        }
    }

    /// Settles a split whose next event is still gathering captions (see [`SETTLE_AFTER`]) with
    /// what has been seen so far; returns the events it closed (oldest first). Afterwards no
    /// split is pending, so [`Grouper::snapshot_open`] can take the open event.
    pub fn settle_split(&mut self) -> Vec<TierEvent> {
        let mut closed = Vec::new();
        self.settle_all(&mut closed);
        closed
    }

    /// Absorbs held-back captions into the open event and returns it as an `open` event plus
    /// the state to resume it from. `None` when nothing is open or a split awaits `settle_split`.
    pub fn snapshot_open(&mut self) -> Option<(TierEvent, OpenEventState)> {
        if self.closing.is_some() {
            // The split's closing event must be taken first (`settle_split`).
            return None;
        }
        let max = self.config.max_distinct_captions;
        let open = self.open.as_mut()?;
        for p in mem::take(&mut self.pending) {
            open.absorb(p, false, max);
        }
        Some((open.to_event(&self.run_id, EventStatus::Open), open.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captions every 10 s; `scene` picks a unit vector so similarity is 1 within a scene and 0
    /// across scenes.
    fn input(i: u64, ts_s: i64, scene: usize, text: &str) -> GroupInput {
        let mut e = vec![0.0; 4];
        e[scene] = 1.0;
        GroupInput {
            entry: EntryId::new(i, 0),
            ts_ms: ts_s * 1000,
            text: text.to_owned(),
            norm: text.to_owned(),
            embedding: Some(e),
        }
    }

    fn config() -> GroupingConfig {
        GroupingConfig {
            min_duration_ms: 0,
            ..GroupingConfig::default()
        }
    }

    fn run(g: &mut Grouper, items: Vec<GroupInput>) -> Vec<TierEvent> {
        let mut out = Vec::new();
        for i in items {
            out.extend(g.push(i));
        }
        out.extend(g.close_all());
        out
    }

    #[test]
    fn one_outlier_does_not_split_but_two_do() {
        let mut g = Grouper::new("c", config(), "r");
        let items = vec![
            input(1, 0, 0, "a"),
            input(2, 10, 0, "a"),
            input(3, 20, 1, "b"),
            input(4, 30, 0, "a"),
            input(5, 40, 1, "b"),
            input(6, 50, 1, "b2"),
            input(7, 60, 1, "b"),
        ];
        let events = run(&mut g, items);
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].frame_count, 4);
        assert_eq!(events[0].last_entry, EntryId::new(4, 0));
        assert_eq!(events[1].frame_count, 3);
        assert_eq!(events[1].first_entry, EntryId::new(5, 0));
        assert_eq!(events[0].caption, "a");
    }

    #[test]
    fn a_long_gap_closes_and_max_duration_continues_with_a_link() {
        let mut g = Grouper::new("c", config(), "r");
        let mut items = vec![input(1, 0, 0, "a"), input(2, 100, 0, "a")];
        for (n, t) in (110..=500).step_by(10).enumerate() {
            items.push(input(3 + n as u64, t, 0, "a"));
        }
        let events = run(&mut g, items);
        assert_eq!(
            events[0].frame_count, 1,
            "the 100 s gap closes the first event"
        );
        assert_eq!(events[1].previous_event_id, None);
        assert_eq!(
            events[2].previous_event_id.as_deref(),
            Some(events[1].id.as_str())
        );
        assert!(events.iter().all(|e| e.duration_ms() <= 300_000));
        let frames: u64 = events.iter().map(|e| e.frame_count).sum();
        assert_eq!(frames, 2 + (110..=500).step_by(10).count() as u64);
    }

    /// `n` captions of one scene every 10 s, entries from `first` on, starting at `from_s`.
    fn scene_run(first: u64, from_s: i64, n: u64, scene: usize, text: &str) -> Vec<GroupInput> {
        (0..n)
            .map(|i| input(first + i, from_s + i as i64 * 10, scene, text))
            .collect()
    }

    /// The seed's 60 s minimum duration.
    fn seed_config() -> GroupingConfig {
        GroupingConfig {
            min_duration_ms: 60_000,
            ..GroupingConfig::default()
        }
    }

    #[test]
    fn an_outlier_ending_a_scene_stays_with_it_instead_of_opening_the_next_event() {
        let mut g = Grouper::new("c", seed_config(), "r");
        let mut items = scene_run(1, 0, 8, 0, "a");
        items.push(input(9, 80, 2, "outlier"));
        items.extend(scene_run(10, 90, 8, 1, "b"));
        let events = run(&mut g, items);
        assert_eq!(events.len(), 2, "{events:?}");
        assert_eq!(events[0].last_entry, EntryId::new(9, 0));
        assert_eq!(events[0].frame_count, 9);
        assert_eq!(events[1].first_entry, EntryId::new(10, 0));
        assert_eq!(events[1].id, event_id("c", EntryId::new(10, 0)));
        assert_eq!(events[1].frame_count, 8);
    }

    #[test]
    fn the_next_scenes_first_caption_starts_the_next_event_whatever_its_wording() {
        let mut g = Grouper::new("c", seed_config(), "r");
        let mut items = scene_run(1, 0, 8, 0, "a");
        items.push(input(9, 80, 1, "b worded once"));
        items.extend(scene_run(10, 90, 8, 1, "b"));
        let events = run(&mut g, items);
        assert_eq!(events.len(), 2, "{events:?}");
        assert_eq!(events[0].last_entry, EntryId::new(8, 0));
        assert_eq!(events[1].first_entry, EntryId::new(9, 0));
        assert_eq!(events[1].id, event_id("c", EntryId::new(9, 0)));
        assert_eq!(events[1].frame_count, 9);
    }

    #[test]
    fn the_event_after_a_settled_split_is_the_one_a_pass_starting_there_makes() {
        // Held captions with their own wording: the next event is grouped again from them.
        let mut items = scene_run(1, 0, 8, 0, "a");
        items.push(input(9, 80, 1, "b once"));
        items.push(input(10, 90, 1, "b twice"));
        items.extend(scene_run(11, 100, 8, 1, "b"));
        let whole = run(&mut Grouper::new("c", seed_config(), "r"), items.clone());
        let from_there = run(
            &mut Grouper::new("c", seed_config(), "r"),
            items[8..].to_vec(),
        );
        assert_eq!(whole.len(), 2);
        assert_eq!(whole[1], from_there[0]);
        assert_eq!(whole[1].frame_count, 10);
    }

    /// A split whose regrouping confirms a second split before a gap, a close or the end of
    /// an event: every caption must end in exactly one event, in order.
    fn split_within_a_split() -> Vec<GroupInput> {
        let with = |i, ts_s, e: [f32; 4], text| GroupInput {
            embedding: Some(e.to_vec()),
            ..input(i, ts_s, 0, text)
        };
        let mut items = scene_run(1, 0, 8, 0, "a");
        items.push(input(9, 80, 1, "b"));
        items.push(with(10, 90, [0.0, 0.0, 1.0, 0.0], "c"));
        items.push(with(11, 100, [0.0, 0.0, 0.0, 1.0], "c"));
        items.push(with(12, 150, [0.0, 0.0, -0.8, 0.6], "v"));
        items.push(with(13, 160, [0.0, 0.0, -0.8, 0.6], "v"));
        items.push(with(14, 170, [0.0, 0.0, 0.0, 1.0], "d"));
        items
    }

    fn assert_partition(events: &[TierEvent], captions: u64) {
        let frames: u64 = events.iter().map(|e| e.frame_count).sum();
        assert_eq!(frames, captions, "{events:?}");
        for pair in events.windows(2) {
            assert!(pair[0].last_entry < pair[1].first_entry, "{events:?}");
        }
    }

    #[test]
    fn every_caption_lands_in_one_event_when_a_regrouping_splits_again() {
        let items = split_within_a_split();
        let n = items.len() as u64;
        assert_partition(
            &run(&mut Grouper::new("c", seed_config(), "r"), items.clone()),
            n,
        );

        let mut gap = items.clone();
        gap.push(input(15, 300, 0, "a"));
        assert_partition(&run(&mut Grouper::new("c", seed_config(), "r"), gap), n + 1);

        let mut long = items.clone();
        long.push(input(15, 230, 3, "v"));
        let short_events = GroupingConfig {
            max_duration_ms: 120_000,
            ..seed_config()
        };
        assert_partition(&run(&mut Grouper::new("c", short_events, "r"), long), n + 1);

        let mut g = Grouper::new("c", seed_config(), "r");
        let mut events = Vec::new();
        for i in items {
            events.extend(g.push(i));
        }
        events.extend(g.settle_split());
        events.extend(g.close_all());
        assert_partition(&events, n);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// A caption: seconds since the previous one, a direction (one of six, some alike, one
        /// opposite) and one of three wordings.
        fn caption() -> impl Strategy<Value = (i64, usize, usize)> {
            (1i64..120, 0usize..6, 0usize..3)
        }

        const DIRECTIONS: [[f32; 4]; 6] = [
            [1.0, 0.0, 0.0, 0.0],
            [0.0, 1.0, 0.0, 0.0],
            [0.0, 0.0, 1.0, 0.0],
            [0.0, 0.0, 0.0, 1.0],
            [0.7, 0.7, 0.0, 0.0],
            [0.0, 0.0, -0.8, 0.6],
        ];

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            /// Whatever the captions and settings, and wherever a pass settles its split, every
            /// caption ends in exactly one event and events follow each other in time.
            #[test]
            fn every_caption_lands_in_exactly_one_event(
                captions in prop::collection::vec(caption(), 1..80),
                split_confirm in 1usize..4,
                min_duration_s in prop::sample::select(vec![0i64, 30, 60]),
                max_duration_s in prop::sample::select(vec![90i64, 300]),
                settle_at in 0usize..80,
            ) {
                let config = GroupingConfig {
                    split_confirm,
                    min_duration_ms: min_duration_s * 1000,
                    max_duration_ms: max_duration_s * 1000,
                    ..GroupingConfig::default()
                };
                let mut g = Grouper::new("c", config, "r");
                let mut events = Vec::new();
                let mut t = 0;
                for (i, (dt, direction, wording)) in captions.iter().enumerate() {
                    t += dt;
                    events.extend(g.push(GroupInput {
                        embedding: Some(DIRECTIONS[*direction].to_vec()),
                        ..input(i as u64 + 1, t, 0, &format!("{direction}/{wording}"))
                    }));
                    if i == settle_at {
                        events.extend(g.settle_split());
                    }
                }
                events.extend(g.close_all());
                let frames: u64 = events.iter().map(|e| e.frame_count).sum();
                prop_assert_eq!(frames, captions.len() as u64);
                for pair in events.windows(2) {
                    prop_assert!(pair[0].last_entry < pair[1].first_entry);
                }
                for e in &events {
                    prop_assert!(e.end_ms - e.start_ms <= max_duration_s * 1000);
                }
            }
        }
    }

    #[test]
    fn a_split_awaiting_the_next_events_captions_is_settled_before_a_snapshot() {
        let mut g = Grouper::new("c", seed_config(), "r");
        let mut items = scene_run(1, 0, 8, 0, "a");
        items.extend(scene_run(9, 80, 3, 1, "b"));
        let mut closed = Vec::new();
        for i in items {
            closed.extend(g.push(i));
        }
        assert!(
            closed.is_empty(),
            "the split waits for the next event's captions"
        );
        assert!(
            g.snapshot_open().is_none(),
            "no snapshot while a split is unsettled"
        );
        let settled = g.settle_split();
        assert_eq!(settled.len(), 1);
        assert_eq!(settled[0].last_entry, EntryId::new(8, 0));
        let (open, _) = g.snapshot_open().expect("the next event is open");
        assert_eq!(open.first_entry, EntryId::new(9, 0));
        assert_eq!(open.frame_count, 3);
    }

    /// Regression (issue 12): with the seed's 60 s `min_duration`, a scene shorter than that
    /// used to be glued to the next one. A 20 s scene between two long ones stays its own event
    /// — whether it has three captions or only two — with the default settings.
    #[test]
    fn a_short_distinct_scene_between_long_ones_stays_its_own_event() {
        for short in [3, 2] {
            let mut items = scene_run(1, 0, 12, 0, "empty lot");
            items.extend(scene_run(13, 120, short, 1, "person climbing the gate"));
            let next = 13 + short;
            items.extend(scene_run(
                next,
                120 + short as i64 * 10,
                12,
                2,
                "van at the gate",
            ));
            let events = run(
                &mut Grouper::new("c", GroupingConfig::default(), "r"),
                items,
            );
            let texts: Vec<(&str, u64)> = events
                .iter()
                .map(|e| (e.caption.as_str(), e.frame_count))
                .collect();
            assert_eq!(
                texts,
                vec![
                    ("empty lot", 12),
                    ("person climbing the gate", short),
                    ("van at the gate", 12)
                ],
                "{short} captions"
            );
        }
    }

    /// Wherever the short scene falls — also where the long scene reaches `max_duration` and a
    /// continuation starts — it stays its own event, and no event mixes the scenes.
    #[test]
    fn a_short_scene_stays_its_own_event_wherever_it_falls() {
        for short in [2, 3] {
            for at in (100..=420).step_by(10) {
                let n_before = at / 10;
                let mut items = scene_run(1, 0, n_before, 0, "empty lot");
                let first_short = 1 + n_before;
                items.extend(scene_run(
                    first_short,
                    at as i64,
                    short,
                    1,
                    "person climbing the gate",
                ));
                items.extend(scene_run(
                    first_short + short,
                    at as i64 + short as i64 * 10,
                    30,
                    0,
                    "empty lot",
                ));
                let events = run(
                    &mut Grouper::new("c", GroupingConfig::default(), "r"),
                    items,
                );
                let gate: Vec<&TierEvent> = events
                    .iter()
                    .filter(|e| e.captions.iter().any(|c| c.text.contains("gate")))
                    .collect();
                assert_eq!(gate.len(), 1, "{short} captions at {at} s: {events:?}");
                assert_eq!(
                    gate[0].captions.len(),
                    1,
                    "{short} captions at {at} s: the gate is glued: {events:?}"
                );
                assert_eq!(gate[0].frame_count, short);
            }
        }
    }

    /// A scene that starts with a short one of its own is not glued to it either.
    #[test]
    fn a_short_first_scene_is_not_merged_into_the_next() {
        let mut items = scene_run(1, 0, 2, 1, "person climbing the gate");
        items.extend(scene_run(3, 20, 12, 0, "empty lot"));
        let events = run(
            &mut Grouper::new("c", GroupingConfig::default(), "r"),
            items,
        );
        assert_eq!(events.len(), 2, "{events:?}");
        assert_eq!(events[0].frame_count, 2);
        assert_eq!(events[1].caption, "empty lot");
    }

    /// Repeated captions still make one event; and a young event split by two differently
    /// worded captions of the same scene (a false alarm: the event after the split is alike)
    /// is made whole again.
    #[test]
    fn repeated_captions_merge_and_a_young_false_split_is_undone() {
        let events = run(
            &mut Grouper::new("c", GroupingConfig::default(), "r"),
            scene_run(1, 0, 20, 0, "empty lot"),
        );
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].frame_count, 20);

        let with = |i, ts_s, e: [f32; 4], text| GroupInput {
            embedding: Some(e.to_vec()),
            ..input(i, ts_s, 0, text)
        };
        // Two wordings whose vectors are below the threshold of each other, both near the
        // scene's mean.
        let mut items = vec![
            with(1, 0, [1.0, 0.0, 0.0, 0.0], "lot"),
            with(2, 10, [1.0, 0.0, 0.0, 0.0], "lot"),
            with(3, 20, [0.45, 0.9, 0.0, 0.0], "car park"),
            with(4, 30, [0.45, 0.9, 0.0, 0.0], "car park"),
        ];
        for i in 0..7 {
            let e = if i % 2 == 0 {
                [1.0, 0.0, 0.0, 0.0]
            } else {
                [0.45, 0.9, 0.0, 0.0]
            };
            items.push(with(5 + i, 40 + i as i64 * 10, e, "lot or car park"));
        }
        let events = run(
            &mut Grouper::new("c", GroupingConfig::default(), "r"),
            items.clone(),
        );
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0].frame_count, 11);
        // Past `min_duration` the same split stands.
        let late: Vec<GroupInput> = scene_run(100, -200, 20, 0, "lot")
            .into_iter()
            .chain(items.into_iter().skip(2))
            .collect();
        let events = run(&mut Grouper::new("c", GroupingConfig::default(), "r"), late);
        assert_eq!(events.len(), 2, "{events:?}");
    }

    /// A continuation after `max_duration` is the same scene: it goes on comparing captions with
    /// the scene's centroid, not with its own first caption alone, so a wording the scene used
    /// all along does not split it.
    #[test]
    fn a_continuation_keeps_the_wordings_its_scene_had() {
        let with = |i, ts_s, e: [f32; 4], text| GroupInput {
            embedding: Some(e.to_vec()),
            ..input(i, ts_s, 0, text)
        };
        let lot = [1.0, 0.0, 0.0, 0.0];
        // Between the two wordings: similar to both (0.85), while they are 0.45 apart.
        let mixed = [0.85, 0.53, 0.0, 0.0];
        let car_park = [0.45, 0.9, 0.0, 0.0];
        let mut items: Vec<GroupInput> = (0..=30)
            .map(|i| {
                let e = if i % 2 == 0 { lot } else { mixed };
                with(
                    i + 1,
                    i as i64 * 10,
                    e,
                    if i % 2 == 0 { "lot" } else { "mixed" },
                )
            })
            .collect();
        items.push(with(32, 310, lot, "lot"));
        items.push(with(33, 320, car_park, "car park"));
        items.push(with(34, 330, car_park, "car park"));
        for i in 0..6 {
            items.push(with(35 + i, 340 + i as i64 * 10, lot, "lot"));
        }
        let events = run(
            &mut Grouper::new("c", GroupingConfig::default(), "r"),
            items,
        );
        assert_eq!(events.len(), 2, "{events:?}");
        assert_eq!(
            events[1].previous_event_id.as_deref(),
            Some(events[0].id.as_str())
        );
        assert_eq!(events[1].frame_count, 9);
    }

    /// The next scene's first caption, worded unlike the rest of it but closer to it than to the
    /// scene before, does not end the event before (it stays on the next scene's side).
    #[test]
    fn the_next_scenes_oddly_worded_first_caption_is_not_given_to_the_scene_before() {
        let mut items = scene_run(1, 0, 12, 0, "empty lot");
        items.push(GroupInput {
            embedding: Some(vec![0.0, 0.2, 0.0, 0.98]),
            ..input(13, 120, 1, "someone by a van")
        });
        items.extend(scene_run(14, 130, 10, 1, "van at the gate"));
        let events = run(
            &mut Grouper::new("c", GroupingConfig::default(), "r"),
            items,
        );
        assert_eq!(events[0].frame_count, 12, "{events:?}");
        assert_eq!(events[0].last_entry, EntryId::new(12, 0));
        assert_eq!(events[1].first_entry, EntryId::new(13, 0));
        let frames: u64 = events[1..].iter().map(|e| e.frame_count).sum();
        assert_eq!(frames, 11);
    }

    #[test]
    fn continuations_split_on_similarity_at_once() {
        let cfg = GroupingConfig {
            min_duration_ms: 60_000,
            ..GroupingConfig::default()
        };
        let mut g = Grouper::new("c", cfg, "r");
        // 310 s of scene 0 → a continuation starts at 310 s; scene 1 arrives 20 s later.
        let mut items: Vec<GroupInput> = (0..32).map(|i| input(i, i as i64 * 10, 0, "a")).collect();
        items.push(input(32, 320, 1, "b"));
        items.push(input(33, 330, 1, "b"));
        let events = run(&mut g, items);
        assert_eq!(events.len(), 3);
        assert_eq!(
            events[1].previous_event_id.as_deref(),
            Some(events[0].id.as_str())
        );
        assert_eq!(events[0].frame_count, 31);
        assert_eq!(
            events[1].frame_count, 1,
            "the continuation did not swallow scene 1"
        );
        assert_eq!(events[2].frame_count, 2);
    }

    #[test]
    fn identical_text_joins_without_an_embedding() {
        let mut g = Grouper::new("c", config(), "r");
        let mut a = input(1, 0, 0, "same");
        a.embedding = None;
        let mut b = input(2, 10, 0, "same");
        b.embedding = None;
        let events = run(&mut g, vec![a, b]);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].frame_count, 2);
        assert!(events[0].centroid.is_empty());
    }

    #[test]
    fn resumed_state_yields_the_same_event_as_one_pass() {
        let items: Vec<_> = (0..10).map(|i| input(i, i as i64 * 5, 0, "a")).collect();
        let mut whole = Grouper::new("c", config(), "r");
        let expected = run(&mut whole, items.clone());

        let mut first = Grouper::new("c", config(), "r");
        for i in items[..4].iter().cloned() {
            assert!(first.push(i).is_empty());
        }
        let (open_event, state) = first.snapshot_open().unwrap();
        assert_eq!(open_event.status, EventStatus::Open);
        let json = serde_json::to_string(&state).unwrap();
        let mut second = Grouper::resume(config(), "r", serde_json::from_str(&json).unwrap());
        let resumed = run(&mut second, items[4..].to_vec());
        assert_eq!(resumed, expected);
    }

    #[test]
    fn idle_events_close_only_after_max_gap() {
        let mut g = Grouper::new("c", config(), "r");
        assert!(g.push(input(1, 0, 0, "a")).is_empty());
        assert!(g.close_if_idle(30_000).is_empty());
        assert_eq!(g.close_if_idle(61_000).len(), 1);
        assert!(g.open().is_none());
    }

    #[test]
    fn config_validation_names_the_field() {
        let bad = GroupingConfig {
            similarity_threshold: 1.5,
            ..GroupingConfig::default()
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("similarity_threshold")
        );
        let bad = GroupingConfig {
            min_duration_ms: 400_000,
            ..GroupingConfig::default()
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("min_duration")
        );
        GroupingConfig::default().validate().unwrap();
    }
}
