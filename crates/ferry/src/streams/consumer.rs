//! The consumer-group loop: this consumer's own pending entries first (what it read before a
//! crash), then other consumers' entries idle for `claim_idle` (`XAUTOCLAIM`, acknowledging the
//! ids it reports deleted), then new entries (`XREADGROUP`), each batch handed to a
//! [`BatchHandler`]. Only a failure that retrying may cure is retried, with backoff; the loop
//! stops between two batches, or during a backoff pause, when its [`CancellationToken`] is
//! cancelled.

use std::time::{Duration, Instant};

use ferry_core::error::Classify;
use ferry_core::retry::Backoff;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisResult, Value};
use tokio_util::sync::CancellationToken;

use super::reply::{reply_claimed, reply_read};
use super::{BatchHandler, StreamEntry};

/// A counter a consumer increments: the metric and its fixed labels.
#[derive(Debug, Clone, Copy)]
pub struct Counter {
    /// The metric's Prometheus name (e.g. `EventsMetric::RetriesTotal.name()`).
    pub metric: &'static str,
    /// Its labels, as (name, value).
    pub labels: &'static [(&'static str, &'static str)],
}

impl Counter {
    /// Adds `n`.
    pub fn increment(&self, n: u64) {
        metrics::counter!(self.metric, self.labels).increment(n);
    }
}

/// How a consumer names what it does in its logs, failpoint and metrics.
#[derive(Debug, Clone, Copy)]
pub struct ConsumerNames {
    /// The job, in "{job} failed; entries stay pending" (`ingest`).
    pub job: &'static str,
    /// What an entry should be, in "not {item}; moved to the dead-letter stream" (`an event`).
    pub item: &'static str,
    /// The failpoint between the commit and the acknowledgement, for crash tests.
    pub after_commit_failpoint: &'static str,
    /// Counts failed attempts (each retried, or the last one of a `once` run).
    pub retries: Counter,
    /// Counts entries moved to the dead-letter Stream.
    pub dead_letters: Counter,
}

/// Options of one consumer.
#[derive(Debug, Clone)]
pub struct ConsumerOptions {
    /// The Stream read.
    pub stream: String,
    /// The consumer group.
    pub group: String,
    /// This consumer's name; keep it stable across restarts so its own pending entries are
    /// picked up again first.
    pub consumer: String,
    /// Where the group starts when it is created (`0`: the whole Stream, `$`: new entries).
    pub start_id: String,
    /// Entries per read.
    pub batch: usize,
    /// Entries pending this long with another consumer are taken over.
    pub claim_idle: Duration,
    /// Longest blocking read.
    pub block: Duration,
    /// Stop when nothing is left instead of waiting for more.
    pub once: bool,
    /// The dead-letter Stream.
    pub dead_letter: String,
    /// How it names itself.
    pub names: ConsumerNames,
}

impl ConsumerOptions {
    /// Defaults for `stream`, `group` and `consumer`: the whole Stream, 500 entries a read,
    /// take-over after 60 s, 1 s blocking reads, dead letters in `{stream}:dead`.
    pub fn new(stream: &str, group: &str, consumer: &str, names: ConsumerNames) -> Self {
        ConsumerOptions {
            stream: stream.to_string(),
            group: group.to_string(),
            consumer: consumer.to_string(),
            start_id: "0".into(),
            batch: 500,
            claim_idle: Duration::from_secs(60),
            block: Duration::from_secs(1),
            once: false,
            dead_letter: format!("{stream}:dead"),
            names,
        }
    }
}

/// What a consumer did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsumerStats {
    /// Entries read (including redeliveries and entries deleted while pending).
    pub read: u64,
    /// Entries moved to the dead-letter Stream.
    pub dead_lettered: u64,
    /// Entries taken over from other consumers.
    pub reclaimed: u64,
    /// Pending entries deleted from the Stream before they were handled (acknowledged).
    pub deleted: u64,
    /// Failed attempts (each retried).
    pub retries: u64,
}

/// Reads a Stream as one consumer of a group and hands its entries to a [`BatchHandler`],
/// acknowledging them only after the handler committed them.
#[derive(Debug, Clone)]
pub struct StreamConsumer {
    client: redis::Client,
    options: ConsumerOptions,
}

impl StreamConsumer {
    /// A consumer of the Stream `options.stream` on the Redis of `client`.
    pub fn new(client: redis::Client, options: ConsumerOptions) -> Self {
        StreamConsumer { client, options }
    }

    /// Its options.
    pub fn options(&self) -> &ConsumerOptions {
        &self.options
    }

    /// Runs until `stop` (or, with `once`, until the Stream has nothing left), creating the
    /// group if needed. A failure retrying cannot cure, or any failure with `once`, ends the
    /// run with it.
    pub async fn run<H: BatchHandler>(
        &self,
        handler: &mut H,
        stop: CancellationToken,
    ) -> Result<ConsumerStats, H::Error> {
        let opts = &self.options;
        let mut conn = self.connect().await.map_err(|e| handler.redis_error(e))?;
        ensure_group(&mut conn, opts)
            .await
            .map_err(|e| handler.redis_error(e))?;
        let mut run = Run {
            opts,
            handler,
            conn,
            stats: ConsumerStats::default(),
            own_pending: true,
            last_claim: None,
        };
        let mut backoff = Backoff::for_services();
        while !stop.is_cancelled() {
            match run.step().await {
                Ok(0) if opts.once => break,
                Ok(_) => backoff.reset(),
                // Retrying cannot help (refused data never escapes `process`; this is a bug or
                // a bad option): stop rather than loop.
                Err(e) if !e.retryable() => return Err(e),
                Err(e) => {
                    run.stats.retries += 1;
                    opts.names.retries.increment(1);
                    if opts.once {
                        return Err(e);
                    }
                    let delay = backoff.next();
                    tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "{} failed; entries stay pending", opts.names.job);
                    run.own_pending = true;
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep(delay) => {}
                    }
                    if let Ok(c) = self.connect().await {
                        run.conn = c;
                    }
                }
            }
        }
        Ok(run.stats)
    }

    async fn connect(&self) -> RedisResult<MultiplexedConnection> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(self.options.block + Duration::from_secs(5)));
        self.client
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }
}

async fn ensure_group(conn: &mut MultiplexedConnection, opts: &ConsumerOptions) -> RedisResult<()> {
    let created: RedisResult<()> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&opts.stream)
        .arg(&opts.group)
        .arg(&opts.start_id)
        .arg("MKSTREAM")
        .query_async(conn)
        .await;
    match created {
        Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
        other => other,
    }
}

/// One run of a consumer: its connection, what it did, and where it reads next.
pub(super) struct Run<'a, H> {
    pub(super) opts: &'a ConsumerOptions,
    pub(super) handler: &'a mut H,
    pub(super) conn: MultiplexedConnection,
    pub(super) stats: ConsumerStats,
    /// Read this consumer's own pending entries before anything new.
    own_pending: bool,
    last_claim: Option<Instant>,
}

impl<H: BatchHandler> Run<'_, H> {
    /// One read (own pending entries first, then other consumers' idle ones, then new ones)
    /// and its processing; returns the entries handled.
    async fn step(&mut self) -> Result<usize, H::Error> {
        if self.own_pending {
            let entries = self.read_group("0", None).await?;
            if !entries.is_empty() {
                return self.process(entries).await;
            }
            self.own_pending = false;
        }
        let claim_every = self.opts.claim_idle.min(Duration::from_secs(5));
        if self.last_claim.is_none_or(|t| t.elapsed() >= claim_every) {
            let handled = self.claim_idle().await?;
            self.last_claim = Some(Instant::now());
            if handled > 0 {
                return Ok(handled);
            }
        }
        let block = if self.opts.once {
            None
        } else {
            Some(self.opts.block)
        };
        let entries = self.read_group(">", block).await?;
        self.process(entries).await
    }

    /// Takes over every entry pending with another consumer for `claim_idle`, in batches, and
    /// processes them; acknowledges those deleted from the Stream meanwhile.
    async fn claim_idle(&mut self) -> Result<usize, H::Error> {
        let opts = self.opts;
        let mut cursor = "0-0".to_string();
        let mut handled = 0;
        loop {
            let reply = redis::cmd("XAUTOCLAIM")
                .arg(&opts.stream)
                .arg(&opts.group)
                .arg(&opts.consumer)
                .arg(opts.claim_idle.as_millis() as u64)
                .arg(&cursor)
                .arg("COUNT")
                .arg(opts.batch)
                .query_async::<Value>(&mut self.conn)
                .await
                .and_then(reply_claimed)
                .map_err(|e| self.handler.redis_error(e))?;
            self.ack_deleted(&reply.deleted).await?;
            if reply.nil > 0 {
                // Redis 6 claims deleted entries as nil: they are ours now; the read of our own
                // pending entries acknowledges them.
                self.own_pending = true;
            }
            if !reply.entries.is_empty() {
                self.stats.reclaimed += reply.entries.len() as u64;
                tracing::info!(
                    entries = reply.entries.len(),
                    "took over entries left pending by another consumer"
                );
                handled += self.process(reply.entries).await?;
            }
            cursor = reply.next;
            if cursor == "0-0" {
                return Ok(handled);
            }
        }
    }

    /// Acknowledges the ids `XAUTOCLAIM` reported deleted from the Stream.
    async fn ack_deleted(&mut self, deleted: &[String]) -> Result<(), H::Error> {
        if deleted.is_empty() {
            return Ok(());
        }
        // Redis 7 drops them from the PEL itself; acknowledge anyway, so that no server version
        // leaves them pending.
        let mut ack = redis::cmd("XACK");
        ack.arg(&self.opts.stream)
            .arg(&self.opts.group)
            .arg(deleted);
        let _: u64 = ack
            .query_async(&mut self.conn)
            .await
            .map_err(|e| self.handler.redis_error(e))?;
        self.stats.deleted += deleted.len() as u64;
        tracing::info!(
            entries = deleted.len(),
            "entries left pending were deleted from the stream; acknowledged"
        );
        Ok(())
    }

    /// `XREADGROUP` from `id` (`0`: this consumer's pending entries, `>`: new ones).
    async fn read_group(
        &mut self,
        id: &str,
        block: Option<Duration>,
    ) -> Result<Vec<StreamEntry>, H::Error> {
        let opts = self.opts;
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(&opts.group)
            .arg(&opts.consumer)
            .arg("COUNT")
            .arg(opts.batch);
        if let Some(b) = block {
            cmd.arg("BLOCK").arg(b.as_millis().max(1) as u64);
        }
        cmd.arg("STREAMS").arg(&opts.stream).arg(id);
        cmd.query_async::<Value>(&mut self.conn)
            .await
            .and_then(reply_read)
            .map_err(|e| self.handler.redis_error(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_double_from_100_ms_up_to_5_s_for_ever() {
        let mut backoff = Backoff::for_services();
        let ms: Vec<u128> = (0..9).map(|_| backoff.next().as_millis()).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
    }
}
