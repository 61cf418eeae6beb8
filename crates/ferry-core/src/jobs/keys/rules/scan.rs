//! The SCAN MATCH globs that find every key some rule can rename.

use super::RuleSet;

impl RuleSet {
    /// SCAN MATCH globs that together cover every key some rule can match: each rule's literal
    /// prefix, glob metacharacters `*?[]\` escaped by backslash, followed by `*`; sorted,
    /// deduplicated, and without globs whose prefix extends another glob's prefix.
    pub fn scan_globs(&self) -> Vec<Vec<u8>> {
        let mut prefixes: Vec<&[u8]> = self.rules.iter().map(|r| r.from_pat.prefix()).collect();
        prefixes.sort_unstable_by_key(|p| p.len());
        let mut kept: Vec<&[u8]> = Vec::new();
        for p in prefixes {
            if !kept.iter().any(|k| p.starts_with(k)) {
                kept.push(p);
            }
        }
        let mut globs: Vec<Vec<u8>> = kept
            .into_iter()
            .map(|p| {
                let mut g = glob_escape(p);
                g.push(b'*');
                g
            })
            .collect();
        globs.sort();
        globs
    }
}

/// Escapes SCAN glob metacharacters.
fn glob_escape(prefix: &[u8]) -> Vec<u8> {
    let mut g = Vec::with_capacity(prefix.len() + 1);
    for &b in prefix {
        if matches!(b, b'*' | b'?' | b'[' | b']' | b'\\') {
            g.push(b'\\');
        }
        g.push(b);
    }
    g
}

#[cfg(test)]
mod tests {
    use crate::jobs::keys::rules::test_support::{file, load, rules};

    #[test]
    fn scan_globs_escape_metacharacters_and_drop_covered_prefixes() {
        // "d" repeats "c" (and is warned about); its glob is a duplicate.
        let set = load(&file(&[
            ("a", "p*x:{x}", "n:{x}"),
            ("b", "p*x:sub:{x}", "m:{x}"),
            ("c", "q[1]?\\:{x}", "o:{x}"),
            ("d", "q[1]?\\:{x}", "o2:{x}"),
            ("e", "p*x:{x}:z", "n2:{x}"),
        ]))
        .unwrap()
        .rules
        .scan_globs();
        assert_eq!(
            set,
            vec![b"p\\*x:*".to_vec(), b"q\\[1\\]\\?\\\\:*".to_vec()]
        );
        // A rule starting with a placeholder needs the whole keyspace.
        let set = rules(&file(&[("a", "p:{x}", "n:{x}"), ("b", "{x}:q", "m:{x}")]));
        assert_eq!(set.scan_globs(), vec![b"*".to_vec()]);
    }
}
