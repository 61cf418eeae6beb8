//! The similarity backends and the embedding cache.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use ferry_core::jobs::tier::wordings::Wordings;
use ferry_core::jobs::tier::{EmbedError, Embedder, LexicalEmbedder};
use serde::{Deserialize, Serialize};

/// Which vectors captions are compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// all-MiniLM-L6-v2 in-process (candle, CPU).
    #[default]
    Minilm,
    /// The embedding stored with each caption.
    Provided,
    /// Hashed word and character n-grams: fast, no model.
    Lexical,
}

impl Backend {
    /// The name used in config, reports and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Minilm => "minilm",
            Backend::Provided => "provided",
            Backend::Lexical => "lexical",
        }
    }

    /// The default similarity threshold, calibrated with `scripts/eval-tier` (docs/tier.md).
    pub fn default_threshold(self) -> f32 {
        match self {
            Backend::Minilm => 0.45,
            // Assumes a sentence-embedding model like MiniLM; calibrate for yours.
            Backend::Provided => 0.45,
            Backend::Lexical => 0.6,
        }
    }
}

/// Most normalised texts kept in the embedding cache; it is emptied when full.
const CACHE_CAPACITY: usize = 50_000;

/// Embeds normalised caption texts with a cache (captions repeat a lot).
pub struct Similarity {
    backend: Backend,
    embedder: Option<Box<dyn Embedder>>,
    cache: HashMap<String, Arc<Vec<f32>>>,
}

impl std::fmt::Debug for Similarity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Similarity")
            .field("backend", &self.backend)
            .field("cached", &self.cache.len())
            .finish()
    }
}

/// A shared, lockable [`Similarity`] (embedding runs on a blocking thread).
pub type SharedSimilarity = Arc<Mutex<Similarity>>;

impl Similarity {
    /// Loads the backend (`minilm` reads the model from `model_dir`, `FERRY_MODEL_DIR` or the
    /// standard location).
    pub fn load(backend: Backend, model_dir: Option<PathBuf>) -> Result<Self, EmbedError> {
        let embedder: Option<Box<dyn Embedder>> = match backend {
            Backend::Lexical => Some(Box::new(LexicalEmbedder::default())),
            Backend::Provided => None,
            Backend::Minilm => {
                let dir = match model_dir {
                    Some(d) => d,
                    None => ferry_connectors::embed::MiniLm::locate()?,
                };
                Some(Box::new(ferry_connectors::embed::MiniLm::load(&dir)?))
            }
        };
        Ok(Similarity {
            backend,
            embedder,
            cache: HashMap::new(),
        })
    }

    /// The backend.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Embeds every text not yet cached (one batch), then returns the vectors in order. The
    /// `provided` backend returns `None` for every text.
    pub fn embed_all(&mut self, texts: &[&str]) -> Result<Vec<Option<Arc<Vec<f32>>>>, EmbedError> {
        let Some(embedder) = self.embedder.as_mut() else {
            return Ok(vec![None; texts.len()]);
        };
        let mut missing: Vec<&str> = texts
            .iter()
            .copied()
            .filter(|t| !self.cache.contains_key(*t))
            .collect();
        missing.sort_unstable();
        missing.dedup();
        if !missing.is_empty() {
            if self.cache.len() + missing.len() > CACHE_CAPACITY {
                self.cache.clear();
            }
            let vectors = embedder.embed(&missing)?;
            for (t, v) in missing.into_iter().zip(vectors) {
                self.cache.insert(t.to_string(), Arc::new(v));
            }
        }
        Ok(texts.iter().map(|t| self.cache.get(*t).cloned()).collect())
    }

    /// As [`Similarity::embed_all`], each vector mixed with its related wordings' (see
    /// [`Wordings::mix`]) when a table is given.
    pub fn embed_mixed(
        &mut self,
        texts: &[&str],
        wordings: Option<&Wordings>,
    ) -> Result<Vec<Option<Arc<Vec<f32>>>>, EmbedError> {
        let Some(wordings) = wordings.filter(|w| !w.is_empty()) else {
            return self.embed_all(texts);
        };
        // Embed the related wordings too, so that every vector a mix needs is cached.
        let mut all: Vec<&str> = texts.to_vec();
        for t in texts {
            all.extend(wordings.related(t).into_iter().map(|(other, _)| other));
        }
        self.embed_all(&all)?;
        let cache = &self.cache;
        let plain = |t: &str| cache.get(t).map(|v| v.to_vec()).unwrap_or_default();
        // A chunk repeats its wordings: each is mixed once.
        let mut mixed: HashMap<&str, Arc<Vec<f32>>> = HashMap::new();
        Ok(texts
            .iter()
            .map(|t| {
                if let Some(v) = mixed.get(t) {
                    return Some(v.clone());
                }
                let v = Arc::new(wordings.mix(t, cache.get(*t)?, plain));
                mixed.insert(t, v.clone());
                Some(v)
            })
            .collect())
    }
}
