//! The keys job's pure parts: the key-rename rules.

pub mod rules;
