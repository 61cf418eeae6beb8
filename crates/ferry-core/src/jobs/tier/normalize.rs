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
            folded = strip_framing(&folded);
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

/// Words that name the picture itself rather than what it shows ("cctv still", "wide angle shot",
/// "live feed").
const MEDIUM_WORDS: &[&str] = &[
    "camera",
    "cameras",
    "cam",
    "cctv",
    "webcam",
    "dashcam",
    "footage",
    "video",
    "feed",
    "image",
    "images",
    "photo",
    "photograph",
    "picture",
    "frame",
    "shot",
    "still",
    "snapshot",
    "screenshot",
    "recording",
    "clip",
    "view",
    "capture",
];

/// Words that may go with them in a framing phrase: articles, viewpoints, the source, and the
/// verbs that lead into the content ("… showing", "… of").
const FRAMING_WORDS: &[&str] = &[
    "a",
    "an",
    "the",
    "this",
    "in",
    "on",
    "from",
    "of",
    "at",
    "by",
    "with",
    "is",
    "are",
    "we",
    "see",
    "can",
    "here",
    "security",
    "surveillance",
    "live",
    "wide",
    "angle",
    "close",
    "up",
    "closeup",
    "overhead",
    "aerial",
    "top",
    "down",
    "high",
    "low",
    "fixed",
    "static",
    "infrared",
    "night",
    "vision",
    "thermal",
    "fisheye",
    "color",
    "colour",
    "black",
    "and",
    "white",
    "grainy",
    "blurry",
    "blurred",
    "shows",
    "show",
    "showing",
    "depicts",
    "depicting",
    "captures",
    "captured",
    "capturing",
    "displays",
    "displaying",
    "features",
    "featuring",
    "reveals",
    "revealing",
    "shown",
];

/// Removes a leading framing phrase — a run of at most eight words, each a medium or framing
/// word, naming the medium at least once ("cctv still showing", "the camera shows", "in this
/// frame", "a wide angle shot of", "live feed") — when at least two words are left. Captioners
/// word these differently, and shared framing words would make unrelated captions look alike.
fn strip_framing(folded: &str) -> String {
    let words: Vec<&str> = folded.split(' ').collect();
    let mut end = 0;
    let mut medium = false;
    for (i, w) in words.iter().enumerate().take(8) {
        if MEDIUM_WORDS.contains(w) {
            medium = true;
        } else if !FRAMING_WORDS.contains(w) {
            break;
        }
        end = i + 1;
    }
    // Give back trailing words that may belong to the content ("… of a man": "a" is dropped as
    // an article later anyway, so only the medium decides).
    if !medium || words.len() - end < 2 {
        return folded.to_owned();
    }
    words[end..].join(" ")
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
    fn framing_phrases_outside_the_list_are_removed_too() {
        let n = Normalizer::default();
        for framed in [
            "CCTV still showing a man climbing the gate",
            "The camera shows: man climbing the gate",
            "In this frame, a man climbing the gate",
            "a wide angle shot of a man climbing the gate",
            "Live feed - man climbing the gate",
            "night vision footage of a man climbing the gate",
        ] {
            assert_eq!(n.normalize(framed), "man climbing the gate", "{framed}");
        }
        // Content words are kept: no medium word, or nothing left after it.
        assert_eq!(
            n.normalize("security guard at the gate"),
            "security guard at the gate"
        );
        assert_eq!(n.normalize("close the door"), "close the door");
        assert_eq!(n.normalize("camera on the wall"), "camera on the wall");
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
