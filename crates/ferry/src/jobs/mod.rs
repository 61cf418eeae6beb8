//! Ferry's jobs, one module each.

pub mod events;
pub mod keys;
pub mod tier;
