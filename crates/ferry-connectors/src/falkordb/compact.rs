//! FalkorDB's compact replies (`GRAPH.RO_QUERY ... --compact`): `[header, rows, statistics]`,
//! every value a `[type, value]` pair. A list (type 6) holds such pairs; a `vecf32` (type 12)
//! holds its components as doubles (text in RESP2, doubles in RESP3).

use ferry_core::jobs::vectors::Embedding;
use redis::Value;

/// `null`.
pub(crate) const NULL: i64 = 1;
/// A string.
pub(crate) const STRING: i64 = 2;
/// An integer.
pub(crate) const INTEGER: i64 = 3;
/// A double (as text).
pub(crate) const DOUBLE: i64 = 5;
/// A list of `[type, value]` pairs.
pub(crate) const ARRAY: i64 = 6;
/// A `vecf32` of doubles.
pub(crate) const VECTORF32: i64 = 12;

/// The name of a compact type, for messages.
pub(crate) fn type_name(t: i64) -> &'static str {
    match t {
        NULL => "null",
        STRING => "string",
        INTEGER => "integer",
        4 => "boolean",
        DOUBLE => "float",
        ARRAY => "list",
        7 => "relationship",
        8 => "node",
        9 => "path",
        10 => "map",
        11 => "point",
        VECTORF32 => "vecf32",
        _ => "value of an unknown type",
    }
}

/// A cell's type and value (`None` when it is not a `[type, value]` pair).
pub(crate) fn cell(v: &Value) -> Option<(i64, &Value)> {
    match v {
        Value::Array(pair) if pair.len() == 2 => match &pair[0] {
            Value::Int(t) => Some((*t, &pair[1])),
            _ => None,
        },
        _ => None,
    }
}

/// The rows of a reply, each a list of cells (none when the reply has no result set).
pub(crate) fn rows(reply: Value) -> Vec<Vec<Value>> {
    match reply {
        Value::Array(mut parts) if parts.len() == 3 => match parts.swap_remove(1) {
            Value::Array(rows) => rows
                .into_iter()
                .map(|r| match r {
                    Value::Array(cells) => cells,
                    other => vec![other],
                })
                .collect(),
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

/// The bytes of a string value.
pub(crate) fn bytes(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        Value::VerbatimString { text, .. } => Some(text.as_bytes()),
        _ => None,
    }
}

/// An integer cell's value.
pub(crate) fn int(v: &Value) -> Option<i64> {
    match cell(v) {
        Some((INTEGER, Value::Int(n))) => Some(*n),
        _ => None,
    }
}

/// A string cell's text (lossy), for names and versions.
pub(crate) fn text(v: &Value) -> Option<String> {
    match cell(v) {
        Some((STRING, s)) => bytes(s).map(|b| String::from_utf8_lossy(b).into_owned()),
        _ => None,
    }
}

/// An id as the server holds it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RawId {
    /// An integer.
    Int(i64),
    /// A string's bytes (FalkorDB does not check that they are UTF-8).
    Str(Vec<u8>),
    /// Anything else: not an item.
    Other(i64),
}

/// The id in a cell.
pub(crate) fn raw_id(v: &Value) -> RawId {
    match cell(v) {
        Some((INTEGER, Value::Int(n))) => RawId::Int(*n),
        Some((STRING, s)) => match bytes(s) {
            Some(b) => RawId::Str(b.to_vec()),
            None => RawId::Other(STRING),
        },
        Some((t, _)) => RawId::Other(t),
        None => RawId::Other(0),
    }
}

/// A number given as a double, an integer or text.
fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Double(f) => Some(*f),
        Value::Int(n) => Some(*n as f64),
        other => bytes(other)
            .and_then(|b| std::str::from_utf8(b).ok())
            .and_then(|t| t.trim().parse().ok()),
    }
}

/// The embedding in a cell: a `vecf32` or a list of integers and floats is a vector; `null` is
/// missing; anything else, an empty list, a non-numeric or non-finite component, or one
/// outside the 32-bit float range is invalid, with the reason.
pub(crate) fn embedding(v: &Value) -> Embedding {
    let Some((t, value)) = cell(v) else {
        return Embedding::Invalid("the server sent a value Ferry cannot read".into());
    };
    let items = match (t, value) {
        (NULL, _) => return Embedding::Missing,
        (VECTORF32 | ARRAY, Value::Array(items)) => items,
        _ => {
            return Embedding::Invalid(format!(
                "the embedding is a {}, not a list of numbers or a vecf32",
                type_name(t)
            ));
        }
    };
    if items.is_empty() {
        return Embedding::Invalid(format!("the embedding is an empty {}", type_name(t)));
    }
    let mut vector = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let component = match t {
            VECTORF32 => number(item).ok_or("not a number"),
            _ => match cell(item) {
                Some((INTEGER | DOUBLE, x)) => number(x).ok_or("not a number"),
                Some((other, _)) => {
                    return Embedding::Invalid(format!(
                        "component {i} is a {}, not a number",
                        type_name(other)
                    ));
                }
                None => Err("not a number"),
            },
        };
        match component {
            Ok(x) if x.is_finite() && (x as f32).is_finite() => vector.push(x as f32),
            Ok(_) => {
                return Embedding::Invalid(format!("component {i} is not a finite 32-bit float"));
            }
            Err(what) => return Embedding::Invalid(format!("component {i} is {what}")),
        }
    }
    Embedding::Vector(vector)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(t: i64, v: Value) -> Value {
        Value::Array(vec![Value::Int(t), v])
    }

    fn s(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    #[test]
    fn vectors_and_lists_of_numbers_are_embeddings() {
        let vecf32 = pair(
            VECTORF32,
            Value::Array(vec![s("0.12345670163631439"), s("-2"), Value::Double(1.5)]),
        );
        assert_eq!(
            embedding(&vecf32),
            Embedding::Vector(vec![0.1234567, -2.0, 1.5])
        );
        let list = pair(
            ARRAY,
            Value::Array(vec![pair(INTEGER, Value::Int(1)), pair(DOUBLE, s("2.5"))]),
        );
        assert_eq!(embedding(&list), Embedding::Vector(vec![1.0, 2.5]));
        assert_eq!(embedding(&pair(NULL, Value::Nil)), Embedding::Missing);
    }

    #[test]
    fn anything_else_is_invalid_with_a_reason() {
        let invalid = |v: Value| match embedding(&v) {
            Embedding::Invalid(reason) => reason,
            other => panic!("{other:?}"),
        };
        assert!(invalid(pair(STRING, s("text"))).contains("is a string"));
        assert!(invalid(pair(ARRAY, Value::Array(vec![]))).contains("empty list"));
        let mixed = Value::Array(vec![pair(INTEGER, Value::Int(1)), pair(STRING, s("x"))]);
        assert!(invalid(pair(ARRAY, mixed)).contains("component 1 is a string"));
        let boolean = Value::Array(vec![pair(4, s("true"))]);
        assert!(invalid(pair(ARRAY, boolean)).contains("boolean"));
        for bad in ["nan", "inf", "1e300", "x"] {
            let list = Value::Array(vec![pair(DOUBLE, s("1")), pair(DOUBLE, s(bad))]);
            assert!(invalid(pair(ARRAY, list)).contains("component 1"), "{bad}");
        }
        assert!(invalid(Value::Int(3)).contains("cannot read"));
    }

    #[test]
    fn ids_keep_their_type_and_bytes() {
        assert_eq!(raw_id(&pair(INTEGER, Value::Int(-7))), RawId::Int(-7));
        assert_eq!(
            raw_id(&pair(STRING, Value::BulkString(vec![b'a', 0xff]))),
            RawId::Str(vec![b'a', 0xff])
        );
        assert_eq!(raw_id(&pair(DOUBLE, s("2.5"))), RawId::Other(DOUBLE));
        assert_eq!(raw_id(&pair(NULL, Value::Nil)), RawId::Other(NULL));
        let reply = Value::Array(vec![
            Value::Array(vec![]),
            Value::Array(vec![Value::Array(vec![pair(INTEGER, Value::Int(1))])]),
            Value::Array(vec![]),
        ]);
        assert_eq!(rows(reply).len(), 1);
        assert!(rows(Value::Array(vec![Value::Array(vec![])])).is_empty());
    }
}
