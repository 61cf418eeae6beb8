//! Compiling one rule: its `from` pattern, its `to` template and, when `to` can be read back
//! into the old name, its reverse mapping (otherwise a warning says why there is none).

use super::pattern::{Pattern, Tok};
use super::tokenize::{Piece, tokenize};
use super::{Rule, RulesError, RulesWarning};

/// The placeholders `from` captures, in slot order: each name and whether it may hold `:`.
type Captures = Vec<(String, bool)>;

/// One rule's fields as read, ready to compile.
pub(super) struct RuleSource<'a> {
    /// The path or name of the rules.
    pub(super) origin: &'a str,
    /// The rule's name, quoted, or `#n` for the n-th rule, as messages show it.
    pub(super) label: String,
    /// The rule's name.
    pub(super) name: String,
    /// `from` as written.
    pub(super) from: String,
    /// Line of `from`.
    pub(super) from_line: usize,
    /// `to` as written.
    pub(super) to: String,
    /// Line of `to`.
    pub(super) to_line: usize,
    /// Line of the rule's `[[rule]]` header.
    pub(super) table_line: usize,
}

impl RuleSource<'_> {
    fn bad(&self, field: &'static str, message: String) -> RulesError {
        let line = if field == "from" {
            self.from_line
        } else {
            self.to_line
        };
        RulesError::Pattern {
            origin: self.origin.into(),
            line,
            rule: self.label.clone(),
            field,
            message,
        }
    }

    fn warn(&self, message: String) -> RulesWarning {
        RulesWarning {
            origin: self.origin.into(),
            line: self.to_line,
            rule: self.name.clone(),
            message,
        }
    }

    /// Compiles `from` and `to`, adding the rule's own warnings to `warnings`.
    pub(super) fn compile(self, warnings: &mut Vec<RulesWarning>) -> Result<Rule, RulesError> {
        let (from_pat, names) = self.compile_from()?;
        let (to_tpl, uses) = self.compile_to(&names)?;
        let reverse = match readback_problem(&names, &uses, &to_tpl) {
            Some(message) => {
                warnings.push(self.warn(message));
                None
            }
            None => Some((
                Pattern::new(to_tpl.clone(), names.len()),
                from_pat.toks.clone(),
            )),
        };
        Ok(Rule {
            name: self.name,
            from: self.from,
            to: self.to,
            line: self.table_line,
            from_pat,
            to_tpl,
            reverse,
        })
    }

    /// `from`: each capture name once, never two captures in a row.
    fn compile_from(&self) -> Result<(Pattern, Captures), RulesError> {
        let mut names: Captures = Vec::new();
        let mut toks = Vec::new();
        for piece in tokenize(&self.from, true).map_err(|m| self.bad("from", m))? {
            match piece {
                Piece::Lit(l) => toks.push(Tok::Lit(l)),
                Piece::Placeholder(n, any) => {
                    if names.iter().any(|(m, _)| *m == n) {
                        return Err(self.bad(
                            "from",
                            format!("captures {{{n}}} twice; each placeholder may appear once"),
                        ));
                    }
                    if matches!(toks.last(), Some(Tok::Cap { .. })) {
                        return Err(self.bad(
                            "from",
                            format!(
                                "has {{{n}}} right after another placeholder: placeholders must be separated by literal text"
                            ),
                        ));
                    }
                    toks.push(Tok::Cap {
                        slot: names.len(),
                        any,
                    });
                    names.push((n, any));
                }
            }
        }
        let slots = names.len();
        Ok((Pattern::new(toks, slots), names))
    }

    /// `to`: literals and placeholders that `from` captures; also how many times `to` uses
    /// each capture.
    fn compile_to(&self, names: &[(String, bool)]) -> Result<(Vec<Tok>, Vec<usize>), RulesError> {
        let mut to_tpl = Vec::new();
        let mut uses = vec![0usize; names.len()];
        for piece in tokenize(&self.to, false).map_err(|m| self.bad("to", m))? {
            match piece {
                Piece::Lit(l) => to_tpl.push(Tok::Lit(l)),
                Piece::Placeholder(n, _) => {
                    let Some(slot) = names.iter().position(|(m, _)| *m == n) else {
                        return Err(RulesError::UnknownPlaceholder {
                            origin: self.origin.into(),
                            line: self.to_line,
                            rule: self.label.clone(),
                            name: n,
                        });
                    };
                    uses[slot] += 1;
                    to_tpl.push(Tok::Cap {
                        slot,
                        any: names[slot].1,
                    });
                }
            }
        }
        Ok((to_tpl, uses))
    }
}

/// Why `to` cannot be read back into the old name, or None when it can. It can only if it
/// keeps every capture exactly once, with literal text between placeholders (as `from` must
/// have).
fn readback_problem(names: &[(String, bool)], uses: &[usize], to_tpl: &[Tok]) -> Option<String> {
    let dropped: Vec<String> = names
        .iter()
        .zip(uses)
        .filter(|(_, u)| **u == 0)
        .map(|((n, _), _)| format!("{{{n}}}"))
        .collect();
    let repeated: Vec<String> = names
        .iter()
        .zip(uses)
        .filter(|(_, u)| **u > 1)
        .map(|((n, _), _)| format!("{{{n}}}"))
        .collect();
    let run_together = to_tpl.windows(2).find_map(|w| match w {
        [Tok::Cap { slot: a, .. }, Tok::Cap { slot: b, .. }] => Some((*a, *b)),
        _ => None,
    });
    if !dropped.is_empty() {
        Some(format!(
            "`to` drops {} captured by `from`, so two old keys can get one new name; this rule has no reverse mapping",
            dropped.join(", ")
        ))
    } else if !repeated.is_empty() {
        Some(format!(
            "`to` uses {} more than once, so new names are not read back: this rule has no reverse mapping",
            repeated.join(", ")
        ))
    } else {
        run_together.map(|(a, b)| {
            format!(
                "`to` has {{{}}} right before {{{}}} with no literal text between them, so two old keys can get one new name; this rule has no reverse mapping",
                names[a].0, names[b].0
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::jobs::keys::rules::test_support::{file, load, rejected, warnings};

    #[test]
    fn malformed_placeholders_are_rejected_on_their_line() {
        let at = |from: &str, to: &str| {
            format!("\n[[rule]]\nname = \"r\"\nfrom = '{from}'\nto = '{to}'\n")
        };
        rejected(&at("x:{id", "y"), 4, &["rule \"r\"", "`from`", "unclosed"]);
        rejected(&at("x:id}", "y"), 4, &["`from`", "stray"]);
        rejected(&at("x:{id}", "y:{id}}"), 5, &["`to`", "stray"]);
        rejected(&at("x:{1d}", "y"), 4, &["bad placeholder `{1d}`"]);
        rejected(&at("x:{}", "y"), 4, &["bad placeholder `{}`"]);
        rejected(&at("x:{a-b}", "y"), 4, &["bad placeholder"]);
        rejected(&at("x:{..}", "y"), 4, &["bad placeholder"]);
        rejected(&at("x:{a..}", "y:{a..}"), 5, &["`to`", "`from` only"]);
        rejected(&at("x:{a}:{a}", "y:{a}"), 4, &["{a}", "twice"]);
        rejected(&at("x:{a}:{a..}", "y:{a}"), 4, &["twice"]);
        rejected(
            &at("x:{a}{b..}", "y:{a}:{b}"),
            4,
            &["separated by literal text"],
        );
        rejected(
            &at("x:{a}", "y:{b}"),
            5,
            &["`to` uses {b}, which `from` does not capture"],
        );
    }

    #[test]
    fn unknown_placeholder_message_reads_as_documented() {
        let text = "# Ferry rules\n\n[[rule]]\nname = \"cache\"\n\nfrom = \"p:{b64}\"\nto = \"n:{b64x}\"\n";
        assert_eq!(
            load(text).unwrap_err().to_string(),
            "rules.toml:7: rule \"cache\": `to` uses {b64x}, which `from` does not capture"
        );
    }

    #[test]
    fn rules_whose_to_cannot_be_read_back_warn_and_have_no_reverse() {
        let cases = [
            ("lossy", "a:{x}:{y}", "b:{x}", "drops {y}"),
            ("twice", "a:{x}", "b:{x}:{x}", "{x} more than once"),
            ("glued", "a:{x}:{y}", "b:{x}{y}", "{x} right before {y}"),
        ];
        for (name, from, to, needle) in cases {
            let loaded = load(&file(&[(name, from, to)])).unwrap();
            let w: Vec<String> = loaded.warnings.iter().map(ToString::to_string).collect();
            assert_eq!(w.len(), 1, "{w:?}");
            assert!(
                w[0].starts_with(&format!("rules.toml:4: rule \"{name}\": ")),
                "{w:?}"
            );
            assert!(
                w[0].contains(needle) && w[0].contains("no reverse"),
                "{w:?}"
            );
            let new = loaded
                .rules
                .rename(b"a:1:2")
                .or(loaded.rules.rename(b"a:1"));
            let (_, new) = new.unwrap();
            assert_eq!(loaded.rules.reverse(&new), None);
        }
        assert!(warnings(&file(&[("ok", "a:{x}:{y}", "b:{y}:{x}")])).is_empty());
    }
}
