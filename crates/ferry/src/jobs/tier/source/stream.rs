//! The `stream` layout: one Stream per camera, `{stream_prefix}{camera_id}`. Reads a chunk by
//! XRANGE after the last entry seen, decodes an entry's fields into a caption, and deletes
//! entries by id with XDEL (or the fenced script doing the same); XLEN counts them.

use std::sync::LazyLock;

use ferry_connectors::redis::{ConnError, LuaScript};
use ferry_core::jobs::tier::store::Fence;
use ferry_core::jobs::tier::{Caption, EntryId};

use super::delete::fence_args;
use super::{CaptionSource, RawEntry, command_error, reply_count};
use crate::jobs::tier::TierError;

/// XDEL only while the fence holds this pass's token. KEYS: fence, stream. ARGV: token, ids.
/// Returns `{1, deleted}`, or `{0, fence}` (nothing deleted) when the fence has moved.
static FENCED_XDEL: LazyLock<LuaScript> = LazyLock::new(|| {
    LuaScript::new(
        r#"
local fence = redis.call('GET', KEYS[1])
if fence ~= ARGV[1] then return {0, fence or ''} end
return {1, redis.call('XDEL', KEYS[2], unpack(ARGV, 2))}
"#,
    )
});

impl CaptionSource {
    /// The Stream key of a camera.
    pub fn stream_key(&self, camera: &str) -> String {
        format!("{}{camera}", self.prefix)
    }

    /// Up to `count` entries of the camera's Stream after `after` (exclusive), oldest first.
    pub(super) async fn read_stream(
        &self,
        camera: &str,
        after: Option<EntryId>,
        count: usize,
    ) -> Result<Vec<RawEntry>, ConnError> {
        let key = self.stream_key(camera);
        let start = after.map_or_else(|| "-".to_string(), |a| format!("({a}"));
        let mut cmd = redis::cmd("XRANGE");
        cmd.arg(&key).arg(start).arg("+").arg("COUNT").arg(count);
        let reply = self.redis.query(key.as_bytes(), cmd).await?;
        let value = reply.map_err(|e| command_error(&self.redis, e))?;
        let entries: Vec<(String, Vec<Vec<u8>>)> =
            redis::from_redis_value(value).map_err(|e| command_error(&self.redis, e.into()))?;
        Ok(entries
            .into_iter()
            .filter_map(|(id, fields)| {
                let entry: EntryId = id.parse().ok()?;
                Some(RawEntry {
                    entry,
                    caption: stream_caption(camera, entry, &fields),
                })
            })
            .collect())
    }

    /// Deletes one chunk of the camera's Stream entries by id: the fenced script when `fence`
    /// is given, else XDEL. Returns how many existed.
    pub(super) async fn delete_stream_chunk(
        &self,
        camera: &str,
        chunk: &[EntryId],
        fence: Option<&Fence>,
    ) -> Result<u64, TierError> {
        let key = self.stream_key(camera);
        if let Some(f) = fence {
            let (fence_key, token) = fence_args(f);
            let ids: Vec<String> = chunk.iter().map(EntryId::to_string).collect();
            let mut args: Vec<&[u8]> = vec![token.as_bytes()];
            args.extend(ids.iter().map(|i| i.as_bytes()));
            let reply = self
                .redis
                .eval(&FENCED_XDEL, &[&fence_key, key.as_bytes()], &args)
                .await?;
            return self.fenced_count(camera, f, reply);
        }
        let mut cmd = redis::cmd("XDEL");
        cmd.arg(&key);
        for e in chunk {
            cmd.arg(e.to_string());
        }
        let n = self.redis.query(key.as_bytes(), cmd).await?;
        Ok(reply_count(n, &self.redis)?)
    }

    /// Number of entries in the camera's Stream (XLEN).
    pub(super) async fn stream_len(&self, camera: &str) -> Result<u64, ConnError> {
        let key = self.stream_key(camera);
        let mut cmd = redis::cmd("XLEN");
        cmd.arg(&key);
        let reply = self.redis.query(key.as_bytes(), cmd).await?;
        reply_count(reply, &self.redis)
    }
}

/// A Stream entry's fields as a caption: `caption`, optional `ts` (ms; default the entry id's
/// time) and `embedding`; other fields are ignored.
fn stream_caption(camera: &str, entry: EntryId, fields: &[Vec<u8>]) -> Result<Caption, String> {
    let mut text = None;
    let mut ts = None;
    let mut embedding = None;
    for pair in fields.chunks(2) {
        let [name, value] = pair else { break };
        match name.as_slice() {
            b"caption" => {
                text = Some(
                    String::from_utf8(value.clone())
                        .map_err(|_| "field `caption` is not UTF-8".to_string())?,
                )
            }
            b"ts" => {
                let s = std::str::from_utf8(value).unwrap_or("");
                ts = Some(
                    s.parse::<i64>()
                        .map_err(|_| format!("field `ts` is `{s}`, not milliseconds"))?,
                );
            }
            b"embedding" => {
                embedding = Some(decode_embedding(value).ok_or_else(|| {
                    format!(
                        "field `embedding` has {} bytes, not little-endian f32s",
                        value.len()
                    )
                })?)
            }
            _ => {}
        }
    }
    let text = text.ok_or("no `caption` field")?;
    if text.trim().is_empty() {
        return Err("empty `caption`".into());
    }
    Ok(Caption {
        entry,
        camera_id: camera.to_string(),
        ts_ms: ts.unwrap_or(entry.ms as i64),
        text,
        embedding,
    })
}

/// Decodes little-endian f32 bytes; `None` when the length is not a multiple of 4.
pub fn decode_embedding(bytes: &[u8]) -> Option<Vec<f32>> {
    if bytes.is_empty() || !bytes.len().is_multiple_of(4) {
        return None;
    }
    Some(
        bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
}

/// Encodes an embedding as little-endian f32 bytes (the `embedding` field's format).
pub fn encode_embedding(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_fields_decode_with_defaults_and_errors() {
        let e = EntryId::new(1000, 1);
        let emb = encode_embedding(&[0.5, -1.0]);
        let c = stream_caption(
            "c",
            e,
            &[
                b"caption".to_vec(),
                b"man".to_vec(),
                b"embedding".to_vec(),
                emb,
            ],
        )
        .unwrap();
        assert_eq!(c.ts_ms, 1000);
        assert_eq!(c.embedding, Some(vec![0.5, -1.0]));
        let err = stream_caption("c", e, &[b"ts".to_vec(), b"x".to_vec()]).unwrap_err();
        assert!(err.contains("`ts`"), "{err}");
        assert!(stream_caption("c", e, &[]).unwrap_err().contains("caption"));
    }
}
