//! Renaming a key by the first rule that matches it, and the reverse mapping from a new name
//! back to the old one.

use super::RuleSet;
use super::pattern::{STACK_SLOTS, caps_buffer, render};

impl RuleSet {
    /// The new name of `key` and the index of the rule that matched, or None when unmatched.
    pub fn rename(&self, key: &[u8]) -> Option<(usize, Vec<u8>)> {
        let mut stack = [(0, 0); STACK_SLOTS];
        let mut heap = Vec::new();
        for (i, r) in self.rules.iter().enumerate() {
            let caps = caps_buffer(&mut stack, &mut heap, r.from_pat.slots);
            if r.from_pat.matches(key, caps) {
                return Some((i, render(&r.to_tpl, key, caps)));
            }
        }
        None
    }

    /// Old name of a new key (the inverse mapping), with the rule index: the first rule whose
    /// `to` matches `new_key` and whose old name, renamed again, gives `new_key` back by that
    /// same rule. Rules whose `to` cannot be read back (see the load warnings) have no inverse.
    pub fn reverse(&self, new_key: &[u8]) -> Option<(usize, Vec<u8>)> {
        let mut stack = [(0, 0); STACK_SLOTS];
        let mut heap = Vec::new();
        for (i, r) in self.rules.iter().enumerate() {
            let Some((pattern, template)) = &r.reverse else {
                continue;
            };
            let caps = caps_buffer(&mut stack, &mut heap, pattern.slots);
            if pattern.matches(new_key, caps) {
                let old = render(template, new_key, caps);
                if self
                    .rename(&old)
                    .is_some_and(|(j, n)| j == i && n == new_key)
                {
                    return Some((i, old));
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use crate::jobs::keys::rules::test_support::{file, load, renamed, rules};

    #[test]
    fn keys_are_bytes() {
        let set = rules(&file(&[
            ("r", "a:{x}:end", "b:{x}"),
            ("s", "c:{x..}", "d:{x}"),
        ]));
        let key = b"a:\x00\xff\xfe-\x80:end";
        assert_eq!(renamed(&set, key), Some(b"b:\x00\xff\xfe-\x80".to_vec()));
        assert_eq!(set.reverse(b"b:\x00\xff\xfe-\x80"), Some((0, key.to_vec())));
        assert_eq!(
            renamed(&set, b"c:\xc3\x28:\x00:"),
            Some(b"d:\xc3\x28:\x00:".to_vec())
        );
        assert_eq!(
            renamed(&set, b"a:x:y:end"),
            None,
            "{{x}} never takes a colon"
        );
        assert_eq!(
            renamed(&set, b"a::end"),
            None,
            "{{x}} takes at least one byte"
        );
        assert_eq!(
            renamed(&set, b"c:"),
            None,
            "{{x..}} takes at least one byte"
        );
        // TOML escapes put any UTF-8 text, NUL included, in a literal.
        let set = rules("[[rule]]\nname = \"n\"\nfrom = \"k\\u0000{x}\"\nto = \"{x}\\u0000k\"\n");
        assert_eq!(renamed(&set, b"k\x00\xff"), Some(b"\xff\x00k".to_vec()));
        assert_eq!(renamed(&set, b"k\x01\xff"), None);
    }

    #[test]
    fn first_matching_rule_wins_and_unmatched_keys_are_none() {
        let set = rules(&file(&[
            ("specific", "p:user:{id}", "u:{id}"),
            ("generic", "p:{rest..}", "g:{rest}"),
            ("exact", "q", "r"),
        ]));
        assert_eq!(set.rename(b"p:user:7"), Some((0, b"u:7".to_vec())));
        assert_eq!(set.rename(b"p:user:7:x"), Some((1, b"g:user:7:x".to_vec())));
        assert_eq!(set.rename(b"p:other"), Some((1, b"g:other".to_vec())));
        assert_eq!(set.rename(b"q"), Some((2, b"r".to_vec())));
        for key in [&b"q:"[..], b"p:", b"", b"user:7", b"P:user:7"] {
            assert_eq!(set.rename(key), None, "{key:?}");
        }
    }

    #[test]
    fn reverse_finds_the_rule_that_produced_a_name() {
        let set = rules(&file(&[
            ("word", "a:{x}", "n:{x}"),
            ("any", "b:{x..}", "n:{x}"),
            ("swap", "c:{x}:{y..}", "s:{y}/{x}"),
        ]));
        assert_eq!(set.reverse(b"n:1"), Some((0, b"a:1".to_vec())));
        // `n:{x}` of the first rule takes no colon, so the second rule answers.
        assert_eq!(set.reverse(b"n:1:2"), Some((1, b"b:1:2".to_vec())));
        assert_eq!(set.reverse(b"s:p:q/r"), Some((2, b"c:r:p:q".to_vec())));
        assert_eq!(set.rename(b"c:r:p:q"), Some((2, b"s:p:q/r".to_vec())));
        assert_eq!(
            set.reverse(b"s:p/q:r"),
            None,
            "c:q:r:p would rename differently"
        );
        assert_eq!(set.reverse(b"m:1"), None);
        // A shadowed rule's names come back to nothing: its old names go elsewhere.
        let loaded = load(&file(&[
            ("wide", "a:{x..}", "m:{x}"),
            ("narrow", "a:b:{y}", "n:{y}"),
        ]))
        .unwrap();
        assert_eq!(loaded.warnings.len(), 1);
        assert_eq!(loaded.rules.reverse(b"n:1"), None);
        assert_eq!(loaded.rules.reverse(b"m:b:1"), Some((0, b"a:b:1".to_vec())));
    }
}
