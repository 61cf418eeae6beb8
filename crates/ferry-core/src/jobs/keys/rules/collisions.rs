//! Collision risks: which rules may give two old keys one new name, decided on the `to`
//! templates read as patterns.

use super::RuleSet;
use super::automaton::{Class, ambiguous, chain, compatible, intersect, reversed};
use super::pattern::Pattern;

impl RuleSet {
    /// Pairs of rules `(i, j)`, `i <= j`, that may give two old keys one new name: `i < j` when
    /// some name fits both rules' `to`, `(i, i)` when rule `i` alone cannot be read back
    /// unambiguously (it drops a capture, say). An empty list proves that no two old keys ever
    /// share a new name, so apply needs no check for clashes before it writes.
    pub fn collision_risks(&self) -> Vec<(usize, usize)> {
        let chains: Vec<Vec<Class>> = self
            .rules
            .iter()
            .map(|r| chain(&Pattern::new(r.to_tpl.clone(), r.from_pat.slots)))
            .collect();
        let mut out = Vec::new();
        for (i, rule) in self.rules.iter().enumerate() {
            if rule.reverse.is_none() || ambiguous(&chains[i]) {
                out.push((i, i));
            }
            let to = Pattern::new(rule.to_tpl.clone(), 0);
            for (j, other) in self.rules.iter().enumerate().skip(i + 1) {
                let other_to = Pattern::new(other.to_tpl.clone(), 0);
                let (p, q) = (to.prefix(), other_to.prefix());
                let (s, t) = (reversed(to.suffix()), reversed(other_to.suffix()));
                if compatible(p, q) && compatible(&s, &t) && intersect(&chains[i], &chains[j]) {
                    out.push((i, j));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::jobs::keys::rules::RuleSet;

    #[test]
    fn collision_risks_name_rules_whose_new_names_can_meet() {
        let rules = |text: &str| RuleSet::from_toml_str(text, "t").unwrap().rules;
        let seed = RuleSet::load(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../config/examples/seed-002-rules.toml"
        )))
        .unwrap()
        .rules;
        assert_eq!(seed.collision_risks(), vec![], "the seed rules never clash");
        let two = rules(
            r#"
[[rule]]
name = "a"
from = "old:a:{id}"
to = "new:{id}"
[[rule]]
name = "b"
from = "legacy:{id}"
to = "new:{id}"
[[rule]]
name = "c"
from = "other:{id}"
to = "elsewhere:{id}"
"#,
        );
        assert_eq!(two.collision_risks(), vec![(0, 1)]);
        let dropped = rules(
            r#"
[[rule]]
name = "a"
from = "old:{x}:{y}"
to = "new:{x}"
"#,
        );
        assert_eq!(dropped.collision_risks(), vec![(0, 0)]);
        let ambiguous = rules(
            r#"
[[rule]]
name = "a"
from = "old:{x}:{y}"
to = "new:{x}-{y}"
"#,
        );
        assert_eq!(ambiguous.collision_risks(), vec![(0, 0)]);
        let disjoint = rules(
            r#"
[[rule]]
name = "a"
from = "old:{x}:{y}"
to = "new:{x}:{y}"
[[rule]]
name = "b"
from = "old2:{x}"
to = "new:{x}"
[[rule]]
name = "c"
from = "old3:{x..}"
to = "new:x:{x}:end"
"#,
        );
        // Two, one and three or more colons after `new`: no name fits two of them.
        assert_eq!(disjoint.collision_risks(), vec![]);
        let any = rules(
            r#"
[[rule]]
name = "a"
from = "old:{x..}"
to = "new:{x}"
[[rule]]
name = "b"
from = "legacy:{id}"
to = "new:user:{id}"
"#,
        );
        assert_eq!(any.collision_risks(), vec![(0, 1)]);
    }
}
