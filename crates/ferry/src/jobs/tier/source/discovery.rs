//! Camera discovery: one SCAN of every master for the keys under the prefix (only Streams in
//! the `stream` layout), giving the cameras and, for the `keys` layout, their caption
//! timestamps.

use std::collections::BTreeMap;

use ferry_connectors::redis::ConnError;

use super::{CaptionSource, KeyIndex, Layout, command_error};

impl CaptionSource {
    /// Every camera with captions in Redis; for the `keys` layout also the index of their
    /// caption timestamps (sorted).
    pub async fn cameras(&self) -> Result<(Vec<String>, KeyIndex), ConnError> {
        let pattern = format!("{}*", glob_escape(&self.prefix));
        let mut index: KeyIndex = BTreeMap::new();
        let mut streams = Vec::new();
        for node in self.redis.masters() {
            let mut cursor = 0u64;
            loop {
                let mut cmd = redis::cmd("SCAN");
                cmd.arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1000);
                if self.layout == Layout::Stream {
                    cmd.arg("TYPE").arg("stream");
                }
                let (next, keys): (u64, Vec<Vec<u8>>) = cmd
                    .query_async(&mut node.conn())
                    .await
                    .map_err(|e| command_error(&self.redis, e))?;
                for key in keys {
                    self.note_key(key, &mut streams, &mut index);
                }
                cursor = next;
                if cursor == 0 {
                    break;
                }
            }
        }
        let cameras = match self.layout {
            Layout::Stream => {
                streams.sort();
                streams.dedup();
                streams
            }
            Layout::Keys => {
                index.values_mut().for_each(|v| {
                    v.sort_unstable();
                    v.dedup();
                });
                index.keys().cloned().collect()
            }
        };
        Ok((cameras, index))
    }

    /// Adds one SCANned key to what was found: its camera to `streams` (the `stream` layout),
    /// or its camera and timestamp to `index` (the `keys` layout). Keys that are not UTF-8 or
    /// not shaped like the layout's are skipped.
    fn note_key(&self, key: Vec<u8>, streams: &mut Vec<String>, index: &mut KeyIndex) {
        let Ok(key) = String::from_utf8(key) else {
            return;
        };
        let Some(rest) = key.strip_prefix(&self.prefix) else {
            return;
        };
        match self.layout {
            Layout::Stream => streams.push(rest.to_string()),
            Layout::Keys => {
                if let Some((camera, ts)) = rest.rsplit_once(':')
                    && let Ok(ts) = ts.parse::<u64>()
                    && !camera.is_empty()
                {
                    index.entry(camera.to_string()).or_default().push(ts);
                }
            }
        }
    }
}

/// Escapes SCAN glob metacharacters.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_are_escaped() {
        assert_eq!(glob_escape("cap*[x]"), "cap\\*\\[x\\]");
    }
}
