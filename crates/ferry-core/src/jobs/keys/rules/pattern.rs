//! Compiled patterns and templates: the matcher that fits a pattern to a whole key, and the
//! rendering of a template from what the match captured.

/// A piece of a compiled pattern or template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Tok {
    /// Literal bytes (never empty).
    Lit(Vec<u8>),
    /// A placeholder: the capture slot it fills or reads, and whether it may hold `:`.
    Cap { slot: usize, any: bool },
}

/// Capture slots kept on the stack; rules with more placeholders use the heap.
pub(super) const STACK_SLOTS: usize = 8;
/// Failure-memo words kept on the stack (one bit per token and key position).
const STACK_MEMO: usize = 64;

/// A compiled pattern, matched against the whole key.
#[derive(Debug, Clone)]
pub(super) struct Pattern {
    pub(super) toks: Vec<Tok>,
    /// Length of the capture buffer a match fills (highest slot + 1).
    pub(super) slots: usize,
    /// Number of placeholders.
    holes: usize,
    /// `min_tail[t]`: the fewest bytes `toks[t..]` can match; `min_tail[toks.len()] == 0`.
    min_tail: Vec<usize>,
}

impl Pattern {
    /// A pattern (or a template read as one) from its pieces and its capture-buffer length.
    pub(super) fn new(toks: Vec<Tok>, slots: usize) -> Self {
        let mut min_tail = vec![0; toks.len() + 1];
        for t in (0..toks.len()).rev() {
            min_tail[t] = min_tail[t + 1]
                + match &toks[t] {
                    Tok::Lit(l) => l.len(),
                    Tok::Cap { .. } => 1,
                };
        }
        let holes = toks.iter().filter(|t| matches!(t, Tok::Cap { .. })).count();
        Self {
            toks,
            slots,
            holes,
            min_tail,
        }
    }

    /// The literal text every match starts with.
    pub(super) fn prefix(&self) -> &[u8] {
        match self.toks.first() {
            Some(Tok::Lit(l)) => l,
            _ => &[],
        }
    }

    /// The literal text every match ends with.
    pub(super) fn suffix(&self) -> &[u8] {
        match self.toks.last() {
            Some(Tok::Lit(l)) => l,
            _ => &[],
        }
    }

    /// Matches the whole key, filling `caps[slot] = (start, end)`; on several possible splits,
    /// earlier placeholders take the fewest bytes. `caps` holds at least `self.slots` entries.
    ///
    /// Backtracking remembers every (token, position) that failed, so a key of length `n` costs
    /// at most O(tokens · n²) steps whatever the pattern; for usual keys the memo sits on the
    /// stack and nothing is allocated.
    pub(super) fn matches(&self, key: &[u8], caps: &mut [(usize, usize)]) -> bool {
        let min = self.min_tail[0];
        if key.len() < min || (self.holes == 0 && key.len() != min) {
            return false;
        }
        // Empty affixes are skipped, not compared: on the dangling pointer of an empty slice,
        // glibc's AVX-512 memcmp was measured several times slower than the whole match.
        let (prefix, suffix) = (self.prefix(), self.suffix());
        if (!prefix.is_empty() && !key.starts_with(prefix))
            || (!suffix.is_empty() && !key.ends_with(suffix))
        {
            return false;
        }
        // The literal prefix is the first token: it is checked, so start after it.
        let (t, pos) = (usize::from(!prefix.is_empty()), prefix.len());
        if self.holes < 2 {
            // One placeholder at most: no choice made can be undone later, nothing to remember.
            return self.step(t, pos, key, caps, &mut []);
        }
        let words = (self.toks.len() * (key.len() + 1)).div_ceil(64);
        if words <= STACK_MEMO {
            let mut memo = [0; STACK_MEMO];
            self.step(t, pos, key, caps, &mut memo[..words])
        } else {
            self.step(t, pos, key, caps, &mut vec![0; words])
        }
    }

    /// Matches `toks[t..]` against `key[pos..]`. An empty `memo` means no memo.
    fn step(
        &self,
        t: usize,
        pos: usize,
        key: &[u8],
        caps: &mut [(usize, usize)],
        memo: &mut [u64],
    ) -> bool {
        match self.toks.get(t) {
            None => pos == key.len(),
            Some(Tok::Lit(l)) => {
                key[pos..].starts_with(l) && self.step(t + 1, pos + l.len(), key, caps, memo)
            }
            Some(&Tok::Cap { slot, any }) => {
                let bit = t * (key.len() + 1) + pos;
                if !memo.is_empty() && memo[bit / 64] & (1 << (bit % 64)) != 0 {
                    return false;
                }
                let rest = &key[pos..];
                // Longest capture that leaves room for the rest of the pattern.
                let mut longest = rest.len().saturating_sub(self.min_tail[t + 1]);
                if !any && let Some(colon) = rest[..longest].iter().position(|&b| b == b':') {
                    longest = colon;
                }
                let found = match self.toks.get(t + 1) {
                    None => {
                        let whole = longest == rest.len() && longest > 0;
                        if whole {
                            caps[slot] = (pos, key.len());
                        }
                        whole
                    }
                    next => (1..=longest).any(|len| {
                        if let Some(Tok::Lit(l)) = next
                            && (rest.get(len) != l.first() || !rest[len..].starts_with(l))
                        {
                            return false;
                        }
                        caps[slot] = (pos, pos + len);
                        self.step(t + 1, pos + len, key, caps, memo)
                    }),
                };
                if !found && !memo.is_empty() {
                    memo[bit / 64] |= 1 << (bit % 64);
                }
                found
            }
        }
    }
}

/// The capture buffer for `n` slots: on the stack when it fits.
pub(super) fn caps_buffer<'a>(
    stack: &'a mut [(usize, usize); STACK_SLOTS],
    heap: &'a mut Vec<(usize, usize)>,
    n: usize,
) -> &'a mut [(usize, usize)] {
    if n <= STACK_SLOTS {
        &mut stack[..]
    } else {
        heap.resize(n, (0, 0));
        &mut heap[..]
    }
}

/// Writes a template, taking captured ranges of `key`, into a new exactly-sized vector.
pub(super) fn render(tpl: &[Tok], key: &[u8], caps: &[(usize, usize)]) -> Vec<u8> {
    let len = tpl
        .iter()
        .map(|t| match t {
            Tok::Lit(l) => l.len(),
            Tok::Cap { slot, .. } => caps[*slot].1 - caps[*slot].0,
        })
        .sum();
    let mut out = Vec::with_capacity(len);
    for t in tpl {
        match t {
            Tok::Lit(l) => out.extend_from_slice(l),
            Tok::Cap { slot, .. } => {
                let (a, b) = caps[*slot];
                out.extend_from_slice(&key[a..b]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::jobs::keys::rules::test_support::{file, renamed, rules};

    #[test]
    fn any_placeholders_take_colons_and_the_split_is_the_first_that_works() {
        let set = rules(&file(&[("r", "a:{x..}:{y}", "{y}/{x}")]));
        assert_eq!(renamed(&set, b"a:b:c:d"), Some(b"d/b:c".to_vec()));
        assert_eq!(renamed(&set, b"a:b::d"), Some(b"d/b:".to_vec()));
        assert_eq!(renamed(&set, b"a:b"), None);
        assert_eq!(renamed(&set, b"a:b:c:"), None);
        // Earlier placeholders take the fewest bytes.
        let set = rules(&file(&[(
            "r",
            "{{lit}}:{x..}-{y..}-{z..}",
            "n:{x}|{y}|{z}",
        )]));
        assert_eq!(renamed(&set, b"{lit}:1-2-3-4"), Some(b"n:1|2|3-4".to_vec()));
        assert_eq!(renamed(&set, b"{lit}:--1-2"), Some(b"n:-|1|2".to_vec()));
        assert_eq!(renamed(&set, b"{lit}:1-2"), None);
        // Literal braces on both sides.
        let set = rules(&file(&[("r", "{{{x}}}", "}}{x}{{")]));
        assert_eq!(renamed(&set, b"{abc}"), Some(b"}abc{".to_vec()));
    }

    #[test]
    fn near_misses_on_long_keys_stay_fast() {
        let set = rules(&file(&[
            (
                "any",
                "k:{a..}-{b..}-{c..}-{d..}!",
                "{a}{{}}{b}{{}}{c}{{}}{d}",
            ),
            ("word", "w:{a}-{b}-{c}-{d}!", "{a}{{}}{b}{{}}{c}{{}}{d}"),
        ]));
        // Long enough for the failure memo to leave the stack, too.
        for n in [60, 3000] {
            for p in [&b"k:"[..], b"w:"] {
                let key = [p, &vec![b'-'; n][..]].concat();
                let start = std::time::Instant::now();
                assert_eq!(set.rename(&key), None);
                let hit = set.rename(&[key, b"!".to_vec()].concat()).unwrap();
                assert_eq!(hit.1, [b"-{}-{}-{}".to_vec(), vec![b'-'; n - 6]].concat());
                assert!(start.elapsed().as_secs() < 5, "{n} bytes took too long");
            }
        }
    }
}
