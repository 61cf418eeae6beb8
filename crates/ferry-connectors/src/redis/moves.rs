//! Deleting a source key only if it is unchanged since it was copied, so that an application's
//! write that lands between the copy and the delete is never destroyed.
//!
//! Each check runs as a Lua script next to the key, so nothing can change the key between the
//! comparison and the `UNLINK`. On one server the copy and the delete are one script
//! ([`move_on_server`]); between servers the source's `DUMP` payload (or its SHA-1, for values
//! copied in chunks) and expiry are compared with what was copied ([`delete_if_unchanged`]).

use std::sync::LazyLock;

use redis::{Cmd, Value};

use super::{ConnError, LuaScript, RedisEndpoint};

/// What a compare-and-delete did with one source key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceDelete {
    /// The key was unchanged and is deleted.
    Deleted,
    /// The key changed since it was copied (value or expiry) and is kept.
    Changed,
    /// The key no longer exists.
    Gone,
    /// The server refused (the message).
    Failed(String),
}

/// What a copied value looked like, to compare the source with.
#[derive(Debug, Clone, Copy)]
pub enum Witness<'a> {
    /// The `DUMP` payload that was copied.
    Payload(&'a [u8]),
    /// The SHA-1 (hex) of the `DUMP` payload when the copy started (see [`source_digest`]).
    Sha1(&'a str),
}

/// One source key to delete if unchanged.
#[derive(Debug, Clone, Copy)]
pub struct DeleteIfUnchanged<'a> {
    /// The source key.
    pub key: &'a [u8],
    /// Its value when it was copied.
    pub witness: Witness<'a>,
    /// Its expiry when it was copied (Unix ms, `None` for none); compared on Redis ≥ 7 only
    /// (`PEXPIRETIME`).
    pub expire_at: Option<i64>,
}

/// KEYS[1]: the key. ARGV: witness kind (`p` payload, `s` SHA-1), witness, expire-at in ms
/// (`-1` none, empty: not compared). Returns 1 deleted, 0 changed, -1 gone.
static DELETE_IF_UNCHANGED: LazyLock<LuaScript> = LazyLock::new(|| {
    LuaScript::new(
        r#"
local dump = redis.call('DUMP', KEYS[1])
if not dump then return -1 end
if ARGV[1] == 's' then dump = redis.sha1hex(dump) end
if dump ~= ARGV[2] then return 0 end
if ARGV[3] ~= '' and redis.call('PEXPIRETIME', KEYS[1]) ~= tonumber(ARGV[3]) then return 0 end
redis.call('UNLINK', KEYS[1])
return 1
"#,
    )
});

/// KEYS[1]: the key. Returns the SHA-1 of its `DUMP` payload, or nil when it does not exist.
static DIGEST: LazyLock<LuaScript> = LazyLock::new(|| {
    LuaScript::new(
        r#"
local dump = redis.call('DUMP', KEYS[1])
if not dump then return false end
return redis.sha1hex(dump)
"#,
    )
});

/// KEYS[1], KEYS[2]: source, new name. ARGV: `1` to replace the new name, the target database
/// (empty: the same). Returns 1 moved, 0 the new name exists, -1 the source is gone.
static MOVE: LazyLock<LuaScript> = LazyLock::new(|| {
    LuaScript::new(
        r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local args = { KEYS[1], KEYS[2] }
if ARGV[2] ~= '' then args[#args + 1] = 'DB'; args[#args + 1] = ARGV[2] end
if ARGV[1] == '1' then args[#args + 1] = 'REPLACE' end
local copied = redis.call('COPY', unpack(args))
if copied == 1 then redis.call('UNLINK', KEYS[1]) end
return copied
"#,
    )
});

fn eval_cmd(script: &LuaScript, keys: &[&[u8]], args: &[&[u8]]) -> Cmd {
    let mut c = redis::cmd("EVAL");
    c.arg(script.source()).arg(keys.len()).arg(keys).arg(args);
    c
}

/// Deletes each source key that is unchanged since it was copied; one outcome per item, in
/// order. Pipelined; each check and delete is one script on the key's node.
pub async fn delete_if_unchanged(
    endpoint: &RedisEndpoint,
    items: &[DeleteIfUnchanged<'_>],
) -> Result<Vec<SourceDelete>, ConnError> {
    let exact_expiry = endpoint.version() >= (7, 0);
    let cmds = items
        .iter()
        .map(|i| {
            let (kind, witness): (&[u8], &[u8]) = match i.witness {
                Witness::Payload(p) => (b"p", p),
                Witness::Sha1(s) => (b"s", s.as_bytes()),
            };
            let at = if exact_expiry {
                i.expire_at.unwrap_or(-1).to_string()
            } else {
                String::new()
            };
            let c = eval_cmd(
                &DELETE_IF_UNCHANGED,
                &[i.key],
                &[kind, witness, at.as_bytes()],
            );
            (i.key.to_vec(), c)
        })
        .collect();
    let replies = endpoint.run(cmds).await?;
    Ok(replies
        .into_iter()
        .map(|r| match r {
            Ok(Value::Int(1)) => SourceDelete::Deleted,
            Ok(Value::Int(0)) => SourceDelete::Changed,
            Ok(_) => SourceDelete::Gone,
            Err(e) => SourceDelete::Failed(e.to_string()),
        })
        .collect())
}

/// The SHA-1 of `key`'s `DUMP` payload, computed on the server (the payload never leaves it),
/// or `None` when the key does not exist.
pub async fn source_digest(
    endpoint: &RedisEndpoint,
    key: &[u8],
) -> Result<redis::RedisResult<Option<String>>, ConnError> {
    let reply = endpoint.query(key, eval_cmd(&DIGEST, &[key], &[])).await?;
    Ok(reply.map(|v| redis::from_redis_value::<Option<String>>(v).unwrap_or(None)))
}

/// What a server-side move did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Moved {
    /// Copied under the new name and the source deleted, in one step.
    Moved,
    /// The new name exists (and `replace` was false): nothing changed.
    Exists,
    /// The source is gone.
    Gone,
    /// The server refused (the message).
    Failed(String),
}

/// Moves each `(source, new name, replace)` on one server (`COPY` and `UNLINK` in one script,
/// so no write can fall between them); the two names must share a cluster slot. `target_db`
/// is the new name's database when it differs from the source's. Pipelined.
pub async fn move_on_server(
    endpoint: &RedisEndpoint,
    items: &[(&[u8], &[u8], bool)],
    target_db: Option<i64>,
) -> Result<Vec<Moved>, ConnError> {
    let db = target_db.map(|d| d.to_string()).unwrap_or_default();
    let cmds = items
        .iter()
        .map(|(src, dst, replace)| {
            let flag: &[u8] = if *replace { b"1" } else { b"0" };
            (
                src.to_vec(),
                eval_cmd(&MOVE, &[src, dst], &[flag, db.as_bytes()]),
            )
        })
        .collect();
    let replies = endpoint.run(cmds).await?;
    Ok(replies
        .into_iter()
        .map(|r| match r {
            Ok(Value::Int(1)) => Moved::Moved,
            Ok(Value::Int(0)) => Moved::Exists,
            Ok(_) => Moved::Gone,
            Err(e) => Moved::Failed(e.to_string()),
        })
        .collect())
}
