//! The events job's log in PostgreSQL: the `events` table, its outbox and the triggers that
//! keep both right for every producer, Ferry or plain SQL.
//!
//! - A `BEFORE INSERT` row trigger hands out the row's id from `events_id_seq`. The first time
//!   in a transaction it first announces the transaction as *in flight*: it reads the next id
//!   the sequence will hand out and takes a shared transaction-level advisory lock whose key is
//!   that id. Shared locks never wait for each other, so producers (Ferry's or any program's,
//!   with transactions over as many cameras as they like) never wait on Ferry and cannot
//!   deadlock on it.
//! - An `AFTER INSERT` statement trigger copies the new rows into `events_pending` (the outbox;
//!   `events_outbox` before version 2, renamed so that older relays stop) in the same
//!   transaction and sends `NOTIFY ferry_events`: whatever commits is queued for publishing,
//!   whoever inserted it.
//! - The relay publishes only ids below the *horizon* ([`EventLog::publish_pending`]): the
//!   lowest id that a transaction still in flight may commit (the lowest key of those locks) or
//!   that the sequence has yet to hand out. Every id below it is either committed and visible
//!   or never will be, so publishing in id order never publishes a camera's event 11 and later
//!   finds its event 10, and nothing rolled back is ever published.
//! - [`EventLog::publish_pending`] takes a batch of queued events below the horizon of cameras
//!   no other relay is publishing (per-camera advisory locks, tried without waiting), hands it
//!   to the publisher and deletes it from the outbox only once the publisher returned `Ok`, in
//!   the transaction that holds the locks.
//!
//! Here the log itself (its pool and schema); `save.rs` stores events, `publish.rs` is the
//! relay's side of the outbox, `listen.rs` wakes the relays, `query.rs` reads the log back,
//! `error.rs` says what went wrong and `sql.rs` holds the SQL.

mod error;
mod listen;
mod publish;
mod query;
mod save;
mod sql;

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};

pub use error::{EventLogError, EventLogResult};
pub use listen::{Listener, NOTIFY_CHANNEL};
pub use publish::{OutboxBatch, PublishError, Published};
pub use query::{EventPage, EventQuery, EventStats};
pub use save::Saved;

use super::MigrateError;
use crate::schema;
use sql::{MIGRATIONS, SCHEMA};

/// How long one attempt of [`EventLog::migrate`] waits for a lock.
const MIGRATE_LOCK_TIMEOUT: Duration = Duration::from_millis(500);
/// How long [`EventLog::migrate`] keeps trying.
const MIGRATE_PATIENCE: Duration = Duration::from_secs(120);

/// The event log: a pool of PostgreSQL connections.
#[derive(Debug, Clone)]
pub struct EventLog {
    pool: Pool,
    config: tokio_postgres::Config,
    /// TLS by the URL's `sslmode` (see [`super::connect_config`]).
    tls: super::PgTls,
    shown: String,
}

impl EventLog {
    /// A pool of up to `connections` connections to `url` (none is opened yet: see
    /// [`EventLog::open`]).
    pub fn connect(url: &str, connections: usize) -> EventLogResult<Self> {
        let shown = schema::redact_url(url);
        let (mut config, tls) = super::connect_config(url).map_err(|e| EventLogError::Url {
            url: shown.clone(),
            message: e.message,
        })?;
        config.connect_timeout(Duration::from_secs(5));
        config.application_name("ferry");
        // The enqueue trigger leaves notifying to Ferry's connections (see `notify_after`).
        let options = match config.get_options() {
            Some(o) if !o.is_empty() => format!("{o} -c ferry.notify=off"),
            _ => "-c ferry.notify=off".to_string(),
        };
        config.options(&options);
        let manager = Manager::from_config(
            config.clone(),
            tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(connections.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(10)))
            .create_timeout(Some(Duration::from_secs(5)))
            .build()
            .map_err(|e| EventLogError::Backend(e.to_string()))?;
        Ok(EventLog {
            pool,
            config,
            tls,
            shown,
        })
    }

    /// Connects and creates or upgrades the schema.
    pub async fn open(url: &str, connections: usize) -> EventLogResult<Self> {
        let log = Self::connect(url, connections)?;
        log.migrate().await?;
        Ok(log)
    }

    /// The server, password redacted.
    pub fn url(&self) -> &str {
        &self.shown
    }

    /// A connection from the pool.
    async fn client(&self) -> EventLogResult<deadpool_postgres::Object> {
        self.pool.get().await.map_err(|e| match e {
            deadpool_postgres::PoolError::Backend(e) => self.error(e),
            other => self.unavailable(other),
        })
    }

    /// Creates or upgrades the schema (under an advisory lock; a newer schema is refused).
    ///
    /// The upgrade to version 2 renames the outbox, which waits for every transaction that
    /// wrote to it; an application transaction that writes again meanwhile would queue behind
    /// that wait and deadlock with it. So each attempt gives up after `MIGRATE_LOCK_TIMEOUT`
    /// (shorter than PostgreSQL's default `deadlock_timeout`, so the application never is the
    /// one aborted) and is retried for up to `MIGRATE_PATIENCE`.
    pub async fn migrate(&self) -> EventLogResult<()> {
        let started = std::time::Instant::now();
        loop {
            match self.migrate_once().await {
                Err(EventLogError::Backend(m))
                    if m.starts_with("55P03") && started.elapsed() < MIGRATE_PATIENCE =>
                {
                    tracing::info!(
                        "the events schema upgrade waits for transactions writing events to end"
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                other => return other,
            }
        }
    }

    async fn migrate_once(&self) -> EventLogResult<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.error(e))?;
        tx.batch_execute(&format!(
            "SET LOCAL lock_timeout = {}",
            MIGRATE_LOCK_TIMEOUT.as_millis()
        ))
        .await
        .map_err(|e| self.error(e))?;
        match SCHEMA.apply(&tx).await {
            Ok(()) => {}
            Err(MigrateError::Db(e)) => return Err(self.error(e)),
            Err(MigrateError::UnknownVersion(v)) => {
                return Err(EventLogError::Schema(format!(
                    "the events schema of {} is at version {v} but this Ferry knows versions up to {}; upgrade Ferry (an older one must not write to it)",
                    self.shown,
                    MIGRATIONS.len()
                )));
            }
            Err(MigrateError::ForeignTable(t)) => {
                return Err(EventLogError::Schema(format!(
                    "{} already has an `{t}` table that Ferry did not create; use another database or schema (options=-csearch_path=… in the URL)",
                    self.shown
                )));
            }
        }
        tx.commit().await.map_err(|e| self.error(e))
    }

    /// Whether PostgreSQL answers.
    pub async fn healthcheck(&self) -> EventLogResult<()> {
        let client = self.client().await?;
        client
            .simple_query("SELECT 1")
            .await
            .map_err(|e| self.error(e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
