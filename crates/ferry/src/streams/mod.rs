//! Redis Streams as a job's input, written once: [`StreamConsumer`] reads a Stream as one
//! consumer of a group (own pending entries first, idle ones taken over, deleted ones
//! acknowledged), hands each batch to a [`BatchHandler`], acknowledges only what the handler
//! committed, moves what it refuses to a dead-letter Stream with the reason, and retries only
//! what may succeed later.
//!
//! - [`consumer`]: the loop, its options, names and statistics;
//! - [`handler`]: what a job plugs in (decode an entry, commit a batch);
//! - `batch`, `bisect`: one batch's commit, dead letters and acknowledgement;
//! - `reply`: reading `XREADGROUP` and `XAUTOCLAIM` replies.

mod batch;
mod bisect;
pub mod consumer;
pub mod handler;
mod reply;

#[cfg(test)]
mod tests;

pub use consumer::{ConsumerNames, ConsumerOptions, ConsumerStats, Counter, StreamConsumer};
pub use handler::{BatchHandler, CommitError, StreamEntry};
