//! The SQL of a PostgreSQL vector source: names quoted, column types checked, statements
//! built once per shape, and array values read as embeddings.

use ferry_core::jobs::vectors::{Embedding, IdKind, VectorError, VectorResult};

/// `name` as a quoted SQL identifier (a `"` is written twice).
pub(super) fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Which of `columns` the user's `name` means, as SQL reads it: `"Name"` exactly, an
/// unquoted name exactly or else folded to lower case.
pub(super) fn resolve_column<'a>(name: &str, columns: &'a [String]) -> Option<&'a String> {
    if let Some(inner) = name
        .strip_prefix('"')
        .and_then(|n| n.strip_suffix('"'))
        .filter(|n| !n.is_empty())
    {
        let exact = inner.replace("\"\"", "\"");
        return columns.iter().find(|c| **c == exact);
    }
    let lower = name.to_lowercase();
    columns
        .iter()
        .find(|c| *c == name)
        .or_else(|| columns.iter().find(|c| **c == lower))
}

/// The kind of ids of an id column of type `ty` (as `regtype` names it).
pub(super) fn id_kind(column: &str, ty: &str) -> VectorResult<IdKind> {
    match ty {
        "smallint" | "integer" | "bigint" => Ok(IdKind::Int),
        "text" | "character varying" => Ok(IdKind::Str),
        other => Err(VectorError::Config(format!(
            "the id column {column:?} is {other}: ids must be integers (smallint, integer, bigint) or text (text, varchar)"
        ))),
    }
}

/// Checks that an embedding column of type `ty` holds arrays of floats.
pub(super) fn check_embedding_type(column: &str, ty: &str) -> VectorResult<()> {
    match ty {
        "real[]" | "double precision[]" => Ok(()),
        other => Err(VectorError::Config(format!(
            "the embedding column {column:?} is {other}: Ferry reads real[] or double precision[] \
             (for another type, read a view that casts it, e.g. CREATE VIEW items AS SELECT id, embedding::real[] AS embedding FROM t)"
        ))),
    }
}

/// The statements of one source.
#[derive(Debug, Clone)]
pub(super) struct Statements {
    /// `"schema"."table"`.
    pub table: String,
    /// The quoted id column.
    pub id: String,
    /// The quoted embedding column.
    pub embedding: String,
    /// The kind of its ids.
    pub kind: IdKind,
}

impl Statements {
    /// The SQL type ids are read and compared as.
    fn cast(&self) -> &'static str {
        match self.kind {
            IdKind::Int => "int8",
            IdKind::Str => "text",
        }
    }

    /// The id as compared and ordered: strings by bytes (`COLLATE "C"`), as Ferry orders ids.
    fn key(&self) -> String {
        match self.kind {
            IdKind::Int => self.id.clone(),
            IdKind::Str => format!("{} COLLATE \"C\"", self.id),
        }
    }

    /// What a row of items holds: id, then (with embeddings) whether it is null, its number
    /// of dimensions and, when it has one, its values as doubles.
    fn columns(&self, embeddings: bool) -> String {
        let id = format!("{}::{}", self.id, self.cast());
        if !embeddings {
            return id;
        }
        let e = &self.embedding;
        format!(
            "{id}, {e} IS NULL, array_ndims({e}), CASE WHEN array_ndims({e}) = 1 THEN {e}::float8[] END"
        )
    }

    /// A keyset page: `after < id <= upto` (parameters in that order when present, then the
    /// limit), in id order.
    pub fn page(&self, after: bool, upto: bool, embeddings: bool) -> String {
        let (key, cast) = (self.key(), self.cast());
        let mut wheres = vec![format!("{} IS NOT NULL", self.id)];
        let mut n = 0;
        let mut param = || {
            n += 1;
            n
        };
        if after {
            wheres.push(format!("{key} > ${}::{cast}", param()));
        }
        if upto {
            wheres.push(format!("{key} <= ${}::{cast}", param()));
        }
        format!(
            "SELECT {} FROM {} WHERE {} ORDER BY {key} LIMIT ${}",
            self.columns(embeddings),
            self.table,
            wheres.join(" AND "),
            param()
        )
    }

    /// The items among the ids `$1` (an array).
    pub fn get(&self) -> String {
        format!(
            "SELECT {} FROM {} WHERE {} = ANY($1::{}[])",
            self.columns(true),
            self.table,
            self.id,
            self.cast()
        )
    }

    /// Up to `$1` ids at random.
    pub fn sample(&self) -> String {
        format!(
            "SELECT {}::{} FROM {} WHERE {} IS NOT NULL ORDER BY random() LIMIT $1",
            self.id,
            self.cast(),
            self.table,
            self.id
        )
    }

    /// Rows with and without an id, and distinct ids.
    pub fn counts(&self) -> String {
        format!(
            "SELECT count({id}), count(*) - count({id}), count(DISTINCT {id}) FROM {}",
            self.table,
            id = self.id
        )
    }

    /// Embeddings of rows with an id, by length (one-dimensional arrays only).
    pub fn dimensions(&self) -> String {
        let e = &self.embedding;
        format!(
            "SELECT array_length({e}, 1), count(*) FROM {} WHERE {} IS NOT NULL AND array_ndims({e}) = 1 GROUP BY 1",
            self.table, self.id
        )
    }
}

/// An embedding from what a row says of its array: null is missing; an empty or
/// multi-dimensional array, a null element or one that is not a finite 32-bit float is invalid.
pub(super) fn embedding(
    is_null: bool,
    ndims: Option<i32>,
    values: Option<Vec<Option<f64>>>,
) -> Embedding {
    if is_null {
        return Embedding::Missing;
    }
    match ndims {
        None => return Embedding::Invalid("the embedding is an empty array".into()),
        Some(1) => {}
        Some(d) => {
            return Embedding::Invalid(format!("the embedding is a {d}-dimensional array"));
        }
    }
    let values = values.unwrap_or_default();
    if values.is_empty() {
        return Embedding::Invalid("the embedding is an empty array".into());
    }
    let mut vector = Vec::with_capacity(values.len());
    for (i, v) in values.into_iter().enumerate() {
        match v {
            None => return Embedding::Invalid(format!("component {i} is NULL")),
            Some(x) if x.is_finite() && (x as f32).is_finite() => vector.push(x as f32),
            Some(_) => {
                return Embedding::Invalid(format!("component {i} is not a finite 32-bit float"));
            }
        }
    }
    Embedding::Vector(vector)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statements(kind: IdKind) -> Statements {
        Statements {
            table: "\"public\".\"my \"\"t\"\"\"".into(),
            id: quote("Id"),
            embedding: quote("emb"),
            kind,
        }
    }

    #[test]
    fn names_are_quoted_and_resolved_as_sql_reads_them() {
        assert_eq!(quote("a\"b"), "\"a\"\"b\"");
        let columns = vec!["id".to_string(), "Emb".to_string(), "x\"y".to_string()];
        assert_eq!(
            resolve_column("ID", &columns).map(String::as_str),
            Some("id")
        );
        assert_eq!(
            resolve_column("Emb", &columns).map(String::as_str),
            Some("Emb")
        );
        assert_eq!(resolve_column("\"emb\"", &columns), None);
        assert_eq!(
            resolve_column("\"x\"\"y\"", &columns).map(String::as_str),
            Some("x\"y")
        );
        assert_eq!(resolve_column("nope", &columns), None);
    }

    #[test]
    fn column_types_are_checked() {
        assert_eq!(id_kind("id", "bigint").unwrap(), IdKind::Int);
        assert_eq!(id_kind("id", "character varying").unwrap(), IdKind::Str);
        let e = id_kind("id", "uuid").unwrap_err().to_string();
        assert!(e.contains("uuid") && e.contains("integers"), "{e}");
        check_embedding_type("e", "real[]").unwrap();
        check_embedding_type("e", "double precision[]").unwrap();
        let e = check_embedding_type("e", "vector").unwrap_err().to_string();
        assert!(e.contains("CREATE VIEW"), "{e}");
    }

    #[test]
    fn pages_compare_strings_by_bytes() {
        assert_eq!(
            statements(IdKind::Str).page(true, true, false),
            "SELECT \"Id\"::text FROM \"public\".\"my \"\"t\"\"\" WHERE \"Id\" IS NOT NULL \
             AND \"Id\" COLLATE \"C\" > $1::text AND \"Id\" COLLATE \"C\" <= $2::text \
             ORDER BY \"Id\" COLLATE \"C\" LIMIT $3"
        );
        let ints = statements(IdKind::Int).page(false, true, true);
        assert!(
            ints.starts_with("SELECT \"Id\"::int8, \"emb\" IS NULL, array_ndims(\"emb\"), CASE WHEN array_ndims(\"emb\") = 1 THEN \"emb\"::float8[] END FROM")
                && ints.ends_with("WHERE \"Id\" IS NOT NULL AND \"Id\" <= $1::int8 ORDER BY \"Id\" LIMIT $2"),
            "{ints}"
        );
        assert!(
            statements(IdKind::Int)
                .get()
                .ends_with("WHERE \"Id\" = ANY($1::int8[])")
        );
    }

    #[test]
    fn arrays_become_embeddings_or_say_why_not() {
        assert_eq!(embedding(true, None, None), Embedding::Missing);
        assert_eq!(
            embedding(false, Some(1), Some(vec![Some(0.5), Some(-2.0)])),
            Embedding::Vector(vec![0.5, -2.0])
        );
        let invalid = |e: Embedding| match e {
            Embedding::Invalid(reason) => reason,
            other => panic!("{other:?}"),
        };
        assert!(invalid(embedding(false, None, None)).contains("empty"));
        assert!(invalid(embedding(false, Some(2), None)).contains("2-dimensional"));
        assert!(
            invalid(embedding(false, Some(1), Some(vec![Some(1.0), None])))
                .contains("component 1 is NULL")
        );
        assert!(
            invalid(embedding(false, Some(1), Some(vec![Some(f64::NAN)]))).contains("component 0")
        );
        assert!(
            invalid(embedding(false, Some(1), Some(vec![Some(1e300)]))).contains("component 0")
        );
    }
}
