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

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

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

// ---------------------------------------------------------------------------------------------
// Compiled patterns and the matcher.

/// A piece of a compiled pattern or template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    /// Literal bytes (never empty).
    Lit(Vec<u8>),
    /// A placeholder: the capture slot it fills or reads, and whether it may hold `:`.
    Cap { slot: usize, any: bool },
}

/// Capture slots kept on the stack; rules with more placeholders use the heap.
const STACK_SLOTS: usize = 8;
/// Failure-memo words kept on the stack (one bit per token and key position).
const STACK_MEMO: usize = 64;
/// Most automaton states one shadowing check may visit before giving up (without warning).
const COVER_BUDGET: usize = 200_000;

/// A compiled pattern, matched against the whole key.
#[derive(Debug, Clone)]
struct Pattern {
    toks: Vec<Tok>,
    /// Length of the capture buffer a match fills (highest slot + 1).
    slots: usize,
    /// Number of placeholders.
    holes: usize,
    /// `min_tail[t]`: the fewest bytes `toks[t..]` can match; `min_tail[toks.len()] == 0`.
    min_tail: Vec<usize>,
}

impl Pattern {
    fn new(toks: Vec<Tok>, slots: usize) -> Self {
        let mut min_tail = vec![0; toks.len() + 1];
        for t in (0..toks.len()).rev() {
            min_tail[t] = min_tail[t + 1]
                + match &toks[t] {
                    Tok::Lit(l) => l.len(),
                    Tok::Cap { .. } => 1,
                };
        }
        let holes = toks.iter().filter(|t| matches!(t, Tok::Cap { .. })).count();
        Self {
            toks,
            slots,
            holes,
            min_tail,
        }
    }

    /// The literal text every match starts with.
    fn prefix(&self) -> &[u8] {
        match self.toks.first() {
            Some(Tok::Lit(l)) => l,
            _ => &[],
        }
    }

    /// The literal text every match ends with.
    fn suffix(&self) -> &[u8] {
        match self.toks.last() {
            Some(Tok::Lit(l)) => l,
            _ => &[],
        }
    }

    /// Matches the whole key, filling `caps[slot] = (start, end)`; on several possible splits,
    /// earlier placeholders take the fewest bytes. `caps` holds at least `self.slots` entries.
    ///
    /// Backtracking remembers every (token, position) that failed, so a key of length `n` costs
    /// at most O(tokens · n²) steps whatever the pattern; for usual keys the memo sits on the
    /// stack and nothing is allocated.
    fn matches(&self, key: &[u8], caps: &mut [(usize, usize)]) -> bool {
        let min = self.min_tail[0];
        if key.len() < min || (self.holes == 0 && key.len() != min) {
            return false;
        }
        // Empty affixes are skipped, not compared: on the dangling pointer of an empty slice,
        // glibc's AVX-512 memcmp was measured several times slower than the whole match.
        let (prefix, suffix) = (self.prefix(), self.suffix());
        if (!prefix.is_empty() && !key.starts_with(prefix))
            || (!suffix.is_empty() && !key.ends_with(suffix))
        {
            return false;
        }
        // The literal prefix is the first token: it is checked, so start after it.
        let (t, pos) = (usize::from(!prefix.is_empty()), prefix.len());
        if self.holes < 2 {
            // One placeholder at most: no choice made can be undone later, nothing to remember.
            return self.step(t, pos, key, caps, &mut []);
        }
        let words = (self.toks.len() * (key.len() + 1)).div_ceil(64);
        if words <= STACK_MEMO {
            let mut memo = [0; STACK_MEMO];
            self.step(t, pos, key, caps, &mut memo[..words])
        } else {
            self.step(t, pos, key, caps, &mut vec![0; words])
        }
    }

    /// Matches `toks[t..]` against `key[pos..]`. An empty `memo` means no memo.
    fn step(
        &self,
        t: usize,
        pos: usize,
        key: &[u8],
        caps: &mut [(usize, usize)],
        memo: &mut [u64],
    ) -> bool {
        match self.toks.get(t) {
            None => pos == key.len(),
            Some(Tok::Lit(l)) => {
                key[pos..].starts_with(l) && self.step(t + 1, pos + l.len(), key, caps, memo)
            }
            Some(&Tok::Cap { slot, any }) => {
                let bit = t * (key.len() + 1) + pos;
                if !memo.is_empty() && memo[bit / 64] & (1 << (bit % 64)) != 0 {
                    return false;
                }
                let rest = &key[pos..];
                // Longest capture that leaves room for the rest of the pattern.
                let mut longest = rest.len().saturating_sub(self.min_tail[t + 1]);
                if !any && let Some(colon) = rest[..longest].iter().position(|&b| b == b':') {
                    longest = colon;
                }
                let found = match self.toks.get(t + 1) {
                    None => {
                        let whole = longest == rest.len() && longest > 0;
                        if whole {
                            caps[slot] = (pos, key.len());
                        }
                        whole
                    }
                    next => (1..=longest).any(|len| {
                        if let Some(Tok::Lit(l)) = next
                            && (rest.get(len) != l.first() || !rest[len..].starts_with(l))
                        {
                            return false;
                        }
                        caps[slot] = (pos, pos + len);
                        self.step(t + 1, pos + len, key, caps, memo)
                    }),
                };
                if !found && !memo.is_empty() {
                    memo[bit / 64] |= 1 << (bit % 64);
                }
                found
            }
        }
    }
}

/// The capture buffer for `n` slots: on the stack when it fits.
fn caps_buffer<'a>(
    stack: &'a mut [(usize, usize); STACK_SLOTS],
    heap: &'a mut Vec<(usize, usize)>,
    n: usize,
) -> &'a mut [(usize, usize)] {
    if n <= STACK_SLOTS {
        &mut stack[..]
    } else {
        heap.resize(n, (0, 0));
        &mut heap[..]
    }
}

/// Writes a template, taking captured ranges of `key`, into a new exactly-sized vector.
fn render(tpl: &[Tok], key: &[u8], caps: &[(usize, usize)]) -> Vec<u8> {
    let len = tpl
        .iter()
        .map(|t| match t {
            Tok::Lit(l) => l.len(),
            Tok::Cap { slot, .. } => caps[*slot].1 - caps[*slot].0,
        })
        .sum();
    let mut out = Vec::with_capacity(len);
    for t in tpl {
        match t {
            Tok::Lit(l) => out.extend_from_slice(l),
            Tok::Cap { slot, .. } => {
                let (a, b) = caps[*slot];
                out.extend_from_slice(&key[a..b]);
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Parsing patterns and templates.

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

/// Splits a pattern or template into literals and placeholders; the error completes
/// "`from` ..." or "`to` ...".
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
                    return Err(format!(
                        "has an unclosed `{{` at byte {i}; write `{{{{` for a literal brace"
                    ));
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

// ---------------------------------------------------------------------------------------------
// Loading.

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

/// One rule's fields as read, ready to compile.
struct RuleSource<'a> {
    origin: &'a str,
    label: String,
    name: String,
    from: String,
    from_line: usize,
    to: String,
    to_line: usize,
    table_line: usize,
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
    fn compile(self, warnings: &mut Vec<RulesWarning>) -> Result<Rule, RulesError> {
        // `from`: each capture name once, never two captures in a row.
        let mut names: Vec<(String, bool)> = Vec::new();
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
        let from_pat = Pattern::new(toks, names.len());

        // `to`: literals and placeholders that `from` captures.
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

        // Can `to` be read back? Only if it keeps every capture exactly once, with literal text
        // between placeholders (as `from` must have).
        let dropped: Vec<String> = names
            .iter()
            .zip(&uses)
            .filter(|(_, u)| **u == 0)
            .map(|((n, _), _)| format!("{{{n}}}"))
            .collect();
        let repeated: Vec<String> = names
            .iter()
            .zip(&uses)
            .filter(|(_, u)| **u > 1)
            .map(|((n, _), _)| format!("{{{n}}}"))
            .collect();
        let run_together = to_tpl.windows(2).find_map(|w| match w {
            [Tok::Cap { slot: a, .. }, Tok::Cap { slot: b, .. }] => Some((*a, *b)),
            _ => None,
        });
        let problem = if !dropped.is_empty() {
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
        };
        let reverse = match problem {
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
}

// ---------------------------------------------------------------------------------------------
// Shadowing: does the union of earlier patterns include a later pattern?

/// What one byte-position of a pattern accepts.
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

/// The pattern as an NFA over a chain: element `i` leads from state `i` to `i + 1`, and a
/// placeholder's element also loops on state `i + 1` (one or more); state `len` accepts.
fn chain(p: &Pattern) -> Vec<Class> {
    let mut out = Vec::new();
    for t in &p.toks {
        match t {
            Tok::Lit(l) => out.extend(l.iter().map(|&b| Class::Byte(b))),
            Tok::Cap { any, .. } => out.push(if *any { Class::Any } else { Class::NotColon }),
        }
    }
    out
}

/// The NFA states of `chain` reachable from state `s` on byte `c`.
fn moves(chain: &[Class], s: usize, c: u8) -> impl Iterator<Item = usize> {
    let forward = chain.get(s).is_some_and(|e| e.accepts(c)).then_some(s + 1);
    let looping =
        (s > 0 && !matches!(chain[s - 1], Class::Byte(_)) && chain[s - 1].accepts(c)).then_some(s);
    forward.into_iter().chain(looping)
}

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

/// Whether two literal texts can both start (or both end) one key.
fn compatible(a: &[u8], b: &[u8]) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// Warnings for rules that earlier rules shadow completely.
fn shadow_warnings(rules: &[Rule], origin: &str) -> Vec<RulesWarning> {
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

/// The alphabet partition two chains need: `:`, each literal byte, and one byte standing for
/// every other value (which all chains treat alike).
fn alphabet_of(chains: &[&[Class]]) -> Vec<u8> {
    let mut alphabet: Vec<u8> = chains
        .iter()
        .copied()
        .flatten()
        .filter_map(|c| match c {
            Class::Byte(b) => Some(*b),
            _ => None,
        })
        .chain([b':'])
        .collect();
    alphabet.sort_unstable();
    alphabet.dedup();
    if let Some(other) = (0..=u8::MAX).find(|b| alphabet.binary_search(b).is_err()) {
        alphabet.push(other);
    }
    alphabet
}

/// Whether some key is accepted by both chains.
fn intersect(a: &[Class], b: &[Class]) -> bool {
    let alphabet = alphabet_of(&[a, b]);
    let mut seen = HashSet::from([(0usize, 0usize)]);
    let mut queue = VecDeque::from([(0usize, 0usize)]);
    while let Some((sa, sb)) = queue.pop_front() {
        if sa == a.len() && sb == b.len() {
            return true;
        }
        for &c in &alphabet {
            for na in moves(a, sa, c) {
                for nb in moves(b, sb, c) {
                    if seen.insert((na, nb)) {
                        queue.push_back((na, nb));
                    }
                }
            }
        }
    }
    false
}

/// Whether some key is accepted by the chain along two different paths, i.e. read back into
/// two different sets of captures.
fn ambiguous(chain: &[Class]) -> bool {
    let alphabet = alphabet_of(&[chain]);
    let start = (0usize, 0usize, false);
    let mut seen = HashSet::from([start]);
    let mut queue = VecDeque::from([start]);
    while let Some((s1, s2, split)) = queue.pop_front() {
        if split && s1 == chain.len() && s2 == chain.len() {
            return true;
        }
        for &c in &alphabet {
            for n1 in moves(chain, s1, c) {
                for n2 in moves(chain, s2, c) {
                    let next = (n1, n2, split || n1 != n2);
                    if seen.insert(next) {
                        queue.push_back(next);
                    }
                }
            }
        }
    }
    false
}

fn reversed(b: &[u8]) -> Vec<u8> {
    b.iter().rev().copied().collect()
}

/// Escapes SCAN glob metacharacters.
fn glob_escape(prefix: &[u8]) -> Vec<u8> {
    let mut g = Vec::with_capacity(prefix.len() + 1);
    for &b in prefix {
        if matches!(b, b'*' | b'?' | b'[' | b']' | b'\\') {
            g.push(b'\\');
        }
        g.push(b);
    }
    g
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
        let raw: RawFile = toml::from_str(text).map_err(|e| {
            let mut message = e.message().trim_end().to_string();
            if message.ends_with("expected a sequence") {
                message.push_str(": write each rule as a [[rule]] table (double brackets)");
            }
            RulesError::Syntax {
                origin: origin.to_string(),
                line: e.span().map(|s| lines.of(s.start)).unwrap_or(1),
                message,
            }
        })?;
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
            let table_line = lines.of(spanned.span().start);
            let r = spanned.into_inner();
            let label = r
                .name
                .as_ref()
                .filter(|n| !n.get_ref().is_empty())
                .map(|n| format!("\"{}\"", n.get_ref()))
                .unwrap_or_else(|| format!("#{}", idx + 1));
            let field = |f: Option<Spanned<String>>,
                         name: &'static str|
             -> Result<(String, usize), RulesError> {
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
            if let Some(&first_line) = names.get(&name) {
                return Err(RulesError::DuplicateName {
                    origin: origin.into(),
                    line: name_line,
                    name,
                    first_line,
                });
            }
            names.insert(name.clone(), name_line);
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
            rules.push(source.compile(&mut warnings)?);
        }
        warnings.extend(shadow_warnings(&rules, origin));
        warnings.sort_by_key(|w| w.line);
        Ok(LoadedRules {
            rules: RuleSet { rules },
            warnings,
        })
    }

    /// The new name of `key` and the index of the rule that matched, or None when unmatched.
    pub fn rename(&self, key: &[u8]) -> Option<(usize, Vec<u8>)> {
        let mut stack = [(0, 0); STACK_SLOTS];
        let mut heap = Vec::new();
        for (i, r) in self.rules.iter().enumerate() {
            let caps = caps_buffer(&mut stack, &mut heap, r.from_pat.slots);
            if r.from_pat.matches(key, caps) {
                return Some((i, render(&r.to_tpl, key, caps)));
            }
        }
        None
    }

    /// Old name of a new key (the inverse mapping), with the rule index: the first rule whose
    /// `to` matches `new_key` and whose old name, renamed again, gives `new_key` back by that
    /// same rule. Rules whose `to` cannot be read back (see the load warnings) have no inverse.
    pub fn reverse(&self, new_key: &[u8]) -> Option<(usize, Vec<u8>)> {
        let mut stack = [(0, 0); STACK_SLOTS];
        let mut heap = Vec::new();
        for (i, r) in self.rules.iter().enumerate() {
            let Some((pattern, template)) = &r.reverse else {
                continue;
            };
            let caps = caps_buffer(&mut stack, &mut heap, pattern.slots);
            if pattern.matches(new_key, caps) {
                let old = render(template, new_key, caps);
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

    /// SCAN MATCH globs that together cover every key some rule can match: each rule's literal
    /// prefix, glob metacharacters `*?[]\` escaped by backslash, followed by `*`; sorted,
    /// deduplicated, and without globs whose prefix extends another glob's prefix.
    pub fn scan_globs(&self) -> Vec<Vec<u8>> {
        let mut prefixes: Vec<&[u8]> = self.rules.iter().map(|r| r.from_pat.prefix()).collect();
        prefixes.sort_unstable_by_key(|p| p.len());
        let mut kept: Vec<&[u8]> = Vec::new();
        for p in prefixes {
            if !kept.iter().any(|k| p.starts_with(k)) {
                kept.push(p);
            }
        }
        let mut globs: Vec<Vec<u8>> = kept
            .into_iter()
            .map(|p| {
                let mut g = glob_escape(p);
                g.push(b'*');
                g
            })
            .collect();
        globs.sort();
        globs
    }

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
    use super::*;

    const SEED: &str = include_str!("../../../config/examples/seed-002-rules.toml");

    fn load(text: &str) -> Result<LoadedRules, RulesError> {
        RuleSet::from_toml_str(text, "rules.toml")
    }

    fn rules(text: &str) -> RuleSet {
        let loaded = load(text).unwrap();
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        loaded.rules
    }

    fn warnings(text: &str) -> Vec<String> {
        load(text)
            .unwrap()
            .warnings
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    /// A rules file from (name, from, to) triples, one rule every 5 lines starting on line 1.
    fn file(rules: &[(&str, &str, &str)]) -> String {
        rules
            .iter()
            .map(|(n, f, t)| format!("[[rule]]\nname = \"{n}\"\nfrom = '{f}'\nto = '{t}'\n\n"))
            .collect()
    }

    /// Asserts the file is rejected with a message on `line` that mentions every needle.
    #[track_caller]
    fn rejected(text: &str, line: usize, needles: &[&str]) {
        let e = load(text).expect_err("should be rejected").to_string();
        assert!(e.starts_with(&format!("rules.toml:{line}: ")), "{e}");
        for n in needles {
            assert!(e.contains(n), "{e:?} lacks {n:?}");
        }
    }

    fn renamed(set: &RuleSet, key: &[u8]) -> Option<Vec<u8>> {
        set.rename(key).map(|(_, k)| k)
    }

    #[test]
    fn seed_file_loads_cleanly_and_maps_every_kind_of_key() {
        let loaded = load(SEED).unwrap();
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        let set = loaded.rules;
        let names: Vec<&str> = set.rules().iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            ["reminder", "history", "profile", "cancellation", "cache"]
        );
        let p = "josancamon:rayban-meta-glasses-api:";
        let cases = [
            (
                "reminder:evt_00000001_42",
                "meta-glasses:reminder:event:evt_00000001_42",
                0,
            ),
            (
                "conversation_history:1001",
                "meta-glasses:user:history:1001",
                1,
            ),
            ("user_profile:1001", "meta-glasses:user:profile:1001", 2),
            (
                "cancellation:wa:1001",
                "meta-glasses:state:cancellation:wa:1001",
                3,
            ),
            (
                "d2VhdGhlciBpbiBjaXR5IDE=",
                "meta-glasses:cache:generic:d2VhdGhlciBpbiBjaXR5IDE=",
                4,
            ),
            // No specific rule takes it and it has no colon: the generic cache rule does.
            ("reminder", "meta-glasses:cache:generic:reminder", 4),
        ];
        for (old, new, rule) in cases {
            let old = format!("{p}{old}");
            assert_eq!(
                set.rename(old.as_bytes()),
                Some((rule, new.as_bytes().to_vec())),
                "{old}"
            );
            assert_eq!(
                set.reverse(new.as_bytes()),
                Some((rule, old.as_bytes().to_vec())),
                "{new}"
            );
        }
        for unmatched in [
            "other:key",
            "josancamon:rayban-meta-glasses-api:",
            "josancamon:rayban-meta-glasses-api:reminder:a:b",
            "josancamon:rayban-meta-glasses-api:cancellation:wa",
            "xjosancamon:rayban-meta-glasses-api:abc",
        ] {
            assert_eq!(set.rename(unmatched.as_bytes()), None, "{unmatched}");
        }
        assert_eq!(set.reverse(b"meta-glasses:nothing:here"), None);
        assert_eq!(
            set.scan_globs(),
            vec![b"josancamon:rayban-meta-glasses-api:*".to_vec()]
        );
        assert_eq!(set.len(), 5);
        assert!(!set.is_empty());
        // Pinned: resumed runs compare fingerprints written by earlier builds.
        assert_eq!(set.fingerprint(), "cdfb0a2ff014e9c3");
    }

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

    #[test]
    fn keys_are_bytes() {
        let set = rules(&file(&[
            ("r", "a:{x}:end", "b:{x}"),
            ("s", "c:{x..}", "d:{x}"),
        ]));
        let key = b"a:\x00\xff\xfe-\x80:end";
        assert_eq!(renamed(&set, key), Some(b"b:\x00\xff\xfe-\x80".to_vec()));
        assert_eq!(set.reverse(b"b:\x00\xff\xfe-\x80"), Some((0, key.to_vec())));
        assert_eq!(
            renamed(&set, b"c:\xc3\x28:\x00:"),
            Some(b"d:\xc3\x28:\x00:".to_vec())
        );
        assert_eq!(
            renamed(&set, b"a:x:y:end"),
            None,
            "{{x}} never takes a colon"
        );
        assert_eq!(
            renamed(&set, b"a::end"),
            None,
            "{{x}} takes at least one byte"
        );
        assert_eq!(
            renamed(&set, b"c:"),
            None,
            "{{x..}} takes at least one byte"
        );
        // TOML escapes put any UTF-8 text, NUL included, in a literal.
        let set = rules("[[rule]]\nname = \"n\"\nfrom = \"k\\u0000{x}\"\nto = \"{x}\\u0000k\"\n");
        assert_eq!(renamed(&set, b"k\x00\xff"), Some(b"\xff\x00k".to_vec()));
        assert_eq!(renamed(&set, b"k\x01\xff"), None);
    }

    #[test]
    fn any_placeholders_take_colons_and_the_split_is_the_first_that_works() {
        let set = rules(&file(&[("r", "a:{x..}:{y}", "{y}/{x}")]));
        assert_eq!(renamed(&set, b"a:b:c:d"), Some(b"d/b:c".to_vec()));
        assert_eq!(renamed(&set, b"a:b::d"), Some(b"d/b:".to_vec()));
        assert_eq!(renamed(&set, b"a:b"), None);
        assert_eq!(renamed(&set, b"a:b:c:"), None);
        // Earlier placeholders take the fewest bytes.
        let set = rules(&file(&[(
            "r",
            "{{lit}}:{x..}-{y..}-{z..}",
            "n:{x}|{y}|{z}",
        )]));
        assert_eq!(renamed(&set, b"{lit}:1-2-3-4"), Some(b"n:1|2|3-4".to_vec()));
        assert_eq!(renamed(&set, b"{lit}:--1-2"), Some(b"n:-|1|2".to_vec()));
        assert_eq!(renamed(&set, b"{lit}:1-2"), None);
        // Literal braces on both sides.
        let set = rules(&file(&[("r", "{{{x}}}", "}}{x}{{")]));
        assert_eq!(renamed(&set, b"{abc}"), Some(b"}abc{".to_vec()));
    }

    #[test]
    fn near_misses_on_long_keys_stay_fast() {
        let set = rules(&file(&[
            (
                "any",
                "k:{a..}-{b..}-{c..}-{d..}!",
                "{a}{{}}{b}{{}}{c}{{}}{d}",
            ),
            ("word", "w:{a}-{b}-{c}-{d}!", "{a}{{}}{b}{{}}{c}{{}}{d}"),
        ]));
        // Long enough for the failure memo to leave the stack, too.
        for n in [60, 3000] {
            for p in [&b"k:"[..], b"w:"] {
                let key = [p, &vec![b'-'; n][..]].concat();
                let start = std::time::Instant::now();
                assert_eq!(set.rename(&key), None);
                let hit = set.rename(&[key, b"!".to_vec()].concat()).unwrap();
                assert_eq!(hit.1, [b"-{}-{}-{}".to_vec(), vec![b'-'; n - 6]].concat());
                assert!(start.elapsed().as_secs() < 5, "{n} bytes took too long");
            }
        }
    }

    #[test]
    fn first_matching_rule_wins_and_unmatched_keys_are_none() {
        let set = rules(&file(&[
            ("specific", "p:user:{id}", "u:{id}"),
            ("generic", "p:{rest..}", "g:{rest}"),
            ("exact", "q", "r"),
        ]));
        assert_eq!(set.rename(b"p:user:7"), Some((0, b"u:7".to_vec())));
        assert_eq!(set.rename(b"p:user:7:x"), Some((1, b"g:user:7:x".to_vec())));
        assert_eq!(set.rename(b"p:other"), Some((1, b"g:other".to_vec())));
        assert_eq!(set.rename(b"q"), Some((2, b"r".to_vec())));
        for key in [&b"q:"[..], b"p:", b"", b"user:7", b"P:user:7"] {
            assert_eq!(set.rename(key), None, "{key:?}");
        }
    }

    #[test]
    fn reverse_finds_the_rule_that_produced_a_name() {
        let set = rules(&file(&[
            ("word", "a:{x}", "n:{x}"),
            ("any", "b:{x..}", "n:{x}"),
            ("swap", "c:{x}:{y..}", "s:{y}/{x}"),
        ]));
        assert_eq!(set.reverse(b"n:1"), Some((0, b"a:1".to_vec())));
        // `n:{x}` of the first rule takes no colon, so the second rule answers.
        assert_eq!(set.reverse(b"n:1:2"), Some((1, b"b:1:2".to_vec())));
        assert_eq!(set.reverse(b"s:p:q/r"), Some((2, b"c:r:p:q".to_vec())));
        assert_eq!(set.rename(b"c:r:p:q"), Some((2, b"s:p:q/r".to_vec())));
        assert_eq!(
            set.reverse(b"s:p/q:r"),
            None,
            "c:q:r:p would rename differently"
        );
        assert_eq!(set.reverse(b"m:1"), None);
        // A shadowed rule's names come back to nothing: its old names go elsewhere.
        let loaded = load(&file(&[
            ("wide", "a:{x..}", "m:{x}"),
            ("narrow", "a:b:{y}", "n:{y}"),
        ]))
        .unwrap();
        assert_eq!(loaded.warnings.len(), 1);
        assert_eq!(loaded.rules.reverse(b"n:1"), None);
        assert_eq!(loaded.rules.reverse(b"m:b:1"), Some((0, b"a:b:1".to_vec())));
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

    #[test]
    fn scan_globs_escape_metacharacters_and_drop_covered_prefixes() {
        // "d" repeats "c" (and is warned about); its glob is a duplicate.
        let set = load(&file(&[
            ("a", "p*x:{x}", "n:{x}"),
            ("b", "p*x:sub:{x}", "m:{x}"),
            ("c", "q[1]?\\:{x}", "o:{x}"),
            ("d", "q[1]?\\:{x}", "o2:{x}"),
            ("e", "p*x:{x}:z", "n2:{x}"),
        ]))
        .unwrap()
        .rules
        .scan_globs();
        assert_eq!(
            set,
            vec![b"p\\*x:*".to_vec(), b"q\\[1\\]\\?\\\\:*".to_vec()]
        );
        // A rule starting with a placeholder needs the whole keyspace.
        let set = rules(&file(&[("a", "p:{x}", "n:{x}"), ("b", "{x}:q", "m:{x}")]));
        assert_eq!(set.scan_globs(), vec![b"*".to_vec()]);
    }

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

    mod props {
        use super::super::*;
        use super::{file, load};
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
