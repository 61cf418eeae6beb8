//! A Pub/Sub consumer of the events job that drops duplicates.
//!
//! Delivery is at least once: an event whose publication was not yet marked when the relay
//! stopped is published again. The relay publishes each camera's events in id order, so an
//! event whose id is not above the last one seen for its camera is a duplicate.
//!
//! ```text
//! cargo run --example events_consumer -- redis://127.0.0.1:6379 [CHANNEL]
//! ```

use std::collections::HashMap;

use ferry::jobs::events::StoredEvent;
use futures::StreamExt;

/// Remembers the last id per camera; `is_new` is false for a redelivered event.
#[derive(Debug, Default)]
struct Dedupe {
    last: HashMap<String, i64>,
}

impl Dedupe {
    fn is_new(&mut self, event: &StoredEvent) -> bool {
        let last = self.last.entry(event.camera_id.clone()).or_insert(0);
        if event.id > *last {
            *last = event.id;
            true
        } else {
            false
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "redis://127.0.0.1:6379".into());
    let channel = args.next().unwrap_or_else(|| "events".into());
    let client = redis::Client::open(url.as_str())?;
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(&channel).await?;
    eprintln!("listening on {channel} (Ctrl-C to stop)");
    let mut dedupe = Dedupe::default();
    let mut messages = pubsub.into_on_message();
    while let Some(msg) = messages.next().await {
        let payload: String = msg.get_payload()?;
        let event: StoredEvent = match serde_json::from_str(&payload) {
            Ok(e) => e,
            Err(e) => {
                eprintln!("skipping a message that is not an event: {e}");
                continue;
            }
        };
        if !dedupe.is_new(&event) {
            continue;
        }
        println!(
            "#{} {} {} at {}: {}",
            event.id, event.event_type, event.camera_id, event.timestamp, event.event_data
        );
    }
    Ok(())
}
