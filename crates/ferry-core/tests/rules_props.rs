//! Property tests for rename rules through the public API: renaming fills `to` with the captured
//! bytes, renamed keys map back to their old names, the shadowing warning is sound, and matching
//! agrees with a naive reference matcher.

use ferry_core::jobs::keys::rules::{LoadedRules, RuleSet};
use proptest::prelude::*;

/// A piece of a `from` pattern.
#[derive(Debug, Clone)]
enum P {
    /// Literal bytes (UTF-8 text without quotes or braces).
    Lit(Vec<u8>),
    /// A placeholder; `true` for `{x..}`.
    Cap(bool),
}

/// A piece of a `to` template.
#[derive(Debug, Clone)]
enum T {
    /// Literal bytes (may contain braces, written doubled).
    Lit(Vec<u8>),
    /// The n-th placeholder of `from`.
    Cap(usize),
}

/// `from` patterns built from the given literal texts, with literal text between placeholders
/// (the first of `lits` where the pieces drawn put two placeholders side by side).
fn pattern(lits: &'static [&'static str], len: std::ops::Range<usize>) -> BoxedStrategy<Vec<P>> {
    let lit = prop::collection::vec(prop::sample::select(lits), 1..3)
        .prop_map(|v| P::Lit(v.concat().into_bytes()));
    let cap = any::<bool>().prop_map(P::Cap);
    prop::collection::vec(prop_oneof![lit, cap], len)
        .prop_map(|pieces| {
            // Placeholders next to each other are a load error: put literal text between.
            let mut out: Vec<P> = Vec::new();
            for p in pieces {
                if let (Some(P::Cap(_)), P::Cap(_)) = (out.last(), &p) {
                    out.push(P::Lit(lits[0].as_bytes().to_vec()));
                }
                out.push(p);
            }
            out
        })
        .boxed()
}

fn holes(p: &[P]) -> usize {
    p.iter().filter(|x| matches!(x, P::Cap(_))).count()
}

/// Literal text as written in a pattern: braces doubled.
fn escape(l: &[u8]) -> String {
    std::str::from_utf8(l)
        .unwrap()
        .replace('{', "{{")
        .replace('}', "}}")
}

fn from_text(p: &[P]) -> String {
    let mut n = 0;
    let mut s = String::new();
    for piece in p {
        match piece {
            P::Lit(l) => s.push_str(&escape(l)),
            P::Cap(any) => {
                s.push_str(&format!("{{c{n}{}}}", if *any { ".." } else { "" }));
                n += 1;
            }
        }
    }
    s
}

fn to_text(t: &[T]) -> String {
    let mut s = String::new();
    for piece in t {
        match piece {
            T::Lit(l) => s.push_str(&escape(l)),
            T::Cap(n) => s.push_str(&format!("{{c{n}}}")),
        }
    }
    s
}

/// The template `n/{c0}/{c1}/...`.
fn slashed(p: &[P]) -> Vec<T> {
    let mut t = vec![T::Lit(b"n".to_vec())];
    for i in 0..holes(p) {
        t.push(T::Lit(b"/".to_vec()));
        t.push(T::Cap(i));
    }
    t
}

/// Rules `from` → `n/{c0}/{c1}/...` for each pattern.
fn slashed_rules(ps: &[&Vec<P>]) -> Vec<(String, String)> {
    ps.iter()
        .map(|p| (from_text(p), to_text(&slashed(p))))
        .collect()
}

/// `to` read as a pattern: its placeholders with the classes they have in `from`.
fn read_back(p: &[P], t: &[T]) -> Vec<P> {
    let classes: Vec<bool> = p
        .iter()
        .filter_map(|x| match x {
            P::Cap(any) => Some(*any),
            P::Lit(_) => None,
        })
        .collect();
    t.iter()
        .map(|x| match x {
            T::Lit(l) => P::Lit(l.clone()),
            T::Cap(n) => P::Cap(classes[*n]),
        })
        .collect()
}

fn load(rules: &[(String, String)]) -> LoadedRules {
    let text: String = rules
        .iter()
        .enumerate()
        .map(|(i, (f, t))| format!("[[rule]]\nname = \"r{i}\"\nfrom = '{f}'\nto = '{t}'\n\n"))
        .collect();
    RuleSet::from_toml_str(&text, "props.toml").unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn render_from(p: &[P], caps: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut n = 0;
    for piece in p {
        match piece {
            P::Lit(l) => out.extend_from_slice(l),
            P::Cap(_) => {
                out.extend_from_slice(&caps[n]);
                n += 1;
            }
        }
    }
    out
}

fn render_to(t: &[T], caps: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for piece in t {
        match piece {
            T::Lit(l) => out.extend_from_slice(l),
            T::Cap(n) => out.extend_from_slice(&caps[*n]),
        }
    }
    out
}

/// Naive reference matcher: tries every split, shortest captures first, and returns the
/// captures of the first split that matches the whole key.
fn naive(p: &[P], key: &[u8]) -> Option<Vec<Vec<u8>>> {
    match p.split_first() {
        None => key.is_empty().then(Vec::new),
        Some((P::Lit(l), rest)) => key.strip_prefix(&l[..]).and_then(|k| naive(rest, k)),
        Some((P::Cap(any), rest)) => (1..=key.len()).find_map(|n| {
            if !any && key[..n].contains(&b':') {
                return None;
            }
            let mut caps = naive(rest, &key[n..])?;
            caps.insert(0, key[..n].to_vec());
            Some(caps)
        }),
    }
}

/// How many splits of the key match the pattern (stops counting at 2).
fn splits(p: &[P], key: &[u8]) -> usize {
    match p.split_first() {
        None => usize::from(key.is_empty()),
        Some((P::Lit(l), rest)) => key.strip_prefix(&l[..]).map_or(0, |k| splits(rest, k)),
        Some((P::Cap(any), rest)) => {
            let mut total = 0;
            for n in 1..=key.len() {
                if !any && key[..n].contains(&b':') {
                    break;
                }
                total += splits(rest, &key[n..]);
                if total >= 2 {
                    break;
                }
            }
            total
        }
    }
}

/// Capture values: any bytes except `banned` (and `:` for `{x}`), never empty.
fn values(p: &[P], raw: &[Vec<u8>], banned: &[u8]) -> Vec<Vec<u8>> {
    p.iter()
        .filter_map(|x| match x {
            P::Cap(any) => Some(*any),
            P::Lit(_) => None,
        })
        .zip(raw)
        .map(|(any, v)| {
            let mut v: Vec<u8> = v
                .iter()
                .copied()
                .filter(|b| !banned.contains(b) && (any || *b != b':'))
                .collect();
            if v.is_empty() {
                v.push(0);
            }
            v
        })
        .collect()
}

fn literal_bytes(p: &[P], t: &[T]) -> Vec<u8> {
    let mut b: Vec<u8> = p
        .iter()
        .filter_map(|x| match x {
            P::Lit(l) => Some(l.clone()),
            P::Cap(_) => None,
        })
        .chain(t.iter().filter_map(|x| match x {
            T::Lit(l) => Some(l.clone()),
            T::Cap(_) => None,
        }))
        .flatten()
        .collect();
    b.sort_unstable();
    b.dedup();
    b
}

/// Every key up to `max` bytes over `a`, `b`, `:` and one byte no pattern uses.
fn all_keys(max: usize) -> Vec<Vec<u8>> {
    let mut out = vec![Vec::new()];
    let mut frontier = vec![Vec::new()];
    for _ in 0..max {
        frontier = frontier
            .iter()
            .flat_map(|k: &Vec<u8>| [b'a', b'b', b':', b'z'].map(|c| [&k[..], &[c]].concat()))
            .collect();
        out.extend(frontier.iter().cloned());
    }
    out
}

const WIDE: &[&str] = &["a", "b", ":", "-", "/", "é", "{", "}"];
const TINY: &[&str] = &["a", "b", ":"];

/// A pattern, a template using all of its placeholders in a random order with random literal
/// text around them, and raw capture values.
fn rule_case() -> impl Strategy<Value = (Vec<P>, Vec<T>, Vec<Vec<u8>>)> {
    pattern(WIDE, 1..6).prop_flat_map(|p| {
        let n = holes(&p);
        let order = Just((0..n).collect::<Vec<_>>()).prop_shuffle();
        let seps = prop::collection::vec(prop::sample::select(WIDE), n + 1);
        let raw = prop::collection::vec(prop::collection::vec(any::<u8>(), 1..6), n);
        (Just(p), order, seps, raw).prop_map(|(p, order, seps, raw)| {
            let mut t = vec![T::Lit(format!("new{}", seps[0]).into_bytes())];
            for (i, c) in order.into_iter().enumerate() {
                t.push(T::Cap(c));
                t.push(T::Lit(seps[i + 1].as_bytes().to_vec()));
            }
            (p, t, raw)
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(192))]

    /// (1) A lone rule renames `from` filled with some captures to `to` filled with the same
    /// captures, whenever the key splits only one way (capture bytes avoid literal bytes, so it
    /// nearly always does); otherwise with the captures of the first split.
    #[test]
    fn rename_fills_to_with_the_captured_bytes((p, t, raw) in rule_case()) {
        let caps = values(&p, &raw, &literal_bytes(&p, &[]));
        let key = render_from(&p, &caps);
        let set = load(&[(from_text(&p), to_text(&t))]).rules;
        let got = set.rename(&key);
        if splits(&p, &key) == 1 {
            prop_assert_eq!(got.clone(), Some((0, render_to(&t, &caps))));
        }
        let first = naive(&p, &key).expect("the key was built from the pattern");
        prop_assert_eq!(got, Some((0, render_to(&t, &first))));
    }

    /// (1') Same with capture values of any bytes (`{x}` without `:`), compared with the first
    /// split the naive matcher finds.
    #[test]
    fn rename_of_any_capture_bytes_follows_the_first_split(
        (p, t, raw) in rule_case(),
    ) {
        let caps = values(&p, &raw, &[]);
        let key = render_from(&p, &caps);
        let set = load(&[(from_text(&p), to_text(&t))]).rules;
        let first = naive(&p, &key).expect("the key was built from the pattern");
        prop_assert_eq!(set.rename(&key), Some((0, render_to(&t, &first))));
    }

    /// (2) `to` = a new prefix + `from` is one-to-one for any bytes: reverse undoes rename,
    /// also behind an unrelated earlier rule.
    #[test]
    fn reverse_undoes_rename_for_a_prefix_change(
        p in pattern(WIDE, 1..6),
        raw in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..6), 6),
    ) {
        let p: Vec<P> = std::iter::once(P::Lit(b"k:".to_vec())).chain(p).collect();
        let from = from_text(&p);
        let to = format!("new:{}", from.replace("..}", "}"));
        let loaded = load(&[("zz{q}".into(), "yy{q}".into()), (from, to)]);
        prop_assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        let key = render_from(&p, &values(&p, &raw, &[]));
        let (rule, new) = loaded.rules.rename(&key).expect("built to match");
        prop_assert_eq!(rule, 1);
        prop_assert_eq!(&new, &[&b"new:"[..], &key].concat());
        prop_assert_eq!(loaded.rules.reverse(&new), Some((1, key)));
    }

    /// (2') Reordering captures is one-to-one when both names split only one way: reverse gives
    /// the old key back; whatever reverse answers renames to the new key.
    #[test]
    fn reverse_undoes_rename_for_reordered_captures((p, t, raw) in rule_case()) {
        let loaded = load(&[(from_text(&p), to_text(&t))]);
        let caps = values(&p, &raw, &literal_bytes(&p, &t));
        let key = render_from(&p, &caps);
        let (_, new) = loaded.rules.rename(&key).expect("built to match");
        let answer = loaded.rules.reverse(&new);
        if let Some((rule, old)) = &answer {
            prop_assert_eq!(*rule, 0);
            prop_assert_eq!(loaded.rules.rename(old), Some((0, new.clone())));
        }
        let back = read_back(&p, &t);
        if loaded.warnings.is_empty() && splits(&p, &key) == 1 && splits(&back, &new) == 1 {
            prop_assert_eq!(answer, Some((0, key)));
        }
    }

    /// (3) The shadowing warning is sound: when it says a rule never applies, no short key
    /// reaches it (checked by brute force over a tiny alphabet), for one or two earlier rules.
    #[test]
    fn a_shadowed_rule_really_never_applies(
        earlier in prop::collection::vec(pattern(TINY, 1..5), 1..3),
        later in pattern(TINY, 1..5),
    ) {
        let all: Vec<&Vec<P>> = earlier.iter().chain([&later]).collect();
        let loaded = load(&slashed_rules(&all));
        let last = format!("r{}", earlier.len());
        let shadowed = loaded
            .warnings
            .iter()
            .any(|w| w.rule == last && w.message.contains("never applies"));
        let escaping = all_keys(6).into_iter().find(|k| {
            naive(&later, k).is_some() && earlier.iter().all(|e| naive(e, k).is_none())
        });
        if shadowed {
            prop_assert_eq!(escaping, None, "a key reaches the shadowed rule");
        }
    }

    /// (4) Matching agrees with the naive matcher on every short key, for a few rules at once:
    /// the first rule that matches wins, with the captures of its first split.
    #[test]
    fn matching_agrees_with_a_naive_matcher(
        ps in prop::collection::vec(pattern(TINY, 1..5), 1..4),
    ) {
        let loaded = load(&slashed_rules(&ps.iter().collect::<Vec<_>>()));
        for key in all_keys(5) {
            let expected = ps.iter().enumerate().find_map(|(i, p)| {
                naive(p, &key).map(|caps| (i, render_to(&slashed(p), &caps)))
            });
            prop_assert_eq!(
                loaded.rules.rename(&key),
                expected,
                "key {:?}",
                String::from_utf8_lossy(&key)
            );
        }
    }
}
