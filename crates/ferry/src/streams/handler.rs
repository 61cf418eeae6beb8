//! What a job plugs into a [`StreamConsumer`](super::StreamConsumer): how one entry becomes an
//! item, and how a batch of items is committed.

use std::fmt::Display;
use std::future::Future;

use ferry_core::error::Classify;
use redis::RedisError;

/// A Stream entry as read: field names and values as bytes, whatever a producer wrote (a field
/// name that is not UTF-8 must become a dead letter, not a reply that fails to parse).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamEntry {
    /// The entry's id (`1700000000000-0`).
    pub id: String,
    /// Its fields in Stream order. Empty only for an entry deleted from the Stream while
    /// pending, which a handler never sees.
    pub fields: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Why a [`BatchHandler::commit`] committed nothing.
#[derive(Debug)]
pub enum CommitError<E> {
    /// The batch holds something the store refuses (a data exception, a constraint violation,
    /// a value over a limit), without saying which item: the consumer splits the batch in
    /// halves until each refused item is alone, then dead-letters it with this reason.
    Refused(String),
    /// The item at `index` of the batch is refused for `reason`: it is dead-lettered and the
    /// items before and after it are committed without it.
    RefusedItem {
        /// Its position in the batch given to `commit`.
        index: usize,
        /// Why, kept in the dead letter.
        reason: String,
    },
    /// The store could not answer: the entries stay pending; the attempt is retried with
    /// backoff when the error is retryable, else the consumer stops with it.
    Failed(E),
}

/// The job-specific part of a Stream consumer. The consumer reads, takes over, acknowledges,
/// dead-letters and retries; the handler only decodes entries and commits batches.
pub trait BatchHandler {
    /// What one entry becomes.
    type Item;
    /// The job's error (a Redis failure included, see [`BatchHandler::redis_error`]).
    type Error: Classify + Display;

    /// The item of one entry, or why it is not one (the dead letter's `ferry_error`).
    fn decode(&self, entry: &StreamEntry) -> Result<Self::Item, String>;

    /// Commits `items`, in Stream order, all or nothing. Called again with parts of a refused
    /// batch; an item committed twice (a redelivery after a crash before the acknowledgement)
    /// must be a no-op.
    fn commit(
        &mut self,
        items: &[Self::Item],
    ) -> impl Future<Output = Result<(), CommitError<Self::Error>>> + Send;

    /// A failure talking to the Stream's Redis, as the job's error.
    fn redis_error(&self, error: RedisError) -> Self::Error;
}
