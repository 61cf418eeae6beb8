//! The labelled corpora: how one is shaped ([`Corpus`]), the three of them (one file each, their
//! scenes and framing phrases), and what `--corpus` names pick with their defaults.

mod other;
mod seed;
mod third;

use crate::generate::Rng;

/// A corpus as `--corpus` names it, with its generator seed and defaults.
pub struct Preset {
    /// The corpus.
    pub corpus: &'static Corpus,
    /// The generator's seed.
    pub seed: u64,
    /// Shortest scene, s, unless `--min-scene` says otherwise.
    pub default_min_scene: f64,
    /// Cameras, unless `--cameras` says otherwise.
    pub default_cameras: usize,
    /// True scenes each camera films.
    pub scenes_per_camera: usize,
}

/// The corpus `--corpus` names `name` (`seed`, `other`, `third`), or `None`.
pub fn preset(name: &str) -> Option<Preset> {
    let (corpus, seed, default_min_scene, default_cameras, scenes_per_camera) = match name {
        "seed" => (&seed::SEED_CORPUS, 0x5eed_cafe, 120.0, 40, 25),
        "other" => (&other::OTHER_CORPUS, 0x0dd_ba11, 10.0, 16, 40),
        "third" => (&third::THIRD_CORPUS, 0x3d_c0ffee, 10.0, 12, 45),
        _ => return None,
    };
    Some(Preset {
        corpus,
        seed,
        default_min_scene,
        default_cameras,
        scenes_per_camera,
    })
}

/// How one corpus is generated.
pub struct Corpus {
    pub name: &'static str,
    pub scenes: &'static [&'static [&'static str]],
    pub prefixes: &'static [&'static str],
    /// Scene length: `min_scene_ms` up to this, see [`Corpus::duration`].
    pub max_scene_ms: u64,
    /// Share of scenes drawn from `min_scene_ms`–60 s (the rest from 60 s up).
    pub short_scenes: f64,
    /// Time between captions, ms.
    pub interval_ms: (u64, u64),
    /// Captioner noise: a trailing phrase some captions get.
    pub suffixes: &'static [&'static str],
}

impl Corpus {
    /// A scene's length, ms: from `min_scene_ms` (or, for the share of long scenes, from 60 s)
    /// up to `max_scene_ms`.
    pub fn duration(&self, rng: &mut Rng, min_scene_ms: u64) -> u64 {
        let max = self.max_scene_ms.max(min_scene_ms + 1);
        if self.short_scenes > 0.0 && rng.chance(self.short_scenes) {
            let top = 60_000u64.max(min_scene_ms + 1);
            min_scene_ms + rng.below(top - min_scene_ms)
        } else {
            let from = if self.short_scenes > 0.0 {
                60_000u64.max(min_scene_ms).min(max - 1)
            } else {
                min_scene_ms
            };
            from + rng.below(max - from)
        }
    }
}
