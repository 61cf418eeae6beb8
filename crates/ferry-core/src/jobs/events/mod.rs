//! The events job's records: analytics events as producers send them ([`NewEvent`]), as the
//! event log stores and publishes them ([`StoredEvent`]), their validation, and the Pub/Sub
//! channels an event goes to ([`Channels`]).

use chrono::{DateTime, Datelike, Utc};
use serde::{Deserialize, Serialize};

/// Longest `event_type`, in bytes.
pub const MAX_EVENT_TYPE_LEN: usize = 64;
/// Longest `camera_id`, in bytes.
pub const MAX_CAMERA_ID_LEN: usize = 128;
/// Longest `idempotency_key`, in bytes: it is stored in a uniquely indexed column, and
/// PostgreSQL refuses an index entry larger than about 2.7 kB.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 1024;
/// The latest year an event may carry: later ones are almost always a Unix time in
/// milliseconds read as seconds (and RFC 3339, the published form, has four-digit years).
pub const MAX_YEAR: i32 = 9999;

/// Microseconds from 2000-01-01 (PostgreSQL's epoch) to the earliest `timestamptz`,
/// 4714-11-24 00:00:00 BC (Julian day 0; written 4713 BC in PostgreSQL's documentation).
const PG_MIN_TIMESTAMP_US: i64 = -211_813_488_000_000_000;
/// Microseconds from 2000-01-01 to the first instant after the latest `timestamptz`,
/// 294277-01-01 00:00:00 (later than any time chrono can hold).
const PG_END_TIMESTAMP_US: i64 = 9_223_371_331_200_000_000;

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
        if let Some(t) = self.timestamp
            && !fits_postgres(t)
        {
            return Err(InvalidEvent {
                field: "timestamp",
                message: format!(
                    "timestamp {} is outside what PostgreSQL can store (4713 BC to 294276 AD)",
                    t.to_rfc3339()
                ),
            });
        }
        if let Some(t) = self.timestamp
            && t.year() > MAX_YEAR
        {
            return Err(InvalidEvent {
                field: "timestamp",
                message: format!(
                    "timestamp {} is after the year {MAX_YEAR}: a Unix time in milliseconds \
                     sent as seconds? Send seconds, or RFC 3339 (e.g. 2026-11-22T10:00:00Z)",
                    t.to_rfc3339()
                ),
            });
        }
        if let Some(path) = &self.snapshot_path {
            check_text("snapshot_path", path)?;
        }
        if !self.event_data.is_object() {
            return Err(InvalidEvent {
                field: "event_data",
                message: "event_data must be a JSON object".into(),
            });
        }
        if let Some(at) = nul_in_json(&self.event_data) {
            return Err(InvalidEvent {
                field: "event_data",
                message: format!(
                    "event_data has a NUL character (U+0000) in {at}, which PostgreSQL cannot store"
                ),
            });
        }
        if let Some(key) = &self.idempotency_key {
            if key.is_empty() {
                return Err(InvalidEvent {
                    field: "idempotency_key",
                    message: "idempotency_key must not be empty".into(),
                });
            }
            if key.len() > MAX_IDEMPOTENCY_KEY_LEN {
                return Err(InvalidEvent {
                    field: "idempotency_key",
                    message: format!(
                        "idempotency_key is longer than {MAX_IDEMPOTENCY_KEY_LEN} bytes"
                    ),
                });
            }
            check_text("idempotency_key", key)?;
        }
        Ok(())
    }
}

/// Whether PostgreSQL's `timestamptz` holds `t`, computed as the driver sends it: whole
/// microseconds since 2000-01-01, truncated towards zero.
pub fn fits_postgres(t: DateTime<Utc>) -> bool {
    let epoch = chrono::NaiveDate::from_ymd_opt(2000, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .expect("a valid date");
    t.naive_utc()
        .signed_duration_since(epoch)
        .num_microseconds()
        .is_some_and(|us| (PG_MIN_TIMESTAMP_US..PG_END_TIMESTAMP_US).contains(&us))
}

/// PostgreSQL's `text` cannot hold U+0000.
fn check_text(field: &'static str, value: &str) -> Result<(), InvalidEvent> {
    if value.contains('\0') {
        return Err(InvalidEvent {
            field,
            message: format!("{field} has a NUL character (U+0000), which PostgreSQL cannot store"),
        });
    }
    Ok(())
}

/// One step of a path into a JSON value.
#[derive(Clone, Copy)]
enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

type Node<'a> = (&'a serde_json::Value, usize, Option<Step<'a>>);

/// The path of `nodes[at]` from the root, `event_data.plates[2].text`.
fn json_path(nodes: &[Node<'_>], mut at: usize) -> String {
    let mut steps = Vec::new();
    while let (_, parent, Some(step)) = nodes[at] {
        steps.push(step);
        at = parent;
    }
    let mut out = String::from("event_data");
    for step in steps.iter().rev() {
        match step {
            Step::Key(k)
                if !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
            {
                out.push('.');
                out.push_str(k);
            }
            Step::Key(k) => out.push_str(&format!("[{}]", serde_json::Value::from(*k))),
            Step::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// Where the first key or string holding U+0000 is in `value` (`jsonb` refuses `\u0000`);
/// walks without recursion, so any depth is fine.
fn nul_in_json(value: &serde_json::Value) -> Option<String> {
    // Every node visited, with its parent's position and the step from the parent.
    let mut nodes: Vec<Node<'_>> = vec![(value, 0, None)];
    let mut next = 0;
    while next < nodes.len() {
        let at = next;
        next += 1;
        match nodes[at].0 {
            serde_json::Value::String(s) if s.contains('\0') => {
                return Some(format!("the value at {}", json_path(&nodes, at)));
            }
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    if k.contains('\0') {
                        return Some(format!("a key of {}", json_path(&nodes, at)));
                    }
                    nodes.push((v, at, Some(Step::Key(k))));
                }
            }
            serde_json::Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    nodes.push((v, at, Some(Step::Index(i))));
                }
            }
            _ => {}
        }
    }
    None
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
    #[serde(deserialize_with = "stored_timestamp")]
    pub timestamp: DateTime<Utc>,
    /// The video frame.
    pub frame_number: Option<i64>,
    /// Where the snapshot image is.
    pub snapshot_path: Option<String>,
    /// Type-specific data.
    pub event_data: serde_json::Value,
    /// When it was stored.
    #[serde(deserialize_with = "stored_timestamp")]
    pub created_at: DateTime<Utc>,
}

/// Reads a stored timestamp: RFC 3339, or PostgreSQL's JSON text of a time RFC 3339 cannot
/// carry — a year after 9999 (`57971-02-26T03:46:40+00:00`) or before year 1
/// (`4713-11-24T00:00:00+00:00 BC`), which a plain SQL `INSERT` can store. A row the relay
/// cannot read would hold back every event after it.
pub fn parse_stored_timestamp(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    let (text, bc) = match text.strip_suffix(" BC") {
        Some(t) => (t, true),
        None => (text, false),
    };
    let dash = text.find('-')?;
    let year: i32 = text[..dash].parse().ok()?;
    // 1 BC is year 0 of the proleptic Gregorian calendar chrono counts in.
    let year = if bc { 1 - year } else { year };
    let signed = format!("{year:+05}{}", &text[dash..]);
    DateTime::parse_from_str(&signed, "%Y-%m-%dT%H:%M:%S%.f%:z")
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn stored_timestamp<'de, D: serde::Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    /// Reads the text where it lies (no copy: the relay decodes every event it publishes).
    struct StoredTimestamp;
    impl serde::de::Visitor<'_> for StoredTimestamp {
        type Value = DateTime<Utc>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a timestamp as text")
        }
        fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
            parse_stored_timestamp(text)
                .ok_or_else(|| E::custom(format!("timestamp `{text}` is not a time")))
        }
    }
    d.deserialize_str(StoredTimestamp)
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
    fn what_postgresql_would_refuse_is_invalid_and_names_the_field() {
        let ok = NewEvent::new("motion", "cam-1");
        let field = |f: &dyn Fn(&mut NewEvent)| {
            let mut e = ok.clone();
            f(&mut e);
            e.validate(&[]).map_err(|e| (e.field, e.message))
        };
        let nul = "a\0b".to_string();
        for (name, change) in [
            (
                "event_type",
                &(|e: &mut NewEvent| e.event_type = nul.clone()) as &dyn Fn(&mut NewEvent),
            ),
            ("camera_id", &|e: &mut NewEvent| e.camera_id = nul.clone()),
            ("snapshot_path", &|e: &mut NewEvent| {
                e.snapshot_path = Some(nul.clone())
            }),
            ("idempotency_key", &|e: &mut NewEvent| {
                e.idempotency_key = Some(nul.clone())
            }),
            ("idempotency_key", &|e: &mut NewEvent| {
                e.idempotency_key = Some("k".repeat(MAX_IDEMPOTENCY_KEY_LEN + 1))
            }),
            ("event_data", &|e: &mut NewEvent| {
                e.event_data = serde_json::json!({"a": nul})
            }),
            ("event_data", &|e: &mut NewEvent| {
                e.event_data = serde_json::json!({"a": {"x\0": 1}})
            }),
            ("event_data", &|e: &mut NewEvent| {
                e.event_data = serde_json::json!({"a": [1, {"b": ["ok", "x\0"]}]})
            }),
        ] {
            let (f, message) = field(change).unwrap_err();
            assert_eq!(f, name, "{message}");
        }
        let (_, message) = field(&|e: &mut NewEvent| {
            e.event_data = serde_json::json!({"plates": [{"text": "ok"}, {"text": "A\0"}]})
        })
        .unwrap_err();
        assert!(message.contains("event_data.plates[1].text"), "{message}");
        let (_, message) =
            field(&|e: &mut NewEvent| e.event_data = serde_json::json!({"a b": {"\0": 1}}))
                .unwrap_err();
        assert!(
            message.contains(r#"a key of event_data["a b"]"#),
            "{message}"
        );
        // Other control characters are stored fine by PostgreSQL.
        assert!(
            field(&|e: &mut NewEvent| {
                e.snapshot_path = Some("a\tb".into());
                e.event_data = serde_json::json!({"a\u{1}": "\u{1}"});
            })
            .is_ok()
        );
    }

    #[test]
    fn timestamps_postgresql_cannot_hold_are_invalid() {
        let at = |t: DateTime<Utc>| {
            let mut e = NewEvent::new("motion", "cam-1");
            e.timestamp = Some(t);
            e.validate(&[]).map_err(|e| e.field)
        };
        // 4714-11-24 00:00:00 BC (ISO year -4713) is PostgreSQL's first instant.
        let first = parse_timestamp("-4713-11-24T00:00:00").unwrap();
        assert_eq!(first.timestamp(), -210_866_803_200);
        assert_eq!(at(first), Ok(()));
        // The driver truncates to whole microseconds towards zero: 1 ns earlier is still sent
        // as the first instant, 1 µs earlier is not.
        assert_eq!(at(first - chrono::TimeDelta::nanoseconds(1)), Ok(()));
        assert_eq!(
            at(first - chrono::TimeDelta::microseconds(1)),
            Err("timestamp")
        );
        assert_eq!(
            at(parse_timestamp("-4713-11-23T23:59:59.999999").unwrap()),
            Err("timestamp")
        );
        assert_eq!(
            at(parse_timestamp("-300000000000").unwrap()),
            Err("timestamp")
        );
        assert_eq!(at(DateTime::<Utc>::MIN_UTC), Err("timestamp"));
        // chrono's latest time is within PostgreSQL's range (up to 294276 AD), but after the
        // year 9999: refused as a likely Unix time in milliseconds.
        assert_eq!(at(DateTime::<Utc>::MAX_UTC), Err("timestamp"));
        assert_eq!(
            at(parse_timestamp("1767225700000").unwrap()),
            Err("timestamp")
        );
        assert_eq!(at(parse_timestamp("9999-12-31T23:59:59Z").unwrap()), Ok(()));
        assert_eq!(at(DateTime::UNIX_EPOCH), Ok(()));
    }

    #[test]
    fn stored_timestamps_outside_rfc_3339_years_are_read_as_postgresql_writes_them() {
        let t = |s| parse_stored_timestamp(s).map(|t| t.to_rfc3339());
        assert_eq!(
            t("57971-02-26T03:46:40+00:00").as_deref(),
            Some("+57971-02-26T03:46:40+00:00")
        );
        assert_eq!(
            t("4713-11-24T00:00:00+00:00 BC").as_deref(),
            Some("-4712-11-24T00:00:00+00:00")
        );
        assert_eq!(
            t("0001-01-01T00:00:00.5+02:00 BC").as_deref(),
            Some("-0001-12-31T22:00:00.500+00:00")
        );
        assert_eq!(
            t("2026-11-22T10:00:00.123456+00:00").as_deref(),
            Some("2026-11-22T10:00:00.123456+00:00")
        );
        assert_eq!(t("yesterday"), None);
        assert_eq!(t("-5"), None);
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
