//! The events job's records: analytics events as producers send them ([`NewEvent`]), as the
//! event log stores and publishes them ([`StoredEvent`]), their validation, and the Pub/Sub
//! channels an event goes to ([`Channels`]).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Longest `event_type`, in bytes.
pub const MAX_EVENT_TYPE_LEN: usize = 64;
/// Longest `camera_id`, in bytes.
pub const MAX_CAMERA_ID_LEN: usize = 128;

/// An event as a producer sends it (the API body, a library call, a Stream entry's `data`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewEvent {
    /// What happened: `tracking`, `motion`, `anpr`, ….
    pub event_type: String,
    /// The camera that saw it.
    pub camera_id: String,
    /// When it happened: RFC 3339, an ISO 8601 time without offset (taken as UTC, as Python's
    /// `datetime.utcnow().isoformat()` writes), or Unix seconds; the time it is saved when
    /// absent.
    #[serde(default, deserialize_with = "lenient_timestamp")]
    pub timestamp: Option<DateTime<Utc>>,
    /// The video frame.
    #[serde(default)]
    pub frame_number: Option<i64>,
    /// Where the snapshot image is.
    #[serde(default)]
    pub snapshot_path: Option<String>,
    /// Type-specific data: a JSON object (`{}` when absent).
    #[serde(default = "empty_object")]
    pub event_data: serde_json::Value,
    /// A producer's own unique key: saving the same key twice stores the event once.
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

/// Parses a timestamp as [`NewEvent::timestamp`] describes.
pub fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.to_utc());
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(text, format) {
            return Some(t.and_utc());
        }
    }
    text.parse::<f64>().ok().and_then(from_unix_seconds)
}

fn from_unix_seconds(s: f64) -> Option<DateTime<Utc>> {
    if !s.is_finite() {
        return None;
    }
    DateTime::from_timestamp_micros((s * 1e6).round() as i64)
}

fn lenient_timestamp<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<DateTime<Utc>>, D::Error> {
    use serde::de::Error;
    let v = Option::<serde_json::Value>::deserialize(d)?;
    match v {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => parse_timestamp(&s).map(Some).ok_or_else(|| {
            D::Error::custom(format!(
                "timestamp `{s}` is not RFC 3339 (e.g. 2026-11-22T10:00:00Z), ISO 8601 or Unix seconds"
            ))
        }),
        Some(serde_json::Value::Number(n)) => n
            .as_f64()
            .and_then(from_unix_seconds)
            .map(Some)
            .ok_or_else(|| D::Error::custom(format!("timestamp {n} is out of range"))),
        Some(other) => Err(D::Error::custom(format!(
            "timestamp must be a string or a number, not {other}"
        ))),
    }
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

impl NewEvent {
    /// An event of `event_type` on `camera_id` with no data, timestamped when saved.
    pub fn new(event_type: impl Into<String>, camera_id: impl Into<String>) -> Self {
        NewEvent {
            event_type: event_type.into(),
            camera_id: camera_id.into(),
            timestamp: None,
            frame_number: None,
            snapshot_path: None,
            event_data: empty_object(),
            idempotency_key: None,
        }
    }

    /// Sets `event_data`.
    pub fn with_data(mut self, data: serde_json::Value) -> Self {
        self.event_data = data;
        self
    }

    /// Checks the fields; `allowed_types` empty means any type. The error names the field.
    pub fn validate(&self, allowed_types: &[String]) -> Result<(), InvalidEvent> {
        check_name("event_type", &self.event_type, MAX_EVENT_TYPE_LEN)?;
        if !allowed_types.is_empty() && !allowed_types.contains(&self.event_type) {
            return Err(InvalidEvent {
                field: "event_type",
                message: format!(
                    "unknown event type `{}` (allowed: {})",
                    self.event_type,
                    allowed_types.join(", ")
                ),
            });
        }
        check_name("camera_id", &self.camera_id, MAX_CAMERA_ID_LEN)?;
        if self.frame_number.is_some_and(|f| f < 0) {
            return Err(InvalidEvent {
                field: "frame_number",
                message: "frame_number must not be negative".into(),
            });
        }
        if !self.event_data.is_object() {
            return Err(InvalidEvent {
                field: "event_data",
                message: "event_data must be a JSON object".into(),
            });
        }
        if self.idempotency_key.as_ref().is_some_and(|k| k.is_empty()) {
            return Err(InvalidEvent {
                field: "idempotency_key",
                message: "idempotency_key must not be empty".into(),
            });
        }
        Ok(())
    }
}

fn check_name(field: &'static str, value: &str, max: usize) -> Result<(), InvalidEvent> {
    let message = if value.trim().is_empty() {
        format!("{field} must not be empty")
    } else if value.len() > max {
        format!("{field} is longer than {max} bytes")
    } else if value.chars().any(char::is_control) {
        format!("{field} must not contain control characters")
    } else {
        return Ok(());
    };
    Err(InvalidEvent { field, message })
}

/// Why an event was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InvalidEvent {
    /// The offending field.
    pub field: &'static str,
    /// What is wrong.
    pub message: String,
}

/// An event as stored, published and queried: every column of the `events` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    /// The database id: increasing, and in commit order for one camera.
    pub id: i64,
    /// What happened.
    pub event_type: String,
    /// The camera.
    pub camera_id: String,
    /// When it happened.
    pub timestamp: DateTime<Utc>,
    /// The video frame.
    pub frame_number: Option<i64>,
    /// Where the snapshot image is.
    pub snapshot_path: Option<String>,
    /// Type-specific data.
    pub event_data: serde_json::Value,
    /// When it was stored.
    pub created_at: DateTime<Utc>,
}

impl StoredEvent {
    /// The published JSON (timestamps in RFC 3339 with microseconds, UTC).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Where the relay publishes an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channels {
    /// The channel every event goes to (`events`).
    pub main: String,
    /// Also publish on `{main}:{camera_id}`.
    pub per_camera: bool,
    /// Also publish on `{main}:{event_type}`.
    pub per_type: bool,
}

impl Default for Channels {
    fn default() -> Self {
        Channels {
            main: "events".into(),
            per_camera: false,
            per_type: false,
        }
    }
}

impl Channels {
    /// The channels of one event, the main one first.
    pub fn for_event(&self, camera_id: &str, event_type: &str) -> Vec<String> {
        let mut out = vec![self.main.clone()];
        if self.per_camera {
            out.push(format!("{}:{camera_id}", self.main));
        }
        if self.per_type {
            out.push(format!("{}:{event_type}", self.main));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minimal_event_parses_with_defaults() {
        let e: NewEvent =
            serde_json::from_str(r#"{"event_type":"motion","camera_id":"cam-1"}"#).unwrap();
        assert_eq!(e, NewEvent::new("motion", "cam-1"));
        assert!(e.validate(&[]).is_ok());
    }

    #[test]
    fn validation_names_the_field() {
        let allowed = vec!["tracking".to_string(), "motion".to_string()];
        let mut e = NewEvent::new("anpr", "cam-1");
        assert_eq!(e.validate(&allowed).unwrap_err().field, "event_type");
        assert!(e.validate(&[]).is_ok());
        e.camera_id = " ".into();
        assert_eq!(e.validate(&[]).unwrap_err().field, "camera_id");
        e.camera_id = "cam-1".into();
        e.frame_number = Some(-1);
        assert_eq!(e.validate(&[]).unwrap_err().field, "frame_number");
        e.frame_number = Some(3);
        e.event_data = serde_json::json!([1, 2]);
        assert_eq!(e.validate(&[]).unwrap_err().field, "event_data");
        e.event_data = serde_json::json!({});
        e.idempotency_key = Some(String::new());
        assert_eq!(e.validate(&[]).unwrap_err().field, "idempotency_key");
    }

    #[test]
    fn unknown_fields_and_bad_timestamps_are_refused() {
        assert!(
            serde_json::from_str::<NewEvent>(r#"{"event_type":"m","camera_id":"c","extra":1}"#)
                .is_err()
        );
        assert!(
            serde_json::from_str::<NewEvent>(
                r#"{"event_type":"m","camera_id":"c","timestamp":"yesterday"}"#
            )
            .is_err()
        );
    }

    #[test]
    fn timestamps_are_read_leniently_and_as_utc() {
        let utc = parse_timestamp("2024-10-11T12:00:00.5Z").unwrap();
        assert_eq!(parse_timestamp("2024-10-11T14:00:00.5+02:00"), Some(utc));
        assert_eq!(parse_timestamp("2024-10-11T12:00:00.500000"), Some(utc));
        assert_eq!(parse_timestamp("1728648000.5"), Some(utc));
        let e: NewEvent =
            serde_json::from_str(r#"{"event_type":"m","camera_id":"c","timestamp":1728648000.5}"#)
                .unwrap();
        assert_eq!(e.timestamp, Some(utc));
        assert!(parse_timestamp("noon").is_none());
    }

    #[test]
    fn channels_follow_the_options() {
        let mut c = Channels::default();
        assert_eq!(c.for_event("cam", "motion"), vec!["events"]);
        c.per_camera = true;
        c.per_type = true;
        assert_eq!(
            c.for_event("cam", "motion"),
            vec!["events", "events:cam", "events:motion"]
        );
    }
}
