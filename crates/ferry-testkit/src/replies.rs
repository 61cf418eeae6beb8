//! Running a Redis command given as words and reading its reply in tests.

use std::collections::BTreeMap;

use redis::{Connection, Value};

/// Runs one command given as words (`&["XINFO", "STREAM", key]`) and returns its reply.
///
/// # Panics
///
/// On an error reply, with the command in the message.
pub fn run_command(c: &mut Connection, words: &[&str]) -> Value {
    let mut command = redis::cmd(words[0]);
    for word in &words[1..] {
        command.arg(*word);
    }
    command
        .query(c)
        .unwrap_or_else(|e| panic!("{words:?}: {e}"))
}

/// A reply as a string (a bulk or simple string, or anything else `redis` converts).
///
/// # Panics
///
/// When the reply is not convertible to a string.
pub fn reply_string(v: &Value) -> String {
    redis::from_redis_value::<String>(v.clone()).unwrap_or_else(|e| panic!("{v:?}: {e}"))
}

/// A reply as an integer.
///
/// # Panics
///
/// When the reply is not convertible to an integer.
pub fn reply_int(v: &Value) -> i64 {
    redis::from_redis_value::<i64>(v.clone()).unwrap_or_else(|e| panic!("{v:?}: {e}"))
}

/// A reply of field/value pairs (a flat RESP2 array or a RESP3 map) as a map by field name.
///
/// # Panics
///
/// When the reply is neither an array nor a map, or a field name is not a string.
pub fn reply_fields(v: Value) -> BTreeMap<String, Value> {
    match v {
        Value::Array(items) => items
            .chunks(2)
            .map(|kv| (reply_string(&kv[0]), kv[1].clone()))
            .collect(),
        Value::Map(m) => m.into_iter().map(|(k, v)| (reply_string(&k), v)).collect(),
        other => panic!("expected field/value pairs, got {other:?}"),
    }
}

/// An array reply as its items; a nil reply as no items.
///
/// # Panics
///
/// When the reply is neither an array nor nil.
pub fn reply_list(v: Value) -> Vec<Value> {
    match v {
        Value::Array(items) => items,
        Value::Nil => Vec::new(),
        other => panic!("expected an array, got {other:?}"),
    }
}
