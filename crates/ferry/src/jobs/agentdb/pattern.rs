//! Key patterns with one `{agent}` placeholder (`agent:{agent}:experiences`): the SCAN glob
//! that finds the keys, and the agent id captured from a key name.

/// A checked key pattern: the bytes before and after `{agent}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPattern {
    prefix: Vec<u8>,
    suffix: Vec<u8>,
    text: String,
}

/// The placeholder every pattern holds once.
pub const PLACEHOLDER: &str = "{agent}";

impl KeyPattern {
    /// Parses `pattern`, given as `option` (named in the error): it must hold `{agent}` exactly
    /// once; the rest is taken literally (glob characters included).
    pub fn parse(option: &str, pattern: &str) -> Result<Self, String> {
        let Some((prefix, suffix)) = pattern.split_once(PLACEHOLDER) else {
            return Err(format!(
                "{option} = \"{pattern}\" has no {PLACEHOLDER}: it marks where the agent id is in the key name, e.g. \"agent:{PLACEHOLDER}:experiences\""
            ));
        };
        if suffix.contains(PLACEHOLDER) {
            return Err(format!(
                "{option} = \"{pattern}\" holds {PLACEHOLDER} more than once: give it once"
            ));
        }
        Ok(KeyPattern {
            prefix: prefix.as_bytes().to_vec(),
            suffix: suffix.as_bytes().to_vec(),
            text: pattern.to_string(),
        })
    }

    /// The pattern as given.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The SCAN `MATCH` glob: the literal parts escaped, `{agent}` as `*`.
    pub fn glob(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.prefix.len() + self.suffix.len() + 1);
        escape_into(&self.prefix, &mut out);
        out.push(b'*');
        escape_into(&self.suffix, &mut out);
        out
    }

    /// The agent id part of `key`, or `None` when `key` does not fit the pattern.
    pub fn agent<'k>(&self, key: &'k [u8]) -> Option<&'k [u8]> {
        if key.len() < self.prefix.len() + self.suffix.len() {
            return None;
        }
        key.strip_prefix(self.prefix.as_slice())?
            .strip_suffix(self.suffix.as_slice())
    }

    /// The key of `agent`.
    pub fn key(&self, agent: &[u8]) -> Vec<u8> {
        [self.prefix.as_slice(), agent, self.suffix.as_slice()].concat()
    }
}

/// Escapes the characters Redis globs give a meaning to.
fn escape_into(literal: &[u8], out: &mut Vec<u8>) {
    for &b in literal {
        if matches!(b, b'*' | b'?' | b'[' | b']' | b'\\') {
            out.push(b'\\');
        }
        out.push(b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agent_is_captured_between_prefix_and_suffix() {
        let p = KeyPattern::parse("x", "agent:{agent}:experiences").unwrap();
        assert_eq!(p.glob(), b"agent:*:experiences");
        assert_eq!(p.agent(b"agent:a1:experiences"), Some(&b"a1"[..]));
        assert_eq!(p.agent(b"agent:a:b:experiences"), Some(&b"a:b"[..]));
        assert_eq!(p.agent(b"agent::experiences"), Some(&b""[..]));
        assert_eq!(
            p.agent(b"agent:\xff\x00:experiences"),
            Some(&b"\xff\x00"[..])
        );
        assert_eq!(p.agent(b"agent:a1:q_values"), None);
        assert_eq!(p.agent(b"agent:experiences"), None);
        assert_eq!(p.key(b"a1"), b"agent:a1:experiences");
    }

    #[test]
    fn glob_characters_of_the_pattern_are_literal() {
        let p = KeyPattern::parse("x", "rl[1]*{agent}?\\").unwrap();
        assert_eq!(p.glob(), b"rl\\[1\\]\\**\\?\\\\");
        assert_eq!(p.agent(b"rl[1]*a?\\"), Some(&b"a"[..]));
        let bare = KeyPattern::parse("x", "{agent}").unwrap();
        assert_eq!(bare.glob(), b"*");
        assert_eq!(bare.agent(b"anything"), Some(&b"anything"[..]));
    }

    #[test]
    fn a_pattern_needs_the_placeholder_once() {
        let e = KeyPattern::parse("[agentdb] policy_pattern", "agent:policy").unwrap_err();
        assert!(
            e.contains("[agentdb] policy_pattern") && e.contains("{agent}"),
            "{e}"
        );
        let e = KeyPattern::parse("--x", "{agent}:{agent}").unwrap_err();
        assert!(e.contains("more than once"), "{e}");
    }
}
