//! Ferry moves live data in and around Redis without losing any of it.
//!
//! The `ferry` binary is glue around this library:
//! - [`jobs::keys`]: restructure key names and copy keys between servers (analyze, plan, apply,
//!   verify, rollback, status);
//! - [`jobs::tier`]: drain the Redis hot cache of camera captions into durable time-range
//!   events (run, preview, status, history, clear);
//! - [`server`]: `ferry serve`, the scheduler and HTTP API with Prometheus metrics;
//! - [`compat`]: [`compat::KeyMapper`] and [`compat::get_with_fallback`] for applications that
//!   read new key names and fall back to old ones during a migration;
//! - [`config`], [`report`], [`observe`], [`runtime`], [`store`]: what every job shares.

pub mod cli;
pub mod compat;
pub mod config;
pub mod demo;
pub mod jobs;
pub mod lifecycle;
pub mod observe;
pub mod report;
pub mod runtime;
pub mod server;
pub mod store;
pub mod streams;
