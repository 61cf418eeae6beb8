//! `image_base64`, decoded where serde_json finds it.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD_PAD_INDIFFERENT, URL_SAFE_PAD_INDIFFERENT};
use serde::de::{self, DeserializeSeed, Deserializer, Visitor};

use super::super::FrameError;
use super::State;

// --- image_base64 ------------------------------------------------------------------------

/// Decodes `image_base64` where serde_json finds it: borrowed from the message when the string
/// has no escapes.
pub(super) struct Base64Seed<'s> {
    pub(super) state: &'s mut State,
}

impl<'de> DeserializeSeed<'de> for Base64Seed<'_> {
    type Value = Option<Vec<u8>>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Base64Seed<'_> {
    type Value = Option<Vec<u8>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a base64 string")
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        decode_base64(s).map(Some).map_err(|e| self.state.fail(e))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// Base64 in the standard or URL-safe alphabet, padded or not, possibly wrapped in lines, and
/// possibly behind a `data:image/...;base64,` prefix.
pub(crate) fn decode_base64(s: &str) -> Result<Vec<u8>, FrameError> {
    let mut data = s.trim();
    if let Some(url) = data.strip_prefix("data:") {
        data = match url.split_once(',') {
            Some((media, payload)) if media.ends_with(";base64") => payload,
            _ => {
                return Err(FrameError::invalid(
                    "image_base64",
                    "a data URL must read `data:<media type>;base64,<data>`",
                ));
            }
        };
    }
    // The common case costs one pass; the variants are tried only after a failure.
    let first = match STANDARD_PAD_INDIFFERENT.decode(data) {
        Ok(bytes) => return Ok(bytes),
        Err(e) => e,
    };
    let bytes = data.as_bytes();
    let unwrapped: Vec<u8>;
    let input = if bytes.iter().any(u8::is_ascii_whitespace) {
        unwrapped = bytes
            .iter()
            .copied()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        if let Ok(bytes) = STANDARD_PAD_INDIFFERENT.decode(&unwrapped) {
            return Ok(bytes);
        }
        &unwrapped[..]
    } else {
        bytes
    };
    if input.iter().any(|&b| b == b'-' || b == b'_') {
        return URL_SAFE_PAD_INDIFFERENT
            .decode(input)
            .map_err(FrameError::Base64);
    }
    Err(FrameError::Base64(first))
}
