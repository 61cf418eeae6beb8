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

use super::embed::cosine;
use super::{EntryId, EventStatus, TierEvent};

mod event;
pub use event::{DistinctCaption, OpenEventState};

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
mod tests;
