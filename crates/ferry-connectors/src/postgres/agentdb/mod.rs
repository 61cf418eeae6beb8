//! The agentdb job's PostgreSQL side: the tables RL agent state is moved into and the loader
//! that fills them ([`AgentDbStore`]).
//!
//! Each batch is one transaction: its rows are sent with `COPY … FROM STDIN (FORMAT binary)`
//! into session-local staging tables, moved into the real tables with `INSERT … SELECT … ON
//! CONFLICT` (experiences are never overwritten, Q-values and policies take the newer value),
//! and the progress of every Redis key the batch read is written to `ferry_agentdb_progress`
//! in the same transaction. A run killed at any point therefore leaves each key's rows and its
//! checkpoint in step, and a re-run neither misses nor doubles a row.
//!
//! `sql.rs` holds the tables and the statements.

use std::collections::HashMap;
use std::pin::pin;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ferry_core::error::{Classify, ErrorClass};
use serde_json::Value;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Transaction};

use super::{MigrateError, db_message};
use crate::schema::redact_url;
use sql::{
    COPY_EXPERIENCES, COPY_POLICIES, COPY_Q_VALUES, EXPERIENCE_TYPES, INSERT_EXPERIENCES,
    INSERT_POLICIES, INSERT_Q_VALUES, MIGRATIONS, POLICY_TYPES, Q_VALUE_TYPES, SAVE_PROGRESS,
    SCHEMA, STAGING,
};

mod sql;

/// The session-level advisory lock a run holds, so that two runs never overlap ("ferryagd").
pub const RUN_LOCK: i64 = 0x6665_7272_7961_6764;

/// How long a run waits for [`RUN_LOCK`].
const LOCK_WAIT: Duration = Duration::from_secs(3);

/// What a Redis key holds for one agent, and the table it goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentKind {
    /// Experience history (a list or a stream) → `rl_experiences`.
    Experiences,
    /// Q-values (a hash of `state|action` → value) → `rl_q_values`.
    QValues,
    /// The policy (a string holding JSON) → `rl_policies`.
    Policy,
}

impl AgentKind {
    /// Every kind, in the order a run moves them.
    pub const ALL: [AgentKind; 3] = [
        AgentKind::Experiences,
        AgentKind::QValues,
        AgentKind::Policy,
    ];

    /// Its name in the progress table, reports and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            AgentKind::Experiences => "experiences",
            AgentKind::QValues => "q_values",
            AgentKind::Policy => "policy",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        AgentKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The table its rows go to.
    pub fn table(self) -> &'static str {
        match self {
            AgentKind::Experiences => "rl_experiences",
            AgentKind::QValues => "rl_q_values",
            AgentKind::Policy => "rl_policies",
        }
    }
}

/// One experience: a row of `rl_experiences`.
#[derive(Debug, Clone, PartialEq)]
pub struct ExperienceRow {
    /// The agent.
    pub agent_id: String,
    /// Its position in the agent's history, from 0, oldest first.
    pub seq: i64,
    /// The state before the action.
    pub state: Option<Value>,
    /// The action taken.
    pub action: Option<String>,
    /// The reward received (finite).
    pub reward: Option<f64>,
    /// The state after the action.
    pub next_state: Option<Value>,
    /// Whether the episode ended.
    pub done: Option<bool>,
    /// When it happened.
    pub ts: Option<DateTime<Utc>>,
    /// The record's other fields, as an object (`None` when there are none).
    pub metadata: Option<Value>,
    /// The Stream entry id it came from (`None` for lists).
    pub source_id: Option<String>,
}

/// One Q-value: a row of `rl_q_values`.
#[derive(Debug, Clone, PartialEq)]
pub struct QValueRow {
    /// The agent.
    pub agent_id: String,
    /// The state (the hash field before its last `|`).
    pub state: String,
    /// The action (after the last `|`).
    pub action: String,
    /// The value (finite).
    pub value: f64,
}

/// One policy: a row of `rl_policies`.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyRow {
    /// The agent.
    pub agent_id: String,
    /// The policy document.
    pub policy: Value,
}

/// How far a run got through one agent's key of one kind: a row of `ferry_agentdb_progress`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// The agent.
    pub agent_id: String,
    /// What the key holds.
    pub kind: AgentKind,
    /// The Redis type the key had (`list`, `stream`, `hash`, `string`).
    pub key_type: String,
    /// Where reading goes on: the last Stream id read, the next HSCAN cursor (`None` for lists
    /// and strings).
    pub position: Option<String>,
    /// Items read so far: for experiences the next `seq`, for Q-values the fields read in this
    /// pass.
    pub seq: i64,
    /// Items among them that failed (bad records), so never written.
    pub failed: i64,
    /// Whether the key was read to its end.
    pub done: bool,
}

/// The rows of one transaction and the progress they bring.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// Experiences.
    pub experiences: Vec<ExperienceRow>,
    /// Q-values.
    pub q_values: Vec<QValueRow>,
    /// Policies.
    pub policies: Vec<PolicyRow>,
    /// The progress of every key the rows came from (one entry per agent and kind).
    pub progress: Vec<Progress>,
}

impl Batch {
    /// Rows in the batch.
    pub fn rows(&self) -> usize {
        self.experiences.len() + self.q_values.len() + self.policies.len()
    }
}

/// What one [`AgentDbStore::write`] changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Written {
    /// Experiences inserted (not there before).
    pub experiences: u64,
    /// Q-values inserted or changed.
    pub q_values: u64,
    /// Policies inserted or changed.
    pub policies: u64,
}

/// What went wrong with the agentdb tables.
#[derive(Debug, thiserror::Error)]
pub enum AgentDbError {
    /// PostgreSQL cannot be reached or the connection broke.
    #[error(
        "PostgreSQL at {url} is unavailable: {message}; is it running, and are the host, port, user and database in the URL right?"
    )]
    Unavailable {
        /// The server, password redacted.
        url: String,
        /// The cause.
        message: String,
    },
    /// A statement failed.
    #[error("PostgreSQL at {url}: {message}")]
    Backend {
        /// The server, password redacted.
        url: String,
        /// The server's message.
        message: String,
    },
    /// The tables exist but do not fit, or the schema is newer than this Ferry.
    #[error("{0}")]
    Schema(String),
    /// Another run holds the lock.
    #[error(
        "another `ferry agentdb migrate` is running against {url} (it has held advisory lock {RUN_LOCK} for over 3 s); wait for it to end or stop it, then run again"
    )]
    Locked {
        /// The server, password redacted.
        url: String,
    },
    /// The URL cannot be used.
    #[error("{0}")]
    Url(String),
}

impl Classify for AgentDbError {
    fn class(&self) -> ErrorClass {
        match self {
            AgentDbError::Unavailable { .. } | AgentDbError::Backend { .. } => ErrorClass::External,
            AgentDbError::Schema(_) | AgentDbError::Locked { .. } | AgentDbError::Url(_) => {
                ErrorClass::User
            }
        }
    }
}

/// The loader: one connection holding the run lock, with its staging tables.
#[derive(Debug)]
pub struct AgentDbStore {
    client: Client,
    shown: String,
}

impl AgentDbStore {
    /// Connects to `url`, creates the tables if missing (and checks that existing ones fit),
    /// and takes the run lock.
    pub async fn open(url: &str) -> Result<Self, AgentDbError> {
        let shown = redact_url(url);
        let (mut config, tls) =
            super::connect_config(url).map_err(|e| AgentDbError::Url(e.to_string()))?;
        config.connect_timeout(Duration::from_secs(5));
        config.application_name("ferry agentdb");
        let (client, connection) =
            config
                .connect(tls)
                .await
                .map_err(|e| AgentDbError::Unavailable {
                    url: shown.clone(),
                    message: format!("{e}{}", super::tls_hint(&e.to_string())),
                })?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "agentdb: PostgreSQL connection ended");
            }
        });
        let mut store = AgentDbStore { client, shown };
        store.migrate().await?;
        store.lock().await?;
        store
            .client
            .batch_execute(STAGING)
            .await
            .map_err(|e| store.error(e))?;
        store.check_tables().await?;
        Ok(store)
    }

    /// The server, password redacted.
    pub fn url(&self) -> &str {
        &self.shown
    }

    fn error(&self, e: tokio_postgres::Error) -> AgentDbError {
        error_at(&self.shown, e)
    }

    async fn migrate(&mut self) -> Result<(), AgentDbError> {
        let shown = self.shown.clone();
        let tx = self
            .client
            .transaction()
            .await
            .map_err(|e| error_at(&shown, e))?;
        match SCHEMA.apply(&tx).await {
            Ok(()) => {}
            Err(MigrateError::Db(e)) => return Err(error_at(&shown, e)),
            Err(MigrateError::UnknownVersion(v)) => {
                return Err(AgentDbError::Schema(format!(
                    "the agentdb schema of {shown} is at version {v} but this Ferry knows versions up to {}; upgrade Ferry",
                    MIGRATIONS.len()
                )));
            }
            Err(MigrateError::ForeignTable(t)) => {
                return Err(AgentDbError::Schema(format!(
                    "{shown} already has a `{t}` table that Ferry did not create"
                )));
            }
        }
        tx.commit().await.map_err(|e| error_at(&shown, e))
    }

    /// Takes the run lock, waiting up to [`LOCK_WAIT`] for it: the session of a run that was
    /// just killed may take a moment to end.
    async fn lock(&self) -> Result<(), AgentDbError> {
        let wait = format!("SET lock_timeout = {}", LOCK_WAIT.as_millis());
        self.client
            .batch_execute(&wait)
            .await
            .map_err(|e| self.error(e))?;
        let locked = self
            .client
            .execute("SELECT pg_advisory_lock($1)", &[&RUN_LOCK])
            .await;
        match locked {
            Ok(_) => {}
            Err(e) if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) => {
                return Err(AgentDbError::Locked {
                    url: self.shown.clone(),
                });
            }
            Err(e) => return Err(self.error(e)),
        }
        self.client
            .batch_execute("RESET lock_timeout")
            .await
            .map_err(|e| self.error(e))
    }

    /// Plans every statement a batch runs (nothing is executed): a table of the same name that
    /// another tool created (the seed's `rl_experiences` has no `seq`) is refused here, before
    /// any row is read.
    async fn check_tables(&self) -> Result<(), AgentDbError> {
        for (table, sql) in [
            ("rl_experiences", INSERT_EXPERIENCES),
            ("rl_q_values", INSERT_Q_VALUES),
            ("rl_policies", INSERT_POLICIES),
        ] {
            if let Err(e) = self.client.batch_execute(&format!("EXPLAIN {sql}")).await {
                return Err(AgentDbError::Schema(format!(
                    "the table {table} in {} does not fit Ferry's layout ({}); it was probably created by another tool: rename it, or give Ferry another schema (options=-csearch_path=… in the URL)",
                    self.shown,
                    db_message(&e)
                )));
            }
        }
        Ok(())
    }

    /// Every key's recorded progress.
    pub async fn load_progress(&self) -> Result<Vec<Progress>, AgentDbError> {
        let rows = self
            .client
            .query(
                "SELECT agent_id, kind, key_type, position, seq, failed, done FROM ferry_agentdb_progress",
                &[],
            )
            .await
            .map_err(|e| self.error(e))?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                Some(Progress {
                    agent_id: r.get(0),
                    kind: AgentKind::parse(r.get(1))?,
                    key_type: r.get(2),
                    position: r.get(3),
                    seq: r.get(4),
                    failed: r.get(5),
                    done: r.get(6),
                })
            })
            .collect())
    }

    /// Writes `batch` and its progress in one transaction; `before_commit` runs inside it just
    /// before `COMMIT` (a crash-test hook).
    pub async fn write(
        &mut self,
        batch: &Batch,
        before_commit: impl FnOnce(),
    ) -> Result<Written, AgentDbError> {
        let shown = self.shown.clone();
        let fail = |e: tokio_postgres::Error| error_at(&shown, e);
        let tx = self.client.transaction().await.map_err(fail)?;
        let mut written = Written::default();
        if !batch.experiences.is_empty() {
            copy_experiences(&tx, &batch.experiences)
                .await
                .map_err(fail)?;
            written.experiences = tx.execute(INSERT_EXPERIENCES, &[]).await.map_err(fail)?;
        }
        if !batch.q_values.is_empty() {
            let rows = batch.q_values.iter().map(|q| {
                [
                    &q.agent_id as &(dyn ToSql + Sync),
                    &q.state,
                    &q.action,
                    &q.value,
                ]
            });
            copy_rows(&tx, COPY_Q_VALUES, Q_VALUE_TYPES, rows)
                .await
                .map_err(fail)?;
            written.q_values = tx.execute(INSERT_Q_VALUES, &[]).await.map_err(fail)?;
        }
        if !batch.policies.is_empty() {
            let rows = batch
                .policies
                .iter()
                .map(|p| [&p.agent_id as &(dyn ToSql + Sync), &p.policy]);
            copy_rows(&tx, COPY_POLICIES, POLICY_TYPES, rows)
                .await
                .map_err(fail)?;
            written.policies = tx.execute(INSERT_POLICIES, &[]).await.map_err(fail)?;
        }
        save_progress(&tx, &batch.progress).await.map_err(fail)?;
        before_commit();
        tx.commit().await.map_err(fail)?;
        Ok(written)
    }

    /// Rows of `kind` stored for each of `agents` (agents without rows are left out).
    pub async fn counts(
        &self,
        kind: AgentKind,
        agents: &[&str],
    ) -> Result<HashMap<String, i64>, AgentDbError> {
        let sql = format!(
            "SELECT agent_id, count(*) FROM {} WHERE agent_id = ANY($1) GROUP BY agent_id",
            kind.table()
        );
        let rows = self
            .client
            .query(&sql, &[&agents])
            .await
            .map_err(|e| self.error(e))?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }
}

fn error_at(shown: &str, e: tokio_postgres::Error) -> AgentDbError {
    if e.as_db_error().is_some() {
        AgentDbError::Backend {
            url: shown.to_string(),
            message: db_message(&e),
        }
    } else {
        AgentDbError::Unavailable {
            url: shown.to_string(),
            message: e.to_string(),
        }
    }
}

/// Sends `rows` with binary `COPY` through `copy` (a `COPY … FROM STDIN (FORMAT binary)`).
async fn copy_rows<'a, const N: usize>(
    tx: &Transaction<'_>,
    copy: &str,
    types: &[Type],
    rows: impl Iterator<Item = [&'a (dyn ToSql + Sync); N]>,
) -> Result<u64, tokio_postgres::Error> {
    let sink = tx.copy_in(copy).await?;
    let mut writer = pin!(BinaryCopyInWriter::new(sink, types));
    for row in rows {
        writer.as_mut().write(&row).await?;
    }
    writer.as_mut().finish().await
}

async fn copy_experiences(
    tx: &Transaction<'_>,
    rows: &[ExperienceRow],
) -> Result<u64, tokio_postgres::Error> {
    let rows = rows.iter().map(|e| {
        [
            &e.agent_id as &(dyn ToSql + Sync),
            &e.seq,
            &e.state,
            &e.action,
            &e.reward,
            &e.next_state,
            &e.done,
            &e.ts,
            &e.metadata,
            &e.source_id,
        ]
    });
    copy_rows(tx, COPY_EXPERIENCES, EXPERIENCE_TYPES, rows).await
}

async fn save_progress(
    tx: &Transaction<'_>,
    progress: &[Progress],
) -> Result<u64, tokio_postgres::Error> {
    if progress.is_empty() {
        return Ok(0);
    }
    let agents: Vec<&str> = progress.iter().map(|p| p.agent_id.as_str()).collect();
    let kinds: Vec<&str> = progress.iter().map(|p| p.kind.as_str()).collect();
    let types: Vec<&str> = progress.iter().map(|p| p.key_type.as_str()).collect();
    let positions: Vec<Option<&str>> = progress.iter().map(|p| p.position.as_deref()).collect();
    let seqs: Vec<i64> = progress.iter().map(|p| p.seq).collect();
    let failed: Vec<i64> = progress.iter().map(|p| p.failed).collect();
    let done: Vec<bool> = progress.iter().map(|p| p.done).collect();
    tx.execute(
        SAVE_PROGRESS,
        &[&agents, &kinds, &types, &positions, &seqs, &failed, &done],
    )
    .await
}
