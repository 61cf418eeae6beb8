//! Helpers shared by the rules tests: loading text, writing files of rules, expecting errors.

use super::{LoadedRules, RuleSet, RulesError};

/// The seed rules file shipped with the examples.
pub(super) const SEED: &str = include_str!("../../../../../../config/examples/seed-002-rules.toml");

/// Loads rules text named `rules.toml`.
pub(super) fn load(text: &str) -> Result<LoadedRules, RulesError> {
    RuleSet::from_toml_str(text, "rules.toml")
}

/// The rules of a text that loads without warnings.
pub(super) fn rules(text: &str) -> RuleSet {
    let loaded = load(text).unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    loaded.rules
}

/// The warnings of a text that loads, as shown to the operator.
pub(super) fn warnings(text: &str) -> Vec<String> {
    load(text)
        .unwrap()
        .warnings
        .iter()
        .map(ToString::to_string)
        .collect()
}

/// A rules file from (name, from, to) triples, one rule every 5 lines starting on line 1.
pub(super) fn file(rules: &[(&str, &str, &str)]) -> String {
    rules
        .iter()
        .map(|(n, f, t)| format!("[[rule]]\nname = \"{n}\"\nfrom = '{f}'\nto = '{t}'\n\n"))
        .collect()
}

/// Asserts the file is rejected with a message on `line` that mentions every needle.
#[track_caller]
pub(super) fn rejected(text: &str, line: usize, needles: &[&str]) {
    let e = load(text).expect_err("should be rejected").to_string();
    assert!(e.starts_with(&format!("rules.toml:{line}: ")), "{e}");
    for n in needles {
        assert!(e.contains(n), "{e:?} lacks {n:?}");
    }
}

/// The new name of `key`, without the rule index.
pub(super) fn renamed(set: &RuleSet, key: &[u8]) -> Option<Vec<u8>> {
    set.rename(key).map(|(_, k)| k)
}
