//! Secrets in connection strings: [`redact`] shows a URL or a PostgreSQL `key=value` string
//! without its passwords, whatever shape it has, and [`SecretUrl`] holds a connection string so
//! that `{:?}` and `{}` only ever show that redacted form. The raw string is reached through
//! [`SecretUrl::expose`], where a connection is made.

use std::fmt;

use secrecy::SecretString;

/// What replaces a secret.
pub const MASK: &str = "***";

/// Whether a parameter named `key` holds a secret (`password`, `sslpassword`, `token`, …).
fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    matches!(k.as_str(), "pass" | "passwd" | "pwd" | "auth" | "apikey")
        || ["password", "secret", "token", "api_key", "credential"]
            .iter()
            .any(|s| k.contains(s))
}

/// `scheme` and the rest of `s` when it starts with `scheme://`.
fn split_scheme(s: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = s.split_once("://")?;
    let mut chars = scheme.chars();
    let first = chars.next()?;
    (first.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
    .then_some((scheme, rest))
}

/// One `key=value` of a libpq connection string, with the byte range of the whole pair.
#[derive(Debug, Clone, PartialEq)]
pub struct Pair {
    /// The key.
    pub key: String,
    /// The value, unquoted and unescaped.
    pub value: String,
    /// Where the pair stands in the input.
    pub span: std::ops::Range<usize>,
}

/// The pairs of a libpq `key=value` connection string (`host=db password='a b\'c'`), or `None`
/// when it is not one (a key without `=`, an unterminated quote).
pub fn conninfo_pairs(s: &str) -> Option<Vec<Pair>> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut pairs = Vec::new();
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && b[*i].is_ascii_whitespace() {
            *i += 1;
        }
    };
    loop {
        skip_ws(&mut i);
        if i >= b.len() {
            break;
        }
        let start = i;
        while i < b.len() && !b[i].is_ascii_whitespace() && b[i] != b'=' {
            i += 1;
        }
        let key = &s[start..i];
        if key.is_empty() || !key.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_') {
            return None;
        }
        skip_ws(&mut i);
        if i >= b.len() || b[i] != b'=' {
            return None;
        }
        i += 1;
        skip_ws(&mut i);
        let mut value = Vec::new();
        if i < b.len() && b[i] == b'\'' {
            i += 1;
            loop {
                match b.get(i) {
                    None => return None,
                    Some(b'\\') if i + 1 < b.len() => {
                        value.push(b[i + 1]);
                        i += 2;
                    }
                    Some(b'\'') => {
                        i += 1;
                        break;
                    }
                    Some(&c) => {
                        value.push(c);
                        i += 1;
                    }
                }
            }
        } else {
            while i < b.len() && !b[i].is_ascii_whitespace() {
                if b[i] == b'\\' && i + 1 < b.len() {
                    i += 1;
                }
                value.push(b[i]);
                i += 1;
            }
        }
        pairs.push(Pair {
            key: key.to_string(),
            value: String::from_utf8_lossy(&value).into_owned(),
            span: start..i,
        });
    }
    (!pairs.is_empty()).then_some(pairs)
}

/// Whether `s[at..]` starts with `name=` (a parameter name, then `=`).
fn starts_param(s: &str, at: usize) -> bool {
    let rest = &s.as_bytes()[at..];
    let n = rest
        .iter()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'))
        .count();
    n > 0 && rest.get(n) == Some(&b'=')
}

/// `s` with the value of every secret `name=value` parameter (after `?`, `&`, `;`, whitespace
/// or at the start) replaced by [`MASK`]. A value ends at whitespace or at an `&` that starts
/// another parameter, so a password holding `&`, `#` or `?` is masked whole.
fn redact_params(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut copied = 0;
    let mut i = 0;
    while i < b.len() {
        let boundary =
            i == 0 || matches!(b[i - 1], b'?' | b'&' | b';') || b[i - 1].is_ascii_whitespace();
        if boundary && starts_param(s, i) {
            let eq = i + s[i..].find('=').unwrap_or(0);
            if is_secret_key(&s[i..eq]) {
                out.push_str(&s[copied..=eq]);
                out.push_str(MASK);
                let mut j = eq + 1;
                while j < b.len()
                    && !b[j].is_ascii_whitespace()
                    && !(b[j] == b'&' && j + 1 < b.len() && starts_param(s, j + 1))
                {
                    j += 1;
                }
                copied = j;
                i = j;
                continue;
            }
        }
        i += 1;
    }
    out.push_str(&s[copied..]);
    out
}

/// `s` (a URL such as `postgres://user:pw@host/db`, `redis://:pw@host`, or a libpq
/// `key=value` string) with every password replaced by `***`, for messages, logs and reports.
///
/// It never falls back to the raw input: the user part of a URL ends at its **last** `@`, so a
/// password holding `/`, `#`, `?`, `:` or `@` (which a URL parser would misread) is masked
/// whole; `password=` style parameters are masked in queries and `key=value` strings (quoted
/// values included); a string in no known shape that holds an `@` keeps only what follows it.
pub fn redact(s: &str) -> String {
    if let Some((scheme, rest)) = split_scheme(s) {
        let (userinfo, after) = match rest.rfind('@') {
            Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
            None => (None, rest),
        };
        let mut out = format!("{scheme}://");
        if let Some(userinfo) = userinfo {
            match userinfo.split_once(':') {
                Some((user, _)) => {
                    out.push_str(user);
                    out.push(':');
                    out.push_str(MASK);
                }
                None => out.push_str(&redact_params(userinfo)),
            }
            out.push('@');
        }
        out.push_str(&redact_params(after));
        return out;
    }
    if let Some(pairs) = conninfo_pairs(s) {
        return pairs
            .iter()
            .map(|p| {
                if is_secret_key(&p.key) {
                    format!("{}={MASK}", p.key)
                } else {
                    s[p.span.clone()].to_string()
                }
            })
            .collect::<Vec<_>>()
            .join(" ");
    }
    // Not a URL nor a well-formed `key=value` string (an unterminated quote, …): mask from the
    // first secret key on, and everything before an `@`.
    let lower = s.to_ascii_lowercase();
    let cut = ["password", "secret", "token", "pwd", "pass"]
        .iter()
        .filter_map(|k| lower.find(k))
        .min();
    let s = match cut {
        Some(at) => format!("{}{MASK}", &s[..at]),
        None => s.to_string(),
    };
    match s.rfind('@') {
        Some(at) => format!("{MASK}@{}", &s[at + 1..]),
        None => s,
    }
}

/// A connection string (URL or `key=value`) that may hold a password: `{:?}` and `{}` show it
/// [`redact`]ed; [`SecretUrl::expose`] gives the raw string to the code that connects.
#[derive(Clone)]
pub struct SecretUrl {
    secret: SecretString,
    shown: String,
}

impl SecretUrl {
    /// Wraps `url`.
    pub fn new(url: impl Into<String>) -> Self {
        let url: String = url.into();
        let shown = redact(&url);
        SecretUrl {
            secret: SecretString::from(url),
            shown,
        }
    }

    /// The raw string, password included: only for making a connection.
    pub fn expose(&self) -> &str {
        self.secret.expose_secret()
    }

    /// The string with its passwords masked.
    pub fn redacted(&self) -> &str {
        &self.shown
    }

    /// Whether the string is empty.
    pub fn is_empty(&self) -> bool {
        self.expose().is_empty()
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.shown, f)
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl PartialEq for SecretUrl {
    fn eq(&self, other: &Self) -> bool {
        self.expose() == other.expose()
    }
}

impl Eq for SecretUrl {}

impl From<String> for SecretUrl {
    fn from(s: String) -> Self {
        SecretUrl::new(s)
    }
}

impl From<&str> for SecretUrl {
    fn from(s: &str) -> Self {
        SecretUrl::new(s)
    }
}

impl std::str::FromStr for SecretUrl {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(SecretUrl::new(s))
    }
}

impl<'de> serde::Deserialize<'de> for SecretUrl {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(SecretUrl::new)
    }
}

/// A secret such as a bearer token or a password, shown as `[REDACTED]` by `{:?}`.
pub use secrecy::SecretString as Secret;

/// Reads a [`Secret`] (re-exported for callers that must hand it to a client).
pub use secrecy::ExposeSecret;

#[cfg(test)]
mod tests {
    use super::*;

    /// Passwords no URL parser reads right when left unencoded, each distinct.
    const HARD: &[&str] = &[
        "pa/ss1word",
        "pa#ss2word",
        "pa?ss3word",
        "pa@ss4word",
        "p:a/s#s?5@word",
        "s3cr3t%2Fenc6",
        "sp ace7word",
    ];

    fn assert_hidden(input: &str, password: &str) -> String {
        let shown = redact(input);
        let core: String = password
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect();
        assert!(
            !shown.contains(password) && !shown.contains(&core[..core.len().min(6)]),
            "{input:?} redacted to {shown:?} still holds the password"
        );
        let wrapped = SecretUrl::new(input);
        for text in [format!("{wrapped:?}"), format!("{wrapped}")] {
            assert!(!text.contains(password), "{text}");
        }
        assert_eq!(wrapped.expose(), input);
        shown
    }

    #[test]
    fn url_passwords_with_reserved_characters_never_show() {
        for pw in HARD.iter().filter(|p| !p.contains(' ')) {
            for scheme in [
                "postgres",
                "postgresql",
                "redis",
                "rediss",
                "redis+cluster",
                "neo4j",
            ] {
                let url = format!("{scheme}://ferry:{pw}@db.example:5432/app?sslmode=require");
                let shown = assert_hidden(&url, pw);
                assert!(shown.contains("db.example:5432"), "{shown}");
                assert!(
                    shown.starts_with(&format!("{scheme}://ferry:***@")),
                    "{shown}"
                );
            }
        }
    }

    #[test]
    fn password_only_urls_and_query_passwords_are_masked() {
        let shown = assert_hidden("redis://:onlyPassw0rd@127.0.0.1:6379/2", "onlyPassw0rd");
        assert_eq!(shown, "redis://:***@127.0.0.1:6379/2");
        let shown = assert_hidden(
            "postgres://db.example/app?user=ferry&password=qu3ry&pw&sslmode=verify-full",
            "qu3ry&pw",
        );
        assert_eq!(
            shown,
            "postgres://db.example/app?user=ferry&password=***&sslmode=verify-full"
        );
        assert_hidden("falkordb://h:1/g?token=t0kenvalue", "t0kenvalue");
        assert_hidden("redis://user:pa%40ss@[::1]:6379", "pa%40ss");
    }

    #[test]
    fn libpq_key_value_strings_are_masked() {
        for pw in HARD {
            let quoted = pw.replace('\\', "\\\\").replace('\'', "\\'");
            let s =
                format!("host=db.example port=5432 user=ferry password='{quoted}' sslmode=require");
            let shown = assert_hidden(&s, pw);
            assert_eq!(
                shown,
                "host=db.example port=5432 user=ferry password=*** sslmode=require"
            );
        }
        let shown = assert_hidden("host=h password = plainpw dbname=x", "plainpw");
        assert_eq!(shown, "host=h password=*** dbname=x");
        // Unterminated quote: not a valid string, still masked.
        assert_hidden("host=h password='unterminated secret", "unterminated");
    }

    #[test]
    fn odd_shapes_never_fall_back_to_the_raw_string() {
        assert_hidden("db.example:5432 user:s1lly@host", "s1lly");
        assert_hidden("postgres//ferry:n0scheme@host/db", "n0scheme");
        // Nothing secret: unchanged.
        assert_eq!(redact("sqlite://ferry.db"), "sqlite://ferry.db");
        assert_eq!(
            redact("redis://127.0.0.1:6379/0"),
            "redis://127.0.0.1:6379/0"
        );
        assert_eq!(redact("postgres://ferry@h/db"), "postgres://ferry@h/db");
        assert_eq!(redact(""), "");
    }

    #[test]
    fn conninfo_pairs_unquote_and_unescape() {
        let p = conninfo_pairs(r"a=1  b = 'x y\'z' c=d\ e").unwrap();
        let kv: Vec<(&str, &str)> = p
            .iter()
            .map(|p| (p.key.as_str(), p.value.as_str()))
            .collect();
        assert_eq!(kv, [("a", "1"), ("b", "x y'z"), ("c", "d e")]);
        assert!(conninfo_pairs("postgres://x").is_none());
        assert!(conninfo_pairs("a='open").is_none());
    }

    #[test]
    fn secrets_debug_as_redacted() {
        let s: Secret = "t0ken-value".into();
        assert!(!format!("{s:?}").contains("t0ken"));
        assert_eq!(s.expose_secret(), "t0ken-value");
    }
}
