//! Key-rename rules: `from` patterns over bytes with `{name}` (one or more bytes without `:`)
//! and `{name..}` (one or more bytes) placeholders, `to` templates, first match wins.
//!
//! ```toml
//! [[rule]]
//! name = "reminder"
//! from = "josancamon:rayban-meta-glasses-api:reminder:{event_id}"
//! to   = "meta-glasses:reminder:event:{event_id}"
//! ```
//!
//! `{{` and `}}` stand for literal braces. Loading checks every rule and reports problems as
//! `file:line: message`; a rule that can never win because an earlier rule matches every key it
//! matches is a warning, decided exactly by a language-inclusion check.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

/// A rules file that cannot be used. Every message starts with `origin:line:`.
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
        /// The rule's name, quoted, or its position.
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
    #[error("{origin}:1: no rules: add at least one [[rule]] with name, from and to")]
    Empty {
        /// The path or name of the rules.
        origin: String,
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

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Lit(Vec<u8>),
    /// A capture: its slot and whether it may contain `:`.
    Cap(usize, bool),
}

/// A compiled pattern: tokens, and how many captures it makes.
#[derive(Debug, Clone)]
struct Pattern {
    toks: Vec<Tok>,
    slots: usize,
    any_caps: usize,
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
    /// Line of the `[[rule]]` in the file.
    pub line: usize,
    from_pat: Pattern,
    to_tpl: Vec<Tok>,
    /// `to` as a pattern and `from` as a template, when every capture is used in `to`.
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
    /// Warnings to show the operator.
    pub warnings: Vec<RulesWarning>,
}

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
    #[allow(dead_code)]
    description: Option<String>,
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

fn valid_name(n: &str) -> bool {
    let mut chars = n.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A piece of a pattern as written.
enum Piece {
    /// Literal bytes.
    Lit(Vec<u8>),
    /// `{name}` (`any` false) or `{name..}` (`any` true).
    Placeholder(String, bool),
}

/// Splits a pattern into literals and placeholders.
fn tokenize(s: &str, allow_any: bool) -> Result<Vec<Piece>, String> {
    let b = s.as_bytes();
    let mut out: Vec<Piece> = Vec::new();
    let mut lit = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'{' if b.get(i + 1) == Some(&b'{') => {
                lit.push(b'{');
                i += 2;
            }
            b'}' if b.get(i + 1) == Some(&b'}') => {
                lit.push(b'}');
                i += 2;
            }
            b'}' => {
                return Err(format!(
                    "has a stray `}}` at byte {i}; write `}}}}` for a literal brace"
                ));
            }
            b'{' => {
                let Some(len) = b[i + 1..].iter().position(|&c| c == b'}') else {
                    return Err(format!("has an unclosed `{{` at byte {i}"));
                };
                let inner = &s[i + 1..i + 1 + len];
                let (name, any) = match inner.strip_suffix("..") {
                    Some(n) => (n, true),
                    None => (inner, false),
                };
                if !valid_name(name) {
                    return Err(format!(
                        "has a bad placeholder `{{{inner}}}`: names are letters, digits and `_`, not starting with a digit"
                    ));
                }
                if any && !allow_any {
                    return Err(format!(
                        "uses `{{{inner}}}`: `..` belongs in `from` only; write `{{{name}}}`"
                    ));
                }
                if !lit.is_empty() {
                    out.push(Piece::Lit(std::mem::take(&mut lit)));
                }
                out.push(Piece::Placeholder(name.to_string(), any));
                i += len + 2;
            }
            c => {
                lit.push(c);
                i += 1;
            }
        }
    }
    if !lit.is_empty() {
        out.push(Piece::Lit(lit));
    }
    Ok(out)
}

impl Pattern {
    fn new(toks: Vec<Tok>) -> Self {
        let slots = toks.iter().filter(|t| matches!(t, Tok::Cap(..))).count();
        let any_caps = toks
            .iter()
            .filter(|t| matches!(t, Tok::Cap(_, true)))
            .count();
        Self {
            toks,
            slots,
            any_caps,
        }
    }

    /// Matches the whole key; fills `caps[slot] = (start, end)`.
    fn matches(&self, key: &[u8], caps: &mut [(usize, usize)]) -> bool {
        if let Some(Tok::Lit(prefix)) = self.toks.first()
            && !key.starts_with(prefix)
        {
            return false;
        }
        if self.any_caps >= 2 {
            let mut failed = HashSet::new();
            self.step(0, 0, key, caps, Some(&mut failed))
        } else {
            self.step(0, 0, key, caps, None)
        }
    }

    fn step(
        &self,
        t: usize,
        pos: usize,
        key: &[u8],
        caps: &mut [(usize, usize)],
        mut failed: Option<&mut HashSet<(usize, usize)>>,
    ) -> bool {
        if let Some(f) = failed.as_deref()
            && f.contains(&(t, pos))
        {
            return false;
        }
        let ok = match self.toks.get(t) {
            None => pos == key.len(),
            Some(Tok::Lit(l)) => {
                key[pos..].starts_with(l)
                    && self.step(t + 1, pos + l.len(), key, caps, failed.as_deref_mut())
            }
            Some(Tok::Cap(slot, any)) => {
                let rest = &key[pos..];
                let limit = if *any {
                    rest.len()
                } else {
                    rest.iter().position(|&b| b == b':').unwrap_or(rest.len())
                };
                let next_lit = match self.toks.get(t + 1) {
                    Some(Tok::Lit(l)) => Some(l.as_slice()),
                    _ => None,
                };
                let mut found = false;
                for len in 1..=limit {
                    if let Some(l) = next_lit
                        && !rest[len..].starts_with(l)
                    {
                        continue;
                    }
                    if next_lit.is_none() && t + 1 == self.toks.len() && len != rest.len() {
                        continue;
                    }
                    caps[*slot] = (pos, pos + len);
                    if self.step(t + 1, pos + len, key, caps, failed.as_deref_mut()) {
                        found = true;
                        break;
                    }
                }
                found
            }
        };
        if !ok && let Some(f) = failed {
            f.insert((t, pos));
        }
        ok
    }

    /// A SCAN glob covering the pattern: its literal prefix, escaped, then `*`.
    fn glob(&self) -> Vec<u8> {
        let mut g = Vec::new();
        if let Some(Tok::Lit(l)) = self.toks.first() {
            for &b in l {
                if matches!(b, b'*' | b'?' | b'[' | b']' | b'\\') {
                    g.push(b'\\');
                }
                g.push(b);
            }
        }
        g.push(b'*');
        g
    }
}

fn render(tpl: &[Tok], key: &[u8], caps: &[(usize, usize)], out: &mut Vec<u8>) {
    for t in tpl {
        match t {
            Tok::Lit(l) => out.extend_from_slice(l),
            Tok::Cap(slot, _) => {
                let (a, b) = caps[*slot];
                out.extend_from_slice(&key[a..b]);
            }
        }
    }
}

/// Element classes of the patterns as automata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Byte(u8),
    NotColon,
    Any,
}

impl Class {
    fn accepts(self, c: u8) -> bool {
        match self {
            Class::Byte(b) => b == c,
            Class::NotColon => c != b':',
            Class::Any => true,
        }
    }
}

/// The pattern as a chain of elements; element `i` leads from state `i` to `i + 1`, and a
/// capture's element also loops on state `i + 1` (one or more).
fn chain(p: &Pattern) -> Vec<Class> {
    let mut out = Vec::new();
    for t in &p.toks {
        match t {
            Tok::Lit(l) => out.extend(l.iter().map(|&b| Class::Byte(b))),
            Tok::Cap(_, any) => out.push(if *any { Class::Any } else { Class::NotColon }),
        }
    }
    out
}

fn advance(chain: &[Class], states: &[usize], c: u8) -> Vec<usize> {
    let mut next: Vec<usize> = Vec::new();
    for &s in states {
        if let Some(e) = chain.get(s)
            && e.accepts(c)
        {
            next.push(s + 1);
        }
        if s > 0 && !matches!(chain[s - 1], Class::Byte(_)) && chain[s - 1].accepts(c) {
            next.push(s);
        }
    }
    next.sort_unstable();
    next.dedup();
    next
}

/// Whether every key `later` matches is also matched by `earlier` (so `later` never wins).
fn included(later: &Pattern, earlier: &Pattern) -> bool {
    let (b, a) = (chain(later), chain(earlier));
    let mut alphabet: Vec<u8> = b
        .iter()
        .chain(a.iter())
        .filter_map(|c| match c {
            Class::Byte(x) => Some(*x),
            _ => None,
        })
        .collect();
    alphabet.push(b':');
    alphabet.sort_unstable();
    alphabet.dedup();
    if let Some(other) = (0..=255u8).find(|x| !alphabet.contains(x)) {
        alphabet.push(other);
    }
    let start = (vec![0usize], vec![0usize]);
    let mut seen = HashSet::new();
    let mut queue = VecDeque::from([start.clone()]);
    seen.insert(start);
    while let Some((sb, sa)) = queue.pop_front() {
        if sb.contains(&b.len()) && !sa.contains(&a.len()) {
            return false;
        }
        for &c in &alphabet {
            let nb = advance(&b, &sb, c);
            if nb.is_empty() {
                continue;
            }
            let na = advance(&a, &sa, c);
            let pair = (nb, na);
            if seen.insert(pair.clone()) {
                queue.push_back(pair);
            }
        }
    }
    true
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
        let raw: RawFile = toml::from_str(text).map_err(|e| RulesError::Syntax {
            origin: origin.to_string(),
            line: e.span().map(|s| line_of(text, s.start)).unwrap_or(1),
            message: e.message().trim_end().to_string(),
        })?;
        if raw.rule.is_empty() {
            return Err(RulesError::Empty {
                origin: origin.to_string(),
            });
        }
        let mut rules = Vec::new();
        let mut warnings = Vec::new();
        let mut names: HashMap<String, usize> = HashMap::new();
        for (idx, spanned) in raw.rule.into_iter().enumerate() {
            let table_line = line_of(text, spanned.span().start);
            let r = spanned.into_inner();
            let label = r
                .name
                .as_ref()
                .map(|n| format!("\"{}\"", n.get_ref()))
                .unwrap_or_else(|| format!("#{}", idx + 1));
            let field = |f: &Option<Spanned<String>>,
                         name: &'static str|
             -> Result<(String, usize), RulesError> {
                match f {
                    Some(v) if !v.get_ref().is_empty() => {
                        Ok((v.get_ref().clone(), line_of(text, v.span().start)))
                    }
                    Some(v) => Err(RulesError::Missing {
                        origin: origin.into(),
                        line: line_of(text, v.span().start),
                        rule: label.clone(),
                        field: name,
                    }),
                    None => Err(RulesError::Missing {
                        origin: origin.into(),
                        line: table_line,
                        rule: label.clone(),
                        field: name,
                    }),
                }
            };
            let (name, name_line) = field(&r.name, "name")?;
            let (from, from_line) = field(&r.from, "from")?;
            let (to, to_line) = field(&r.to, "to")?;
            if let Some(&first_line) = names.get(&name) {
                return Err(RulesError::DuplicateName {
                    origin: origin.into(),
                    line: name_line,
                    name,
                    first_line,
                });
            }
            names.insert(name.clone(), name_line);
            let bad = |field: &'static str, line: usize, message: String| RulesError::Pattern {
                origin: origin.into(),
                line,
                rule: label.clone(),
                field,
                message,
            };
            // `from`: literals and captures, each capture name once, never two captures in a row.
            let mut slot_of: HashMap<String, (usize, bool)> = HashMap::new();
            let mut toks = Vec::new();
            for t in tokenize(&from, true).map_err(|m| bad("from", from_line, m))? {
                match t {
                    Piece::Lit(l) => toks.push(Tok::Lit(l)),
                    Piece::Placeholder(n, any) => {
                        if slot_of.contains_key(&n) {
                            return Err(bad(
                                "from",
                                from_line,
                                format!("captures {{{n}}} twice; each placeholder may appear once"),
                            ));
                        }
                        if matches!(toks.last(), Some(Tok::Cap(..))) {
                            return Err(bad(
                                "from",
                                from_line,
                                format!(
                                    "has {{{n}}} right after another placeholder: placeholders must be separated by literal text"
                                ),
                            ));
                        }
                        let slot = slot_of.len();
                        slot_of.insert(n, (slot, any));
                        toks.push(Tok::Cap(slot, any));
                    }
                }
            }
            let from_pat = Pattern::new(toks);
            let mut to_tpl = Vec::new();
            let mut used = HashSet::new();
            for t in tokenize(&to, false).map_err(|m| bad("to", to_line, m))? {
                match t {
                    Piece::Lit(l) => to_tpl.push(Tok::Lit(l)),
                    Piece::Placeholder(n, _) => {
                        let Some(&(slot, any)) = slot_of.get(&n) else {
                            return Err(RulesError::UnknownPlaceholder {
                                origin: origin.into(),
                                line: to_line,
                                rule: label.clone(),
                                name: n,
                            });
                        };
                        used.insert(slot);
                        to_tpl.push(Tok::Cap(slot, any));
                    }
                }
            }
            let reverse = if used.len() == from_pat.slots {
                // `to` read as a pattern needs literal text between its placeholders too.
                let adjacent = to_tpl
                    .windows(2)
                    .any(|w| matches!(w, [Tok::Cap(..), Tok::Cap(..)]));
                let once =
                    to_tpl.iter().filter(|t| matches!(t, Tok::Cap(..))).count() == used.len();
                (!adjacent && once).then(|| (Pattern::new(to_tpl.clone()), from_pat.toks.clone()))
            } else {
                let mut unused: Vec<&String> = slot_of
                    .iter()
                    .filter(|(_, (s, _))| !used.contains(s))
                    .map(|(n, _)| n)
                    .collect();
                unused.sort();
                let list: Vec<String> = unused.iter().map(|n| format!("{{{n}}}")).collect();
                warnings.push(RulesWarning {
                    origin: origin.into(),
                    line: to_line,
                    rule: name.clone(),
                    message: format!(
                        "`to` drops {} captured by `from`, so two old keys can get one new name",
                        list.join(", ")
                    ),
                });
                None
            };
            rules.push(Rule {
                name,
                from,
                to,
                line: table_line,
                from_pat,
                to_tpl,
                reverse,
            });
        }
        for (i, later) in rules.iter().enumerate() {
            if let Some(earlier) = rules[..i]
                .iter()
                .find(|e| included(&later.from_pat, &e.from_pat))
            {
                warnings.push(RulesWarning {
                    origin: origin.into(),
                    line: later.line,
                    rule: later.name.clone(),
                    message: format!(
                        "never applies: every key it matches is matched first by rule \"{}\" (line {}); move it above that rule",
                        earlier.name, earlier.line
                    ),
                });
            }
        }
        Ok(LoadedRules {
            rules: RuleSet { rules },
            warnings,
        })
    }

    /// The new name of `key` and the index of the rule that matched, or None when unmatched.
    pub fn rename(&self, key: &[u8]) -> Option<(usize, Vec<u8>)> {
        let mut caps = [(0usize, 0usize); 8];
        let mut heap;
        for (i, r) in self.rules.iter().enumerate() {
            let caps: &mut [(usize, usize)] = if r.from_pat.slots <= caps.len() {
                &mut caps[..]
            } else {
                heap = vec![(0, 0); r.from_pat.slots];
                &mut heap[..]
            };
            if r.from_pat.matches(key, caps) {
                let mut out = Vec::with_capacity(key.len() + 16);
                render(&r.to_tpl, key, caps, &mut out);
                return Some((i, out));
            }
        }
        None
    }

    /// Old name of a new key (the inverse mapping), with the rule index.
    pub fn reverse(&self, new_key: &[u8]) -> Option<(usize, Vec<u8>)> {
        for (i, r) in self.rules.iter().enumerate() {
            let Some((pat, tpl)) = &r.reverse else {
                continue;
            };
            let mut caps = vec![(0usize, 0usize); r.from_pat.slots];
            if pat.matches(new_key, &mut caps) {
                let mut old = Vec::new();
                render(tpl, new_key, &caps, &mut old);
                if self
                    .rename(&old)
                    .is_some_and(|(j, n)| j == i && n == new_key)
                {
                    return Some((i, old));
                }
            }
        }
        None
    }

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

    /// SCAN MATCH globs that together cover every key some rule can match.
    pub fn scan_globs(&self) -> Vec<Vec<u8>> {
        let mut globs: Vec<Vec<u8>> = self.rules.iter().map(|r| r.from_pat.glob()).collect();
        globs.sort();
        globs.dedup();
        let all = globs.clone();
        globs.retain(|g| {
            !all.iter().any(|o| {
                o != g && g.starts_with(&o[..o.len() - 1]) && !o[..o.len() - 1].ends_with(b"\\")
            })
        });
        globs
    }

    /// A stable hex fingerprint of the rules (FNV-1a 64 over name, from and to of each rule).
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
