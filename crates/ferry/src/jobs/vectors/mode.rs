//! The live storage mode: one Redis string (`ferry:vectors:NAME:mode` by default, on the state
//! Redis) holding `primary_only`, `dual_write`, `shadow_read` or `cutover`. Applications (and
//! [`super::dual::DualStore`]) read it; `ferry vectors mode set` and `rollback` write it. A
//! missing key reads as `primary_only`.

use ferry_connectors::redis::{RedisEndpoint, Value, cmd};
use ferry_core::jobs::vectors::StorageMode;

use super::{VectorsContext, VectorsError};

/// The mode stored at `key` (`primary_only` when the key does not exist).
pub async fn read(endpoint: &RedisEndpoint, key: &str) -> Result<StorageMode, VectorsError> {
    let mut c = cmd("GET");
    c.arg(key);
    let reply = endpoint
        .query(key.as_bytes(), c)
        .await?
        .map_err(|e| VectorsError::Usage(format!("reading the storage mode at `{key}`: {e}")))?;
    match reply {
        Value::Nil => Ok(StorageMode::PrimaryOnly),
        Value::BulkString(b) => {
            let text = String::from_utf8_lossy(&b).to_string();
            text.parse().map_err(|e| {
                VectorsError::Conflict(format!(
                    "the storage mode key `{key}` holds `{text}`: {e}; set it with `ferry vectors mode set`"
                ))
            })
        }
        other => Err(VectorsError::Conflict(format!(
            "the storage mode key `{key}` holds {other:?}, not a mode name"
        ))),
    }
}

/// Stores `mode` at `key`; returns the mode it replaced.
pub async fn write(
    endpoint: &RedisEndpoint,
    key: &str,
    mode: StorageMode,
) -> Result<StorageMode, VectorsError> {
    let before = read(endpoint, key)
        .await
        .unwrap_or(StorageMode::PrimaryOnly);
    let mut c = cmd("SET");
    c.arg(key).arg(mode.as_str());
    endpoint
        .query(key.as_bytes(), c)
        .await?
        .map_err(|e| VectorsError::Usage(format!("writing the storage mode at `{key}`: {e}")))?;
    Ok(before)
}

/// The migration's current mode.
pub async fn get(ctx: &VectorsContext) -> Result<StorageMode, VectorsError> {
    read(ctx.state(), &ctx.options.mode_key).await
}

/// Sets the migration's mode; returns the one it replaced.
pub async fn set(ctx: &VectorsContext, mode: StorageMode) -> Result<StorageMode, VectorsError> {
    write(ctx.state(), &ctx.options.mode_key, mode).await
}
