//! Patterns as NFAs over bytes (a chain of byte classes) and what the load-time checks decide
//! on them: whether two patterns share a key, whether one pattern reads some key two ways; and
//! the cheap literal checks that spare building them.

use std::collections::{HashSet, VecDeque};

use super::pattern::{Pattern, Tok};

/// What one byte-position of a pattern accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Class {
    /// This byte only (a literal).
    Byte(u8),
    /// Any byte but `:` (a `{name}` placeholder).
    NotColon,
    /// Any byte (a `{name..}` placeholder).
    Any,
}

impl Class {
    /// Whether this position accepts byte `c`.
    pub(super) fn accepts(self, c: u8) -> bool {
        match self {
            Class::Byte(b) => b == c,
            Class::NotColon => c != b':',
            Class::Any => true,
        }
    }
}

/// The pattern as an NFA over a chain: element `i` leads from state `i` to `i + 1`, and a
/// placeholder's element also loops on state `i + 1` (one or more); state `len` accepts.
pub(super) fn chain(p: &Pattern) -> Vec<Class> {
    let mut out = Vec::new();
    for t in &p.toks {
        match t {
            Tok::Lit(l) => out.extend(l.iter().map(|&b| Class::Byte(b))),
            Tok::Cap { any, .. } => out.push(if *any { Class::Any } else { Class::NotColon }),
        }
    }
    out
}

/// The NFA states of `chain` reachable from state `s` on byte `c`.
pub(super) fn moves(chain: &[Class], s: usize, c: u8) -> impl Iterator<Item = usize> {
    let forward = chain.get(s).is_some_and(|e| e.accepts(c)).then_some(s + 1);
    let looping =
        (s > 0 && !matches!(chain[s - 1], Class::Byte(_)) && chain[s - 1].accepts(c)).then_some(s);
    forward.into_iter().chain(looping)
}

/// The alphabet partition two chains need: `:`, each literal byte, and one byte standing for
/// every other value (which all chains treat alike).
pub(super) fn alphabet_of(chains: &[&[Class]]) -> Vec<u8> {
    let mut alphabet: Vec<u8> = chains
        .iter()
        .copied()
        .flatten()
        .filter_map(|c| match c {
            Class::Byte(b) => Some(*b),
            _ => None,
        })
        .chain([b':'])
        .collect();
    alphabet.sort_unstable();
    alphabet.dedup();
    if let Some(other) = (0..=u8::MAX).find(|b| alphabet.binary_search(b).is_err()) {
        alphabet.push(other);
    }
    alphabet
}

/// Whether some key is accepted by both chains.
pub(super) fn intersect(a: &[Class], b: &[Class]) -> bool {
    let alphabet = alphabet_of(&[a, b]);
    let mut seen = HashSet::from([(0usize, 0usize)]);
    let mut queue = VecDeque::from([(0usize, 0usize)]);
    while let Some((sa, sb)) = queue.pop_front() {
        if sa == a.len() && sb == b.len() {
            return true;
        }
        for &c in &alphabet {
            for na in moves(a, sa, c) {
                for nb in moves(b, sb, c) {
                    if seen.insert((na, nb)) {
                        queue.push_back((na, nb));
                    }
                }
            }
        }
    }
    false
}

/// Whether some key is accepted by the chain along two different paths, i.e. read back into
/// two different sets of captures.
pub(super) fn ambiguous(chain: &[Class]) -> bool {
    let alphabet = alphabet_of(&[chain]);
    let start = (0usize, 0usize, false);
    let mut seen = HashSet::from([start]);
    let mut queue = VecDeque::from([start]);
    while let Some((s1, s2, split)) = queue.pop_front() {
        if split && s1 == chain.len() && s2 == chain.len() {
            return true;
        }
        for &c in &alphabet {
            for n1 in moves(chain, s1, c) {
                for n2 in moves(chain, s2, c) {
                    let next = (n1, n2, split || n1 != n2);
                    if seen.insert(next) {
                        queue.push_back(next);
                    }
                }
            }
        }
    }
    false
}

/// Whether two literal texts can both start (or both end) one key.
pub(super) fn compatible(a: &[u8], b: &[u8]) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// The bytes in reverse order, so that suffixes compare as prefixes.
pub(super) fn reversed(b: &[u8]) -> Vec<u8> {
    b.iter().rev().copied().collect()
}
