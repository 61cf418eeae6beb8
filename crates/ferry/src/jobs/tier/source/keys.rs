//! The `keys` layout: keys `{key_prefix}{camera_id}:{ts_ms}` holding caption JSON with a TTL
//! (the seed's layout). Reads a chunk of the camera's SCANned timestamps by GET, decodes the
//! JSON into a caption, and deletes the caption keys with UNLINK (or the fenced script doing
//! the same).

use std::sync::LazyLock;

use ferry_connectors::redis::{ConnError, LuaScript};
use ferry_core::jobs::tier::store::Fence;
use ferry_core::jobs::tier::{Caption, EntryId};
use redis::Value;
use serde::Deserialize;

use super::delete::fence_args;
use super::{CaptionSource, RawEntry, reply_count};
use crate::jobs::tier::TierError;

/// UNLINK only while the fence holds this pass's token. KEYS: fence, caption keys. ARGV:
/// token. Returns `{1, deleted}`, or `{0, fence}` (nothing deleted) when the fence has moved.
static FENCED_UNLINK: LazyLock<LuaScript> = LazyLock::new(|| {
    LuaScript::new(
        r#"
local fence = redis.call('GET', KEYS[1])
if fence ~= ARGV[1] then return {0, fence or ''} end
return {1, redis.call('UNLINK', unpack(KEYS, 2))}
"#,
    )
});

impl CaptionSource {
    /// The key of a caption in the `keys` layout.
    pub fn caption_key(&self, camera: &str, ts_ms: u64) -> String {
        format!("{}{camera}:{ts_ms}", self.prefix)
    }

    /// Up to `count` captions of `camera` after `after` (exclusive), oldest first; `index`
    /// holds the camera's sorted timestamps. Keys gone since the SCAN are skipped.
    pub(super) async fn read_keys(
        &self,
        camera: &str,
        after: Option<EntryId>,
        count: usize,
        index: &[u64],
    ) -> Result<Vec<RawEntry>, ConnError> {
        let from = match after {
            Some(a) => index.partition_point(|&ts| ts <= a.ms),
            None => 0,
        };
        let slice = &index[from..(from + count).min(index.len())];
        let cmds = slice
            .iter()
            .map(|&ts| {
                let key = self.caption_key(camera, ts);
                let mut c = redis::cmd("GET");
                c.arg(&key);
                (key.into_bytes(), c)
            })
            .collect();
        let replies = self.redis.run(cmds).await?;
        Ok(slice
            .iter()
            .zip(replies)
            .filter_map(|(&ts, reply)| {
                let entry = EntryId::new(ts, 0);
                match reply {
                    Ok(Value::BulkString(body)) => Some(RawEntry {
                        entry,
                        caption: key_caption(camera, ts, &body),
                    }),
                    // Expired or deleted since the SCAN: nothing to migrate.
                    Ok(Value::Nil) => None,
                    Ok(other) => Some(RawEntry {
                        entry,
                        caption: Err(format!("unexpected reply {other:?}")),
                    }),
                    Err(e) => Some(RawEntry {
                        entry,
                        caption: Err(format!("GET failed: {e}")),
                    }),
                }
            })
            .collect())
    }

    /// Deletes one chunk of the camera's caption keys: the fenced script when `fence` is given,
    /// else one UNLINK per key. Returns how many existed.
    pub(super) async fn delete_keys_chunk(
        &self,
        camera: &str,
        chunk: &[EntryId],
        fence: Option<&Fence>,
    ) -> Result<u64, TierError> {
        if let Some(f) = fence {
            let (fence_key, token) = fence_args(f);
            let keys: Vec<String> = chunk
                .iter()
                .map(|e| self.caption_key(camera, e.ms))
                .collect();
            let mut all: Vec<&[u8]> = vec![&fence_key];
            all.extend(keys.iter().map(|k| k.as_bytes()));
            let reply = self
                .redis
                .eval(&FENCED_UNLINK, &all, &[token.as_bytes()])
                .await?;
            return self.fenced_count(camera, f, reply);
        }
        let cmds = chunk
            .iter()
            .map(|e| {
                let key = self.caption_key(camera, e.ms);
                let mut c = redis::cmd("UNLINK");
                c.arg(&key);
                (key.into_bytes(), c)
            })
            .collect();
        let mut deleted = 0u64;
        for reply in self.redis.run(cmds).await? {
            deleted += reply_count(reply, &self.redis)?;
        }
        Ok(deleted)
    }
}

/// The JSON a caption key holds (`camera_id` is not read: the key names the camera).
#[derive(Deserialize)]
struct KeyBody {
    caption: String,
    #[serde(default)]
    timestamp: Option<serde_json::Value>,
    #[serde(default)]
    embedding: Option<Vec<f32>>,
}

/// A caption key's JSON as a caption; `timestamp` may be Unix seconds or milliseconds, or
/// RFC 3339, and defaults to the key's `ts`.
fn key_caption(camera: &str, ts: u64, body: &[u8]) -> Result<Caption, String> {
    let body: KeyBody =
        serde_json::from_slice(body).map_err(|e| format!("value is not caption JSON: {e}"))?;
    if body.caption.trim().is_empty() {
        return Err("empty `caption`".into());
    }
    let ts_ms = match &body.timestamp {
        Some(serde_json::Value::Number(n)) => {
            let f = n.as_f64().unwrap_or(ts as f64);
            // Seconds (the seed writes time.time()) or milliseconds.
            if f < 1e11 {
                (f * 1000.0) as i64
            } else {
                f as i64
            }
        }
        Some(serde_json::Value::String(s)) => chrono::DateTime::parse_from_rfc3339(s)
            .map(|t| t.timestamp_millis())
            .unwrap_or(ts as i64),
        _ => ts as i64,
    };
    Ok(Caption {
        entry: EntryId::new(ts, 0),
        camera_id: camera.to_string(),
        ts_ms,
        text: body.caption,
        embedding: body.embedding,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_json_accepts_seconds_millis_and_rfc3339() {
        let c = key_caption("c", 5, br#"{"caption":"x","timestamp":1700000000.5}"#).unwrap();
        assert_eq!(c.ts_ms, 1_700_000_000_500);
        let c = key_caption("c", 5, br#"{"caption":"x","timestamp":1700000000500}"#).unwrap();
        assert_eq!(c.ts_ms, 1_700_000_000_500);
        let c = key_caption(
            "c",
            5,
            br#"{"caption":"x","timestamp":"2023-11-14T22:13:20Z"}"#,
        )
        .unwrap();
        assert_eq!(c.ts_ms, 1_700_000_000_000);
        assert!(key_caption("c", 5, b"not json").is_err());
    }
}
