//! Ferry's core: everything that does not talk to a network.
//!
//! - [`rules`]: key-rename rules (`{name}` / `{name..}` patterns over bytes);
//! - [`checkpoint`]: the checkpoint store and run lease traits, and a file-backed store;
//! - [`error`]: error classes and exit codes shared by every job;
//! - [`events`]: the events job's records, their validation and Pub/Sub channels;
//! - [`tier`]: the tier job's captions, events, grouping and event store trait;
//! - [`telemetry`]: the names of every metric Ferry emits.

pub mod checkpoint;
pub mod error;
pub mod events;
pub mod rules;
pub mod telemetry;
pub mod tier;
