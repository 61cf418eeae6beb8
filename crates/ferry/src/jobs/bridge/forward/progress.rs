//! How far the bridge is: caught up (`--once`) and the lag per partition.

use super::*;

impl Forward<'_> {
    /// Every assigned partition is at or past its end seen at start: the next offset to bridge
    /// (this run's, else librdkafka's position, else the group's committed offset) is there.
    pub(super) async fn caught_up(&mut self) -> Result<bool, BridgeError> {
        let consumer = self.consumer.clone();
        let committed = tokio::task::spawn_blocking(move || {
            let assigned = consumer.assignment()?;
            consumer.committed_offsets(assigned, KAFKA_TIMEOUT)
        })
        .await
        .map_err(|e| BridgeError::Internal(e.to_string()))?;
        let committed = match committed {
            Ok(c) => {
                self.failing_since = None;
                c
            }
            Err(e) => {
                let since = *self.failing_since.get_or_insert_with(Instant::now);
                if since.elapsed() > ONCE_GIVE_UP {
                    return Err(kafka::KafkaError::new(&self.options.kafka, e).into());
                }
                tracing::info!(error = %e, "reading committed offsets failed; checking again");
                return Ok(false);
            }
        };
        let stats = self.consumer.context().partition_stats(&self.options.topic);
        Ok(committed.elements().iter().all(|e| {
            let p = e.partition();
            let target = self.targets.get(&p).copied().unwrap_or(0);
            let next = self
                .next
                .get(&p)
                .copied()
                .or_else(|| stats.get(&p).map(|s| s.app_offset).filter(|&o| o >= 0))
                .or(match e.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                })
                .unwrap_or(0);
            next >= target
        }))
    }

    /// Updates the lag gauges every [`LAG_INTERVAL`] (`force`: now) from librdkafka's latest
    /// statistics, without a request to the broker (a watermark query can wait behind fetches).
    /// The lag of a partition is its end — the high watermark, or the last offset seen + 1
    /// when the broker's watermark lags behind — minus the next offset to bridge (this run's,
    /// else the consumer's position, else the group's committed offset).
    pub(super) fn refresh_lag(&mut self, force: bool) {
        if !force && self.last_lag.elapsed() < LAG_INTERVAL {
            return;
        }
        self.last_lag = Instant::now();
        let stats = self.consumer.context().partition_stats(&self.options.topic);
        let mut lag = BTreeMap::new();
        for (&p, s) in &stats {
            let end = s.high.max(self.seen_end.get(&p).copied().unwrap_or(0));
            let known = |o: i64| (o >= 0).then_some(o);
            let Some(next) = self
                .next
                .get(&p)
                .copied()
                .or_else(|| known(s.app_offset))
                .or_else(|| known(s.committed))
            else {
                continue;
            };
            if end < 0 {
                continue;
            }
            let behind = (end - next).max(0);
            lag.insert(p, behind);
            let labels = [
                ("bridge", self.options.name.clone()),
                ("partition", p.to_string()),
            ];
            metrics::gauge!(BridgeMetric::ConsumerLag.name(), &labels).set(behind as f64);
        }
        self.status.update(|v| v.lag = lag);
    }
}
