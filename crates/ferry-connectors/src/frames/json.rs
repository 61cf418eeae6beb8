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

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD_PAD_INDIFFERENT, URL_SAFE_PAD_INDIFFERENT};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::image::{MAX_PIXELS, MAX_SIDE};
use super::{Detection, FrameError, ImageArrayError, RgbImage};

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

/// A metadata value as a string: strings as they are, anything else in its JSON spelling.
fn text(value: Value) -> String {
    match value {
        Value::String(s) => s,
        other => other.to_string(),
    }
}

/// A short description of a JSON value for error messages.
fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) if s.chars().count() > 40 => {
            format!("string {:?}…", s.chars().take(40).collect::<String>())
        }
        Value::String(s) => format!("string {s:?}"),
        Value::Array(_) => "a list".to_owned(),
        Value::Object(_) => "an object".to_owned(),
    }
}

/// `frame_id` or `camera_id`: a non-empty string (a number is taken in its JSON spelling).
fn id(key: &str, value: Value) -> Result<Option<String>, FrameError> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) if s.is_empty() => Err(FrameError::invalid(key, "is empty")),
        Value::String(s) => Ok(Some(s)),
        Value::Number(n) => Ok(Some(n.to_string())),
        other => Err(FrameError::invalid(
            key,
            format!("expected a string, found {}", describe(&other)),
        )),
    }
}

/// `timestamp`: Unix seconds as a number or a numeric string, or an RFC 3339 / ISO 8601 time
/// (UTC when it has no offset).
fn timestamp(value: Value) -> Result<Option<f64>, FrameError> {
    let invalid = |reason: String| FrameError::invalid("timestamp", reason);
    match value {
        Value::Null => Ok(None),
        Value::Number(n) => n
            .as_f64()
            .filter(|s| s.is_finite())
            .map(Some)
            .ok_or_else(|| invalid(format!("{n} is out of range"))),
        Value::String(s) => {
            if let Ok(seconds) = s.trim().parse::<f64>()
                && seconds.is_finite()
            {
                return Ok(Some(seconds));
            }
            let t = ferry_core::jobs::events::parse_timestamp(&s).ok_or_else(|| {
                invalid(format!(
                    "`{s}` is not Unix seconds, RFC 3339 (e.g. 2026-11-22T10:00:00Z) or ISO 8601"
                ))
            })?;
            Ok(Some(
                t.timestamp() as f64 + f64::from(t.timestamp_subsec_nanos()) / 1e9,
            ))
        }
        other => Err(invalid(format!(
            "expected a number or a string, found {}",
            describe(&other)
        ))),
    }
}

// --- detections --------------------------------------------------------------------------

/// `detections`: a list of objects with `label`, `confidence` and either `bbox: [x, y, w, h]`
/// or `x`, `y`, `w`, `h`.
fn detections(value: Value) -> Result<Option<Vec<Detection>>, FrameError> {
    match value {
        Value::Null => Ok(None),
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, item)| detection(i, item))
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        other => Err(FrameError::invalid(
            "detections",
            format!("expected a list of objects, found {}", describe(&other)),
        )),
    }
}

fn detection(i: usize, item: Value) -> Result<Detection, FrameError> {
    let path = |name: &str| format!("detections[{i}].{name}");
    let Value::Object(object) = item else {
        return Err(FrameError::invalid(
            format!("detections[{i}]"),
            format!("expected an object, found {}", describe(&item)),
        ));
    };
    let label = match object.get("label") {
        Some(Value::String(s)) => s.clone(),
        None | Some(Value::Null) => return Err(FrameError::invalid(path("label"), "missing")),
        Some(other) => {
            return Err(FrameError::invalid(
                path("label"),
                format!("expected a string, found {}", describe(other)),
            ));
        }
    };
    let confidence = number(object.get("confidence"), &path("confidence"))?;
    let [x, y, w, h] = match object.get("bbox") {
        Some(Value::Array(b)) if b.len() == 4 => [
            number(Some(&b[0]), &path("bbox[0]"))?,
            number(Some(&b[1]), &path("bbox[1]"))?,
            number(Some(&b[2]), &path("bbox[2]"))?,
            number(Some(&b[3]), &path("bbox[3]"))?,
        ],
        Some(Value::Array(b)) => {
            return Err(FrameError::invalid(
                path("bbox"),
                format!("expected 4 numbers [x, y, w, h], found {} items", b.len()),
            ));
        }
        None | Some(Value::Null) => [
            number(object.get("x"), &path("x"))?,
            number(object.get("y"), &path("y"))?,
            number(object.get("w"), &path("w"))?,
            number(object.get("h"), &path("h"))?,
        ],
        Some(other) => {
            return Err(FrameError::invalid(
                path("bbox"),
                format!("expected [x, y, w, h], found {}", describe(other)),
            ));
        }
    };
    Ok(Detection {
        label,
        confidence,
        x,
        y,
        w,
        h,
    })
}

/// A required number that fits an `f32`.
fn number(value: Option<&Value>, path: &str) -> Result<f32, FrameError> {
    match value {
        Some(Value::Number(n)) => n
            .as_f64()
            .map(|v| v as f32)
            .filter(|v| v.is_finite())
            .ok_or_else(|| FrameError::invalid(path, format!("{n} is out of range"))),
        None | Some(Value::Null) => Err(FrameError::invalid(
            path,
            "missing (a detection needs label, confidence and bbox [x, y, w, h] or x, y, w, h)",
        )),
        Some(other) => Err(FrameError::invalid(
            path,
            format!("expected a number, found {}", describe(other)),
        )),
    }
}

// --- image_base64 ------------------------------------------------------------------------

/// Decodes `image_base64` where serde_json finds it: borrowed from the message when the string
/// has no escapes.
struct Base64Seed<'s> {
    state: &'s mut State,
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

// --- image_array -------------------------------------------------------------------------

/// The pixels read so far.
#[derive(Default)]
struct Pixels {
    rgb: Vec<u8>,
    /// The first row's length.
    width: Option<usize>,
    /// Whether pixels are grey numbers (`true`) or `[R, G, B]` lists (`false`).
    grey: Option<bool>,
    rows: usize,
}

fn too_large() -> FrameError {
    FrameError::ImageArray(ImageArrayError::TooLarge {
        max_side: MAX_SIDE,
        max_pixels: MAX_PIXELS,
    })
}

fn bad_pixel(row: usize, col: usize, reason: impl Into<String>) -> FrameError {
    FrameError::ImageArray(ImageArrayError::BadPixel {
        row,
        col,
        reason: reason.into(),
    })
}

/// Reads `image_array` into an RGB buffer.
struct ArraySeed<'s> {
    state: &'s mut State,
}

impl<'de> DeserializeSeed<'de> for ArraySeed<'_> {
    type Value = Option<RgbImage>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ArraySeed<'_> {
    type Value = Option<RgbImage>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of rows of pixels, [R, G, B] lists or grey values 0..=255")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut pixels = Pixels::default();
        while seq
            .next_element_seed(RowSeed {
                pixels: &mut pixels,
                state: &mut *self.state,
            })?
            .is_some()
        {}
        let (Some(width), rows) = (pixels.width, pixels.rows) else {
            return Err(self
                .state
                .fail(FrameError::ImageArray(ImageArrayError::Empty)));
        };
        // Both are at most MAX_SIDE (checked per row).
        RgbImage::new(width as u32, rows as u32, pixels.rgb)
            .map(Some)
            .map_err(|e| self.state.fail(e))
    }
}

/// Reads one row, checks its length against the first row's.
struct RowSeed<'a> {
    pixels: &'a mut Pixels,
    state: &'a mut State,
}

impl<'de> DeserializeSeed<'de> for RowSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for RowSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "row {} as a list of pixels", self.pixels.rows)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let row = self.pixels.rows;
        if row >= MAX_SIDE as usize {
            return Err(self.state.fail(too_large()));
        }
        let mut col = 0;
        while seq
            .next_element_seed(PixelSeed {
                pixels: &mut *self.pixels,
                state: &mut *self.state,
                row,
                col,
            })?
            .is_some()
        {
            col += 1;
            if col > MAX_SIDE as usize {
                return Err(self.state.fail(too_large()));
            }
        }
        match self.pixels.width {
            None if col == 0 => {
                return Err(self
                    .state
                    .fail(FrameError::ImageArray(ImageArrayError::Empty)));
            }
            None => self.pixels.width = Some(col),
            Some(expected) if expected != col => {
                return Err(self
                    .state
                    .fail(FrameError::ImageArray(ImageArrayError::RaggedRow {
                        row,
                        got: col,
                        expected,
                    })));
            }
            Some(_) => {}
        }
        self.pixels.rows += 1;
        if (self.pixels.rows * col) as u64 > MAX_PIXELS {
            return Err(self.state.fail(too_large()));
        }
        Ok(())
    }
}

/// Reads one pixel: a grey value or an `[R, G, B]` list.
struct PixelSeed<'a> {
    pixels: &'a mut Pixels,
    state: &'a mut State,
    row: usize,
    col: usize,
}

impl PixelSeed<'_> {
    /// Fixes the array's kind on its first pixel, refuses a mix.
    fn kind<E: de::Error>(&mut self, grey: bool) -> Result<(), E> {
        match self.pixels.grey {
            None => self.pixels.grey = Some(grey),
            Some(g) if g != grey => {
                let reason = if grey {
                    "is a grey value, but the first pixel is an [R, G, B] list"
                } else {
                    "is an [R, G, B] list, but the first pixel is a grey value"
                };
                return Err(self.state.fail(bad_pixel(self.row, self.col, reason)));
            }
            Some(_) => {}
        }
        Ok(())
    }

    fn grey<E: de::Error>(mut self, sample: Result<u8, String>) -> Result<(), E> {
        self.kind(true)?;
        match sample {
            Ok(v) => {
                self.pixels.rgb.extend_from_slice(&[v, v, v]);
                Ok(())
            }
            Err(reason) => Err(self.state.fail(bad_pixel(self.row, self.col, reason))),
        }
    }
}

impl<'de> DeserializeSeed<'de> for PixelSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for PixelSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "row {} pixel {} as [R, G, B] or a grey value 0..=255",
            self.row, self.col
        )
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.grey(sample_u64(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.grey(sample_i64(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.grey(sample_f64(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        self.kind(false)?;
        let (row, col) = (self.row, self.col);
        let mut rgb = [0u8; 3];
        for (i, channel) in rgb.iter_mut().enumerate() {
            match seq.next_element_seed(SampleSeed { row, col })? {
                Some(Ok(v)) => *channel = v,
                Some(Err(reason)) => {
                    return Err(self.state.fail(bad_pixel(
                        row,
                        col,
                        format!("channel {i}: {reason}"),
                    )));
                }
                None => {
                    return Err(self.state.fail(bad_pixel(
                        row,
                        col,
                        format!("has {i} channels, expected 3 (R, G, B)"),
                    )));
                }
            }
        }
        let mut extra = 0;
        while seq.next_element::<IgnoredAny>()?.is_some() {
            extra += 1;
        }
        if extra > 0 {
            return Err(self.state.fail(bad_pixel(
                row,
                col,
                format!("has {} channels, expected 3 (R, G, B)", 3 + extra),
            )));
        }
        self.pixels.rgb.extend_from_slice(&rgb);
        Ok(())
    }
}

/// One channel value; a number out of range is `Err(reason)`, other types a serde error.
struct SampleSeed {
    row: usize,
    col: usize,
}

impl<'de> DeserializeSeed<'de> for SampleSeed {
    type Value = Result<u8, String>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for SampleSeed {
    type Value = Result<u8, String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "an integer 0..=255 in row {} pixel {}",
            self.row, self.col
        )
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(sample_u64(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(sample_i64(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(sample_f64(v))
    }
}

fn sample_u64(v: u64) -> Result<u8, String> {
    u8::try_from(v).map_err(|_| format!("value {v} is outside 0..=255"))
}

fn sample_i64(v: i64) -> Result<u8, String> {
    u8::try_from(v).map_err(|_| format!("value {v} is outside 0..=255"))
}

/// Integral floats (`12.0`) are accepted, as some encoders write them.
fn sample_f64(v: f64) -> Result<u8, String> {
    if v.fract() == 0.0 && (0.0..=255.0).contains(&v) {
        Ok(v as u8)
    } else {
        Err(format!("value {v} is not an integer 0..=255"))
    }
}
