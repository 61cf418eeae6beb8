//! Waking the relays: a dedicated connection that `LISTEN`s for the outbox trigger's
//! notifications ([`EventLog::listen`]).

use std::sync::Arc;

use tokio::sync::Notify;
use tokio_postgres::AsyncMessage;

use super::{EventLog, EventLogResult};

/// The channel of `NOTIFY` sent by the outbox trigger.
pub const NOTIFY_CHANNEL: &str = "ferry_events";

/// A `LISTEN` connection opened by [`EventLog::listen`]; dropping it closes the connection.
pub struct Listener {
    task: tokio::task::JoinHandle<()>,
    /// Kept so the connection stays open.
    _client: tokio_postgres::Client,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener").finish_non_exhaustive()
    }
}

impl Listener {
    /// Returns when the connection is lost.
    pub async fn lost(self) {
        let Listener { task, _client } = self;
        let _ = task.await;
    }
}

impl EventLog {
    /// Opens a dedicated connection that `LISTEN`s for new events and calls `notify_one()` on
    /// each of `wake` per notification, until the connection is lost ([`Listener::lost`];
    /// listen again then: the relay's periodic rescan covers the gap).
    pub async fn listen(&self, wake: Vec<Arc<Notify>>) -> EventLogResult<Listener> {
        let (client, mut connection) = self
            .config
            .connect(self.tls.clone())
            .await
            .map_err(|e| self.error(e))?;
        let task = tokio::spawn(async move {
            let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(message) = futures::StreamExt::next(&mut messages).await {
                match message {
                    Ok(AsyncMessage::Notification(_)) => wake.iter().for_each(|w| w.notify_one()),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "PostgreSQL LISTEN connection lost");
                        break;
                    }
                }
            }
        });
        client
            .batch_execute(&format!("LISTEN {NOTIFY_CHANNEL}"))
            .await
            .map_err(|e| self.error(e))?;
        Ok(Listener {
            task,
            _client: client,
        })
    }
}
