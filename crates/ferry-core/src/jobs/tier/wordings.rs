//! Which wordings describe the same scene, learned from the events they share.
//!
//! A captioner describes one scene in a few alternating wordings ("customer paying at the
//! checkout counter", "a shopper pays the cashier at the till") that share almost no words, so a
//! lexical similarity keeps splitting the scene. Within the events a first grouping of a
//! camera's captions makes, those wordings keep meeting — the scene's events each hold several
//! of them — while a caption of another scene meets them only as a rare outlier. [`Wordings`]
//! counts, for each pair of normalised captions, the events that hold both; a pair that meets
//! in at least [`MIN_SHARE`] of the events of the more frequent one is related, with that share
//! as its weight. [`Wordings::mix`] then adds to a caption's vector, at [`RELATED_WEIGHT`], the
//! weighted mean of its related wordings' vectors.
//!
//! The table is learned per camera before a pass groups anything ([`Wordings::learn_from`]) and
//! kept with the camera, so a pass that is interrupted and run again groups with the same
//! vectors.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use super::embed::normalize_l2;
use super::grouping::GroupInput;
use super::{EntryId, Grouper, GroupingConfig};

/// Share of events (of the wording seen in more events) two wordings must meet in to be related.
pub const MIN_SHARE: f32 = 0.3;

/// Weight of the related wordings' mean in a mixed vector.
pub const RELATED_WEIGHT: f32 = 0.5;

/// Wordings one camera's table keeps; when more come, it starts over (learned again from the
/// next events).
pub const CAPACITY: usize = 4_000;

/// Vectors the learning keeps at once (wordings repeat; all distinct, they are made again).
const VECTOR_CACHE: usize = 4_096;

/// Events with more distinct wordings than this teach nothing (no single scene is worded that
/// many ways; they would only add pairs by the square).
pub const MAX_EVENT_WORDINGS: usize = 16;

/// Pair counts of wordings that met in events. Each wording's text is kept once; counts refer
/// to it by number, so the table stays small however long the captions are.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(from = "Stored", into = "Stored")]
pub struct Wordings {
    /// The wordings' texts; a wording's number is its position.
    texts: Vec<String>,
    /// The number of each text.
    ids: HashMap<String, u32>,
    /// Events each wording was seen in, by number.
    events: Vec<u32>,
    /// For each wording, the events it shared with each other wording.
    together: BTreeMap<u32, BTreeMap<u32, u32>>,
}

/// [`Wordings`] as stored (without the index of texts, rebuilt on load).
#[derive(Serialize, Deserialize)]
struct Stored {
    texts: Vec<String>,
    events: Vec<u32>,
    together: BTreeMap<u32, BTreeMap<u32, u32>>,
}

impl From<Stored> for Wordings {
    fn from(s: Stored) -> Self {
        let consistent = s.texts.len() == s.events.len()
            && s.together.iter().all(|(a, met)| {
                (*a as usize) < s.texts.len() && met.keys().all(|b| (*b as usize) < s.texts.len())
            });
        if !consistent {
            // Not a table Ferry wrote: learned again.
            return Wordings::default();
        }
        let ids = s
            .texts
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        Wordings {
            texts: s.texts,
            ids,
            events: s.events,
            together: s.together,
        }
    }
}

impl From<Wordings> for Stored {
    fn from(w: Wordings) -> Self {
        Stored {
            texts: w.texts,
            events: w.events,
            together: w.together,
        }
    }
}

impl Wordings {
    /// Whether nothing was learned yet.
    pub fn is_empty(&self) -> bool {
        self.texts.is_empty()
    }

    /// Wordings known.
    pub fn len(&self) -> usize {
        self.texts.len()
    }

    fn id(&mut self, text: &str) -> u32 {
        if let Some(&id) = self.ids.get(text) {
            return id;
        }
        let id = self.texts.len() as u32;
        self.texts.push(text.to_string());
        self.ids.insert(text.to_string(), id);
        self.events.push(0);
        id
    }

    /// Counts the distinct wordings of one event (an event of more than [`MAX_EVENT_WORDINGS`]
    /// is skipped).
    pub fn learn(&mut self, wordings: &[&str]) {
        let distinct: BTreeSet<&str> = wordings.iter().copied().collect();
        if distinct.len() > MAX_EVENT_WORDINGS {
            return;
        }
        let new = distinct
            .iter()
            .filter(|w| !self.ids.contains_key(**w))
            .count();
        if self.texts.len() + new > CAPACITY {
            *self = Wordings::default();
        }
        let ids: Vec<u32> = distinct.iter().map(|w| self.id(w)).collect();
        for &a in &ids {
            self.events[a as usize] += 1;
        }
        if ids.len() < 2 {
            return;
        }
        for &a in &ids {
            let met = self.together.entry(a).or_default();
            for &b in ids.iter().filter(|b| **b != a) {
                *met.entry(b).or_default() += 1;
            }
        }
    }

    /// The wordings related to `wording`, with the share of events they met in, in the order
    /// they were first seen.
    pub fn related(&self, wording: &str) -> Vec<(&str, f32)> {
        let Some(&a) = self.ids.get(wording) else {
            return Vec::new();
        };
        let Some(met) = self.together.get(&a) else {
            return Vec::new();
        };
        let own = self.events[a as usize];
        met.iter()
            .filter_map(|(&b, &n)| {
                let theirs = self.events[b as usize];
                let share = n as f32 / own.max(theirs).max(1) as f32;
                (share >= MIN_SHARE).then_some((self.texts[b as usize].as_str(), share))
            })
            .collect()
    }

    /// Groups `captions` (one camera's, in order: entry, time and normalised text; `plain` gives
    /// a text's plain vector) as a pass would and counts the wordings each event holds; then
    /// groups them again with the vectors mixed by what the first grouping showed (wordings that
    /// only met through a third one meet now) and counts that grouping's events instead.
    /// Vectors are made as captions are pushed, so memory stays that of one open event.
    pub fn learn_from(
        &mut self,
        config: &GroupingConfig,
        captions: &[(EntryId, i64, &str)],
        plain: impl Fn(&str) -> Vec<f32>,
    ) {
        // Wordings repeat: their vectors are made once (a bounded cache).
        let cache = std::cell::RefCell::new(HashMap::<String, Vec<f32>>::new());
        let cached = |t: &str| -> Vec<f32> {
            if let Some(v) = cache.borrow().get(t) {
                return v.clone();
            }
            let v = plain(t);
            let mut c = cache.borrow_mut();
            if c.len() >= VECTOR_CACHE {
                c.clear();
            }
            c.insert(t.to_string(), v.clone());
            v
        };
        let mut first = self.clone();
        first.count_events(config, captions, cached);
        let mixed = std::cell::RefCell::new(HashMap::<String, Vec<f32>>::new());
        self.count_events(config, captions, |t| {
            if let Some(v) = mixed.borrow().get(t) {
                return v.clone();
            }
            let v = first.mix(t, &cached(t), cached);
            let mut m = mixed.borrow_mut();
            if m.len() >= VECTOR_CACHE {
                m.clear();
            }
            m.insert(t.to_string(), v.clone());
            v
        });
    }

    fn count_events(
        &mut self,
        config: &GroupingConfig,
        captions: &[(EntryId, i64, &str)],
        vector: impl Fn(&str) -> Vec<f32>,
    ) {
        let mut grouper = Grouper::new("learning", config.clone(), "learning");
        let count = |event: &super::TierEvent, table: &mut Wordings| {
            let from = captions.partition_point(|c| c.0 < event.first_entry);
            let to = captions.partition_point(|c| c.0 <= event.last_entry);
            let held: Vec<&str> = captions[from..to].iter().map(|c| c.2).collect();
            table.learn(&held);
        };
        for &(entry, ts_ms, norm) in captions {
            let closed = grouper.push(GroupInput {
                entry,
                ts_ms,
                text: String::new(),
                norm: norm.to_string(),
                embedding: Some(vector(norm)),
            });
            for event in &closed {
                count(event, self);
            }
        }
        for event in &grouper.close_all() {
            count(event, self);
        }
    }

    /// `own` (the plain vector of `wording`) plus the weighted mean of its related wordings'
    /// plain vectors (`plain` gives them), unit length; `own` unchanged when none is related.
    pub fn mix(&self, wording: &str, own: &[f32], plain: impl Fn(&str) -> Vec<f32>) -> Vec<f32> {
        let mut related = vec![0f32; own.len()];
        let mut any = false;
        for (other, share) in self.related(wording) {
            let v = plain(other);
            if v.len() == own.len() {
                related
                    .iter_mut()
                    .zip(&v)
                    .for_each(|(r, x)| *r += share * x);
                any = true;
            }
        }
        if !any {
            return own.to_vec();
        }
        normalize_l2(&mut related);
        let mut mixed: Vec<f32> = own
            .iter()
            .zip(&related)
            .map(|(o, r)| o + RELATED_WEIGHT * r)
            .collect();
        normalize_l2(&mut mixed);
        mixed
    }
}

/// A camera's table as kept between passes, with whether the pass that learned it finished.
///
/// A pass learns before it groups and keeps the table unfinished until its last commit: a pass
/// run again after an interruption finds it unfinished and groups with the same table (so with
/// the same vectors) instead of learning from what is left.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CameraWordings {
    /// The pass that learned it ended.
    pub pass_finished: bool,
    /// The last entry the learning read (`ms-seq`): a pass that finds the table unfinished
    /// uses it as it is only when nothing came after.
    #[serde(default)]
    pub learned_until: Option<String>,
    /// The table.
    pub wordings: Wordings,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::tier::embed::cosine;

    #[test]
    fn wordings_that_keep_meeting_are_related_and_a_rare_outlier_is_not() {
        let mut w = Wordings::default();
        for i in 0..10 {
            if i % 5 == 0 {
                // Once in a while an outlier of another scene is absorbed.
                w.learn(&["empty lot", "vacant car park", "person at the gate"]);
            } else {
                w.learn(&["empty lot", "vacant car park"]);
            }
            w.learn(&["person at the gate", "someone climbing the fence"]);
        }
        assert_eq!(w.related("empty lot"), vec![("vacant car park", 1.0)]);
        let gate = w.related("person at the gate");
        assert_eq!(gate.len(), 1, "{gate:?}");
        assert_eq!(gate[0].0, "someone climbing the fence");
        assert!(w.related("unknown").is_empty());
    }

    #[test]
    fn a_full_table_starts_over() {
        let mut w = Wordings::default();
        for i in 0..CAPACITY / 2 {
            w.learn(&[&format!("a{i}"), &format!("b{i}")]);
        }
        assert_eq!(w.len(), CAPACITY);
        w.learn(&["x", "y"]);
        assert_eq!(w.len(), 2);
        assert_eq!(w.related("x"), vec![("y", 1.0)]);
    }

    fn caption(i: u64, norm: &str) -> (EntryId, i64, &str) {
        (EntryId::new(i, 0), i as i64 * 10_000, norm)
    }

    /// Two wordings of one scene that are unlike each other (0.45) but alternate within its
    /// events come out alike once mixed; a short scene between keeps its own vector.
    #[test]
    fn alternating_wordings_are_learned_and_mixed_alike() {
        let lot = [1.0, 0.0, 0.0, 0.0];
        let park = [0.45, 0.9, 0.0, 0.0];
        let gate = [0.0, 0.0, 1.0, 0.0];
        let mut captions: Vec<(EntryId, i64, &str)> = Vec::new();
        for i in 0..30 {
            let n = if i % 3 == 2 { "car park" } else { "lot" };
            captions.push(caption(i, n));
        }
        captions.push(caption(30, "gate"));
        captions.push(caption(31, "gate"));
        for i in 32..40 {
            captions.push(caption(i, "lot"));
        }
        let plain = |t: &str| match t {
            "lot" => lot.to_vec(),
            "car park" => park.to_vec(),
            _ => gate.to_vec(),
        };
        let mut w = Wordings::default();
        w.learn_from(&GroupingConfig::default(), &captions, plain);
        let mixed_lot = w.mix("lot", &lot, plain);
        let mixed_park = w.mix("car park", &park, plain);
        assert!(
            cosine(&mixed_lot, &mixed_park) > cosine(&lot, &park) + 0.2,
            "{} vs {}",
            cosine(&mixed_lot, &mixed_park),
            cosine(&lot, &park)
        );
        assert_eq!(w.mix("gate", &gate, plain), gate.to_vec());
    }
}
