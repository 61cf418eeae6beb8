//! What a frame's image becomes: [`ImageTarget`].

use std::fmt;
use std::str::FromStr;

use super::FrameError;

/// The encoding a transformed frame's image gets.
///
/// Written `keep`, `png`, `jpeg:Q` or `webp:Q` with a quality Q from 1 to 100 (case-insensitive),
/// e.g. `jpeg:85`; [`Display`](fmt::Display) writes the same form back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ImageTarget {
    /// Keep the source image's bytes and format; an `image_array` becomes lossless PNG.
    #[default]
    Keep,
    /// Baseline JPEG with 4:2:0 chroma subsampling at this quality (1 to 100).
    Jpeg {
        /// libjpeg quality, 1 to 100.
        quality: u8,
    },
    /// Lossy WebP at this quality (1 to 100), libwebp's default method (4).
    Webp {
        /// libwebp quality, 1 to 100.
        quality: u8,
    },
    /// Lossless PNG.
    Png,
}

impl FromStr for ImageTarget {
    type Err = FrameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || FrameError::InvalidTarget(s.to_owned());
        let lower = s.trim().to_ascii_lowercase();
        let (name, quality) = match lower.split_once(':') {
            Some((name, q)) => {
                let q: u8 = q.trim().parse().map_err(|_| invalid())?;
                if !(1..=100).contains(&q) {
                    return Err(invalid());
                }
                (name.trim(), Some(q))
            }
            None => (lower.as_str(), None),
        };
        match (name, quality) {
            ("keep", None) => Ok(ImageTarget::Keep),
            ("png", None) => Ok(ImageTarget::Png),
            ("jpeg", Some(quality)) => Ok(ImageTarget::Jpeg { quality }),
            ("webp", Some(quality)) => Ok(ImageTarget::Webp { quality }),
            _ => Err(invalid()),
        }
    }
}

impl fmt::Display for ImageTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageTarget::Keep => f.write_str("keep"),
            ImageTarget::Png => f.write_str("png"),
            ImageTarget::Jpeg { quality } => write!(f, "jpeg:{quality}"),
            ImageTarget::Webp { quality } => write!(f, "webp:{quality}"),
        }
    }
}
