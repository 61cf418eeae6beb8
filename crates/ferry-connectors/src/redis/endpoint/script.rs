//! Lua scripts: [`LuaScript`] and [`RedisEndpoint::eval`], which sends a script's SHA1 and its
//! source only when the server does not know it yet.

use redis::{RedisResult, Value};

use super::RedisEndpoint;
use crate::redis::ConnError;

/// A Lua script and its SHA1, run with [`RedisEndpoint::eval`].
#[derive(Debug)]
pub struct LuaScript {
    source: String,
    sha: redis::Script,
}

impl LuaScript {
    /// A script with this source.
    pub fn new(source: impl Into<String>) -> Self {
        let source = source.into();
        Self {
            sha: redis::Script::new(&source),
            source,
        }
    }

    /// The script's Lua source.
    pub fn source(&self) -> &str {
        &self.source
    }
}

impl RedisEndpoint {
    /// Runs a Lua script on the node owning `keys[0]`: `EVALSHA`, then `EVAL` with the whole
    /// source when the server does not know the script yet (`NOSCRIPT`).
    pub async fn eval(
        &self,
        script: &LuaScript,
        keys: &[&[u8]],
        args: &[&[u8]],
    ) -> Result<RedisResult<Value>, ConnError> {
        let route = keys.first().copied().unwrap_or_default().to_vec();
        let build = |verb: &str, body: &str| {
            let mut c = redis::cmd(verb);
            c.arg(body).arg(keys.len()).arg(keys).arg(args);
            c
        };
        let reply = self
            .query(&route, build("EVALSHA", script.sha.get_hash()))
            .await?;
        match reply {
            Err(e) if e.code() == Some("NOSCRIPT") => {
                self.query(&route, build("EVAL", &script.source)).await
            }
            other => Ok(other),
        }
    }
}
