//! Backpressure: the forward bridge stops consuming while the Stream is longer than
//! `max_stream_len` or Redis uses more than `max_redis_memory` bytes, and goes on when both are
//! below again. Nothing is dropped: the records wait in Kafka.
//!
//! `MAXLEN ~` trims whole radix-tree nodes only (`stream-node-max-entries`, 100 by default, and
//! `stream-node-max-bytes`, 4 KB): a Stream is trimmed to *about* `maxlen`, and a node is removed
//! only when all its entries may go. A limit checked here is read with `XLEN` and `INFO
//! memory`, so it holds whatever the trimming does.

use redis::aio::MultiplexedConnection;

/// The limits; `None`: no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Most entries in the Stream.
    pub max_stream_len: Option<u64>,
    /// Most bytes Redis may use (`used_memory`).
    pub max_redis_memory: Option<u64>,
}

impl Limits {
    /// Whether any limit is set.
    pub fn any(&self) -> bool {
        self.max_stream_len.is_some() || self.max_redis_memory.is_some()
    }

    /// Why consuming must pause now, if it must.
    pub async fn exceeded(
        &self,
        conn: &mut MultiplexedConnection,
        stream: &str,
    ) -> redis::RedisResult<Option<String>> {
        if let Some(max) = self.max_stream_len {
            let len: u64 = redis::cmd("XLEN").arg(stream).query_async(conn).await?;
            if len > max {
                return Ok(Some(format!(
                    "the stream {stream} holds {len} entries, over --max-stream-len {max}"
                )));
            }
        }
        if let Some(max) = self.max_redis_memory {
            let used = used_memory(conn).await?;
            if used > max {
                return Ok(Some(format!(
                    "Redis uses {used} bytes, over --max-redis-memory {max}"
                )));
            }
        }
        Ok(None)
    }
}

/// `used_memory` of `INFO memory`.
pub async fn used_memory(conn: &mut MultiplexedConnection) -> redis::RedisResult<u64> {
    let info: String = redis::cmd("INFO").arg("memory").query_async(conn).await?;
    Ok(info_field(&info, "used_memory").unwrap_or(0))
}

/// A numeric field of an `INFO` reply.
pub fn info_field(info: &str, name: &str) -> Option<u64> {
    info.lines().find_map(|line| {
        let (k, v) = line.trim_end().split_once(':')?;
        (k == name).then(|| v.parse().ok()).flatten()
    })
}

/// Parses a size: bytes, or with a `k`, `m`, `g` suffix (powers of 1024; `kb`, `mib`... too).
pub fn parse_bytes(value: &str) -> Result<u64, String> {
    let v = value.trim().to_ascii_lowercase();
    let digits = v.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &v[digits.len()..];
    let factor: u64 = match unit {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => {
            return Err(format!(
                "`{value}`: unknown unit `{unit}` (use bytes, or k, m, g, t)"
            ));
        }
    };
    let n: u64 = digits
        .trim()
        .parse()
        .map_err(|_| format!("`{value}` is not a size (e.g. 512m, 2g or 1048576)"))?;
    n.checked_mul(factor)
        .filter(|&b| b > 0)
        .ok_or_else(|| format!("`{value}`: give a size above 0 and below 16 EiB"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units_and_refuse_nonsense() {
        assert_eq!(parse_bytes("1048576"), Ok(1 << 20));
        assert_eq!(parse_bytes("512m"), Ok(512 << 20));
        assert_eq!(parse_bytes("2GiB"), Ok(2 << 30));
        assert!(parse_bytes("0").is_err());
        assert!(parse_bytes("-1").is_err());
        assert!(parse_bytes("12q").unwrap_err().contains("unit"));
        assert!(parse_bytes("99999999999t").is_err());
    }

    #[test]
    fn info_fields_are_read_by_exact_name() {
        let info = "# Memory\r\nused_memory:1024\r\nused_memory_human:1.00K\r\n";
        assert_eq!(info_field(info, "used_memory"), Some(1024));
        assert_eq!(info_field(info, "used_memory_peak"), None);
    }
}
