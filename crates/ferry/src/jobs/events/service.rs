//! What the events job runs inside `ferry serve`: the relay.

use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::EventsContext;

/// Starts the relay (outbox → Redis) until `stop`.
pub fn spawn(ctx: Arc<EventsContext>, stop: &CancellationToken) -> JoinHandle<()> {
    let stop = stop.clone();
    tokio::spawn(async move {
        match super::relay(&ctx, false, stop).await {
            Ok(s) => tracing::info!(published = s.published, "events relay stopped"),
            Err(e) => tracing::error!(error = %e, "events relay failed"),
        }
    })
}
