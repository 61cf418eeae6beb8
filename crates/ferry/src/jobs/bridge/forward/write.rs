//! Writing a transformed batch once, then committing its offsets.

use super::*;

impl Forward<'_> {
    /// Writes and commits one transformed batch; `false` when stopped while retrying (nothing
    /// committed: the batch is read again by the next run).
    pub(super) async fn write_batch(
        &mut self,
        (out, read, started, transform_time): Transformed,
        stop: &CancellationToken,
    ) -> Result<bool, BridgeError> {
        let writing = Instant::now();
        self.check_restarts(&out).await?;
        failpoint("bridge-before-write");
        let Some(written) = self.write(&out, stop).await? else {
            return Ok(false);
        };
        tracing::debug!(
            records = read,
            transform_ms = transform_time.as_secs_f64() * 1e3,
            write_ms = writing.elapsed().as_secs_f64() * 1e3,
            "batch written"
        );
        failpoint("bridge-after-write");
        self.commit(&out, CommitMode::Async);
        let dead = written.dead_lettered;
        let bytes_in: u64 = out.iter().map(|o| o.bytes_in as u64).sum();
        let bytes_out = written.bytes;
        for o in &out {
            if let Some((before, after)) = o.image {
                self.image_in += before as u64;
                self.image_out += after as u64;
            }
        }
        let ratio = if self.image_out > 0 {
            self.image_in as f64 / self.image_out as f64
        } else {
            1.0
        };
        let to_stream = written.written;
        let s = &mut self.summary;
        s.read += read;
        s.written += to_stream;
        s.dead_lettered += dead;
        s.duplicates_skipped += written.skipped;
        s.bytes_in += bytes_in;
        s.bytes_out += bytes_out;
        let labels = &self.labels;
        metrics::counter!(BridgeMetric::MessagesInTotal.name(), labels).increment(read);
        metrics::counter!(BridgeMetric::MessagesOutTotal.name(), labels).increment(to_stream);
        metrics::counter!(BridgeMetric::BytesInTotal.name(), labels).increment(bytes_in);
        metrics::counter!(BridgeMetric::BytesOutTotal.name(), labels).increment(bytes_out);
        metrics::counter!(BridgeMetric::DeadLettersTotal.name(), labels).increment(dead);
        metrics::counter!(BridgeMetric::DuplicatesSkippedTotal.name(), labels)
            .increment(written.skipped);
        metrics::histogram!(BridgeMetric::BatchSeconds.name(), labels)
            .record(started.elapsed().as_secs_f64());
        metrics::gauge!(BridgeMetric::CompressionRatio.name(), labels).set(ratio);
        let summary = self.summary.clone();
        self.status.update(|v| {
            v.state = "running".into();
            v.reason = None;
            v.totals = summary;
            v.compression_ratio = ratio;
            v.last_batch_at = Some(chrono::Utc::now().to_rfc3339());
        });
        Ok(true)
    }

    /// Writes with retries; `None` when stopped before it succeeded.
    pub(super) async fn write(
        &mut self,
        out: &[Outgoing],
        stop: &CancellationToken,
    ) -> Result<Option<crate::jobs::bridge::sink::Written>, BridgeError> {
        let mut backoff = Backoff::for_services();
        loop {
            match self
                .sink
                .write(&mut self.conn, &self.options.topic, out)
                .await
            {
                Ok(w) => return Ok(Some(w)),
                Err(e) => {
                    let e = BridgeError::redis(&self.options.redis, e);
                    if !e.retryable() || self.options.once {
                        return Err(e);
                    }
                    self.retried(&e);
                    let delay = backoff.next();
                    tokio::select! {
                        _ = stop.cancelled() => return Ok(None),
                        _ = tokio::time::sleep(delay) => {}
                    }
                    if let Ok(c) = connect(&self.client).await {
                        self.conn = c;
                    }
                }
            }
        }
    }

    pub(super) fn retried(&mut self, e: &BridgeError) {
        tracing::warn!(error = %e, "bridge write failed; records stay uncommitted in Kafka, retrying");
        self.summary.retries += 1;
        metrics::counter!(BridgeMetric::RetriesTotal.name(), &self.labels).increment(1);
        self.status.set_state("retrying", Some(e.to_string()));
    }

    /// Commits, per partition, the offset after the last record of `out` (all written).
    pub(super) fn commit(&mut self, out: &[Outgoing], mode: CommitMode) {
        let mut last: BTreeMap<i32, i64> = BTreeMap::new();
        for o in out {
            let e = last.entry(o.partition).or_insert(o.offset);
            *e = (*e).max(o.offset);
        }
        for (&p, &offset) in &last {
            self.next.insert(p, offset + 1);
            let end = self.seen_end.entry(p).or_insert(offset + 1);
            *end = (*end).max(offset + 1);
        }
        self.commit_next(last.keys().copied(), mode);
    }

    pub(super) fn commit_next(&self, partitions: impl Iterator<Item = i32>, mode: CommitMode) {
        let mut tpl = TopicPartitionList::new();
        for p in partitions {
            if let Some(&next) = self.next.get(&p) {
                let _ = tpl.add_partition_offset(&self.options.topic, p, Offset::Offset(next));
            }
        }
        if tpl.count() == 0 {
            return;
        }
        // A failed commit (a rebalance took the partition) only means the records are read
        // again, and then skipped as written.
        if let Err(e) = self.consumer.commit(&tpl, mode) {
            tracing::info!(error = %e, "committing Kafka offsets failed; the records will be skipped when read again");
        }
    }
}
