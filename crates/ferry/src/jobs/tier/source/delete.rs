//! Deleting consumed entries by id, in chunks of 1000, each chunk through the layout's fenced
//! script when the lease fences live on the captions' server (see the `source` module docs),
//! and reading what a fenced script answered.

use ferry_connectors::redis::RedisCheckpointStore;
use ferry_core::jobs::tier::EntryId;
use ferry_core::jobs::tier::store::Fence;
use redis::Value;

use super::{CaptionSource, Layout, command_error};
use crate::jobs::tier::TierError;

impl CaptionSource {
    /// Deletes exactly these entries of `camera` (XDEL by id, or the caption keys). Returns how
    /// many existed.
    ///
    /// With a `fence` and the lease store on this server ([`Self::fences_deletes`]), each chunk
    /// is deleted by a script that first checks that the scope's fence still holds the fence's
    /// token, and nothing is deleted (error [`TierError::Fenced`]) once a newer run took the
    /// lease over. Otherwise the delete is not fenced (see the `source` module docs).
    pub async fn delete(
        &self,
        camera: &str,
        entries: &[EntryId],
        fence: Option<&Fence>,
    ) -> Result<u64, TierError> {
        let fence = fence.filter(|_| self.fences_here);
        let mut deleted = 0u64;
        for chunk in entries.chunks(1000) {
            deleted += match self.layout {
                Layout::Stream => self.delete_stream_chunk(camera, chunk, fence).await?,
                Layout::Keys => self.delete_keys_chunk(camera, chunk, fence).await?,
            };
        }
        Ok(deleted)
    }

    /// The count a fenced delete script returned, or [`TierError::Fenced`].
    pub(super) fn fenced_count(
        &self,
        camera: &str,
        fence: &Fence,
        reply: redis::RedisResult<Value>,
    ) -> Result<u64, TierError> {
        let reply = reply.map_err(|e| command_error(&self.redis, e))?;
        match reply {
            Value::Array(parts) => match parts.as_slice() {
                [Value::Int(1), Value::Int(n)] => Ok((*n).max(0) as u64),
                [Value::Int(0), current] => Err(TierError::Fenced {
                    camera: camera.to_string(),
                    scope: fence.scope.clone(),
                    token: fence.token,
                    current: match current {
                        Value::BulkString(b) if !b.is_empty() => {
                            String::from_utf8_lossy(b).into_owned()
                        }
                        _ => "missing".to_string(),
                    },
                }),
                _ => Err(self.unexpected(format!("{parts:?}"))),
            },
            other => Err(self.unexpected(format!("{other:?}"))),
        }
    }

    /// A fenced delete script's reply of an unexpected shape, as a command error.
    fn unexpected(&self, reply: String) -> TierError {
        let e = redis::RedisError::from((
            redis::ErrorKind::Client,
            "unexpected reply of the fenced delete script",
            reply,
        ));
        command_error(&self.redis, e).into()
    }
}

/// The fence key and token a fenced delete script is given (KEYS[1] and ARGV[1]).
pub(super) fn fence_args(fence: &Fence) -> (Vec<u8>, String) {
    (
        RedisCheckpointStore::fence_key(&fence.scope),
        fence.token.to_string(),
    )
}
