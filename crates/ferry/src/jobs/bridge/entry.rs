//! What a message becomes on its way: a Kafka record → Stream entry fields (forward), and a
//! Stream entry → Kafka record (reverse), with the `frame-proto` transform in both directions.
//!
//! Forward, every entry carries `value` (the message, or the `ProcessedFrame`), `key` (when the
//! record has one), `kafka_topic`, `kafka_partition`, `kafka_offset`, `kafka_timestamp`
//! (milliseconds since the epoch, when the record has one) and each header as `h:NAME`; a
//! record whose value is null has `kafka_null_value` = `1` and an empty `value`. With
//! `frame-proto` the entry also has `content_type`, `frame_id` and `camera_id`. A record that
//! cannot be transformed becomes a dead letter: the same fields with the original `value` and
//! `ferry_error`.

use base64::Engine as _;
use ferry_connectors::frames::{self, ImageTarget, Message as _, ProcessedFrame};
use ferry_connectors::kafka::{Headers, Message, OutRecord, OwnedMessage};
use serde_json::{Map, Value, json};

use super::Transform;
use crate::streams::StreamEntry;

/// The `content_type` of a `frame-proto` entry.
pub const FRAME_CONTENT_TYPE: &str =
    "application/x-protobuf; messageType=ferry.frames.v1.ProcessedFrame";
/// The header the reverse bridge adds to each record: `STREAM/ENTRY-ID`, so that consumers can
/// drop a record sent twice, and the forward bridge of that Stream does not bring it back.
pub const ORIGIN_HEADER: &str = "ferry-origin";
/// The field of a dead letter that says why.
pub const ERROR_FIELD: &str = "ferry_error";
/// Most headers a record may carry into a Stream entry (each is a field); a record with more
/// becomes a dead letter without its headers.
pub const MAX_HEADERS: usize = 1000;

/// A Stream entry's fields, names and values as bytes.
pub type Fields = Vec<(Vec<u8>, Vec<u8>)>;

/// One Kafka record made ready for the Stream.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// Its timestamp in milliseconds, if it has one.
    pub timestamp: Option<i64>,
    /// Where it goes.
    pub target: Target,
    /// The entry's fields.
    pub fields: Fields,
    /// Bytes of the record (key, value, headers).
    pub bytes_in: usize,
    /// Frames: bytes of the source image and of the re-encoded one.
    pub image: Option<(usize, usize)>,
}

/// Where an [`Outgoing`] goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The Stream.
    Stream,
    /// The dead-letter Stream (the reason is its `ferry_error` field).
    DeadLetter,
    /// Nowhere: the record came from this bridge's own Stream through a reverse bridge (its
    /// `ferry-origin` header names it); its offset still counts as handled.
    Echo,
}

fn field(name: &str, value: impl Into<Vec<u8>>) -> (Vec<u8>, Vec<u8>) {
    (name.as_bytes().to_vec(), value.into())
}

/// The Stream entry of a Kafka record (see the module's documentation).
pub fn to_entry(
    msg: &OwnedMessage,
    stream: &str,
    transform: Transform,
    image: &ImageTarget,
) -> Outgoing {
    let value = msg.payload();
    let key = msg.key();
    let mut common = Vec::with_capacity(8);
    if let Some(key) = key {
        common.push(field("key", key));
    }
    common.push(field("kafka_topic", msg.topic()));
    common.push(field("kafka_partition", msg.partition().to_string()));
    common.push(field("kafka_offset", msg.offset().to_string()));
    if let Some(ts) = msg.timestamp().to_millis() {
        common.push(field("kafka_timestamp", ts.to_string()));
    }
    if value.is_none() {
        common.push(field("kafka_null_value", "1"));
    }
    let mut bytes_in = value.map_or(0, <[u8]>::len) + key.map_or(0, <[u8]>::len);
    let mut echo = false;
    let header_count = msg.headers().map_or(0, |h| h.count());
    if header_count <= MAX_HEADERS
        && let Some(headers) = msg.headers()
    {
        for h in headers.iter() {
            let v = h.value.unwrap_or_default();
            bytes_in += h.key.len() + v.len();
            if h.key == ORIGIN_HEADER && is_origin_of(v, stream) {
                echo = true;
            }
            common.push((format!("h:{}", h.key).into_bytes(), v.to_vec()));
        }
    }
    let out = |target, mut fields: Fields, value: Vec<u8>, image| {
        fields.insert(0, field("value", value));
        Outgoing {
            partition: msg.partition(),
            offset: msg.offset(),
            timestamp: msg.timestamp().to_millis(),
            target,
            fields,
            bytes_in,
            image,
        }
    };
    if echo {
        return out(Target::Echo, Vec::new(), Vec::new(), None);
    }
    let raw = value.unwrap_or_default();
    // The record as it came, with the reason, for the dead-letter Stream.
    let dead_letter = |mut fields: Fields, reason: String| {
        fields.push(field(ERROR_FIELD, reason));
        out(Target::DeadLetter, fields, raw.to_vec(), None)
    };
    if header_count > MAX_HEADERS {
        let reason = format!(
            "{header_count} headers, over the {MAX_HEADERS} a Stream entry takes; kept without them"
        );
        return dead_letter(common, reason);
    }
    match transform {
        Transform::None => out(Target::Stream, common, raw.to_vec(), None),
        Transform::FrameProto => match frames::transform_json_frame(raw, image) {
            Ok(t) => {
                let mut fields = common;
                fields.push(field("content_type", FRAME_CONTENT_TYPE));
                fields.push(field("frame_id", t.frame.frame_id.as_str()));
                fields.push(field("camera_id", t.frame.camera_id.as_str()));
                let image = Some((t.source_image_bytes, t.image_bytes));
                out(Target::Stream, fields, t.bytes, image)
            }
            Err(e) => dead_letter(common, e.to_string()),
        },
    }
}

/// Whether a `ferry-origin` header (`STREAM/ENTRY-ID`) names `stream` itself: the entry id
/// has no `/`, so the stream is all before the last one.
fn is_origin_of(header: &[u8], stream: &str) -> bool {
    let Some(slash) = header.iter().rposition(|&b| b == b'/') else {
        return false;
    };
    &header[..slash] == stream.as_bytes()
}

/// The `ProcessedFrame` of a `frame-proto` entry (its `value` field), for frame processors.
pub fn decode_frame(entry: &StreamEntry) -> Result<ProcessedFrame, String> {
    let value = field_value(entry, "value")
        .ok_or("no `value` field: not an entry of a frame-proto bridge")?;
    ProcessedFrame::decode(value)
        .map_err(|e| format!("`value` is not a ferry.frames.v1.ProcessedFrame: {e}"))
}

fn field_value<'a>(entry: &'a StreamEntry, name: &str) -> Option<&'a [u8]> {
    entry
        .fields
        .iter()
        .find(|(k, _)| k == name.as_bytes())
        .map(|(_, v)| v.as_slice())
}

fn text_field<'a>(entry: &'a StreamEntry, name: &str) -> Result<Option<&'a str>, String> {
    field_value(entry, name)
        .map(|v| std::str::from_utf8(v).map_err(|_| format!("field `{name}` is not UTF-8")))
        .transpose()
}

/// The Kafka record of a Stream entry (reverse). The value is the `value` field (turned back
/// into the seed's JSON with `frame-proto`; null when `kafka_null_value` is `1`); an entry without one — written by a producer on
/// the Stream, not by a forward bridge — becomes a JSON object of its fields. `key`, `h:NAME`
/// and `kafka_timestamp` are restored, and the record keeps its `kafka_partition` when the topic
/// has it (`partitions`), so per-partition order survives a round trip.
pub fn to_record(
    entry: &StreamEntry,
    stream: &str,
    transform: Transform,
    partitions: &[i32],
) -> Result<OutRecord, String> {
    let mut record = OutRecord::default();
    let mut headers = Vec::new();
    for (name, value) in &entry.fields {
        if let Some(header) = name.strip_prefix(b"h:") {
            let header = std::str::from_utf8(header).map_err(|_| {
                format!(
                    "header field {:?} is not UTF-8",
                    String::from_utf8_lossy(name)
                )
            })?;
            if header != ORIGIN_HEADER {
                headers.push((header.to_string(), value.clone()));
            }
        }
    }
    headers.push((
        ORIGIN_HEADER.to_string(),
        format!("{stream}/{}", entry.id).into_bytes(),
    ));
    record.headers = headers;
    record.key = field_value(entry, "key").map(<[u8]>::to_vec);
    if let Some(p) = text_field(entry, "kafka_partition")? {
        let p: i32 = p
            .parse()
            .map_err(|_| format!("field kafka_partition `{p}` is not a partition number"))?;
        record.partition = partitions.contains(&p).then_some(p);
    }
    if let Some(ts) = text_field(entry, "kafka_timestamp")? {
        let ts: i64 = ts
            .parse()
            .map_err(|_| format!("field kafka_timestamp `{ts}` is not milliseconds"))?;
        record.timestamp_ms = (ts >= 0).then_some(ts);
    }
    record.null_value = text_field(entry, "kafka_null_value")? == Some("1");
    record.value = match (field_value(entry, "value"), transform) {
        (Some(v), Transform::None) => v.to_vec(),
        (Some(_), Transform::FrameProto) => {
            let frame = decode_frame(entry)?;
            serde_json::to_vec(&frame_json(&frame)).map_err(|e| e.to_string())?
        }
        (None, _) => {
            let mut object = Map::new();
            for (name, value) in &entry.fields {
                let name = std::str::from_utf8(name)
                    .map_err(|_| "a field name is not UTF-8".to_string())?;
                let value = std::str::from_utf8(value).map_err(|_| {
                    format!("field `{name}` is not UTF-8 and the entry has no `value` field")
                })?;
                object.insert(name.to_string(), Value::String(value.to_string()));
            }
            serde_json::to_vec(&object).map_err(|e| e.to_string())?
        }
    };
    Ok(record)
}

/// A `ProcessedFrame` as the seed's JSON: `frame_id`, `camera_id`, `timestamp`, `image_base64`
/// (the stored image), `image_format`, `width`, `height`, `quality`, `detections` and the
/// metadata as top-level fields.
pub fn frame_json(frame: &ProcessedFrame) -> Value {
    let mut object = Map::new();
    for (k, v) in &frame.metadata {
        object.insert(k.clone(), Value::String(v.clone()));
    }
    let format = match frames::ImageFormat::try_from(frame.format) {
        Ok(frames::ImageFormat::Jpeg) => "jpeg",
        Ok(frames::ImageFormat::Webp) => "webp",
        Ok(frames::ImageFormat::Png) => "png",
        Ok(frames::ImageFormat::RawRgb8) => "raw_rgb8",
        _ => "unspecified",
    };
    let detections: Vec<Value> = frame
        .detections
        .iter()
        .map(
            |d| json!({"label": d.label, "confidence": d.confidence, "bbox": [d.x, d.y, d.w, d.h]}),
        )
        .collect();
    for (k, v) in [
        ("frame_id", json!(frame.frame_id)),
        ("camera_id", json!(frame.camera_id)),
        ("timestamp", json!(frame.timestamp)),
        (
            "image_base64",
            json!(base64::engine::general_purpose::STANDARD.encode(&frame.image)),
        ),
        ("image_format", json!(format)),
        ("width", json!(frame.width)),
        ("height", json!(frame.height)),
        ("quality", json!(frame.quality)),
        ("detections", Value::Array(detections)),
    ] {
        object.insert(k.to_string(), v);
    }
    Value::Object(object)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_streams_own_origin_is_an_echo() {
        assert!(is_origin_of(b"cam/1700000000000-0", "cam"));
        assert!(is_origin_of(b"cam/x/1700000000000-0", "cam/x"));
        assert!(!is_origin_of(b"cam/x/1700000000000-0", "cam"));
        assert!(!is_origin_of(b"camera/1-0", "cam"));
        assert!(!is_origin_of(b"cam", "cam"));
    }
}
