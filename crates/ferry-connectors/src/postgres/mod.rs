//! PostgreSQL: the tier job's event store ([`PostgresEventStore`]) and the events job's log
//! with its outbox ([`EventLog`]).

pub mod events;
mod tier;

pub use events::{EventLog, EventLogError, EventQuery, EventStats, OutboxBatch};
pub use tier::PostgresEventStore;

/// A server error's own code, message and detail: says far more than "db error".
fn db_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => match db.detail() {
            Some(detail) => format!("{}: {} ({detail})", db.code().code(), db.message()),
            None => format!("{}: {}", db.code().code(), db.message()),
        },
        None => e.to_string(),
    }
}

/// One component's schema, versioned in the table `ferry_schema`: its migrations are applied in
/// order and its version is their count.
struct VersionedSchema {
    /// The row of `ferry_schema` (`tier`, `events`).
    component: &'static str,
    /// The advisory lock that serialises concurrent migrations of this component.
    lock: i64,
    /// The migrations, oldest first.
    migrations: &'static [&'static str],
    /// A table that must not exist yet when the component has no version (Ferry did not
    /// create it, so it is not Ferry's to change).
    first_table: Option<&'static str>,
}

/// Why a schema could not be brought up to date.
#[derive(Debug)]
enum MigrateError {
    /// A statement failed.
    Db(tokio_postgres::Error),
    /// The recorded version is one this Ferry does not know (a newer Ferry wrote it).
    UnknownVersion(i64),
    /// [`VersionedSchema::first_table`] exists although the component has no version.
    ForeignTable(&'static str),
}

impl From<tokio_postgres::Error> for MigrateError {
    fn from(e: tokio_postgres::Error) -> Self {
        MigrateError::Db(e)
    }
}

impl VersionedSchema {
    /// Brings the schema up to date inside `tx` (under the advisory lock); the caller commits.
    async fn apply(&self, tx: &tokio_postgres::Transaction<'_>) -> Result<(), MigrateError> {
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&self.lock])
            .await?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS ferry_schema (component text PRIMARY KEY, version bigint NOT NULL)",
        )
        .await?;
        let version: i64 = tx
            .query_opt(
                "SELECT version FROM ferry_schema WHERE component = $1",
                &[&self.component],
            )
            .await?
            .map_or(0, |r| r.get(0));
        if version < 0 || version as usize > self.migrations.len() {
            return Err(MigrateError::UnknownVersion(version));
        }
        if version == 0
            && let Some(table) = self.first_table
        {
            let taken = tx
                .query_opt("SELECT to_regclass($1)::text", &[&table])
                .await?
                .and_then(|r| r.get::<_, Option<String>>(0));
            if taken.is_some() {
                return Err(MigrateError::ForeignTable(table));
            }
        }
        for sql in &self.migrations[version as usize..] {
            tx.batch_execute(sql).await?;
        }
        tx.execute(
            "INSERT INTO ferry_schema (component, version) VALUES ($1, $2)
             ON CONFLICT (component) DO UPDATE SET version = EXCLUDED.version",
            &[&self.component, &(self.migrations.len() as i64)],
        )
        .await?;
        Ok(())
    }
}
