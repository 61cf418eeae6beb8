//! Splitting the text of a `from` pattern or a `to` template into literals and placeholders.

fn valid_name(n: &str) -> bool {
    let mut chars = n.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A piece of a pattern as written.
pub(super) enum Piece {
    /// Literal bytes.
    Lit(Vec<u8>),
    /// `{name}` (`any` false) or `{name..}` (`any` true).
    Placeholder(String, bool),
}

/// Splits a pattern or template into literals and placeholders; the error completes
/// "`from` ..." or "`to` ...".
pub(super) fn tokenize(s: &str, allow_any: bool) -> Result<Vec<Piece>, String> {
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
