//! Ferry's jobs, one module each.

pub mod keys;
pub mod tier;
