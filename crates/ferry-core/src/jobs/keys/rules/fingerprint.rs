//! The rules' fingerprint, so a resumed run can check the rules did not change.

use super::RuleSet;

impl RuleSet {
    /// A stable hex fingerprint of the rules (FNV-1a 64 over name, from and to of each rule, in
    /// order, each followed by a NUL byte), so a resumed run can check the rules did not change.
    pub fn fingerprint(&self) -> String {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for r in &self.rules {
            for part in [r.name.as_bytes(), r.from.as_bytes(), r.to.as_bytes()] {
                for &b in part.iter().chain(std::iter::once(&0u8)) {
                    h ^= u64::from(b);
                    h = h.wrapping_mul(0x0100_0000_01b3);
                }
            }
        }
        format!("{h:016x}")
    }
}

#[cfg(test)]
mod tests {
    use crate::jobs::keys::rules::test_support::{file, rules};

    #[test]
    fn fingerprint_follows_names_patterns_and_order() {
        let base = [("a", "x:{i}", "y:{i}"), ("b", "z:{i}", "w:{i}")];
        let f = |rs: &[(&str, &str, &str)]| rules(&file(rs)).fingerprint();
        let fp = f(&base);
        assert_eq!(fp.len(), 16);
        assert!(fp.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(fp, f(&base));
        assert_ne!(fp, f(&[base[1], base[0]]));
        assert_ne!(fp, f(&[("a", "x:{i}", "y:{i}"), ("b", "z:{i}", "v:{i}")]));
        assert_ne!(fp, f(&[("A", "x:{i}", "y:{i}"), ("b", "z:{i}", "w:{i}")]));
        // Field boundaries count: moving a byte from one field to the next changes it.
        assert_ne!(f(&[("ab", "c", "d")]), f(&[("a", "bc", "d")]));
    }
}
