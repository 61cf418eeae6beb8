//! Caption text normalisation: what makes two wordings "the same caption".

/// Prefixes captioners put in front of everything, removed before comparing (the seed's own
/// captions start with these).
pub const DEFAULT_BOILERPLATE_PREFIXES: &[&str] = &[
    "surveillance camera view of",
    "surveillance camera footage of",
    "surveillance view of",
    "security camera view of",
    "security camera footage of",
    "cctv footage of",
    "a photo of",
    "an image of",
    "there is",
];

/// A normaliser built from a list of boilerplate prefixes.
#[derive(Debug, Clone)]
pub struct Normalizer {
    prefixes: Vec<String>,
}

impl Normalizer {
    /// A normaliser that strips `prefixes` (compared after case and whitespace folding).
    pub fn new<S: AsRef<str>>(prefixes: &[S]) -> Self {
        let mut prefixes: Vec<String> = prefixes
            .iter()
            .map(|p| fold(p.as_ref()))
            .filter(|p| !p.is_empty())
            .collect();
        // Longest first, so "surveillance camera view of" wins over "surveillance".
        prefixes.sort_by_key(|p| std::cmp::Reverse(p.len()));
        Normalizer { prefixes }
    }

    /// Lower case, punctuation to spaces, whitespace collapsed, boilerplate prefixes removed
    /// (repeatedly), and a leading article dropped.
    pub fn normalize(&self, text: &str) -> String {
        let mut folded = fold(text);
        loop {
            let before = folded.len();
            for prefix in &self.prefixes {
                if let Some(rest) = folded.strip_prefix(prefix.as_str())
                    && (rest.is_empty() || rest.starts_with(' '))
                {
                    folded = rest.trim_start().to_owned();
                    break;
                }
            }
            for article in ["a ", "an ", "the "] {
                if let Some(rest) = folded.strip_prefix(article) {
                    folded = rest.to_owned();
                }
            }
            if folded.len() == before {
                break;
            }
        }
        if folded.is_empty() {
            fold(text)
        } else {
            folded
        }
    }
}

impl Default for Normalizer {
    fn default() -> Self {
        Normalizer::new(DEFAULT_BOILERPLATE_PREFIXES)
    }
}

/// Lower case; every run of whitespace or punctuation becomes one space; trimmed.
fn fold(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut space = false;
    for c in text.chars() {
        if c.is_alphanumeric() || c == '\'' {
            if space && !out.is_empty() {
                out.push(' ');
            }
            space = false;
            out.extend(c.to_lowercase());
        } else {
            space = true;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_whitespace_and_punctuation_fold() {
        let n = Normalizer::new::<&str>(&[]);
        assert_eq!(n.normalize("  Man   in FIELDS.\n"), "man in fields");
        assert_eq!(n.normalize("car, parked"), "car parked");
    }

    #[test]
    fn boilerplate_prefixes_and_articles_are_removed() {
        let n = Normalizer::default();
        assert_eq!(
            n.normalize("Surveillance camera view of a man in fields"),
            "man in fields"
        );
        assert_eq!(
            n.normalize("surveillance view of man in field"),
            "man in field"
        );
        assert_eq!(n.normalize("surveillance viewer"), "surveillance viewer");
    }

    #[test]
    fn a_caption_that_is_only_boilerplate_keeps_its_text() {
        let n = Normalizer::default();
        assert_eq!(
            n.normalize("Surveillance camera view of"),
            "surveillance camera view of"
        );
    }
}
