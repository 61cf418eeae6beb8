//! Loading, matching and checking rename rules through the public API.

use ferry_core::jobs::keys::rules::{RuleSet, RulesError};

fn load(text: &str) -> Result<ferry_core::jobs::keys::rules::LoadedRules, RulesError> {
    RuleSet::from_toml_str(text, "rules.toml")
}

fn err(text: &str) -> String {
    load(text).expect_err("should be rejected").to_string()
}

const SEED: &str = include_str!("../../../config/examples/seed-002-rules.toml");

#[test]
fn seed_rules_map_the_five_kinds_of_keys() {
    let loaded = load(SEED).unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let rules = loaded.rules;
    let cases: [(&str, &str, &str); 6] = [
        (
            "josancamon:rayban-meta-glasses-api:reminder:evt_00000001_42",
            "meta-glasses:reminder:event:evt_00000001_42",
            "reminder",
        ),
        (
            "josancamon:rayban-meta-glasses-api:conversation_history:123",
            "meta-glasses:user:history:123",
            "history",
        ),
        (
            "josancamon:rayban-meta-glasses-api:user_profile:123",
            "meta-glasses:user:profile:123",
            "profile",
        ),
        (
            "josancamon:rayban-meta-glasses-api:cancellation:wa:123",
            "meta-glasses:state:cancellation:wa:123",
            "cancellation",
        ),
        (
            "josancamon:rayban-meta-glasses-api:d2VhdGhlciBpbiBjaXR5IDE=",
            "meta-glasses:cache:generic:d2VhdGhlciBpbiBjaXR5IDE=",
            "cache",
        ),
        (
            "josancamon:rayban-meta-glasses-api:cancellation:wa",
            "meta-glasses:cache:generic:cancellation:wa",
            "",
        ),
    ];
    for (old, new, rule) in cases {
        match rules.rename(old.as_bytes()) {
            Some((i, got)) if !rule.is_empty() => {
                assert_eq!(got, new.as_bytes(), "{old}");
                assert_eq!(rules.rules()[i].name, rule);
                assert_eq!(
                    rules.reverse(new.as_bytes()).map(|(_, k)| k),
                    Some(old.as_bytes().to_vec())
                );
            }
            // `cancellation:wa` has a colon, so the no-colon cache rule does not take it.
            other if rule.is_empty() => assert_eq!(other, None, "{old}"),
            other => panic!("{old}: {other:?}"),
        }
    }
    assert_eq!(rules.rename(b"other:key"), None);
    assert_eq!(
        rules.scan_globs(),
        vec![b"josancamon:rayban-meta-glasses-api:*".to_vec()]
    );
}

#[test]
fn binary_bytes_are_captured_and_kept() {
    let rules = load("[[rule]]\nname = \"r\"\nfrom = \"a:{x}\"\nto = \"b:{x}\"\n")
        .unwrap()
        .rules;
    let key = b"a:\x00\xff\xfe-\x80";
    assert_eq!(rules.rename(key).unwrap().1, b"b:\x00\xff\xfe-\x80");
    assert_eq!(rules.rename(b"a:x:y"), None, "{{x}} never takes a colon");
    assert_eq!(rules.rename(b"a:"), None, "{{x}} takes at least one byte");
}

#[test]
fn any_placeholders_take_colons_and_backtrack() {
    let rules = load("[[rule]]\nname = \"r\"\nfrom = \"a:{x..}:{y}\"\nto = \"{y}/{x}\"\n")
        .unwrap()
        .rules;
    assert_eq!(rules.rename(b"a:b:c:d").unwrap().1, b"d/b:c");
    assert_eq!(rules.rename(b"a:b").map(|r| r.1), None);
    let rules = load("[[rule]]\nname = \"r\"\nfrom = \"{{literal}}:{x..}-{y..}-{z..}\"\nto = \"n:{x}|{y}|{z}\"\n").unwrap().rules;
    assert_eq!(rules.rename(b"{literal}:1-2-3-4").unwrap().1, b"n:1|2|3-4");
    // A long key that almost matches does not blow up the matcher (memoised backtracking).
    let rules = load("[[rule]]\nname = \"r\"\nfrom = \"k:{x..}-{y..}-{z..}!\"\nto = \"{x}{z}\"\n")
        .unwrap()
        .rules;
    let long = [b"k:".to_vec(), vec![b'-'; 1000]].concat();
    assert!(rules.rename(&long).is_none());
    assert!(rules.rename(&[long, b"!".to_vec()].concat()).is_some());
}

#[test]
fn first_matching_rule_wins() {
    let text = "[[rule]]\nname = \"specific\"\nfrom = \"p:user:{id}\"\nto = \"u:{id}\"\n\n[[rule]]\nname = \"generic\"\nfrom = \"p:{rest..}\"\nto = \"g:{rest}\"\n";
    let rules = load(text).unwrap().rules;
    assert_eq!(rules.rename(b"p:user:7").unwrap(), (0, b"u:7".to_vec()));
    assert_eq!(
        rules.rename(b"p:other:7").unwrap(),
        (1, b"g:other:7".to_vec())
    );
}

#[test]
fn errors_name_the_file_and_the_line() {
    let e = err("[[rule]]\nname = \"a\"\nfrom = \"old:{id}\"\nto = \"new:{nope}\"\n");
    assert!(
        e.starts_with("rules.toml:4:") && e.contains("{nope}"),
        "{e}"
    );
    let e = err("[[rule]]\nname = \"a\"\nfrom = \"x\"\nto = \"y\"\ncolour = \"red\"\n");
    assert!(
        e.starts_with("rules.toml:5:") && e.contains("colour"),
        "{e}"
    );
    let e = err("[[rule]]\nname = \"a\"\nfrom = \"x\"\n");
    assert!(e.starts_with("rules.toml:1:") && e.contains("`to`"), "{e}");
    let e = err("[[rule]]\nname = \"a\"\nfrom = \"\"\nto = \"y\"\n");
    assert!(
        e.starts_with("rules.toml:3:") && e.contains("`from`"),
        "{e}"
    );
    let e = err(
        "[[rule]]\nname = \"a\"\nfrom = \"x\"\nto = \"y\"\n[[rule]]\nname = \"a\"\nfrom = \"z\"\nto = \"w\"\n",
    );
    assert!(
        e.starts_with("rules.toml:6:") && e.contains("line 2"),
        "{e}"
    );
    let e = err("[[rule]]\nname = \"a\"\nfrom = \"x:{id\"\nto = \"y\"\n");
    assert!(
        e.starts_with("rules.toml:3:") && e.contains("unclosed"),
        "{e}"
    );
    let e = err("[[rule]]\nname = \"a\"\nfrom = \"x:id}\"\nto = \"y\"\n");
    assert!(e.contains("stray"), "{e}");
    let e = err("[[rule]]\nname = \"a\"\nfrom = \"x:{1d}\"\nto = \"y\"\n");
    assert!(e.contains("bad placeholder"), "{e}");
    let e = err("[[rule]]\nname = \"a\"\nfrom = \"x:{a}:{a}\"\nto = \"y{a}\"\n");
    assert!(e.contains("twice"), "{e}");
    let e = err("[[rule]]\nname = \"a\"\nfrom = \"x:{a}{b}\"\nto = \"{a}{b}\"\n");
    assert!(e.contains("separated by literal text"), "{e}");
    let e = err("[[rule]]\nname = \"a\"\nfrom = \"x:{a..}\"\nto = \"y:{a..}\"\n");
    assert!(
        e.starts_with("rules.toml:4:") && e.contains("`from` only"),
        "{e}"
    );
    let e = err("[[rule]\nname = 1\n");
    assert!(e.starts_with("rules.toml:1:"), "{e}");
    let e = err("# nothing here\n");
    assert!(e.contains("no rules"), "{e}");
}

#[test]
fn shadowed_rules_and_dropped_captures_are_warnings() {
    let w = |text: &str| {
        load(text)
            .unwrap()
            .warnings
            .iter()
            .map(|w| w.to_string())
            .collect::<Vec<_>>()
    };
    // Every `a:{x}` key is an `a:{y..}` key: the later rule never applies.
    let shadowed = w(
        "[[rule]]\nname = \"wide\"\nfrom = \"a:{y..}\"\nto = \"b:{y}\"\n[[rule]]\nname = \"narrow\"\nfrom = \"a:{x}\"\nto = \"c:{x}\"\n",
    );
    assert_eq!(shadowed.len(), 1, "{shadowed:?}");
    assert!(
        shadowed[0].starts_with("rules.toml:5:") && shadowed[0].contains("\"wide\""),
        "{shadowed:?}"
    );
    // The other way round is fine: `a:b:c` reaches the second rule.
    assert!(w("[[rule]]\nname = \"narrow\"\nfrom = \"a:{x}\"\nto = \"c:{x}\"\n[[rule]]\nname = \"wide\"\nfrom = \"a:{y..}\"\nto = \"b:{y}\"\n").is_empty());
    // A literal key after a placeholder rule that covers it.
    assert_eq!(w("[[rule]]\nname = \"any\"\nfrom = \"a:{x}\"\nto = \"c:{x}\"\n[[rule]]\nname = \"one\"\nfrom = \"a:b\"\nto = \"c:b\"\n").len(), 1);
    // Not shadowed: the earlier one needs a colon-free tail.
    assert!(w("[[rule]]\nname = \"a\"\nfrom = \"k:{x}\"\nto = \"c:{x}\"\n[[rule]]\nname = \"b\"\nfrom = \"k:{x..}:z\"\nto = \"d:{x}\"\n").is_empty());
    let dropped = w("[[rule]]\nname = \"lossy\"\nfrom = \"a:{x}:{y}\"\nto = \"b:{x}\"\n");
    assert!(
        dropped.len() == 1 && dropped[0].contains("{y}"),
        "{dropped:?}"
    );
}

#[test]
fn scan_globs_escape_glob_characters_and_drop_covered_prefixes() {
    let text = "[[rule]]\nname = \"a\"\nfrom = \"p*x:{x}\"\nto = \"n:{x}\"\n[[rule]]\nname = \"b\"\nfrom = \"p*x:sub:{x}\"\nto = \"m:{x}\"\n[[rule]]\nname = \"c\"\nfrom = \"q[1]:{x}\"\nto = \"o:{x}\"\n";
    let globs = load(text).unwrap().rules.scan_globs();
    assert_eq!(globs, vec![b"p\\*x:*".to_vec(), b"q\\[1\\]:*".to_vec()]);
}

#[test]
fn fingerprint_changes_with_the_rules() {
    let a = load(SEED).unwrap().rules.fingerprint();
    let b = load(&SEED.replace("meta-glasses:user:profile", "meta-glasses:profile"))
        .unwrap()
        .rules
        .fingerprint();
    assert_ne!(a, b);
    assert_eq!(a, load(SEED).unwrap().rules.fingerprint());
}
