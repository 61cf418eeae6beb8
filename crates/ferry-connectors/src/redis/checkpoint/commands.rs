//! How the store talks to its endpoint: one command or one script, its reply decoded, and the
//! fenced writes made while a lease is held.

use ferry_core::checkpoint::{StoreError, StoreResult};
use redis::{Cmd, FromRedisValue};

use super::RedisCheckpointStore;
use crate::redis::LuaScript;

impl RedisCheckpointStore {
    /// Runs a command on the node owning `key` and decodes its reply.
    pub(super) async fn q<T: FromRedisValue>(&self, key: &[u8], cmd: Cmd) -> StoreResult<T> {
        let v = self
            .endpoint
            .query(key, cmd)
            .await
            .map_err(|e| StoreError::Backend(e.to_string()))?
            .map_err(|e| StoreError::Backend(format!("{}: {e}", self.endpoint.display())))?;
        redis::from_redis_value(v).map_err(|e| StoreError::Corrupt(e.to_string()))
    }

    /// Runs a script and decodes its reply.
    pub(super) async fn script<T: FromRedisValue>(
        &self,
        script: &LuaScript,
        keys: &[&[u8]],
        args: &[&[u8]],
    ) -> StoreResult<T> {
        let v = self
            .endpoint
            .eval(script, keys, args)
            .await
            .map_err(|e| StoreError::Backend(e.to_string()))?
            .map_err(|e| StoreError::Backend(format!("{}: {e}", self.endpoint.display())))?;
        redis::from_redis_value(v).map_err(|e| StoreError::Corrupt(e.to_string()))
    }

    /// Runs a fenced write script (`keys` after the fence, `args` after the token) for `scope`,
    /// held with `token`.
    pub(super) async fn fenced(
        &self,
        script: &LuaScript,
        scope: &str,
        token: u64,
        keys: &[&[u8]],
        args: &[&[u8]],
    ) -> StoreResult<()> {
        let fence = Self::fence_key(scope);
        let token_arg = token.to_string();
        let all_keys: Vec<&[u8]> = std::iter::once(fence.as_slice())
            .chain(keys.iter().copied())
            .collect();
        let all_args: Vec<&[u8]> = std::iter::once(token_arg.as_bytes())
            .chain(args.iter().copied())
            .collect();
        match self.script::<i64>(script, &all_keys, &all_args).await? {
            0 => Ok(()),
            current => Err(StoreError::Fenced {
                scope: scope.to_string(),
                token,
                current: current.max(0) as u64,
            }),
        }
    }
}
