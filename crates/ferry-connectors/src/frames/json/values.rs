//! Reading the frame's plain fields: ids, timestamps, detections and metadata text.

use serde_json::Value;

use super::super::{Detection, FrameError};

/// A metadata value as a string: strings as they are, anything else in its JSON spelling.
pub(super) fn text(value: Value) -> String {
    match value {
        Value::String(s) => s,
        other => other.to_string(),
    }
}

/// A short description of a JSON value for error messages.
pub(super) fn describe(value: &Value) -> String {
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
pub(super) fn id(key: &str, value: Value) -> Result<Option<String>, FrameError> {
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
pub(super) fn timestamp(value: Value) -> Result<Option<f64>, FrameError> {
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
pub(super) fn detections(value: Value) -> Result<Option<Vec<Detection>>, FrameError> {
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

pub(super) fn detection(i: usize, item: Value) -> Result<Detection, FrameError> {
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
pub(super) fn number(value: Option<&Value>, path: &str) -> Result<f32, FrameError> {
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
