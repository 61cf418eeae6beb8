//! The storage modes of a live vector migration, which applications read to know where to
//! write and read.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Where an application writes and reads its vectors during a migration: the seed's four
/// phases, in order. Rollback returns to [`StorageMode::PrimaryOnly`] from any of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StorageMode {
    /// Before the migration: the primary (old) store only.
    PrimaryOnly,
    /// Writes go to both stores; reads come from the primary.
    DualWrite,
    /// Writes go to both; reads come from the primary and are compared with the secondary's.
    ShadowRead,
    /// After the migration: the secondary (new) store serves reads; writes still go to both,
    /// so a rollback loses nothing.
    Cutover,
}

impl StorageMode {
    /// Every mode, in migration order.
    pub const ALL: [StorageMode; 4] = [
        StorageMode::PrimaryOnly,
        StorageMode::DualWrite,
        StorageMode::ShadowRead,
        StorageMode::Cutover,
    ];

    /// Its name (`primary_only`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            StorageMode::PrimaryOnly => "primary_only",
            StorageMode::DualWrite => "dual_write",
            StorageMode::ShadowRead => "shadow_read",
            StorageMode::Cutover => "cutover",
        }
    }

    /// Whether writes go to the secondary store too.
    pub fn writes_secondary(self) -> bool {
        self != StorageMode::PrimaryOnly
    }

    /// Whether reads are served by the secondary store.
    pub fn reads_secondary(self) -> bool {
        self == StorageMode::Cutover
    }
}

impl fmt::Display for StorageMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A storage mode name that is not one of the four.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown storage mode `{0}`: use primary_only, dual_write, shadow_read or cutover")]
pub struct ParseModeError(pub String);

impl FromStr for StorageMode {
    type Err = ParseModeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase().replace('-', "_");
        StorageMode::ALL
            .into_iter()
            .find(|m| m.as_str() == wanted)
            .ok_or_else(|| ParseModeError(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_from_their_names_only() {
        for mode in StorageMode::ALL {
            assert_eq!(mode.as_str().parse::<StorageMode>(), Ok(mode));
        }
        assert_eq!(
            "Dual-Write".parse::<StorageMode>(),
            Ok(StorageMode::DualWrite)
        );
        assert!("hybrid".parse::<StorageMode>().is_err());
        assert!("".parse::<StorageMode>().is_err());
    }
}
