//! The live view's one subscription: however many people watch `GET /api/v1/events/live`, the
//! server holds one Redis Pub/Sub connection and fans its messages out ([`LiveHub`]), so viewers
//! cannot use up Redis's connections; their number is capped too.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{Mutex, broadcast, watch};
use tokio_util::sync::CancellationToken;

/// Viewers one server serves at once.
pub const MAX_VIEWERS: usize = 256;

/// The message viewers get when the subscription dropped (events published until it is back
/// do not reach them); a message starting with NUL is never a published event.
pub const GAP: &str = "\0gap";

/// The message viewers get when the subscription is back after a gap.
pub const BACK: &str = "\0back";

/// Messages a slow viewer may fall behind before it skips ahead.
const BUFFER: usize = 1024;

/// Why a viewer cannot be served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveError {
    /// [`MAX_VIEWERS`] watch already.
    TooMany,
    /// The subscription is not up (Redis unreachable).
    Unavailable(String),
}

/// The shared subscription and its viewers.
#[derive(Debug)]
pub struct LiveHub {
    sender: broadcast::Sender<Arc<str>>,
    subscribed: Mutex<Option<watch::Receiver<Result<(), String>>>>,
}

impl Default for LiveHub {
    fn default() -> Self {
        LiveHub {
            sender: broadcast::channel(BUFFER).0,
            subscribed: Mutex::new(None),
        }
    }
}

impl LiveHub {
    /// A new viewer: every message published on `channel` from now on. The first viewer starts
    /// the subscription (it lives until `stop`, reconnecting after Redis comes back) and every
    /// viewer waits until it is up.
    pub async fn watch(
        &self,
        client: &redis::Client,
        channel: &str,
        stop: &CancellationToken,
    ) -> Result<broadcast::Receiver<Arc<str>>, LiveError> {
        if self.sender.receiver_count() >= MAX_VIEWERS {
            return Err(LiveError::TooMany);
        }
        let mut up = {
            let mut started = self.subscribed.lock().await;
            match &*started {
                Some(up) => up.clone(),
                None => {
                    let (tx, rx) = watch::channel(Err("subscribing".to_string()));
                    let task = Subscription {
                        client: client.clone(),
                        channel: channel.to_string(),
                        sender: self.sender.clone(),
                        up: tx,
                    };
                    tokio::spawn(task.run(stop.clone()));
                    *started = Some(rx.clone());
                    rx
                }
            }
        };
        let viewer = self.sender.subscribe();
        let ready = tokio::time::timeout(Duration::from_secs(5), up.wait_for(Result::is_ok))
            .await
            .is_ok_and(|r| r.is_ok());
        if ready {
            return Ok(viewer);
        }
        let why = up.borrow().clone().err().unwrap_or_default();
        Err(LiveError::Unavailable(why))
    }
}

/// The task holding the subscription.
struct Subscription {
    client: redis::Client,
    channel: String,
    sender: broadcast::Sender<Arc<str>>,
    up: watch::Sender<Result<(), String>>,
}

impl Subscription {
    /// Subscribes, forwards every message to the viewers, and subscribes again after a failure.
    async fn run(self, stop: CancellationToken) {
        let mut first = true;
        while !stop.is_cancelled() {
            let outcome = async {
                let mut pubsub = self.client.get_async_pubsub().await?;
                pubsub.subscribe(&self.channel).await?;
                let _ = self.up.send_replace(Ok(()));
                if !first {
                    let _ = self.sender.send(Arc::from(BACK));
                }
                let mut messages = pubsub.into_on_message();
                while let Some(msg) = messages.next().await {
                    if let Ok(payload) = msg.get_payload::<String>() {
                        // No viewer right now is fine.
                        let _ = self.sender.send(Arc::from(payload));
                    }
                }
                Ok::<(), redis::RedisError>(())
            };
            let why = tokio::select! {
                _ = stop.cancelled() => return,
                r = outcome => r.err().map_or("the subscription ended".to_string(), |e| e.to_string()),
            };
            tracing::warn!(error = %why, "the live view's subscription dropped; subscribing again");
            let _ = self.up.send_replace(Err(why));
            let _ = self.sender.send(Arc::from(GAP));
            first = false;
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }
}

/// The messages a viewer receives, as a stream (a viewer that fell behind skips ahead).
pub fn messages(viewer: broadcast::Receiver<Arc<str>>) -> impl futures::Stream<Item = Arc<str>> {
    futures::stream::unfold(viewer, |mut viewer| async move {
        loop {
            match viewer.recv().await {
                Ok(message) => return Some((message, viewer)),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
}
