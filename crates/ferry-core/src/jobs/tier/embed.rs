//! Sentence embedders: the trait, and the lexical one that needs no model.

use std::collections::HashMap;

/// An embedder failed.
#[derive(Debug, thiserror::Error)]
#[error("embedding failed: {0}")]
pub struct EmbedError(pub String);

/// Turns texts into L2-normalised vectors whose dot product is their cosine similarity.
pub trait Embedder: Send {
    /// The backend's name (`lexical`, `minilm`).
    fn name(&self) -> &'static str;
    /// The vector length.
    fn dim(&self) -> usize;
    /// One vector per text, in order.
    fn embed(&mut self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError>;
}

/// The lexical similarity backend: hashed word unigrams and bigrams plus character trigrams,
/// sublinear term weights, L2-normalised. Fast (no model) and good at wording variants of one
/// sentence; blind to synonyms.
#[derive(Debug, Clone)]
pub struct LexicalEmbedder {
    dim: usize,
}

/// Feature weights: words carry the meaning, trigrams catch inflections ("field"/"fields").
const WORD_WEIGHT: f32 = 1.0;
const BIGRAM_WEIGHT: f32 = 0.5;
const TRIGRAM_WEIGHT: f32 = 0.35;

/// Words too common in captions to say anything about the scene.
const STOP_WORDS: &[&str] = &[
    "a", "an", "the", "of", "in", "on", "at", "to", "is", "are", "and", "with", "by", "from",
    "into", "its", "it", "near", "some", "there",
];

impl LexicalEmbedder {
    /// A lexical embedder with `dim` hashed features (1024 is plenty for captions).
    pub fn new(dim: usize) -> Self {
        LexicalEmbedder { dim: dim.max(16) }
    }

    /// The vector of one text.
    pub fn vector(&self, text: &str) -> Vec<f32> {
        let mut counts: HashMap<usize, f32> = HashMap::new();
        let words: Vec<&str> = text
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty() && !STOP_WORDS.contains(w))
            .map(singular)
            .collect();
        let mut add = |kind: u8, feature: &[u8], weight: f32| {
            let slot = (hash(kind, feature) % self.dim as u32) as usize;
            *counts.entry(slot).or_default() += weight;
        };
        for word in &words {
            add(b'w', word.as_bytes(), WORD_WEIGHT);
            let padded: Vec<char> = format!(" {word} ").chars().collect();
            for gram in padded.windows(3) {
                let gram: String = gram.iter().collect();
                add(b't', gram.as_bytes(), TRIGRAM_WEIGHT);
            }
        }
        for pair in words.windows(2) {
            add(
                b'b',
                format!("{} {}", pair[0], pair[1]).as_bytes(),
                BIGRAM_WEIGHT,
            );
        }
        let mut v = vec![0f32; self.dim];
        for (slot, weight) in counts {
            v[slot] = 1.0 + weight.ln_1p();
        }
        normalize_l2(&mut v);
        v
    }
}

impl Default for LexicalEmbedder {
    fn default() -> Self {
        LexicalEmbedder::new(1024)
    }
}

impl Embedder for LexicalEmbedder {
    fn name(&self) -> &'static str {
        "lexical"
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn embed(&mut self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        Ok(texts.iter().map(|t| self.vector(t)).collect())
    }
}

/// A crude singular: "fields" → "field", "boxes" stays (only a plain trailing `s` goes).
fn singular(word: &str) -> &str {
    match word.strip_suffix('s') {
        Some(stem) if stem.len() >= 3 && !stem.ends_with('s') => stem,
        _ => word,
    }
}

/// CRC-32C of a feature, tagged by its kind: stable across versions and platforms.
fn hash(kind: u8, feature: &[u8]) -> u32 {
    const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);
    let mut digest = CRC.digest();
    digest.update(&[kind]);
    digest.update(feature);
    digest.finalize()
}

/// Scales `v` to unit length (left as is when it is all zeros).
pub fn normalize_l2(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

/// Cosine similarity of two vectors of any length (0 when either is all zeros or they differ in
/// length).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() || a.is_empty() {
        return 0.0;
    }
    let (mut dot, mut na, mut nb) = (0f32, 0f32, 0f32);
    for (x, y) in a.iter().zip(b) {
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na.sqrt() * nb.sqrt())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexical_vectors_are_unit_length_and_deterministic() {
        let e = LexicalEmbedder::default();
        let v = e.vector("man in fields");
        let norm: f32 = v.iter().map(|x| x * x).sum();
        assert!((norm - 1.0).abs() < 1e-5);
        assert_eq!(v, e.vector("man in fields"));
    }

    #[test]
    fn wording_variants_are_closer_than_different_scenes() {
        let e = LexicalEmbedder::default();
        let a = e.vector("man in fields");
        let b = e.vector("man in field");
        let c = e.vector("red car parked at the gate");
        assert!(cosine(&a, &b) > 0.7, "{}", cosine(&a, &b));
        assert!(cosine(&a, &c) < 0.2, "{}", cosine(&a, &c));
    }

    #[test]
    fn cosine_of_mismatched_or_zero_vectors_is_zero() {
        assert_eq!(cosine(&[1.0], &[1.0, 0.0]), 0.0);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 0.0]), 0.0);
    }
}
