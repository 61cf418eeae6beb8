//! What the events job runs inside `ferry serve`: the relay (paused and resumed through its
//! switch) and a sampler of the outbox backlog.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::EventsContext;
use super::metrics::EventsMetric;
use crate::server::JobSwitch;

/// The job's id for its pause switch and its dashboard card.
pub const JOB: &str = "events";

/// Time between samples of the outbox backlog.
const BACKLOG_EVERY: Duration = Duration::from_secs(5);

/// Starts the relay (outbox → Redis) and the backlog sampler until `stop`. While `switch` is
/// paused the relay stops at its next safe point (what it published is marked) and events
/// wait in the outbox.
pub fn spawn(
    ctx: Arc<EventsContext>,
    switch: JobSwitch,
    stop: &CancellationToken,
) -> Vec<JoinHandle<()>> {
    let relay = {
        let (ctx, stop) = (ctx.clone(), stop.clone());
        tokio::spawn(async move {
            while switch.wait_running(&stop).await {
                let ran = super::relay(&ctx, false, switch.run_token(&stop)).await;
                switch.ended();
                match ran {
                    Ok(s) => tracing::info!(published = s.published, "events relay stopped"),
                    Err(e) => {
                        tracing::error!(error = %e, "events relay failed");
                        return;
                    }
                }
            }
        })
    };
    vec![relay, tokio::spawn(sample_backlog(ctx, stop.clone()))]
}

/// Sets the outbox gauges every few seconds.
async fn sample_backlog(ctx: Arc<EventsContext>, stop: CancellationToken) {
    loop {
        match ctx.log.backlog().await {
            Ok((count, oldest_ms)) => {
                metrics::gauge!(EventsMetric::OutboxBacklog.name()).set(count as f64);
                metrics::gauge!(EventsMetric::OutboxOldestSeconds.name())
                    .set(oldest_ms.unwrap_or(0) as f64 / 1000.0);
            }
            Err(e) => tracing::debug!(error = %e, "events backlog sample failed"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(BACKLOG_EVERY) => {}
        }
    }
}
