//! What one Redis item becomes in PostgreSQL: an experience (a JSON object from a list, or a
//! Stream entry), a Q-value (a hash field `state|action` and its value) or a policy (a string
//! of JSON). Pure; a record that cannot be stored is an `Err` naming what is wrong, which the
//! run reports as a failed item and goes on.

use chrono::{DateTime, Datelike, Utc};
use ferry_connectors::postgres::agentdb::{ExperienceRow, PolicyRow, QValueRow};
use serde_json::{Map, Value};

/// The fields of an experience that have columns of their own.
const COLUMNS: [&str; 6] = [
    "state",
    "action",
    "reward",
    "next_state",
    "done",
    "timestamp",
];

/// An experience from a JSON document (a list element, or a Stream entry's only field).
pub fn experience_from_json(
    agent: &str,
    seq: i64,
    source_id: Option<String>,
    bytes: &[u8],
) -> Result<ExperienceRow, String> {
    match parse_json(bytes)? {
        Value::Object(obj) => experience(agent, seq, source_id, obj),
        other => Err(format!(
            "an experience must be a JSON object, not {}",
            kind_of(&other)
        )),
    }
}

/// An experience from a Stream entry: one field (not named as a column) holding a JSON object
/// is that object; otherwise every field is one of the record's fields, its value read as JSON where it is
/// JSON (`0.5`, `true`, `{"x": 1}`) and as a string where it is not (`left`).
pub fn experience_from_entry(
    agent: &str,
    seq: i64,
    id: &str,
    fields: &[(Vec<u8>, Vec<u8>)],
) -> Result<ExperienceRow, String> {
    let source_id = Some(id.to_string());
    if let [(name, value)] = fields
        && !COLUMNS.iter().any(|c| c.as_bytes() == name.as_slice())
        && let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(value)
    {
        return experience(agent, seq, source_id, obj);
    }
    let mut obj = Map::new();
    for (name, value) in fields {
        let name = text(name, "a field name")?;
        let value = text(value, &format!("field `{name}`"))?;
        let trimmed = value.trim_start();
        let parsed = if trimmed.starts_with(['{', '[']) {
            parse_json(value.as_bytes()).map_err(|e| format!("field `{name}`: {e}"))?
        } else {
            serde_json::from_str(&value).unwrap_or(Value::String(value))
        };
        obj.insert(name, parsed);
    }
    experience(agent, seq, source_id, obj)
}

/// The columns of an experience from its fields; the others go to `metadata`.
fn experience(
    agent: &str,
    seq: i64,
    source_id: Option<String>,
    mut obj: Map<String, Value>,
) -> Result<ExperienceRow, String> {
    let mut take = |name: &str| obj.remove(name).filter(|v| !v.is_null());
    let state = take("state");
    let action = take("action");
    let reward = take("reward");
    let next_state = take("next_state");
    let done = take("done");
    let ts = take("timestamp");
    let row = ExperienceRow {
        agent_id: agent.to_string(),
        seq,
        state: state.map(|s| checked("state", s)).transpose()?,
        action: action.map(action_text).transpose()?,
        reward: reward.map(|r| finite("reward", &r)).transpose()?,
        next_state: next_state.map(|s| checked("next_state", s)).transpose()?,
        done: done.map(flag).transpose()?,
        ts: ts.map(timestamp).transpose()?,
        metadata: None,
        source_id,
    };
    let metadata = (!obj.is_empty())
        .then(|| checked("a metadata field", Value::Object(obj)))
        .transpose()?;
    Ok(ExperienceRow { metadata, ..row })
}

/// A Q-value from a hash field `state|action` (split at the last `|`) and its value.
pub fn q_value(agent: &str, field: &[u8], value: &[u8]) -> Result<QValueRow, String> {
    let field = text(field, "the field")?;
    let Some((state, action)) = field.rsplit_once('|') else {
        return Err(
            "the field has no `|`: Q-value fields are `state|action` (split at the last `|`)"
                .into(),
        );
    };
    if state.is_empty() || action.is_empty() {
        return Err(format!(
            "the field `{field}` has an empty {} around its last `|`",
            if state.is_empty() { "state" } else { "action" }
        ));
    }
    let indexed = agent.len() + state.len() + action.len();
    if indexed > MAX_INDEXED_BYTES {
        return Err(format!(
            "the agent id, state and action are {indexed} bytes together, more than the {MAX_INDEXED_BYTES} PostgreSQL's primary key index of rl_q_values can take"
        ));
    }
    let value = text(value, "the value")?;
    let number = value
        .trim()
        .parse::<f64>()
        .map_err(|_| format!("the value `{}` is not a number", shorten(&value)))?;
    Ok(QValueRow {
        agent_id: agent.to_string(),
        state: state.to_string(),
        action: action.to_string(),
        value: finite_number("the value", number)?,
    })
}

/// A policy from a string of JSON.
pub fn policy(agent: &str, bytes: &[u8]) -> Result<PolicyRow, String> {
    Ok(PolicyRow {
        agent_id: agent.to_string(),
        policy: checked("the policy", parse_json(bytes)?)?,
    })
}

/// The most bytes of text in one entry of a btree index Ferry writes: PostgreSQL refuses an
/// entry over 2704 bytes (a third of a page) after compression; text that does not compress
/// reaches that at about 2700 bytes.
pub const MAX_INDEXED_BYTES: usize = 2600;

/// The agent id of a key (its `{agent}` part): text, not empty, short enough to be indexed.
pub fn agent_id(raw: &[u8]) -> Result<String, String> {
    let agent = text(raw, "the agent id")
        .map_err(|e| format!("{e}; it is the {{agent}} part of the key name"))?;
    if agent.is_empty() {
        return Err("the agent id (the {agent} part of the name) is empty".into());
    }
    if agent.len() > MAX_INDEXED_BYTES {
        return Err(format!(
            "the agent id is {} bytes, more than the {MAX_INDEXED_BYTES} PostgreSQL's indexes on agent_id can take",
            agent.len()
        ));
    }
    Ok(agent)
}

/// `bytes` as PostgreSQL text: UTF-8 without NUL.
pub fn text(bytes: &[u8], what: &str) -> Result<String, String> {
    let s = std::str::from_utf8(bytes).map_err(|_| {
        format!("{what} is not UTF-8 text (PostgreSQL text columns hold only UTF-8)")
    })?;
    if s.contains('\0') {
        return Err(format!(
            "{what} holds a NUL character, which PostgreSQL text cannot store"
        ));
    }
    Ok(s.to_string())
}

fn parse_json(bytes: &[u8]) -> Result<Value, String> {
    serde_json::from_slice(bytes).map_err(|e| {
        let hint = if [&b"NaN"[..], b"Infinity"]
            .iter()
            .any(|w| bytes.windows(w.len()).any(|x| x == *w))
        {
            " (NaN and Infinity are not JSON numbers; Python's json.dumps writes them unless allow_nan=False)"
        } else {
            ""
        };
        format!("invalid JSON: {e}{hint}")
    })
}

/// `v` unless one of its strings or keys holds NUL, which `jsonb` refuses.
fn checked(what: &str, v: Value) -> Result<Value, String> {
    fn has_nul(v: &Value) -> bool {
        match v {
            Value::String(s) => s.contains('\0'),
            Value::Array(a) => a.iter().any(has_nul),
            Value::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
            _ => false,
        }
    }
    if has_nul(&v) {
        return Err(format!(
            "{what} holds a NUL character (\\u0000), which PostgreSQL jsonb cannot store"
        ));
    }
    Ok(v)
}

/// The action as text: a string as is, anything else (a discrete action `3`) as its JSON.
fn action_text(v: Value) -> Result<String, String> {
    let s = match v {
        Value::String(s) => s,
        other => other.to_string(),
    };
    text(s.as_bytes(), "the action")
}

fn finite(what: &str, v: &Value) -> Result<f64, String> {
    let n = match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    let n = n.ok_or_else(|| format!("{what} {} is not a number", shorten(&v.to_string())))?;
    finite_number(what, n)
}

fn finite_number(what: &str, n: f64) -> Result<f64, String> {
    if n.is_nan() {
        Err(format!("{what} is NaN"))
    } else if n.is_infinite() {
        Err(format!("{what} is infinite"))
    } else {
        Ok(n)
    }
}

/// `done`: a boolean, 0 or 1, or the strings true/false/0/1 (any case).
fn flag(v: Value) -> Result<bool, String> {
    match &v {
        Value::Bool(b) => return Ok(*b),
        Value::Number(n) if n.as_f64() == Some(0.0) => return Ok(false),
        Value::Number(n) if n.as_f64() == Some(1.0) => return Ok(true),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" => return Ok(true),
            "false" | "0" => return Ok(false),
            _ => {}
        },
        _ => {}
    }
    Err(format!(
        "done {} is not a boolean (true/false, 0/1)",
        shorten(&v.to_string())
    ))
}

/// A timestamp: RFC 3339 (or ISO 8601 without zone, read as UTC), or Unix time as a number or
/// numeric string — seconds, or milliseconds when its magnitude is 10^11 or more (after
/// 5138 in seconds, after 1973 in milliseconds).
pub fn timestamp(v: Value) -> Result<DateTime<Utc>, String> {
    let t = match &v {
        Value::Number(n) => n.as_f64().and_then(unix),
        Value::String(s) => s
            .trim()
            .parse::<f64>()
            .ok()
            .map_or_else(|| ferry_core::jobs::events::parse_timestamp(s), unix),
        _ => None,
    };
    let shown = shorten(&v.to_string());
    let t = t.ok_or_else(|| {
        format!("timestamp {shown} is not RFC 3339 (2026-01-31T10:00:00Z) or Unix seconds or milliseconds")
    })?;
    if !(1..=9999).contains(&t.year()) {
        return Err(format!("timestamp {shown} is outside the years 1 to 9999"));
    }
    Ok(t)
}

fn unix(n: f64) -> Option<DateTime<Utc>> {
    if !n.is_finite() {
        return None;
    }
    let micros = if n.abs() >= 1e11 { n * 1e3 } else { n * 1e6 };
    if micros.abs() > 9.0e18 {
        return None;
    }
    DateTime::from_timestamp_micros(micros.round() as i64)
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// At most 60 characters of `s`, for error messages.
fn shorten(s: &str) -> String {
    match s.char_indices().nth(60) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests;
