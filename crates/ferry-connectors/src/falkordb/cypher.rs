//! Cypher literals for FalkorDB query parameters (`CYPHER name=value … QUERY`).

/// A parameter value, written as a Cypher literal.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// `null`
    Null,
    /// An integer.
    Int(i64),
    /// A float (always written with a decimal point or exponent).
    Float(f64),
    /// A string, double-quoted and escaped.
    Str(String),
    /// `[a, b]`
    List(Vec<Literal>),
    /// `{key: value}`; keys must be plain identifiers.
    Map(Vec<(&'static str, Literal)>),
}

impl Literal {
    /// A map literal from identifier keys.
    pub fn map<const N: usize>(entries: [(&'static str, Literal); N]) -> Self {
        Literal::Map(entries.into())
    }

    /// Appends the literal to `out`.
    pub fn write(&self, out: &mut String) {
        match self {
            Literal::Null => out.push_str("null"),
            Literal::Int(n) => out.push_str(&n.to_string()),
            Literal::Float(f) if f.is_finite() => {
                let s = format!("{f:?}");
                out.push_str(&s);
            }
            Literal::Float(_) => out.push_str("null"),
            Literal::Str(s) => {
                out.push('"');
                for c in s.chars() {
                    match c {
                        '"' => out.push_str("\\\""),
                        '\\' => out.push_str("\\\\"),
                        '\n' => out.push_str("\\n"),
                        '\r' => out.push_str("\\r"),
                        '\t' => out.push_str("\\t"),
                        c if (c as u32) < 0x20 => out.push(' '),
                        c => out.push(c),
                    }
                }
                out.push('"');
            }
            Literal::List(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write(out);
                }
                out.push(']');
            }
            Literal::Map(entries) => {
                out.push('{');
                for (i, (k, v)) in entries.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(k);
                    out.push(':');
                    v.write(out);
                }
                out.push('}');
            }
        }
    }
}

impl From<&str> for Literal {
    fn from(s: &str) -> Self {
        Literal::Str(s.to_string())
    }
}

impl From<i64> for Literal {
    fn from(n: i64) -> Self {
        Literal::Int(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lit(l: Literal) -> String {
        let mut s = String::new();
        l.write(&mut s);
        s
    }

    #[test]
    fn strings_are_escaped() {
        assert_eq!(lit("a\"b\\c\nd'e ü".into()), r#""a\"b\\c\nd'e ü""#);
        assert_eq!(lit("\u{1}".into()), "\" \"");
    }

    #[test]
    fn nested_values_print_as_cypher() {
        let v = Literal::map([
            ("a", 1.into()),
            (
                "b",
                Literal::List(vec![
                    Literal::Float(0.5),
                    Literal::Float(1.0),
                    Literal::Null,
                ]),
            ),
        ]);
        assert_eq!(lit(v), "{a:1,b:[0.5,1.0,null]}");
        assert_eq!(lit(Literal::Float(f64::NAN)), "null");
    }
}
