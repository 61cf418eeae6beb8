//! Ferry's core: everything that does not talk to a network.
//!
//! What every job shares:
//! - [`checkpoint`]: the checkpoint store and run lease traits (fencing tokens, ledgers), and a
//!   file-backed store;
//! - [`error`]: error classes and exit codes;
//! - [`report`]: the run report every job writes (`--report FILE`: JSON, YAML, Markdown);
//! - [`secret`]: redaction of connection strings and the secret types options hold them in;
//! - [`retry`]: the pauses between attempts at something that may succeed later (exponential
//!   backoff);
//! - [`telemetry`]: the names of every metric Ferry emits.
//!
//! Each job's pure parts, under [`jobs`]:
//! - [`jobs::keys::rules`]: key-rename rules (`{name}` / `{name..}` patterns over bytes);
//! - [`jobs::tier`]: the tier job's captions, events, grouping and event store trait;
//! - [`jobs::events`]: the events job's records, their validation and Pub/Sub channels.

pub mod checkpoint;
pub mod error;
pub mod jobs;
pub mod report;
pub mod retry;
pub mod secret;
pub mod telemetry;
