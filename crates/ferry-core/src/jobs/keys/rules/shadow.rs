//! Shadowing: does the union of earlier patterns include a later pattern? A rule whose every
//! key an earlier rule matches first never applies, and loading warns about it.

use std::collections::{BTreeSet, HashMap, VecDeque};

use super::automaton::{Class, alphabet_of, chain, compatible, moves, reversed};
use super::{Rule, RulesWarning};

/// Most automaton states one shadowing check may visit before giving up (without warning).
const COVER_BUDGET: usize = 200_000;

/// The outcome of an inclusion check.
#[derive(Debug, PartialEq, Eq)]
enum Cover {
    /// Every key of the later pattern is matched by an earlier one; these earlier patterns
    /// (indices into the list given) match at least one such key.
    Covered(Vec<usize>),
    /// A shortest key the later pattern matches and no earlier one does.
    Escapes(Vec<u8>),
    /// The check gave up (too many states).
    Unknown,
}

/// Decides whether every key `later` matches is matched by one of `earlier`: a breadth-first
/// walk of the product of `later`'s subset automaton with the subset automaton of the union of
/// `earlier`, over an alphabet partition (`:`, each literal byte of the patterns, and one byte
/// standing for every other value, which all patterns treat alike).
fn cover(later: &[Class], earlier: &[&[Class]], budget: usize) -> Cover {
    let all: Vec<&[Class]> = std::iter::once(later)
        .chain(earlier.iter().copied())
        .collect();
    let alphabet = alphabet_of(&all);

    // A state: the later NFA's states, and the (pattern, state) pairs of the earlier NFAs.
    type State = (Vec<usize>, Vec<(usize, usize)>);
    let start: State = (vec![0], (0..earlier.len()).map(|r| (r, 0)).collect());
    let mut seen: HashMap<State, usize> = HashMap::from([(start.clone(), 0)]);
    // For each state found: the state it was reached from and the byte read.
    let mut trail: Vec<(usize, u8)> = vec![(0, 0)];
    let mut queue = VecDeque::from([(start, 0usize)]);
    let mut covering = BTreeSet::new();
    while let Some(((b, a), id)) = queue.pop_front() {
        if b.contains(&later.len()) {
            let accepting: Vec<usize> = a
                .iter()
                .filter(|&&(r, s)| s == earlier[r].len())
                .map(|&(r, _)| r)
                .collect();
            if accepting.is_empty() {
                let mut key = Vec::new();
                let mut at = id;
                while at != 0 {
                    key.push(trail[at].1);
                    at = trail[at].0;
                }
                key.reverse();
                return Cover::Escapes(key);
            }
            covering.extend(accepting);
        }
        for &c in &alphabet {
            let mut nb: Vec<usize> = b.iter().flat_map(|&s| moves(later, s, c)).collect();
            if nb.is_empty() {
                continue;
            }
            nb.sort_unstable();
            nb.dedup();
            let mut na: Vec<(usize, usize)> = a
                .iter()
                .flat_map(|&(r, s)| moves(earlier[r], s, c).map(move |n| (r, n)))
                .collect();
            na.sort_unstable();
            na.dedup();
            let next = (nb, na);
            if !seen.contains_key(&next) {
                if seen.len() >= budget {
                    return Cover::Unknown;
                }
                seen.insert(next.clone(), trail.len());
                queue.push_back((next, trail.len()));
                trail.push((id, c));
            }
        }
    }
    Cover::Covered(covering.into_iter().collect())
}

/// Warnings for rules that earlier rules shadow completely.
pub(super) fn shadow_warnings(rules: &[Rule], origin: &str) -> Vec<RulesWarning> {
    let chains: Vec<Vec<Class>> = rules.iter().map(|r| chain(&r.from_pat)).collect();
    let mut out = Vec::new();
    for (i, later) in rules.iter().enumerate() {
        let (lp, ls) = (later.from_pat.prefix(), later.from_pat.suffix());
        // Earlier rules that can share a key with this one at all (cheap literal checks).
        let candidates: Vec<usize> = (0..i)
            .filter(|&j| {
                let (p, s) = (rules[j].from_pat.prefix(), rules[j].from_pat.suffix());
                compatible(lp, p) && (compatible(&reversed(ls), &reversed(s)))
            })
            .collect();
        if candidates.is_empty() {
            continue;
        }
        let earlier: Vec<&[Class]> = candidates.iter().map(|&j| &chains[j][..]).collect();
        let Cover::Covered(by) = cover(&chains[i], &earlier, COVER_BUDGET) else {
            continue;
        };
        let by: Vec<usize> = by.into_iter().map(|k| candidates[k]).collect();
        let alone = if by.len() == 1 {
            Some(by[0])
        } else {
            by.iter().copied().find(|&j| {
                matches!(
                    cover(&chains[i], &[&chains[j][..]], COVER_BUDGET),
                    Cover::Covered(_)
                )
            })
        };
        let message = match alone {
            Some(j) => format!(
                "never applies: every key it matches is matched first by rule \"{}\" (line {}); move it above that rule",
                rules[j].name, rules[j].line
            ),
            None => {
                let list: Vec<String> = by
                    .iter()
                    .map(|&j| format!("\"{}\" (line {})", rules[j].name, rules[j].line))
                    .collect();
                format!(
                    "never applies: every key it matches is matched first by one of the rules {}; move it above them",
                    list.join(", ")
                )
            }
        };
        out.push(RulesWarning {
            origin: origin.into(),
            line: later.line,
            rule: later.name.clone(),
            message,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::keys::rules::test_support::{SEED, file, load, warnings};

    #[test]
    fn a_greedy_generic_rule_first_shadows_every_seed_rule() {
        let greedy = "[[rule]]\nname = \"all\"\nfrom = \"josancamon:rayban-meta-glasses-api:{k..}\"\nto = \"meta-glasses:{k}\"\n\n";
        let w = warnings(&format!("{greedy}{SEED}"));
        assert_eq!(w.len(), 5, "{w:?}");
        assert!(
            w.iter()
                .all(|w| w.contains("never applies") && w.contains("\"all\" (line 1)")),
            "{w:?}"
        );
    }

    #[test]
    fn shadowed_rules_warn_exactly() {
        // Every `a:{x}` key is an `a:{y..}` key: the later rule never applies.
        let w = warnings(&file(&[
            ("wide", "a:{y..}", "b:{y}"),
            ("narrow", "a:{x}", "c:{x}"),
        ]));
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with("rules.toml:6: rule \"narrow\": never applies")
                && w[0].contains("\"wide\" (line 1)"),
            "{w:?}"
        );
        // The other way round is fine: `a:b:c` only matches the later rule.
        assert!(
            warnings(&file(&[
                ("narrow", "a:{x}", "c:{x}"),
                ("wide", "a:{y..}", "b:{y}")
            ]))
            .is_empty()
        );
        // A literal rule after a placeholder rule that covers it.
        let w = warnings(&file(&[("any", "a:{x}", "c:{x}"), ("one", "a:b", "c:b")]));
        assert!(
            w.len() == 1 && w[0].contains("\"one\"") && w[0].contains("\"any\""),
            "{w:?}"
        );
        // Not covered: `k:a:z` only matches the later rule.
        assert!(
            warnings(&file(&[
                ("a", "k:{x}", "c:{x}"),
                ("b", "k:{x..}:z", "d:{x}")
            ]))
            .is_empty()
        );
        // Two rules together cover the third although neither does alone.
        let w = warnings(&file(&[
            ("no_colon", "a:b{x}c", "n:{x}"),
            ("colon", "a:{x..}:{y..}", "c:{x}/{y}"),
            ("rest", "a:b{z..}c", "r:{z}"),
        ]));
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with("rules.toml:11: rule \"rest\"")
                && w[0].contains("\"no_colon\" (line 1), \"colon\" (line 6)"),
            "{w:?}"
        );
        // Warnings come in line order.
        let w = warnings(&file(&[
            ("wide", "a:{y..}", "b:{y}"),
            ("narrow", "a:{x}", "c:{x}"),
            ("lossy", "q:{x}:{y}", "b:{x}"),
        ]));
        assert!(
            w.len() == 2 && w[0].contains(":6:") && w[1].contains(":14:"),
            "{w:?}"
        );
    }

    #[test]
    fn cover_finds_a_shortest_escaping_key() {
        let c = |later: &str, earlier: &[&str]| {
            let all: Vec<(String, String, String)> = earlier
                .iter()
                .chain([&later])
                .enumerate()
                .map(|(i, f)| (format!("r{i}"), f.to_string(), "n".to_string()))
                .collect();
            let set = load(&file(
                &all.iter()
                    .map(|(n, f, t)| (n.as_str(), f.as_str(), t.as_str()))
                    .collect::<Vec<_>>(),
            ))
            .unwrap()
            .rules;
            let chains: Vec<Vec<Class>> = set.rules.iter().map(|r| chain(&r.from_pat)).collect();
            let (last, rest) = chains.split_last().unwrap();
            let rest: Vec<&[Class]> = rest.iter().map(Vec::as_slice).collect();
            cover(last, &rest, COVER_BUDGET)
        };
        assert_eq!(c("a:{x..}", &["a:{y}"]), Cover::Escapes(b"a::".to_vec()));
        assert_eq!(c("a:{x}", &["a:{y..}"]), Cover::Covered(vec![0]));
        assert_eq!(c("k:{x}", &["k:a", "k:{y}"]), Cover::Covered(vec![0, 1]));
        assert_eq!(
            c("k:{x}", &["k:a", "z:{y}"]),
            Cover::Escapes(b"k:k".to_vec())
        );
        assert_eq!(c("k:{x}", &[]), Cover::Escapes(b"k:k".to_vec()));
    }

    mod props {
        use super::super::*;
        use super::{file, load};
        use crate::jobs::keys::rules::pattern::{Pattern, STACK_SLOTS};
        use proptest::prelude::*;

        /// Small `from` patterns over `a`, `b` and `:`, with `a` between placeholders.
        fn pattern() -> impl Strategy<Value = String> {
            let lit = prop::collection::vec(prop::sample::select(vec!["a", "b", ":"]), 1..3)
                .prop_map(|v| v.concat());
            let cap = prop::sample::select(vec!["{x}", "{x..}"]).prop_map(String::from);
            prop::collection::vec(prop_oneof![lit, cap], 1..5).prop_map(|pieces| {
                let mut out = String::new();
                let mut n = 0;
                let mut last_cap = false;
                for p in pieces {
                    let is_cap = p.starts_with('{');
                    if is_cap && last_cap {
                        out.push('a');
                    }
                    if is_cap {
                        out.push_str(&p.replace('x', &format!("x{n}")));
                        n += 1;
                    } else {
                        out.push_str(&p);
                    }
                    last_cap = is_cap;
                }
                out
            })
        }

        fn keys(max: usize) -> Vec<Vec<u8>> {
            let mut all = vec![Vec::new()];
            let mut frontier = vec![Vec::new()];
            for _ in 0..max {
                frontier = frontier
                    .iter()
                    .flat_map(|k: &Vec<u8>| {
                        [b'a', b'b', b':', b'\0'].map(|c| [k.clone(), vec![c]].concat())
                    })
                    .collect();
                all.extend(frontier.iter().cloned());
            }
            all
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(96))]

            /// The inclusion check is exact: a claimed escape really escapes, and a claimed
            /// cover holds for every short key.
            #[test]
            fn cover_is_exact(
                later in pattern(),
                earlier in prop::collection::vec(pattern(), 1..4),
            ) {
                let names: Vec<String> = (0..=earlier.len()).map(|i| format!("r{i}")).collect();
                let specs: Vec<(&str, &str, &str)> = earlier
                    .iter()
                    .chain([&later])
                    .zip(&names)
                    .map(|(f, n)| (n.as_str(), f.as_str(), "n"))
                    .collect();
                let set = load(&file(&specs)).unwrap().rules;
                let pats: Vec<&Pattern> = set.rules.iter().map(|r| &r.from_pat).collect();
                let (last, rest) = pats.split_last().unwrap();
                let chains: Vec<Vec<Class>> = rest.iter().map(|p| chain(p)).collect();
                let refs: Vec<&[Class]> = chains.iter().map(Vec::as_slice).collect();
                let mut caps = [(0, 0); STACK_SLOTS];
                let mut m = |p: &Pattern, k: &[u8]| p.matches(k, &mut caps);
                match cover(&chain(last), &refs, COVER_BUDGET) {
                    Cover::Escapes(k) => {
                        prop_assert!(m(last, &k), "{k:?}");
                        for p in rest {
                            prop_assert!(!m(p, &k), "{k:?}");
                        }
                    }
                    Cover::Covered(by) => {
                        prop_assert!(!by.is_empty());
                        for k in keys(6) {
                            if m(last, &k) {
                                prop_assert!(rest.iter().any(|p| m(p, &k)), "{k:?} escapes");
                            }
                        }
                    }
                    Cover::Unknown => prop_assert!(false, "gave up on small patterns"),
                }
            }
        }
    }
}
