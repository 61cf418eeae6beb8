//! Each job's pure parts (records, rules, grouping, store traits): what the job's connectors
//! in `ferry-connectors` and its folder in the `ferry` crate share. The rest of this crate is
//! job-agnostic.

pub mod events;
pub mod keys;
pub mod tier;
pub mod vectors;
