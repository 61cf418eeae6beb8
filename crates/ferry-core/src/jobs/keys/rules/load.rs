//! Reading a rules file: the TOML layout, required fields, unique names and the line each
//! message points at. Each rule is then compiled, and the whole set checked for rules that
//! earlier ones shadow.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use super::compile::RuleSource;
use super::shadow::shadow_warnings;
use super::{LoadedRules, Rule, RuleSet, RulesError};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    rule: Vec<Spanned<RawRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: Option<Spanned<String>>,
    from: Option<Spanned<String>>,
    to: Option<Spanned<String>>,
    /// Free text for people; only checked to be a string.
    #[allow(dead_code)]
    description: Option<String>,
}

/// Byte offsets to 1-based line numbers.
struct Lines(Vec<usize>);

impl Lines {
    fn new(text: &str) -> Self {
        Self(
            text.bytes()
                .enumerate()
                .filter(|&(_, b)| b == b'\n')
                .map(|(i, _)| i)
                .collect(),
        )
    }

    /// The line holding byte `offset`.
    fn of(&self, offset: usize) -> usize {
        self.0.partition_point(|&nl| nl < offset) + 1
    }
}

impl RuleSet {
    /// Reads and compiles a rules file.
    pub fn load(path: &Path) -> Result<LoadedRules, RulesError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| RulesError::Io {
            origin: origin.clone(),
            source,
        })?;
        Self::from_toml_str(&text, &origin)
    }

    /// Compiles rules from TOML text; `origin` names the source in messages.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<LoadedRules, RulesError> {
        let lines = Lines::new(text);
        let raw = parse(text, origin, &lines)?;
        if raw.rule.is_empty() {
            return Err(RulesError::Empty {
                origin: origin.to_string(),
                line: 1,
            });
        }
        let mut rules: Vec<Rule> = Vec::new();
        let mut warnings = Vec::new();
        let mut names: HashMap<String, usize> = HashMap::new();
        for (idx, spanned) in raw.rule.into_iter().enumerate() {
            let (source, name_line) = read_rule(spanned, idx, origin, &lines)?;
            if let Some(&first_line) = names.get(&source.name) {
                return Err(RulesError::DuplicateName {
                    origin: origin.into(),
                    line: name_line,
                    name: source.name,
                    first_line,
                });
            }
            names.insert(source.name.clone(), name_line);
            rules.push(source.compile(&mut warnings)?);
        }
        warnings.extend(shadow_warnings(&rules, origin));
        warnings.sort_by_key(|w| w.line);
        Ok(LoadedRules {
            rules: RuleSet { rules },
            warnings,
        })
    }
}

/// Parses the TOML text; an error points at its line.
fn parse(text: &str, origin: &str, lines: &Lines) -> Result<RawFile, RulesError> {
    toml::from_str(text).map_err(|e| {
        let mut message = e.message().trim_end().to_string();
        if message.ends_with("expected a sequence") {
            message.push_str(": write each rule as a [[rule]] table (double brackets)");
        }
        RulesError::Syntax {
            origin: origin.to_string(),
            line: e.span().map(|s| lines.of(s.start)).unwrap_or(1),
            message,
        }
    })
}

/// Checks that the `idx`-th `[[rule]]` table has a non-empty name, from and to; returns the
/// rule's fields and the line of its name.
fn read_rule<'a>(
    spanned: Spanned<RawRule>,
    idx: usize,
    origin: &'a str,
    lines: &Lines,
) -> Result<(RuleSource<'a>, usize), RulesError> {
    let table_line = lines.of(spanned.span().start);
    let r = spanned.into_inner();
    let label = r
        .name
        .as_ref()
        .filter(|n| !n.get_ref().is_empty())
        .map(|n| format!("\"{}\"", n.get_ref()))
        .unwrap_or_else(|| format!("#{}", idx + 1));
    let field =
        |f: Option<Spanned<String>>, name: &'static str| -> Result<(String, usize), RulesError> {
            let (line, value) = match f {
                Some(v) => (lines.of(v.span().start), v.into_inner()),
                None => (table_line, String::new()),
            };
            if value.is_empty() {
                return Err(RulesError::Missing {
                    origin: origin.into(),
                    line,
                    rule: label.clone(),
                    field: name,
                });
            }
            Ok((value, line))
        };
    let (name, name_line) = field(r.name, "name")?;
    let (from, from_line) = field(r.from, "from")?;
    let (to, to_line) = field(r.to, "to")?;
    let source = RuleSource {
        origin,
        label,
        name,
        from,
        from_line,
        to,
        to_line,
        table_line,
    };
    Ok((source, name_line))
}

#[cfg(test)]
mod tests {
    use crate::jobs::keys::rules::test_support::{SEED, file, rejected};
    use crate::jobs::keys::rules::{RuleSet, RulesError};

    #[test]
    fn toml_errors_unknown_fields_and_wrong_types_give_the_line() {
        rejected(
            "[[rule]]\nname = \"a\"\nfrom = \"x\"\nto = = \"y\"\n",
            4,
            &[],
        );
        rejected(
            "[[rule]]\nname = \"a\"\nfrom = \"x\"\nto = \"y\"\ncolour = \"red\"\n",
            5,
            &["colour", "`name`", "`from`", "`to`", "`description`"],
        );
        rejected(
            "# rules\ntitle = \"x\"\n[[rule]]\nname = \"a\"\nfrom = \"x\"\nto = \"y\"\n",
            2,
            &["title", "`rule`"],
        );
        rejected(
            "[[rule]]\nname = \"a\"\nfrom = 7\nto = \"y\"\n",
            3,
            &["string"],
        );
        rejected(
            "[[rule]]\nname = \"a\"\nfrom = \"x\"\nto = \"y\"\ndescription = 1\n",
            5,
            &[],
        );
        rejected(
            "[rule]\nname = \"a\"\nfrom = \"x\"\nto = \"y\"\n",
            1,
            &["[[rule]]"],
        );
    }

    #[test]
    fn missing_and_empty_fields_are_rejected() {
        // Missing: the line of the [[rule]] header.
        let two = "[[rule]]\nname = \"a\"\nfrom = \"x\"\nto = \"y\"\n\n# second\n[[rule]]\n";
        rejected(
            &format!("{two}from = \"z\"\nto = \"w\"\n"),
            7,
            &["rule #2", "`name`"],
        );
        rejected(
            &format!("{two}name = \"b\"\nto = \"w\"\n"),
            7,
            &["rule \"b\"", "`from`"],
        );
        rejected(
            &format!("{two}name = \"b\"\nfrom = \"w\"\n"),
            7,
            &["rule \"b\"", "`to`"],
        );
        // Empty: the line of the field.
        rejected(
            &format!("{two}name = \"\"\nfrom = \"z\"\nto = \"w\"\n"),
            8,
            &["`name`"],
        );
        rejected(
            &format!("{two}name = \"b\"\nfrom = \"\"\nto = \"w\"\n"),
            9,
            &["`from`"],
        );
        rejected(
            &format!("{two}name = \"b\"\nfrom = \"z\"\nto = ''\n"),
            10,
            &["`to`"],
        );
    }

    #[test]
    fn duplicate_names_and_empty_files_are_rejected() {
        let text = file(&[("a", "x", "y"), ("b", "z", "w"), ("a", "q", "r")]);
        rejected(&text, 12, &["\"a\"", "line 2"]);
        for empty in ["", "# nothing\n", "rule = []\n"] {
            rejected(empty, 1, &["no rules"]);
        }
    }

    #[test]
    fn load_reads_a_file_and_names_it_in_messages() {
        let dir = std::env::temp_dir().join(format!("ferry-rules-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.toml");
        std::fs::write(&good, SEED).unwrap();
        assert_eq!(RuleSet::load(&good).unwrap().rules.len(), 5);
        let bad = dir.join("bad.toml");
        std::fs::write(&bad, "[[rule]]\nname = \"a\"\nfrom = \"x\"\nto = \"{y}\"\n").unwrap();
        let e = RuleSet::load(&bad).unwrap_err().to_string();
        assert!(e.starts_with(&format!("{}:4: ", bad.display())), "{e}");
        let missing = dir.join("missing.toml");
        let e = RuleSet::load(&missing).unwrap_err();
        assert!(matches!(e, RulesError::Io { .. }), "{e}");
        assert!(e.to_string().contains("missing.toml"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
