//! Ferry's connectors: one module per backend, each behind a cargo feature.
//!
//! - `redis` (feature `redis`): standalone and Cluster endpoints with slot routing and
//!   MOVED/ASK handling, key copy primitives, and the Redis-backed checkpoint store.

#[cfg(feature = "redis")]
pub mod redis;
