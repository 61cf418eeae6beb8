//! Ferry moves live data in and around Redis without losing any of it.
//!
//! The `ferry` binary is glue around this library. Each job is one folder of [`jobs`], all of
//! the same shape (see its documentation):
//! - [`jobs::keys`]: restructure key names and copy keys between servers (analyze, plan, apply,
//!   verify, rollback, status);
//! - [`jobs::tier`]: drain the Redis hot cache of camera captions into durable time-range
//!   events (run, preview, status, history, clear);
//! - [`jobs::events`]: save every event in PostgreSQL, then publish it on Redis (relay, ingest,
//!   query, stats);
//! - [`jobs::bridge`]: move a message flow from Kafka to a Redis Stream and back, camera frames
//!   re-encoded as Protocol Buffers with JPEG/WebP images (run, health).
//!
//! Frame processors read a bridged Stream with [`streams::StreamConsumer`] and a
//! [`streams::BatchHandler`] whose `decode` is [`jobs::bridge::entry::decode_frame`] (see
//! `examples/frame_processor.rs`).
//!
//! What the jobs share: [`lifecycle`] (the migration steps), [`streams`] (the Redis Streams
//! consumer), [`server`] (`ferry serve`: the HTTP layer and the scheduler), [`cli`], [`config`],
//! [`observe`], [`runtime`], [`store`] (the report and secrets are in `ferry_core`); and [`compat`] for applications that read
//! new key names and fall back to old ones during a migration.

pub mod cli;
pub mod compat;
pub mod config;
pub mod demo;
pub mod dual_store;
pub mod jobs;
pub mod lifecycle;
pub mod observe;

pub mod runtime;
pub mod server;
pub mod store;
pub mod streams;
