//! The seed's JSON camera frames, read in one pass.
//!
//! A frame is an object with `frame_id`, `camera_id`, an optional `timestamp`, the image as
//! `image_base64` (a PNG, JPEG or WebP file) or `image_array` (H×W×3 or H×W nested lists of
//! 0..=255 integers, as numpy's `tolist()` writes them), optional `detections`, and any other
//! fields, which become metadata. The image is decoded while the JSON is read: base64 straight
//! from the message's bytes, `image_array` straight into an RGB buffer, without building a
//! JSON tree of millions of numbers.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;

use super::{Detection, FrameError, ImageArrayError, RgbImage};

mod array;
mod base64_image;
mod values;

use array::ArraySeed;
use base64_image::Base64Seed;
use values::{detections, id, text, timestamp};

/// The image a JSON frame carries.
#[derive(Debug)]
pub(crate) enum SourceImage {
    /// The decoded bytes of `image_base64`: an image file.
    Encoded(Vec<u8>),
    /// The pixels of `image_array`.
    Raw(RgbImage),
}

/// A JSON frame's fields, checked.
#[derive(Debug)]
pub(crate) struct JsonFrame {
    pub frame_id: String,
    pub camera_id: String,
    /// Seconds since the Unix epoch; 0 when the message has none.
    pub timestamp: f64,
    pub image: SourceImage,
    pub detections: Vec<Detection>,
    pub metadata: BTreeMap<String, String>,
}

/// Reads one JSON frame message.
pub(crate) fn parse(message: &[u8]) -> Result<JsonFrame, FrameError> {
    if message.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(not_an_object(message));
    }
    let mut state = State::default();
    let mut de = serde_json::Deserializer::from_slice(message);
    let parsed = (&mut de)
        .deserialize_map(FrameVisitor { state: &mut state })
        .and_then(|fields| de.end().map(|()| fields));
    match parsed {
        Ok(fields) => fields.finish(),
        Err(e) => Err(state.into_error(e)),
    }
}

/// The error for a message that does not start with `{`.
fn not_an_object(message: &[u8]) -> FrameError {
    match serde_json::from_slice::<IgnoredAny>(message) {
        Err(e) => FrameError::NotJson(e),
        Ok(_) => {
            let first = message.iter().find(|b| !b.is_ascii_whitespace());
            let found = match first {
                Some(b'[') => "array",
                Some(b'"') => "string",
                Some(b't' | b'f') => "boolean",
                Some(b'n') => "null",
                _ => "number",
            };
            FrameError::NotAnObject { found }
        }
    }
}

/// What the visitors share: the precise error behind a serde error, and the field being read.
#[derive(Default)]
struct State {
    error: Option<FrameError>,
    field: Option<String>,
}

impl State {
    /// Records `error` and returns a serde error that stops the parse.
    fn fail<E: de::Error>(&mut self, error: FrameError) -> E {
        self.error = Some(error);
        E::custom("frame rejected")
    }

    fn into_error(self, e: serde_json::Error) -> FrameError {
        if let Some(error) = self.error {
            return error;
        }
        match (e.classify(), self.field) {
            (serde_json::error::Category::Data, Some(field)) if field == "image_array" => {
                FrameError::ImageArray(ImageArrayError::Shape(e.to_string()))
            }
            (serde_json::error::Category::Data, Some(field)) => FrameError::InvalidField {
                field,
                reason: e.to_string(),
            },
            _ => FrameError::NotJson(e),
        }
    }
}

/// The fields as read, before the required ones are checked.
#[derive(Default)]
struct Fields {
    frame_id: Option<String>,
    camera_id: Option<String>,
    timestamp: Option<f64>,
    image_base64: Option<Vec<u8>>,
    image_array: Option<RgbImage>,
    detections: Option<Vec<Detection>>,
    metadata: BTreeMap<String, String>,
}

impl Fields {
    fn finish(self) -> Result<JsonFrame, FrameError> {
        let frame_id = self.frame_id.ok_or(FrameError::MissingField("frame_id"))?;
        let camera_id = self
            .camera_id
            .ok_or(FrameError::MissingField("camera_id"))?;
        let image = match (self.image_base64, self.image_array) {
            (Some(bytes), None) => SourceImage::Encoded(bytes),
            (None, Some(pixels)) => SourceImage::Raw(pixels),
            (Some(_), Some(_)) => {
                return Err(FrameError::invalid(
                    "image_array",
                    "the message has both image_base64 and image_array; send one",
                ));
            }
            (None, None) => return Err(FrameError::MissingField("image_base64 or image_array")),
        };
        Ok(JsonFrame {
            frame_id,
            camera_id,
            timestamp: self.timestamp.unwrap_or(0.0),
            image,
            detections: self.detections.unwrap_or_default(),
            metadata: self.metadata,
        })
    }
}

struct FrameVisitor<'s> {
    state: &'s mut State,
}

impl<'de> Visitor<'de> for FrameVisitor<'_> {
    type Value = Fields;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object (a camera frame)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields, A::Error> {
        let state = self.state;
        let mut fields = Fields::default();
        while let Some(key) = map.next_key::<String>()? {
            state.field = Some(key.clone());
            match key.as_str() {
                "frame_id" | "camera_id" => {
                    let value = id(&key, map.next_value()?).map_err(|e| state.fail(e))?;
                    let slot = if key == "frame_id" {
                        &mut fields.frame_id
                    } else {
                        &mut fields.camera_id
                    };
                    set_once(slot, value, &key).map_err(|e| state.fail(e))?;
                }
                "timestamp" => {
                    let value = timestamp(map.next_value()?).map_err(|e| state.fail(e))?;
                    set_once(&mut fields.timestamp, value, &key).map_err(|e| state.fail(e))?;
                }
                "image_base64" => {
                    let value = map.next_value_seed(Base64Seed { state: &mut *state })?;
                    set_once(&mut fields.image_base64, value, &key).map_err(|e| state.fail(e))?;
                }
                "image_array" => {
                    let value = map.next_value_seed(ArraySeed { state: &mut *state })?;
                    set_once(&mut fields.image_array, value, &key).map_err(|e| state.fail(e))?;
                }
                "detections" => {
                    let value = detections(map.next_value()?).map_err(|e| state.fail(e))?;
                    set_once(&mut fields.detections, value, &key).map_err(|e| state.fail(e))?;
                }
                "metadata" => match map.next_value()? {
                    Value::Object(entries) => {
                        for (k, v) in entries {
                            if !v.is_null() {
                                fields.metadata.insert(k, text(v));
                            }
                        }
                    }
                    Value::Null => {}
                    other => {
                        fields.metadata.insert(key, text(other));
                    }
                },
                _ => {
                    let value: Value = map.next_value()?;
                    if !value.is_null() {
                        fields.metadata.insert(key, text(value));
                    }
                }
            }
            state.field = None;
        }
        Ok(fields)
    }
}

/// Sets a field read for the first time; `null` leaves it unset.
fn set_once<T>(slot: &mut Option<T>, value: Option<T>, key: &str) -> Result<(), FrameError> {
    if slot.is_some() {
        return Err(FrameError::invalid(key, "appears more than once"));
    }
    *slot = value;
    Ok(())
}
