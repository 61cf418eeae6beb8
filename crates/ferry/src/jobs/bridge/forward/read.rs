//! Reading a batch from Kafka, and not reading while the Stream or Redis is over its limit.

use super::*;

impl Forward<'_> {
    /// Reads up to `batch` records: waits up to [`IDLE_WAIT`] for the first, then up to
    /// `linger` for the rest.
    pub(super) async fn collect(
        &mut self,
        stop: &CancellationToken,
    ) -> Result<Vec<OwnedMessage>, BridgeError> {
        let max = self.options.batch;
        let take = self.carry.len().min(max);
        let mut batch: Vec<OwnedMessage> = self.carry.drain(..take).collect();
        let mut deadline = (!batch.is_empty()).then(|| Instant::now() + self.options.linger);
        while batch.len() < max {
            let wait = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => IDLE_WAIT,
            };
            if wait.is_zero() {
                break;
            }
            let received = tokio::select! {
                _ = stop.cancelled() => break,
                r = tokio::time::timeout(wait, self.consumer.recv()) => r,
            };
            match received {
                Err(_) => break,
                Ok(Ok(msg)) => {
                    batch.push(msg.detach());
                    self.failing_since = None;
                    deadline.get_or_insert_with(|| Instant::now() + self.options.linger);
                }
                Ok(Err(e)) => {
                    let e = kafka::KafkaError::new(&self.options.kafka, e);
                    let since = *self.failing_since.get_or_insert_with(Instant::now);
                    // A service waits for the broker to come back; a `--once` run gives up.
                    if !e.retryable() || (self.options.once && since.elapsed() > ONCE_GIVE_UP) {
                        return Err(e.into());
                    }
                    tracing::warn!(error = %e, "reading from Kafka failed; retrying");
                    break;
                }
            }
        }
        Ok(batch)
    }

    /// With limits set: stops taking records while a limit is exceeded; `false` when stopped
    /// meanwhile. The records wait in Kafka (and in librdkafka's bounded prefetch queue).
    ///
    /// For the first [`QUIET_PAUSE`] the consumer is only polled for one batch more, kept for the
    /// next batch: pausing partitions drops what librdkafka prefetched and fetches it again
    /// after the resume, which halved the throughput of a bridge that pauses often. A longer
    /// pause pauses the assigned partitions (`rd_kafka_pause_partitions`) and goes on polling,
    /// so the member stays in its group past `max.poll.interval.ms`.
    pub(super) async fn wait_below_limits(
        &mut self,
        stop: &CancellationToken,
    ) -> Result<bool, BridgeError> {
        let o = self.options;
        let Some(reason) = self.exceeded().await? else {
            return Ok(true);
        };
        tracing::warn!(%reason, "pausing the Kafka consumer (backpressure)");
        self.summary.pauses += 1;
        self.status.set_state("paused", Some(reason));
        metrics::gauge!(BridgeMetric::Paused.name(), &self.labels).set(1.0);
        let since = Instant::now();
        let mut paused_partitions = false;
        loop {
            let long = since.elapsed() >= QUIET_PAUSE;
            if long {
                // Partitions a rebalance assigns come unpaused: pause whatever is assigned now.
                if let Ok(assigned) = self.consumer.assignment() {
                    let _ = self.consumer.pause(&assigned);
                    paused_partitions = true;
                }
            }
            if long || self.carry.len() < o.batch {
                tokio::select! {
                    _ = stop.cancelled() => return Ok(false),
                    r = tokio::time::timeout(PAUSE_CHECK, self.consumer.recv()) => {
                        if let Ok(Ok(msg)) = r {
                            self.carry.push(msg.detach());
                            if !long {
                                continue;
                            }
                        }
                    }
                }
            } else {
                tokio::select! {
                    _ = stop.cancelled() => return Ok(false),
                    _ = tokio::time::sleep(PAUSE_CHECK) => {}
                }
            }
            self.refresh_lag(false);
            if self.exceeded().await?.is_none() {
                break;
            }
        }
        if paused_partitions && let Ok(assigned) = self.consumer.assignment() {
            let _ = self.consumer.resume(&assigned);
        }
        tracing::info!(stream = %o.stream, "resuming the Kafka consumer");
        metrics::gauge!(BridgeMetric::Paused.name(), &self.labels).set(0.0);
        self.status.set_state("running", None);
        Ok(true)
    }

    pub(super) async fn exceeded(&mut self) -> Result<Option<String>, BridgeError> {
        let mut backoff = Backoff::for_services();
        loop {
            match self
                .limits
                .exceeded(&mut self.conn, &self.options.stream)
                .await
            {
                Ok(r) => return Ok(r),
                Err(e) => {
                    let e = BridgeError::redis(&self.options.redis, e);
                    if !e.retryable() || self.options.once {
                        return Err(e);
                    }
                    self.retried(&e);
                    tokio::time::sleep(backoff.next()).await;
                    if let Ok(c) = connect(&self.client).await {
                        self.conn = c;
                    }
                }
            }
        }
    }
}
