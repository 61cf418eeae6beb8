//! The jobs Ferry runs.

pub mod keys;
