//! DUMP payloads held in memory, for backups and for DUMP/RESTORE: their sizes estimated by
//! `MEMORY USAGE`, grouped so that a batch holds a bounded number of bytes at once, and the
//! errors of a server that cannot read them.

use ferry_connectors::redis::{RedisEndpoint, RedisError, RedisResult, Value, cmd};

use crate::jobs::keys::KeysError;

/// Most bytes of DUMP payloads (estimated by `MEMORY USAGE`) one batch holds at once; a single
/// bigger value (up to `--max-payload`) is read alone.
const PAYLOAD_BYTES_IN_FLIGHT: u64 = 8 << 20;

/// `MEMORY USAGE key SAMPLES 1` of each key, pipelined: the estimate that decides whether a
/// value goes in one payload.
pub(super) async fn memory_usages<'a>(
    endpoint: &RedisEndpoint,
    keys: impl Iterator<Item = &'a Vec<u8>>,
) -> Result<Vec<RedisResult<Value>>, KeysError> {
    let cmds = keys
        .map(|key| {
            let mut c = cmd("MEMORY");
            c.arg("USAGE").arg(key).arg("SAMPLES").arg(1);
            (key.clone(), c)
        })
        .collect();
    Ok(endpoint.run(cmds).await?)
}

/// Splits `(index, estimated bytes)` into groups of at most [`PAYLOAD_BYTES_IN_FLIGHT`] bytes
/// (a bigger value alone), in order.
pub(super) fn payload_groups(sized: &[(usize, u64)]) -> Vec<Vec<usize>> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut bytes = 0;
    for &(i, size) in sized {
        match groups.last_mut() {
            Some(g) if bytes + size <= PAYLOAD_BYTES_IN_FLIGHT => {
                g.push(i);
                bytes += size;
            }
            _ => {
                groups.push(vec![i]);
                bytes = size;
            }
        }
    }
    groups
}

/// Whether a RESTORE failed because the server cannot read the DUMP payload.
pub(super) fn is_payload_rejection(e: &RedisError) -> bool {
    refuses_payload(&e.to_string())
}

/// Whether a server's error message says it cannot read a DUMP payload (e.g. from a newer
/// server).
pub(in crate::jobs::keys) fn refuses_payload(message: &str) -> bool {
    message.contains("payload version or checksum") || message.contains("Bad data format")
}
