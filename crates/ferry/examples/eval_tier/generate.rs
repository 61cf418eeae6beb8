//! Generating a corpus's labelled caption streams: per camera a sequence of true scenes, each
//! frame captioned with one of the scene's paraphrases plus captioner noise, the odd outlier
//! and gaps, all from a seeded generator so every run sees the same data.

use ferry_core::jobs::tier::EntryId;
use ferry_core::jobs::tier::grouping::GroupInput;
use ferry_core::jobs::tier::normalize::Normalizer;

use crate::corpora::Corpus;

/// A small deterministic generator (xorshift), so every run sees the same data.
pub struct Rng(u64);

impl Rng {
    /// The next number.
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// A number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next() % 10_000) as f64 / 10_000.0 < p
    }
}

/// One generated caption and its truth.
pub struct Labelled {
    /// The caption as the grouping gets it (`norm` filled in by [`normalise`]).
    pub input: GroupInput,
    /// The camera's index.
    pub camera: usize,
    /// The true scene instance (unique over all cameras).
    pub scene_instance: usize,
    /// Whether the captioner described another scene for this frame.
    pub outlier: bool,
}

/// Captioner noise: boilerplate prefix, a dropped word, a trailing phrase, upper case.
fn noisy(rng: &mut Rng, corpus: &Corpus, text: &str) -> String {
    let mut words: Vec<&str> = text.split(' ').collect();
    if words.len() > 3 && rng.chance(0.2) {
        let i = rng.below(words.len() as u64) as usize;
        words.remove(i);
    }
    let mut s = format!(
        "{}{}",
        corpus.prefixes[rng.below(corpus.prefixes.len() as u64) as usize],
        words.join(" ")
    );
    if !corpus.suffixes.is_empty() && rng.chance(0.15) {
        s.push_str(corpus.suffixes[rng.below(corpus.suffixes.len() as u64) as usize]);
    }
    if rng.chance(0.1) {
        s = s.to_uppercase();
    }
    s
}

/// One stream of labelled captions per camera, each filming `scenes_per_camera` true scenes.
pub fn generate(
    corpus: &Corpus,
    cameras: usize,
    scenes_per_camera: usize,
    seed: u64,
    outliers: f64,
    min_scene_ms: u64,
    background: bool,
) -> Vec<Vec<Labelled>> {
    let mut rng = Rng(seed);
    let mut instance = 0;
    let mut out = Vec::new();
    for camera in 0..cameras {
        let mut t: i64 = 1_700_000_000_000;
        let mut seq = 0u64;
        let mut captions = Vec::new();
        let mut last_scene = usize::MAX;
        for _ in 0..scenes_per_camera {
            let scenes = corpus.scenes;
            let mut scene = rng.below(scenes.len() as u64) as usize;
            while scene == last_scene {
                scene = rng.below(scenes.len() as u64) as usize;
            }
            if background {
                // Every other scene is the camera's background (the corpus's first scene type).
                scene = if last_scene == 0 {
                    1 + rng.below(scenes.len() as u64 - 1) as usize
                } else {
                    0
                };
            }
            last_scene = scene;
            // Some scenes are longer than max_duration; with a background, the scenes between
            // are short (`--min-scene` to 60 s).
            let duration = if background && scene != 0 {
                (min_scene_ms + rng.below(60_000u64.saturating_sub(min_scene_ms).max(1))) as i64
            } else {
                corpus.duration(&mut rng, min_scene_ms) as i64
            };
            let end = t + duration;
            while t < end {
                let outlier = rng.chance(outliers);
                let text = if outlier {
                    // An outlier: the captioner describes something else for one frame.
                    let other = rng.below(scenes.len() as u64) as usize;
                    scenes[other][rng.below(scenes[other].len() as u64) as usize]
                } else {
                    scenes[scene][rng.below(scenes[scene].len() as u64) as usize]
                };
                captions.push(Labelled {
                    input: GroupInput {
                        entry: EntryId::new(t as u64, seq),
                        ts_ms: t,
                        text: noisy(&mut rng, corpus, text),
                        norm: String::new(),
                        embedding: None,
                    },
                    camera,
                    scene_instance: instance,
                    outlier,
                });
                seq += 1;
                let (lo, hi) = corpus.interval_ms;
                t += (lo + rng.below(hi - lo)) as i64;
            }
            instance += 1;
            // Sometimes the camera goes quiet for longer than max_gap.
            if rng.chance(0.2) {
                t += 90_000 + rng.below(120_000) as i64;
            }
        }
        out.push(captions);
    }
    out
}

/// Fills in every caption's normalised text.
pub fn normalise(streams: &mut [Vec<Labelled>], normalizer: &Normalizer) {
    for s in streams {
        for c in s.iter_mut() {
            c.input.norm = normalizer.normalize(&c.input.text);
        }
    }
}
