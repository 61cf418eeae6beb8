//! The relay's side of the outbox ([`EventLog::publish_pending`]): claim queued events below
//! the horizon, of cameras no other relay is publishing, hand them to the publisher, and
//! delete them from the outbox only once it returned `Ok`, in the transaction that holds the
//! cameras' locks.

use std::future::Future;

use ferry_core::jobs::events::StoredEvent;
use tokio_postgres::SimpleQueryMessage;

use super::sql::claim_sql;
use super::{EventLog, EventLogError, EventLogResult};

/// A batch handed to the publisher by [`EventLog::publish_pending`].
#[derive(Debug, Clone)]
pub struct OutboxBatch {
    /// The events in id order (so in id order for each camera).
    pub events: Vec<StoredEvent>,
}

/// What one [`EventLog::publish_pending`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Published {
    /// Events published (0: nothing was ready, or every ready camera is being published by
    /// another relay).
    pub events: usize,
    /// Queued events wait for a transaction in flight that may still commit a lower id:
    /// worth asking again soon, since that transaction may end without a notification (a
    /// rollback).
    pub held_back: bool,
}

/// Why [`EventLog::publish_pending`] failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError<E> {
    /// The log failed; nothing was marked published.
    #[error(transparent)]
    Log(#[from] EventLogError),
    /// The publisher failed; nothing was marked published.
    #[error("publishing failed: {0}")]
    Publisher(E),
}

/// A pooled connection inside a transaction opened with a plain `BEGIN`: [`finish`] ends it;
/// dropped unfinished (an error, a cancelled future), the connection is closed instead of
/// going back to the pool, so the server rolls the transaction back and releases its locks.
///
/// [`finish`]: OpenTransaction::finish
struct OpenTransaction {
    client: Option<deadpool_postgres::Object>,
}

impl OpenTransaction {
    fn new(client: deadpool_postgres::Object) -> Self {
        OpenTransaction {
            client: Some(client),
        }
    }

    fn client(&self) -> &deadpool_postgres::Object {
        self.client
            .as_ref()
            .expect("an open transaction has its client")
    }

    /// Runs `sql` (ending with `COMMIT` or `ROLLBACK`) and returns the connection to the pool.
    async fn finish(mut self, sql: &str) -> Result<(), tokio_postgres::Error> {
        let client = self.client.take().expect("finished once");
        match client.batch_execute(sql).await {
            Ok(()) => Ok(()),
            Err(e) => {
                drop(deadpool_postgres::Object::take(client));
                Err(e)
            }
        }
    }
}

impl Drop for OpenTransaction {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            drop(deadpool_postgres::Object::take(client));
        }
    }
}

/// What the claim (see `claim_sql`) returned.
struct Claim {
    /// The outbox ids claimed, as text.
    ids: Vec<String>,
    /// Their events (fewer when an event was deleted meanwhile).
    events: Vec<StoredEvent>,
    /// Queued events wait for a transaction in flight.
    held_back: bool,
}

/// Reads the rows of the claim: the `held` row, then one (id, event as JSON) row per claimed
/// outbox entry.
fn read_claim(messages: &[SimpleQueryMessage]) -> EventLogResult<Claim> {
    let mut claim = Claim {
        ids: Vec::new(),
        events: Vec::new(),
        held_back: false,
    };
    for m in messages {
        let SimpleQueryMessage::Row(row) = m else {
            continue;
        };
        if row.len() == 3 && row.get(0) == Some("held") {
            claim.held_back = row.get(1) != Some("0");
            continue;
        }
        if row.len() != 2 {
            continue; // the horizon's and the lock statement's rows
        }
        claim.ids.push(row.get(0).unwrap_or_default().to_string());
        // An outbox row whose event was deleted meanwhile is dropped unpublished.
        if let Some(json) = row.get(1) {
            let event = serde_json::from_str(json).map_err(|e| {
                EventLogError::Backend(format!("an outbox event did not decode: {e}"))
            })?;
            claim.events.push(event);
        }
    }
    Ok(claim)
}

impl EventLog {
    /// Publishes up to `limit` queued events: takes those below the horizon (in id order,
    /// skipping cameras another relay is publishing), awaits `publish`, and marks them
    /// published only if it returned `Ok`, in the same transaction.
    pub async fn publish_pending<F, Fut, E>(
        &self,
        limit: usize,
        publish: F,
    ) -> Result<Published, PublishError<E>>
    where
        F: FnOnce(OutboxBatch) -> Fut,
        Fut: Future<Output = Result<(), E>>,
    {
        let limit = limit.max(1) as i64;
        let err = |e| self.error(e);
        // One round trip: open the transaction, compute the horizon, take the cameras of the
        // oldest queued events below it and lock those no other relay holds (never waiting for
        // one), read their events (see `claim_sql`).
        let tx = OpenTransaction::new(self.client().await?);
        let messages = tx
            .client()
            .simple_query(&claim_sql(limit))
            .await
            .map_err(err)?;
        let Claim {
            ids,
            events,
            held_back,
        } = read_claim(&messages)?;
        if ids.is_empty() {
            tx.finish("COMMIT").await.map_err(err)?;
            return Ok(Published {
                events: 0,
                held_back,
            });
        }
        let n = events.len();
        if !events.is_empty()
            && let Err(e) = publish(OutboxBatch { events }).await
        {
            let _ = tx.finish("ROLLBACK").await;
            return Err(PublishError::Publisher(e));
        }
        // One round trip: mark them published and commit.
        tx.finish(&format!(
            "DELETE FROM events_pending WHERE event_id = ANY('{{{}}}'::bigint[]); COMMIT",
            ids.join(",")
        ))
        .await
        .map_err(err)?;
        Ok(Published {
            events: n,
            held_back,
        })
    }
}
