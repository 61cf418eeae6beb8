//! Literal filter expressions on the primary key, and how many rows one request may carry.
//!
//! The SDK's templated filters (`id in {ids}`) are refused by Milvus Lite, so ids are written
//! into the expression as literals: integers in decimal, strings double-quoted with `"`, `\`
//! and line breaks escaped (the escapes both Milvus and Milvus Lite read back).

use ferry_core::jobs::vectors::{IdKind, VectorId};

/// The primary key field.
pub const ID_FIELD: &str = "id";
/// The vector field.
pub const VECTOR_FIELD: &str = "embedding";
/// Longest string id a collection holds (the `VarChar` primary key's `max_length`, in bytes).
pub const MAX_STR_ID_BYTES: usize = 512;

/// What one reply may weigh: gRPC clients refuse replies over 4 MiB, so stay well below.
const REPLY_BUDGET: usize = 3 << 20;
/// Most ids one `id in [...]` filter names (keeps expressions short for the server's parser).
const MAX_IDS_PER_FILTER: usize = 1024;
/// Milvus refuses a query whose `offset + limit` is over 16384.
const MAX_QUERY_LIMIT: usize = 16_384;

/// `value` as a filter literal.
pub fn literal(id: &VectorId) -> String {
    match id {
        VectorId::Int(i) => i.to_string(),
        VectorId::Str(s) => quote(s),
    }
}

/// `s` as a double-quoted string literal.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `id in [a, b, ...]`.
pub fn id_in(ids: &[VectorId]) -> String {
    let list: Vec<String> = ids.iter().map(literal).collect();
    format!("{ID_FIELD} in [{}]", list.join(", "))
}

/// The keyset page filter: every id after `last` (`""`, every id, for the first page).
pub fn after(last: Option<&VectorId>) -> String {
    match last {
        Some(id) => format!("{ID_FIELD} > {}", literal(id)),
        None => String::new(),
    }
}

/// Bytes a reply row of one id of `kind` takes at most (with framing).
fn id_bytes(kind: IdKind) -> usize {
    match kind {
        IdKind::Int => 8 + 8,
        IdKind::Str => MAX_STR_ID_BYTES + 8,
    }
}

/// Ids per `get`: each reply row holds an id and a `dimension`-float vector.
pub fn get_chunk(dimension: usize, kind: IdKind) -> usize {
    let row = id_bytes(kind) + dimension * 4 + 8;
    (REPLY_BUDGET / row).clamp(1, MAX_IDS_PER_FILTER)
}

/// Ids per `delete` request.
pub fn delete_chunk() -> usize {
    MAX_IDS_PER_FILTER
}

/// Ids per keyset page of `ids()`.
pub fn id_page(kind: IdKind) -> usize {
    (REPLY_BUDGET / id_bytes(kind)).clamp(1, MAX_QUERY_LIMIT)
}

/// Splits `len` items of `dimension` floats into consecutive batches of at most
/// `max_bytes` (estimated request size) each; returns the batch lengths.
pub fn upsert_batches(len: usize, dimension: usize, kind: IdKind, max_bytes: usize) -> Vec<usize> {
    let row = id_bytes(kind) + dimension * 4 + 8;
    let per = (max_bytes / row).max(1);
    let mut out = vec![per; len / per];
    if !len.is_multiple_of(per) {
        out.push(len % per);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_literals_escape_quotes_backslashes_and_line_breaks() {
        assert_eq!(quote(r#"a"b"#), r#""a\"b""#);
        assert_eq!(quote(r"c\d"), r#""c\\d""#);
        assert_eq!(quote("x\ny\r\tz"), r#""x\ny\r\tz""#);
        assert_eq!(quote("é☃'"), "\"é☃'\"");
        assert_eq!(quote(""), "\"\"");
    }

    #[test]
    fn filters_name_the_primary_key() {
        let ids = [VectorId::Int(-3), VectorId::Int(7)];
        assert_eq!(id_in(&ids), "id in [-3, 7]");
        assert_eq!(id_in(&[VectorId::from("a\"b")]), r#"id in ["a\"b"]"#);
        assert_eq!(after(None), "");
        assert_eq!(after(Some(&VectorId::Int(9))), "id > 9");
        assert_eq!(after(Some(&VectorId::from("k"))), r#"id > "k""#);
    }

    #[test]
    fn pages_keep_replies_under_four_mebibytes() {
        for kind in [IdKind::Int, IdKind::Str] {
            for dim in [1, 384, 768, 4096, 100_000] {
                let n = get_chunk(dim, kind);
                assert!(n >= 1 && n * (dim * 4 + id_bytes(kind)) <= 4 << 20 || n == 1);
            }
            assert!(id_page(kind) * id_bytes(kind) < 4 << 20);
            assert!(id_page(kind) <= MAX_QUERY_LIMIT);
        }
        assert_eq!(get_chunk(384, IdKind::Int), 1024);
        assert!(get_chunk(4096, IdKind::Str) < 200);
    }

    #[test]
    fn upsert_batches_cover_every_item_within_the_budget() {
        let batches = upsert_batches(10_000, 384, IdKind::Int, 4 << 20);
        assert_eq!(batches.iter().sum::<usize>(), 10_000);
        assert!(batches.iter().all(|&n| n * (384 * 4 + 24) <= 4 << 20));
        assert_eq!(
            upsert_batches(0, 384, IdKind::Int, 4 << 20),
            Vec::<usize>::new()
        );
        assert_eq!(upsert_batches(3, 1 << 20, IdKind::Str, 1024), vec![1, 1, 1]);
    }
}
