//! Key-rename rules: `from` patterns over bytes with `{name}` (one or more bytes without `:`)
//! and `{name..}` (one or more bytes of any value) placeholders, `to` templates, first match
//! wins.
//!
//! ```toml
//! [[rule]]
//! name = "reminder"
//! from = "josancamon:rayban-meta-glasses-api:reminder:{event_id}"
//! to   = "meta-glasses:reminder:event:{event_id}"
//! ```
//!
//! `{{` and `}}` stand for literal braces; every other character is literal bytes. A pattern
//! matches the whole key. When a key can be split several ways, earlier placeholders take as
//! few bytes as possible (`a:{x..}-{y..}` splits `a:1-2-3` into `1` and `2-3`).
//!
//! Loading checks every rule and reports problems as `origin:line: message`. Two things are
//! legal but reported as warnings: a rule that can never win because earlier rules match every
//! key it matches (decided exactly, by a language-inclusion check over the patterns), and a
//! `to` that cannot be read back into the old name (a dropped, repeated or run-together
//! placeholder), which also means the rule has no [`RuleSet::reverse`] mapping.
//!
//! What is where:
//!
//! - this file: the public types ([`RuleSet`], [`Rule`], [`LoadedRules`], [`RulesError`],
//!   [`RulesWarning`]);
//! - `load`: reading a rules file ([`RuleSet::load`], [`RuleSet::from_toml_str`]): the TOML
//!   layout, required fields, unique names and the line each message points at;
//! - `tokenize`: splitting a `from` or `to` text into literals and placeholders;
//! - `compile`: one rule's `from` pattern, `to` template and reverse mapping, with the
//!   warning for a `to` that cannot be read back;
//! - `pattern`: compiled patterns, the matcher and template rendering;
//! - `rename`: [`RuleSet::rename`] and [`RuleSet::reverse`];
//! - `automaton`: patterns as NFAs over bytes, for the checks below;
//! - `shadow`: the exact check that warns about rules that can never win;
//! - `collisions`: [`RuleSet::collision_risks`];
//! - `scan`: [`RuleSet::scan_globs`];
//! - `fingerprint`: [`RuleSet::fingerprint`].

mod automaton;
mod collisions;
mod compile;
mod fingerprint;
mod load;
mod pattern;
mod rename;
mod scan;
mod shadow;
mod tokenize;

#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;

use std::fmt;

use pattern::{Pattern, Tok};

/// A rules file that cannot be used. Every message starts with `origin:line:`, except for
/// [`RulesError::Io`], where there is no line.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    /// The file cannot be read.
    #[error("{origin}: cannot read the rules file: {source}")]
    Io {
        /// The path.
        origin: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Invalid TOML, an unknown field or a value of the wrong type.
    #[error("{origin}:{line}: {message}")]
    Syntax {
        /// The path or name of the rules.
        origin: String,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A rule is missing a field or has an empty one.
    #[error(
        "{origin}:{line}: rule {rule}: `{field}` is missing or empty; every rule needs name, from and to"
    )]
    Missing {
        /// The path or name of the rules.
        origin: String,
        /// 1-based line.
        line: usize,
        /// The rule's name, quoted, or `#n` for the n-th rule when it has no name.
        rule: String,
        /// The field.
        field: &'static str,
    },
    /// A pattern or template is malformed.
    #[error("{origin}:{line}: rule {rule}: `{field}` {message}")]
    Pattern {
        /// The path or name of the rules.
        origin: String,
        /// 1-based line.
        line: usize,
        /// The rule's name, quoted.
        rule: String,
        /// `from` or `to`.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// `to` uses a placeholder that `from` does not capture.
    #[error("{origin}:{line}: rule {rule}: `to` uses {{{name}}}, which `from` does not capture")]
    UnknownPlaceholder {
        /// The path or name of the rules.
        origin: String,
        /// 1-based line.
        line: usize,
        /// The rule's name, quoted.
        rule: String,
        /// The placeholder.
        name: String,
    },
    /// Two rules have the same name.
    #[error(
        "{origin}:{line}: rule name \"{name}\" is already used on line {first_line}; names must be unique"
    )]
    DuplicateName {
        /// The path or name of the rules.
        origin: String,
        /// 1-based line of the second use.
        line: usize,
        /// The name.
        name: String,
        /// Line of the first use.
        first_line: usize,
    },
    /// The file holds no `[[rule]]`.
    #[error("{origin}:{line}: no rules: add at least one [[rule]] with name, from and to")]
    Empty {
        /// The path or name of the rules.
        origin: String,
        /// Always 1: the whole file is concerned.
        line: usize,
    },
}

/// Something legal but probably unintended in a rules file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RulesWarning {
    /// The path or name of the rules.
    pub origin: String,
    /// 1-based line.
    pub line: usize,
    /// The rule concerned.
    pub rule: String,
    /// What is odd.
    pub message: String,
}

impl fmt::Display for RulesWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: rule \"{}\": {}",
            self.origin, self.line, self.rule, self.message
        )
    }
}

/// One rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Its unique name.
    pub name: String,
    /// The old-name pattern as written.
    pub from: String,
    /// The new-name template as written.
    pub to: String,
    /// Line of the rule's `[[rule]]` header in the file.
    pub line: usize,
    from_pat: Pattern,
    to_tpl: Vec<Tok>,
    /// `to` read as a pattern and `from` as its template, when `to` can be read back.
    reverse: Option<(Pattern, Vec<Tok>)>,
}

/// The compiled rules of a file, in file order.
#[derive(Debug, Clone)]
pub struct RuleSet {
    rules: Vec<Rule>,
}

/// Rules and the warnings found while loading them.
#[derive(Debug, Clone)]
pub struct LoadedRules {
    /// The rules.
    pub rules: RuleSet,
    /// Warnings to show the operator, in line order.
    pub warnings: Vec<RulesWarning>,
}

impl RuleSet {
    /// The rules in file order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there are no rules (never true for a loaded set).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}
