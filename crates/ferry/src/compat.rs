//! Application compatibility during a key migration: read the new key, fall back to the old.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use ferry::compat::{KeyMapper, get_with_fallback};
//! let mapper = KeyMapper::from_file("config/examples/seed-002-rules.toml".as_ref())?;
//! let client = redis::Client::open("redis://127.0.0.1:6379/0")?;
//! let mut conn = client.get_multiplexed_async_connection().await?;
//! let profile = get_with_fallback(&mut conn, &mapper, b"meta-glasses:user:profile:42").await?;
//! # Ok(()) }
//! ```

use std::path::Path;

use ferry_core::jobs::keys::rules::{RuleSet, RulesError};
use redis::aio::ConnectionLike;

/// The compiled rename rules, both ways: old name → new name and new name → old name.
#[derive(Debug, Clone)]
pub struct KeyMapper {
    rules: RuleSet,
}

/// Which name answered a fallback read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// The new key existed.
    New,
    /// Only the old key existed.
    Old,
}

impl KeyMapper {
    /// Loads a rules file (the same file `ferry keys` uses).
    pub fn from_file(path: &Path) -> Result<Self, RulesError> {
        Ok(Self {
            rules: RuleSet::load(path)?.rules,
        })
    }

    /// Compiles rules from TOML text.
    pub fn from_toml_str(text: &str) -> Result<Self, RulesError> {
        Ok(Self {
            rules: RuleSet::from_toml_str(text, "<rules>")?.rules,
        })
    }

    /// The new name of an old key, or `None` when no rule matches.
    pub fn new_key(&self, old: &[u8]) -> Option<Vec<u8>> {
        self.rules.rename(old).map(|(_, k)| k)
    }

    /// The old name of a new key, or `None` when no rule produces it.
    pub fn old_key(&self, new: &[u8]) -> Option<Vec<u8>> {
        self.rules.reverse(new).map(|(_, k)| k)
    }
}

/// `GET` of `new_key`; when it does not exist yet, `GET` of its old name. Returns the value and
/// which name served it, or `None` when neither exists.
pub async fn get_with_fallback<C: ConnectionLike + Send>(
    conn: &mut C,
    mapper: &KeyMapper,
    new_key: &[u8],
) -> redis::RedisResult<Option<(Vec<u8>, Served)>> {
    let v: Option<Vec<u8>> = redis::cmd("GET").arg(new_key).query_async(conn).await?;
    if let Some(v) = v {
        return Ok(Some((v, Served::New)));
    }
    let Some(old) = mapper.old_key(new_key) else {
        return Ok(None);
    };
    let v: Option<Vec<u8>> = redis::cmd("GET").arg(old).query_async(conn).await?;
    Ok(v.map(|v| (v, Served::Old)))
}
