//! Chunks: values too big for one payload (or refused by the target), copied element by
//! element through a temporary key; with `--delete-source`, the source deleted only once it
//! still equals the copy.

use ferry_connectors::redis::{
    ChunkError, ChunkFence, ChunkedCopy, DeleteIfUnchanged, RedisCheckpointStore, RedisEndpoint,
    SourceDelete, Value, Witness, chunk_tmp_key, cmd, copy_in_chunks_fenced, delete_if_unchanged,
    source_digest,
};
use ferry_core::checkpoint::{CheckpointStore, now_ms};

use super::{WriteStrategy, Written};
use crate::jobs::keys::apply::batch::Batcher;
use crate::jobs::keys::apply::map::{Action, Item};
use crate::jobs::keys::verify::same_in_chunks;
use crate::jobs::keys::{KeysError, LEDGER_TMP, Stats};
use crate::runtime::pausepoint;

/// Copies element by element, `--chunk-size` elements at a time.
#[derive(Debug, Clone, Copy)]
pub(super) struct Chunks<'a>(pub(super) &'a Batcher);

impl WriteStrategy for Chunks<'_> {
    async fn write(
        &self,
        items: &[Item],
        which: &[usize],
        out: &mut [Option<Written>],
        stats: &mut Stats,
    ) -> Result<(), KeysError> {
        for &i in which {
            out[i] = Some(self.copy_one(&items[i], None, stats).await?);
        }
        Ok(())
    }
}

impl Chunks<'_> {
    /// Copies one item element by element; `expire_at` is read from the source when `None`.
    /// The temporary key is recorded in the `tmp` ledger while the copy runs. With
    /// `--delete-source` the source is deleted only if, after the copy, it still equals the new
    /// key element by element (a chunked copy is no snapshot: a value changed and changed back
    /// meanwhile must not pass) and is unchanged from that comparison to the delete (its DUMP
    /// digest, taken before the comparison, checked in the deleting script); a changed one is
    /// copied once more, then kept.
    pub(super) async fn copy_one(
        &self,
        item: &Item,
        expire_at: Option<Option<i64>>,
        stats: &mut Stats,
    ) -> Result<Written, KeysError> {
        let mut replace = item.action != Action::Create;
        let mut expire_at = expire_at;
        for attempt in 0..2 {
            let at = match expire_at.take() {
                Some(e) => e,
                None => match self.read_expiry(item).await? {
                    Ok(e) => e,
                    Err(written) => return Ok(written),
                },
            };
            let written = self.copy_once(item, at, replace, stats).await?;
            if !self.0.opts.delete_source || written != Written::Done {
                return Ok(written);
            }
            pausepoint("keys-after-chunked-copy");
            match self.delete_if_still_equal(item, at).await? {
                Ok(Some(SourceDelete::Deleted)) => return Ok(Written::Moved),
                Ok(Some(SourceDelete::Changed)) if attempt == 0 => replace = true,
                Ok(Some(SourceDelete::Changed)) => return Ok(Written::changed_twice()),
                Ok(Some(SourceDelete::Failed(e))) => return Ok(Written::delete_failed(e)),
                Ok(Some(SourceDelete::Gone) | None) => return Ok(Written::Done),
                Err(written) => return Ok(written),
            }
        }
        unreachable!("the second attempt returns")
    }

    /// The expire-at of the item's source; `Err` with its outcome when it vanished or the
    /// expiry cannot be read.
    async fn read_expiry(&self, item: &Item) -> Result<Result<Option<i64>, Written>, KeysError> {
        let source = &self.0.source;
        let now = now_ms();
        let r = source
            .query(&item.src, source.expiry_cmd(&item.src))
            .await?;
        Ok(match source.expiry_from(&r, now) {
            Some(e) => Ok(e),
            None if r.is_ok() => Err(Written::Vanished),
            None => Err(Written::Failed(format!("reading the expiry: {r:?}"))),
        })
    }

    /// After a chunked copy with `--delete-source`: deletes the source if it still equals the
    /// new key element by element and its digest, taken before the comparison, still holds.
    /// `Changed` when it differs; `Err` with the item's outcome when the source cannot be read.
    async fn delete_if_still_equal(
        &self,
        item: &Item,
        expire_at: Option<i64>,
    ) -> Result<Result<Option<SourceDelete>, Written>, KeysError> {
        let b = self.0;
        let digest = match source_digest(&b.source, &item.src).await? {
            Ok(Some(d)) => d,
            Ok(None) => return Ok(Err(Written::Done)),
            Err(e) => {
                return Ok(Err(Written::Kept {
                    changed: false,
                    why: format!("copied, but reading the source failed: {e}"),
                }));
            }
        };
        if !self.same_as_copy(item).await? {
            return Ok(Ok(Some(SourceDelete::Changed)));
        }
        let check = DeleteIfUnchanged {
            key: &item.src,
            witness: Witness::Sha1(&digest),
            expire_at,
        };
        b.store.check_lease(&b.scope).await?;
        Ok(Ok(delete_if_unchanged(&b.source, &[check]).await?.pop()))
    }

    /// Whether the source still equals the new key element by element (and, for a stream, in
    /// its consumer groups).
    async fn same_as_copy(&self, item: &Item) -> Result<bool, KeysError> {
        let b = self.0;
        let kind = match b
            .source
            .query(&item.src, cmd("TYPE").arg(&item.src).clone())
            .await?
        {
            Ok(Value::SimpleString(t)) => t,
            Ok(Value::BulkString(t)) => String::from_utf8_lossy(&t).into_owned(),
            _ => String::new(),
        };
        Ok(same_in_chunks(
            &b.source,
            &b.target,
            b.opts.chunk_size,
            &item.src,
            &item.dst,
            &kind,
        )
        .await?
            && (kind != "stream"
                || stream_groups(&b.source, &item.src).await?
                    == stream_groups(&b.target, &item.dst).await?))
    }

    /// One chunked copy into a temporary key, renamed to the new name at the end; the
    /// temporary key is in the `tmp` ledger while the copy runs.
    async fn copy_once(
        &self,
        item: &Item,
        expire_at: Option<i64>,
        replace: bool,
        stats: &mut Stats,
    ) -> Result<Written, KeysError> {
        let b = self.0;
        // The token in the name: a run that lost its lease never writes into the temporary
        // key of the run that took over.
        let tag = format!("{}-{}", b.opts.run_name, b.fence);
        let tmp = chunk_tmp_key(&item.dst, &tag, b.target.is_cluster());
        if let Some(tmp) = &tmp {
            b.store
                .ledger_put(&b.scope, LEDGER_TMP, &[(tmp.clone(), item.dst.clone())])
                .await?;
        }
        // Checked in the renaming script when the store lives on the target, else read just
        // before the rename (a file store: checked before the copy starts).
        b.store.check_lease(&b.scope).await?;
        let fence_key = RedisCheckpointStore::fence_key(&b.scope);
        let fence = b
            .store
            .redis_endpoint()
            .filter(|_| b.fence != 0)
            .map(|endpoint| ChunkFence {
                endpoint,
                key: &fence_key,
                token: b.fence,
            });
        let copied = copy_in_chunks_fenced(
            &b.source,
            &item.src,
            &b.target,
            &item.dst,
            expire_at,
            replace,
            b.opts.chunk_size,
            &tag,
            fence,
        )
        .await;
        let written = match copied {
            Ok(ChunkedCopy::Copied { bytes }) => {
                stats.bytes += bytes;
                stats.chunked += 1;
                Written::Done
            }
            Ok(ChunkedCopy::Vanished) => Written::Vanished,
            Ok(ChunkedCopy::Exists) => Written::Exists,
            Err(ChunkError::Key(e)) => Written::Failed(format!("chunked copy: {e}")),
            Err(ChunkError::Conn(e)) => return Err(e.into()),
        };
        if let Some(tmp) = tmp {
            b.store.ledger_remove(&b.scope, LEDGER_TMP, &[tmp]).await?;
        }
        Ok(written)
    }
}

/// What the consumer groups of a stream have reached (name, consumers, pending entries, last
/// delivered id, entries read), for comparing a copy with its source: the entries alone do not
/// show a group created, an acknowledgement or a delivery.
async fn stream_groups(endpoint: &RedisEndpoint, key: &[u8]) -> Result<Vec<String>, KeysError> {
    const FIELDS: [&str; 5] = [
        "name",
        "consumers",
        "pending",
        "last-delivered-id",
        "entries-read",
    ];
    let reply = endpoint
        .query(key, cmd("XINFO").arg("GROUPS").arg(key).clone())
        .await?;
    let groups = match reply {
        Ok(Value::Array(groups)) => groups,
        _ => return Ok(Vec::new()),
    };
    let mut out: Vec<String> = groups
        .into_iter()
        .map(|group| {
            let pairs: Vec<(Value, Value)> = match group {
                Value::Map(m) => m,
                Value::Array(a) => {
                    let mut it = a.into_iter();
                    std::iter::from_fn(|| Some((it.next()?, it.next()?))).collect()
                }
                _ => Vec::new(),
            };
            let text = |v: &Value| match v {
                Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
                Value::SimpleString(s) => s.clone(),
                other => format!("{other:?}"),
            };
            let mut fields: Vec<String> = pairs
                .iter()
                .filter(|(k, _)| FIELDS.contains(&text(k).as_str()))
                .map(|(k, v)| format!("{}={}", text(k), text(v)))
                .collect();
            fields.sort();
            fields.join(" ")
        })
        .collect();
    out.sort();
    Ok(out)
}
