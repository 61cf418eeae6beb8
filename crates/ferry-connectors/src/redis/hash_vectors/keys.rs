//! The keys of a Redis hash source, held sorted by id: an id is the key's text after the
//! pattern's literal prefix, an integer when it is a canonical `i64` (`42`, not `042` or
//! `+42`), a string otherwise.

use std::hash::{BuildHasher, Hasher};

use ferry_core::jobs::vectors::{IdKind, IdRange, VectorId};

/// The literal start of a glob: the bytes before its first `*`, `?`, `[` or `\`.
pub(super) fn literal_prefix(pattern: &str) -> &str {
    let end = pattern.find(['*', '?', '[', '\\']).unwrap_or(pattern.len());
    &pattern[..end]
}

/// Whether `key` matches the Redis glob `pattern` (`*`, `?`, `[abc]`, `[^a-z]`, `\x`).
pub(super) fn glob_match(pattern: &[u8], key: &[u8]) -> bool {
    match pattern.split_first() {
        None => key.is_empty(),
        Some((b'*', rest)) => (0..=key.len()).any(|i| glob_match(rest, &key[i..])),
        Some((b'?', rest)) => !key.is_empty() && glob_match(rest, &key[1..]),
        Some((b'[', rest)) => match (class_match(rest, key.first().copied()), key.len()) {
            (Some((true, after)), n) if n > 0 => glob_match(after, &key[1..]),
            _ => false,
        },
        Some((b'\\', rest)) if !rest.is_empty() => {
            key.first() == Some(&rest[0]) && glob_match(&rest[1..], &key[1..])
        }
        Some((&c, rest)) => key.first() == Some(&c) && glob_match(rest, &key[1..]),
    }
}

/// Matches `c` against the class after `[`; returns whether it matched and the rest of the
/// pattern after `]` (an unclosed class runs to the end, as in Redis).
fn class_match(class: &[u8], c: Option<u8>) -> Option<(bool, &[u8])> {
    let c = c?;
    let (negate, mut p) = match class.first() {
        Some(b'^') => (true, &class[1..]),
        _ => (false, class),
    };
    let mut matched = false;
    loop {
        match p {
            [] => break,
            [b']', rest @ ..] => {
                p = rest;
                break;
            }
            [b'\\', x, rest @ ..] => {
                matched |= *x == c;
                p = rest;
            }
            [a, b'-', z, rest @ ..] if *z != b']' => {
                let (lo, hi) = if a <= z { (*a, *z) } else { (*z, *a) };
                matched |= (lo..=hi).contains(&c);
                p = rest;
            }
            [x, rest @ ..] => {
                matched |= *x == c;
                p = rest;
            }
        }
    }
    Some((matched != negate, p))
}

/// The id a key's text after the prefix stands for.
pub(super) fn id_from_text(text: &str) -> VectorId {
    match text.parse::<i64>() {
        Ok(n) if n.to_string() == text => VectorId::Int(n),
        _ => VectorId::Str(text.to_string()),
    }
}

/// The text after the prefix of the key of `id` (`None` for a string id that reads as an
/// integer: that key's id is the integer).
pub(super) fn id_text(id: &VectorId) -> Option<String> {
    match id {
        VectorId::Int(n) => Some(n.to_string()),
        VectorId::Str(s) => match id_from_text(s) {
            VectorId::Str(_) => Some(s.clone()),
            VectorId::Int(_) => None,
        },
    }
}

/// Every key of the source, sorted by id, listed once.
#[derive(Default)]
pub(super) struct KeyIndex {
    ints: Vec<(i64, Vec<u8>)>,
    strs: Vec<(String, Vec<u8>)>,
    /// Keys whose id is not UTF-8: skipped.
    pub not_utf8: u64,
}

impl KeyIndex {
    /// Sorts `keys` (which all start with `prefix`; SCAN may list a key twice) by id.
    pub fn build(prefix: &[u8], keys: Vec<Vec<u8>>) -> Self {
        let mut index = KeyIndex::default();
        for key in keys {
            let Some(rest) = key.strip_prefix(prefix) else {
                continue;
            };
            match std::str::from_utf8(rest).map(id_from_text) {
                Ok(VectorId::Int(n)) => index.ints.push((n, key)),
                Ok(VectorId::Str(s)) => index.strs.push((s, key)),
                Err(_) => index.not_utf8 += 1,
            }
        }
        index.ints.sort_unstable();
        index.ints.dedup();
        index
            .strs
            .sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        index.strs.dedup();
        index
    }

    /// Items with an integer id and with a string id.
    pub fn counts(&self) -> (u64, u64) {
        (self.ints.len() as u64, self.strs.len() as u64)
    }

    /// Every key, in id order.
    pub fn keys(&self) -> impl Iterator<Item = &[u8]> {
        let ints = self.ints.iter().map(|(_, k)| k.as_slice());
        ints.chain(self.strs.iter().map(|(_, k)| k.as_slice()))
    }

    /// Up to `limit` ids of `range` in order, with their keys.
    pub fn range(&self, range: &IdRange, limit: usize) -> Vec<(VectorId, &[u8])> {
        fn slice<T: Clone>(
            items: &[(T, Vec<u8>)],
            after: impl Fn(&T) -> bool,
            upto: impl Fn(&T) -> bool,
            limit: usize,
            id: impl Fn(&T) -> VectorId,
        ) -> Vec<(VectorId, &[u8])> {
            let start = items.partition_point(|(x, _)| !after(x));
            let end = items.partition_point(|(x, _)| upto(x)).max(start);
            items[start..end]
                .iter()
                .take(limit)
                .map(|(x, k)| (id(x), k.as_slice()))
                .collect()
        }
        let (after, upto) = (range.after.as_ref(), range.upto.as_ref());
        match range.kind {
            IdKind::Int => slice(
                &self.ints,
                |n| after.is_none_or(|a| &VectorId::Int(*n) > a),
                |n| upto.is_none_or(|u| &VectorId::Int(*n) <= u),
                limit,
                |n| VectorId::Int(*n),
            ),
            IdKind::Str => slice(
                &self.strs,
                |s| after.is_none_or(|a| VectorId::Str(s.clone()) > *a),
                |s| upto.is_none_or(|u| VectorId::Str(s.clone()) <= *u),
                limit,
                |s| VectorId::Str(s.clone()),
            ),
        }
    }

    /// Up to `n` distinct ids picked at random.
    pub fn sample(&self, n: usize) -> Vec<VectorId> {
        let total = self.ints.len() + self.strs.len();
        let id = |i: usize| match self.ints.get(i) {
            Some((n, _)) => VectorId::Int(*n),
            None => VectorId::Str(self.strs[i - self.ints.len()].0.clone()),
        };
        if n >= total {
            return (0..total).map(id).collect();
        }
        // Floyd's algorithm: n distinct positions, seeded from the process's random state.
        let mut seed = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish()
            | 1;
        let mut next = |bound: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % bound as u64) as usize
        };
        let mut picked = std::collections::BTreeSet::new();
        for j in total - n..total {
            let t = next(j + 1);
            if !picked.insert(t) {
                picked.insert(j);
            }
        }
        picked.into_iter().map(id).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_and_globs_follow_redis() {
        assert_eq!(literal_prefix("media:*"), "media:");
        assert_eq!(literal_prefix("a?b"), "a");
        assert_eq!(literal_prefix("x\\*y*"), "x");
        assert_eq!(literal_prefix("plain"), "plain");
        for (pattern, key, ok) in [
            ("media:*", "media:7", true),
            ("media:*", "medi:7", false),
            ("media:*:v", "media:7:v", true),
            ("media:*:v", "media:7:w", false),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("[a-c]x", "bx", true),
            ("[^a-c]x", "bx", false),
            ("[^a-c]x", "dx", true),
            ("[\\]]", "]", true),
            ("a\\*", "a*", true),
            ("a\\*", "ab", false),
        ] {
            assert_eq!(
                glob_match(pattern.as_bytes(), key.as_bytes()),
                ok,
                "{pattern} {key}"
            );
        }
    }

    #[test]
    fn canonical_integers_are_integer_ids() {
        assert_eq!(id_from_text("42"), VectorId::Int(42));
        assert_eq!(id_from_text("-7"), VectorId::Int(-7));
        for s in ["042", "+5", "-0", "", " 1", "9223372036854775808", "1.0"] {
            assert_eq!(id_from_text(s), VectorId::from(s), "{s}");
        }
        assert_eq!(id_text(&VectorId::Int(-3)).as_deref(), Some("-3"));
        assert_eq!(id_text(&VectorId::from("42")), None);
        assert_eq!(id_text(&VectorId::from("042")).as_deref(), Some("042"));
    }

    #[test]
    fn ranges_slice_the_sorted_keys() {
        let keys = ["m:3", "m:-1", "m:b", "m:a", "m:10", "m:3", "m:\u{e9}"]
            .iter()
            .map(|k| k.as_bytes().to_vec())
            .chain([b"m:\xff".to_vec()])
            .collect();
        let index = KeyIndex::build(b"m:", keys);
        assert_eq!((index.counts(), index.not_utf8), ((3, 3), 1));
        let ids = |r: &IdRange, limit| {
            let v: Vec<VectorId> = index
                .range(r, limit)
                .into_iter()
                .map(|(id, _)| id)
                .collect();
            v
        };
        let all = IdRange::all(IdKind::Int);
        assert_eq!(
            ids(&all, 10),
            vec![VectorId::Int(-1), VectorId::Int(3), VectorId::Int(10)]
        );
        assert_eq!(
            ids(&all.after(VectorId::Int(-1)), 1),
            vec![VectorId::Int(3)]
        );
        let split = IdRange::split(IdKind::Str, &[VectorId::from("a")]);
        assert_eq!(ids(&split[0], 10), vec![VectorId::from("a")]);
        assert_eq!(
            ids(&split[1], 10),
            vec![VectorId::from("b"), VectorId::from("é")]
        );
        let empty = IdRange {
            kind: IdKind::Int,
            after: Some(VectorId::Int(5)),
            upto: Some(VectorId::Int(1)),
        };
        assert!(ids(&empty, 10).is_empty());
        let sample = index.sample(4);
        assert_eq!(sample.len(), 4);
        assert_eq!(index.sample(100).len(), 6);
    }
}
