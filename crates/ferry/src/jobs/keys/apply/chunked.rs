//! Values too big for one payload (or refused by the target), copied element by element; with
//! `--delete-source`, the source deleted only once it still equals the copy.

use super::*;

impl Batcher {
    /// Copies one item element by element; `expire_at` is read from the source when `None`.
    /// The temporary key is recorded in the `tmp` ledger while the copy runs. With
    /// `--delete-source` the source is deleted only if, after the copy, it still equals the new
    /// key element by element (a chunked copy is no snapshot: a value changed and changed back
    /// meanwhile must not pass) and is unchanged from that comparison to the delete (its DUMP
    /// digest, taken before the comparison, checked in the deleting script); a changed one is
    /// copied once more, then kept.
    pub(super) async fn copy_chunked(
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
                None => {
                    let now = now_ms();
                    let r = self
                        .source
                        .query(&item.src, self.source.expiry_cmd(&item.src))
                        .await?;
                    match self.source.expiry_from(&r, now) {
                        Some(e) => e,
                        None if r.is_ok() => return Ok(Written::Vanished),
                        None => {
                            return Ok(Written::Failed(format!("reading the expiry: {r:?}")));
                        }
                    }
                }
            };
            let written = self.copy_chunked_once(item, at, replace, stats).await?;
            if !self.opts.delete_source || written != Written::Done {
                return Ok(written);
            }
            pausepoint("keys-after-chunked-copy");
            let digest = match source_digest(&self.source, &item.src).await? {
                Ok(Some(d)) => d,
                Ok(None) => return Ok(Written::Done),
                Err(e) => {
                    return Ok(Written::Kept {
                        changed: false,
                        why: format!("copied, but reading the source failed: {e}"),
                    });
                }
            };
            let kind = match self
                .source
                .query(&item.src, cmd("TYPE").arg(&item.src).clone())
                .await?
            {
                Ok(Value::SimpleString(t)) => t,
                Ok(Value::BulkString(t)) => String::from_utf8_lossy(&t).into_owned(),
                _ => String::new(),
            };
            let same = same_in_chunks(
                &self.source,
                &self.target,
                self.opts.chunk_size,
                &item.src,
                &item.dst,
                &kind,
            )
            .await?
                && (kind != "stream"
                    || stream_groups(&self.source, &item.src).await?
                        == stream_groups(&self.target, &item.dst).await?);
            let deleted = if same {
                let check = DeleteIfUnchanged {
                    key: &item.src,
                    witness: Witness::Sha1(&digest),
                    expire_at: at,
                };
                self.store.check_lease(&self.scope).await?;
                delete_if_unchanged(&self.source, &[check]).await?.pop()
            } else {
                Some(SourceDelete::Changed)
            };
            match deleted {
                Some(SourceDelete::Deleted) => return Ok(Written::Moved),
                Some(SourceDelete::Changed) if attempt == 0 => replace = true,
                Some(SourceDelete::Changed) => {
                    return Ok(Written::Kept {
                        changed: true,
                        why: changed_while_moved(),
                    });
                }
                Some(SourceDelete::Failed(e)) => {
                    return Ok(Written::Kept {
                        changed: false,
                        why: format!("copied, but deleting the source failed: {e}"),
                    });
                }
                Some(SourceDelete::Gone) | None => return Ok(Written::Done),
            }
        }
        unreachable!("the second attempt returns")
    }

    pub(super) async fn copy_chunked_once(
        &self,
        item: &Item,
        expire_at: Option<i64>,
        replace: bool,
        stats: &mut Stats,
    ) -> Result<Written, KeysError> {
        // The token in the name: a run that lost its lease never writes into the temporary
        // key of the run that took over.
        let tag = format!("{}-{}", self.opts.run_name, self.fence);
        let tmp = chunk_tmp_key(&item.dst, &tag, self.target.is_cluster());
        if let Some(tmp) = &tmp {
            self.store
                .ledger_put(&self.scope, LEDGER_TMP, &[(tmp.clone(), item.dst.clone())])
                .await?;
        }
        // Checked in the renaming script when the store lives on the target, else read just
        // before the rename (a file store: checked before the copy starts).
        self.store.check_lease(&self.scope).await?;
        let fence_key = RedisCheckpointStore::fence_key(&self.scope);
        let fence = self
            .store
            .redis_endpoint()
            .filter(|_| self.fence != 0)
            .map(|endpoint| ChunkFence {
                endpoint,
                key: &fence_key,
                token: self.fence,
            });
        let copied = copy_in_chunks_fenced(
            &self.source,
            &item.src,
            &self.target,
            &item.dst,
            expire_at,
            replace,
            self.opts.chunk_size,
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
            self.store
                .ledger_remove(&self.scope, LEDGER_TMP, &[tmp])
                .await?;
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

pub(super) fn changed_while_moved() -> String {
    "an application changed it twice while it was being moved: kept under its old name (the new name holds an earlier value); run apply again to copy its latest value".to_string()
}
