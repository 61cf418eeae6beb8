//! A PostgreSQL table (or view) as a vector source: an id column (integers, or text compared
//! by bytes) and an embedding column of `real[]` or `double precision[]`, read in id order by
//! keyset pagination (`WHERE id > $1 AND id <= $2 ORDER BY id LIMIT $3`).
//!
//! The table is named as SQL names it (`items`, `media.items`, `"Media"."Items"`: unquoted
//! names fold to lower case) and resolved once with `to_regclass`; every name in a statement
//! is then quoted. Rows whose id is null are not items (`bad_ids`).

mod sql;

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use ferry_core::jobs::vectors::{
    IdKind, IdRange, SourceInfo, SourceItem, VectorError, VectorId, VectorResult, VectorSource,
};
use tokio_postgres::Row;
use tokio_postgres::types::{Oid, ToSql};

use self::sql::{Statements, check_embedding_type, id_kind, quote, resolve_column};
use super::db_message;

const STORE: &str = "postgres";
/// Connections a source keeps (workers read ranges in parallel).
const CONNECTIONS: usize = 4;

/// The rows of one table with an id column and an array embedding column.
#[derive(Debug, Clone)]
pub struct PgVectorSource {
    pool: Pool,
    shown: String,
    sql: Statements,
}

/// A column of the table: name, type (as `regtype` names it) and position.
struct Column {
    name: String,
    ty: String,
    attnum: i16,
}

impl PgVectorSource {
    /// Connects to `url`, resolves `table` (`table` or `schema.table`) and checks its columns:
    /// integer or text ids, `real[]` or `double precision[]` embeddings. Warns when no index
    /// serves the id order.
    pub async fn open(
        url: &str,
        table: &str,
        id_column: &str,
        embedding_column: &str,
    ) -> VectorResult<Self> {
        let shown = crate::schema::redact_url(url);
        let (mut config, tls) =
            super::connect_config(url).map_err(|e| VectorError::Config(e.to_string()))?;
        config.connect_timeout(Duration::from_secs(5));
        config.application_name("ferry");
        let manager = Manager::from_config(
            config,
            tls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(CONNECTIONS)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(30)))
            .create_timeout(Some(Duration::from_secs(5)))
            .build()
            .map_err(|e| VectorError::Config(format!("{shown}: {e}")))?;
        let mut source = PgVectorSource {
            pool,
            shown,
            sql: Statements {
                table: String::new(),
                id: String::new(),
                embedding: String::new(),
                kind: IdKind::Int,
            },
        };
        let (oid, table_name) = source.resolve_table(table).await?;
        let columns = source.columns(oid).await?;
        let names: Vec<String> = columns.iter().map(|c| c.name.clone()).collect();
        let find = |name: &str, what: &str| {
            resolve_column(name, &names)
                .and_then(|n| columns.iter().find(|c| &c.name == n))
                .ok_or_else(|| {
                    VectorError::Config(format!(
                        "{table_name} has no {what} column {name:?} (its columns: {})",
                        names.join(", ")
                    ))
                })
        };
        let id = find(id_column, "id")?;
        let embedding = find(embedding_column, "embedding")?;
        source.sql = Statements {
            kind: id_kind(&id.name, &id.ty)?,
            table: table_name,
            id: quote(&id.name),
            embedding: quote(&embedding.name),
        };
        check_embedding_type(&embedding.name, &embedding.ty)?;
        source.warn_without_index(oid, id.attnum).await?;
        Ok(source)
    }

    /// The kind of the source's ids.
    pub fn id_kind(&self) -> IdKind {
        self.sql.kind
    }

    fn error(&self, e: &tokio_postgres::Error) -> VectorError {
        VectorError::Backend {
            store: format!("PostgreSQL at {}", self.shown),
            message: db_message(e),
        }
    }

    async fn client(&self) -> VectorResult<deadpool_postgres::Object> {
        self.pool.get().await.map_err(|e| {
            let detail = match &e {
                deadpool_postgres::PoolError::Backend(e) => db_message(e),
                other => other.to_string(),
            };
            VectorError::Unreachable {
                store: format!("PostgreSQL at {}", self.shown),
                message: format!(
                    "{detail}{}; is it running and are the user, password and database right?",
                    super::tls_hint(&detail)
                ),
            }
        })
    }

    async fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> VectorResult<Vec<Row>> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(sql)
            .await
            .map_err(|e| self.error(&e))?;
        client
            .query(&statement, params)
            .await
            .map_err(|e| self.error(&e))
    }

    /// The table's oid and quoted name, as SQL resolves `table`.
    async fn resolve_table(&self, table: &str) -> VectorResult<(Oid, String)> {
        let rows = self
            .query(
                "SELECT c.oid, n.nspname::text, c.relname::text FROM pg_class c \
                 JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass($1)",
                &[&table],
            )
            .await
            .map_err(|e| match e {
                VectorError::Backend { message, .. } if message.starts_with("42602") => {
                    VectorError::Config(format!("{table:?} is not a table name: {message}"))
                }
                other => other,
            })?;
        let row = rows.first().ok_or_else(|| {
            VectorError::Config(format!(
                "{} has no table {table:?}: name it as SQL does (items, schema.items, \"MixedCase\")",
                self.shown
            ))
        })?;
        let (schema, name): (String, String) = (row.get(1), row.get(2));
        Ok((row.get(0), format!("{}.{}", quote(&schema), quote(&name))))
    }

    async fn columns(&self, oid: Oid) -> VectorResult<Vec<Column>> {
        let rows = self
            .query(
                "SELECT attname::text, atttypid::regtype::text, attnum FROM pg_attribute \
                 WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
                &[&oid],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| Column {
                name: r.get(0),
                ty: r.get(1),
                attnum: r.get(2),
            })
            .collect())
    }

    /// Warns when no index starts with the id column (for string ids: with byte order,
    /// `COLLATE "C"`), so that every page sorts the table.
    async fn warn_without_index(&self, oid: Oid, attnum: i16) -> VectorResult<()> {
        let rows = self
            .query(
                "SELECT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = $1 AND i.indkey[0] = $2 \
                 AND (i.indcollation[0] = 0 OR (SELECT collname FROM pg_collation WHERE oid = i.indcollation[0]) IN ('C', 'POSIX')))",
                &[&oid, &attnum],
            )
            .await?;
        if !rows.first().is_some_and(|r| r.get::<_, bool>(0)) {
            let hint = match self.sql.kind {
                IdKind::Int => format!("CREATE INDEX ON {} ({})", self.sql.table, self.sql.id),
                IdKind::Str => format!(
                    "CREATE INDEX ON {} ({} COLLATE \"C\") (string ids are read in byte order)",
                    self.sql.table, self.sql.id
                ),
            };
            tracing::warn!(table = %self.sql.table, "no index serves the id order: every page sorts the table; {hint}");
        }
        Ok(())
    }

    fn id_of(&self, row: &Row) -> VectorResult<VectorId> {
        let id = match self.sql.kind {
            IdKind::Int => row.try_get::<_, i64>(0).map(VectorId::Int),
            IdKind::Str => row.try_get::<_, String>(0).map(VectorId::Str),
        };
        id.map_err(|e| self.error(&e))
    }

    fn item(&self, row: &Row) -> VectorResult<SourceItem> {
        let values = (row.try_get(1), row.try_get(2), row.try_get(3));
        let (Ok(is_null), Ok(ndims), Ok(vector)) = values else {
            return Err(VectorError::Backend {
                store: format!("PostgreSQL at {}", self.shown),
                message: format!("cannot read the embedding column of {}", self.sql.table),
            });
        };
        Ok(SourceItem {
            id: self.id_of(row)?,
            embedding: sql::embedding(is_null, ndims, vector),
        })
    }

    async fn range_rows(
        &self,
        range: &IdRange,
        limit: usize,
        embeddings: bool,
    ) -> VectorResult<Vec<Row>> {
        if range.kind != self.sql.kind || limit == 0 {
            return Ok(Vec::new());
        }
        let bounds: Vec<&VectorId> = [&range.after, &range.upto].into_iter().flatten().collect();
        if bounds.iter().any(|b| b.kind() != range.kind) {
            return Err(VectorError::Config(
                "an id range has a bound of the other kind of id (a bug in the caller: ranges never mix kinds)".into(),
            ));
        }
        let (ints, texts): (Vec<i64>, Vec<String>) = (
            bounds
                .iter()
                .filter_map(|b| match b {
                    VectorId::Int(n) => Some(*n),
                    _ => None,
                })
                .collect(),
            // PostgreSQL text holds no NUL: no id lies between `a` and `a\0…`, so a bound
            // cut at its NUL is the same bound.
            bounds
                .iter()
                .filter_map(|b| match b {
                    VectorId::Str(s) => s.split('\0').next().map(str::to_string),
                    _ => None,
                })
                .collect(),
        );
        let limit = limit.min(i64::MAX as usize) as i64;
        let mut params: Vec<&(dyn ToSql + Sync)> = match self.sql.kind {
            IdKind::Int => ints.iter().map(|n| n as &(dyn ToSql + Sync)).collect(),
            IdKind::Str => texts.iter().map(|s| s as &(dyn ToSql + Sync)).collect(),
        };
        params.push(&limit);
        let sql = self
            .sql
            .page(range.after.is_some(), range.upto.is_some(), embeddings);
        self.query(&sql, &params).await
    }
}

impl VectorSource for PgVectorSource {
    async fn describe(&self) -> VectorResult<SourceInfo> {
        let version = self.query("SHOW server_version", &[]).await?;
        let version: String = version.first().map(|r| r.get(0)).unwrap_or_default();
        let counts = self.query(&self.sql.counts(), &[]).await?;
        let count = |i: usize| {
            counts
                .first()
                .map_or(0, |r| r.get::<_, i64>(i).max(0) as u64)
        };
        let (items, bad_ids, distinct) = (count(0), count(1), count(2));
        if distinct < items {
            tracing::warn!(
                table = %self.sql.table,
                rows = items,
                distinct_ids = distinct,
                "several rows share an id: a target keeps one vector per id, from any of them; give each row its own id"
            );
        }
        let mut info = SourceInfo {
            store: STORE.into(),
            version: format!("PostgreSQL {version}"),
            items,
            bad_ids,
            ..SourceInfo::default()
        };
        match self.sql.kind {
            IdKind::Int => info.int_ids = items,
            IdKind::Str => info.str_ids = items,
        }
        for row in self.query(&self.sql.dimensions(), &[]).await? {
            let (d, n): (Option<i32>, i64) = (row.get(0), row.get(1));
            if let Some(d) = d.filter(|&d| d > 0) {
                info.with_embedding += n as u64;
                *info.dimensions.entry(d as usize).or_default() += n as u64;
            }
        }
        Ok(info)
    }

    async fn ids(&self, range: &IdRange, limit: usize) -> VectorResult<Vec<VectorId>> {
        let rows = self.range_rows(range, limit, false).await?;
        rows.iter().map(|r| self.id_of(r)).collect()
    }

    async fn page(&self, range: &IdRange, limit: usize) -> VectorResult<Vec<SourceItem>> {
        let rows = self.range_rows(range, limit, true).await?;
        rows.iter().map(|r| self.item(r)).collect()
    }

    async fn get(&self, ids: &[VectorId]) -> VectorResult<Vec<SourceItem>> {
        let rows = match self.sql.kind {
            IdKind::Int => {
                let ints: Vec<i64> = ids
                    .iter()
                    .filter_map(|id| match id {
                        VectorId::Int(n) => Some(*n),
                        _ => None,
                    })
                    .collect();
                if ints.is_empty() {
                    return Ok(Vec::new());
                }
                self.query(&self.sql.get(), &[&ints]).await?
            }
            IdKind::Str => {
                let texts: Vec<&str> = ids
                    .iter()
                    .filter_map(|id| match id {
                        VectorId::Str(s) if !s.contains('\0') => Some(s.as_str()),
                        _ => None,
                    })
                    .collect();
                if texts.is_empty() {
                    return Ok(Vec::new());
                }
                self.query(&self.sql.get(), &[&texts]).await?
            }
        };
        rows.iter().map(|r| self.item(r)).collect()
    }

    async fn sample(&self, n: usize) -> VectorResult<Vec<VectorId>> {
        let n = n.min(i64::MAX as usize) as i64;
        let rows = self.query(&self.sql.sample(), &[&n]).await?;
        rows.iter().map(|r| self.id_of(r)).collect()
    }
}
