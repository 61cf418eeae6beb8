//! SCAN over every source master, as one stream of batches.

use futures::stream::{self, BoxStream, StreamExt};

use ferry_connectors::redis::{ConnError, Node, RedisEndpoint};

/// Keys returned by one SCAN step of one master, with the cursor to resume after them.
#[derive(Debug)]
pub(crate) struct ScanBatch {
    /// The master (`host:port`).
    pub node: String,
    /// The cursor after this step; 0 when the master is done.
    pub cursor_after: u64,
    /// The keys.
    pub keys: Vec<Vec<u8>>,
}

/// Scans every master of `endpoint` concurrently, starting each at its cursor in `start`
/// (missing = from the beginning; masters listed in `finished` are skipped).
pub(crate) fn scan_batches(
    endpoint: &RedisEndpoint,
    start: &std::collections::BTreeMap<String, u64>,
    finished: &[String],
    pattern: Option<Vec<u8>>,
    count: usize,
) -> BoxStream<'static, Result<ScanBatch, ConnError>> {
    let display = endpoint.display().to_string();
    let per_node = endpoint
        .masters()
        .into_iter()
        .filter(|n| !finished.contains(&n.addr))
        .map(|node: Node| {
            let cursor = start.get(&node.addr).copied().unwrap_or(0);
            let pattern = pattern.clone();
            let display = display.clone();
            stream::unfold(Some((node, cursor)), move |st| {
                let pattern = pattern.clone();
                let display = display.clone();
                async move {
                    let (node, cursor) = st?;
                    match node.scan(cursor, pattern.as_deref(), count).await {
                        Ok((next, keys)) => {
                            let batch = ScanBatch {
                                node: node.addr.clone(),
                                cursor_after: next,
                                keys,
                            };
                            let state = if next == 0 { None } else { Some((node, next)) };
                            Some((Ok(batch), state))
                        }
                        Err(source) => Some((
                            Err(ConnError::Command {
                                endpoint: display,
                                source,
                            }),
                            None,
                        )),
                    }
                }
            })
            .boxed()
        });
    stream::select_all(per_node).boxed()
}

/// Sum of DBSIZE over the masters: the progress bar's estimate.
pub(crate) async fn estimate_keys(endpoint: &RedisEndpoint) -> u64 {
    let mut total = 0;
    for node in endpoint.masters() {
        let n: redis::RedisResult<u64> = redis::cmd("DBSIZE").query_async(&mut node.conn()).await;
        total += n.unwrap_or(0);
    }
    total
}
