//! Where a dual store learns its storage mode: a fixed one, or a Redis string that operators
//! change live (`ferry vectors mode set`), read at most once per refresh interval.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use ferry_connectors::redis::{RedisEndpoint, Value, cmd};
use ferry_core::jobs::vectors::StorageMode;

use super::metrics::set_mode_gauge;

/// Where the storage mode comes from.
#[derive(Debug)]
// Built once per store and never moved around: its size does not matter.
#[allow(clippy::large_enum_variant)]
pub enum ModeSource {
    /// Always this mode.
    Fixed(StorageMode),
    /// A Redis string holding `primary_only`, `dual_write`, `shadow_read` or `cutover` (a
    /// missing key is `primary_only`), read again when the last read is older than `refresh`.
    Redis {
        /// The server holding the key.
        endpoint: RedisEndpoint,
        /// The key.
        key: String,
        /// How long a read mode is used before the key is read again (e.g. 500 ms).
        refresh: Duration,
    },
}

/// Why the mode key could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ModeReadError {
    /// The server did not answer or failed.
    #[error("cannot read the storage mode key `{key}`: {message}")]
    Redis { key: String, message: String },
    /// The key holds something else than a mode name.
    #[error(
        "the storage mode key `{key}` holds `{value}`, not a mode: set it with `ferry vectors mode set` to primary_only, dual_write, shadow_read or cutover"
    )]
    Invalid { key: String, value: String },
    /// No answer within the timeout.
    #[error("the storage mode key `{key}` did not answer within {timeout:?}")]
    Timeout { key: String, timeout: Duration },
}

/// What is known of the mode.
#[derive(Debug, Default)]
struct Known {
    /// The last mode read.
    mode: Option<StorageMode>,
    /// When the key was last tried (successfully or not).
    checked: Option<Instant>,
    /// Whether the last try failed (to log a failure once, and the recovery).
    failing: bool,
}

/// The mode source with what was last read from it.
#[derive(Debug)]
pub(crate) struct ModeCache {
    source: ModeSource,
    /// Mode used while a Redis source has never been read.
    fallback: StorageMode,
    /// Bounds one read of the key.
    timeout: Duration,
    known: Mutex<Known>,
    /// Held by the one call refreshing the mode; the others use the last mode meanwhile.
    refreshing: tokio::sync::Mutex<()>,
}

impl ModeCache {
    /// A cache over `source`; `fallback` is used while a Redis source has never answered.
    pub(crate) fn new(source: ModeSource, fallback: StorageMode, timeout: Duration) -> Self {
        let known = match &source {
            ModeSource::Fixed(mode) => {
                set_mode_gauge(*mode);
                Known {
                    mode: Some(*mode),
                    ..Known::default()
                }
            }
            ModeSource::Redis { .. } => Known::default(),
        };
        ModeCache {
            source,
            fallback,
            timeout,
            known: Mutex::new(known),
            refreshing: tokio::sync::Mutex::new(()),
        }
    }

    /// The last mode read, without reading.
    pub(crate) fn last(&self) -> Option<StorageMode> {
        self.lock().mode
    }

    /// The mode now: the cached one while fresh, else the key read again. A read that fails
    /// keeps the last mode (the fallback before the first success) and is tried again after the
    /// refresh interval.
    pub(crate) async fn current(&self) -> StorageMode {
        let ModeSource::Redis {
            endpoint,
            key,
            refresh,
        } = &self.source
        else {
            return self.last().unwrap_or(self.fallback);
        };
        if let Some(mode) = self.fresh(*refresh) {
            return mode;
        }
        let _guard = match self.refreshing.try_lock() {
            Ok(guard) => guard,
            Err(_) => match self.last() {
                // Another call is reading the key: use the last mode meanwhile.
                Some(mode) => return mode,
                None => self.refreshing.lock().await,
            },
        };
        // Another call may have read it while this one waited.
        if let Some(mode) = self.fresh(*refresh) {
            return mode;
        }
        let read = read_mode(endpoint, key, self.timeout).await;
        self.record(read)
    }

    /// The mode to use when the key was tried within `refresh` (the fallback if that try
    /// failed and none was ever read), so that a failing key is not tried on every call.
    fn fresh(&self, refresh: Duration) -> Option<StorageMode> {
        let known = self.lock();
        let fresh = known.checked.is_some_and(|t| t.elapsed() < refresh);
        fresh.then(|| known.mode.unwrap_or(self.fallback))
    }

    /// Stores the outcome of one read; returns the mode to use.
    fn record(&self, read: Result<StorageMode, ModeReadError>) -> StorageMode {
        let mut known = self.lock();
        known.checked = Some(Instant::now());
        match read {
            Ok(mode) => {
                if known.failing {
                    tracing::info!(mode = %mode, "storage mode key readable again");
                }
                if known.mode != Some(mode) {
                    match known.mode {
                        Some(old) => {
                            tracing::info!(from = %old, to = %mode, "storage mode changed")
                        }
                        None => tracing::info!(mode = %mode, "storage mode read"),
                    }
                    set_mode_gauge(mode);
                }
                known.failing = false;
                known.mode = Some(mode);
                mode
            }
            Err(e) => {
                let mode = known.mode.unwrap_or(self.fallback);
                if !known.failing {
                    let kept = if known.mode.is_some() {
                        "keeping the last mode"
                    } else {
                        "using the fallback mode until it can be read"
                    };
                    tracing::warn!(error = %e, mode = %mode, "{kept}");
                }
                known.failing = true;
                mode
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Known> {
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `GET key` as a mode (a missing key is `primary_only`), bounded by `timeout`.
async fn read_mode(
    endpoint: &RedisEndpoint,
    key: &str,
    timeout: Duration,
) -> Result<StorageMode, ModeReadError> {
    let mut get = cmd("GET");
    get.arg(key);
    let redis_error = |message: String| ModeReadError::Redis {
        key: key.to_string(),
        message,
    };
    let reply = tokio::time::timeout(timeout, endpoint.query(key.as_bytes(), get))
        .await
        .map_err(|_| ModeReadError::Timeout {
            key: key.to_string(),
            timeout,
        })?
        .map_err(|e| redis_error(e.to_string()))?
        .map_err(|e| redis_error(e.to_string()))?;
    parse_mode(key, &reply)
}

/// A `GET` reply as a mode.
fn parse_mode(key: &str, reply: &Value) -> Result<StorageMode, ModeReadError> {
    let text = match reply {
        Value::Nil => return Ok(StorageMode::PrimaryOnly),
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::SimpleString(s) => s.clone(),
        other => format!("{other:?}"),
    };
    text.parse().map_err(|_| ModeReadError::Invalid {
        key: key.to_string(),
        value: text.chars().take(64).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_parse_as_modes_and_a_missing_key_is_primary_only() {
        assert_eq!(
            parse_mode("k", &Value::Nil).unwrap(),
            StorageMode::PrimaryOnly
        );
        let cutover = Value::BulkString(b"cutover".to_vec());
        assert_eq!(parse_mode("k", &cutover).unwrap(), StorageMode::Cutover);
        let bad = Value::BulkString(b"hybrid".to_vec());
        let e = parse_mode("k", &bad).unwrap_err().to_string();
        assert!(e.contains("`hybrid`") && e.contains("mode set"), "{e}");
    }

    #[tokio::test]
    async fn a_fixed_source_never_reads() {
        let cache = ModeCache::new(
            ModeSource::Fixed(StorageMode::ShadowRead),
            StorageMode::DualWrite,
            Duration::from_secs(1),
        );
        assert_eq!(cache.current().await, StorageMode::ShadowRead);
        assert_eq!(cache.last(), Some(StorageMode::ShadowRead));
    }

    #[test]
    fn a_failed_read_keeps_the_last_mode_or_the_fallback() {
        let cache = ModeCache::new(
            ModeSource::Fixed(StorageMode::Cutover),
            StorageMode::DualWrite,
            Duration::from_secs(1),
        );
        let failure = || ModeReadError::Timeout {
            key: "k".into(),
            timeout: Duration::from_secs(1),
        };
        assert_eq!(cache.record(Err(failure())), StorageMode::Cutover);
        cache.lock().mode = None;
        assert_eq!(cache.record(Err(failure())), StorageMode::DualWrite);
        assert_eq!(
            cache.record(Ok(StorageMode::ShadowRead)),
            StorageMode::ShadowRead
        );
        assert_eq!(cache.record(Err(failure())), StorageMode::ShadowRead);
    }
}
