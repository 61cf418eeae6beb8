//! The agentdb tables and the statements of a batch.

use tokio_postgres::types::Type;

use crate::postgres::VersionedSchema;

/// The tables, created if missing (version 1 of the `agentdb` component in `ferry_schema`).
pub(super) const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE IF NOT EXISTS rl_experiences (
    id bigserial PRIMARY KEY,
    agent_id text NOT NULL,
    seq bigint NOT NULL,
    state jsonb,
    action text,
    reward double precision,
    next_state jsonb,
    done boolean,
    ts timestamptz,
    metadata jsonb,
    source_id text,
    migrated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (agent_id, seq)
);
CREATE TABLE IF NOT EXISTS rl_q_values (
    agent_id text NOT NULL,
    state text NOT NULL,
    action text NOT NULL,
    value double precision NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (agent_id, state, action)
);
CREATE TABLE IF NOT EXISTS rl_policies (
    agent_id text PRIMARY KEY,
    policy jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS ferry_agentdb_progress (
    agent_id text NOT NULL,
    kind text NOT NULL,
    key_type text NOT NULL,
    position text,
    seq bigint NOT NULL DEFAULT 0,
    failed bigint NOT NULL DEFAULT 0,
    done boolean NOT NULL DEFAULT false,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (agent_id, kind)
);
"#];

/// The agentdb schema; its advisory lock serialises migrations ("ferryagm").
pub(super) const SCHEMA: VersionedSchema = VersionedSchema {
    component: "agentdb",
    lock: 0x6665_7272_7961_676d,
    migrations: MIGRATIONS,
    first_table: None,
};

/// Session-local staging tables; `COPY` fills them, the batch's `INSERT`s empty them at commit.
pub(super) const STAGING: &str = "
CREATE TEMP TABLE IF NOT EXISTS ferry_agentdb_stage_experiences (agent_id text, seq bigint,
    state jsonb, action text, reward double precision, next_state jsonb, done boolean,
    ts timestamptz, metadata jsonb, source_id text) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS ferry_agentdb_stage_q_values (agent_id text, state text,
    action text, value double precision) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS ferry_agentdb_stage_policies (agent_id text, policy jsonb)
    ON COMMIT DELETE ROWS;";

pub(super) const COPY_EXPERIENCES: &str = "COPY ferry_agentdb_stage_experiences (agent_id, seq, state, action, reward, next_state, done, ts, metadata, source_id) FROM STDIN (FORMAT binary)";
pub(super) const EXPERIENCE_TYPES: &[Type] = &[
    Type::TEXT,
    Type::INT8,
    Type::JSONB,
    Type::TEXT,
    Type::FLOAT8,
    Type::JSONB,
    Type::BOOL,
    Type::TIMESTAMPTZ,
    Type::JSONB,
    Type::TEXT,
];
pub(super) const INSERT_EXPERIENCES: &str = "INSERT INTO rl_experiences (agent_id, seq, state, action, reward, next_state, done, ts, metadata, source_id)
    SELECT agent_id, seq, state, action, reward, next_state, done, ts, metadata, source_id
    FROM ferry_agentdb_stage_experiences
    ON CONFLICT (agent_id, seq) DO NOTHING";

pub(super) const COPY_Q_VALUES: &str =
    "COPY ferry_agentdb_stage_q_values (agent_id, state, action, value) FROM STDIN (FORMAT binary)";
pub(super) const Q_VALUE_TYPES: &[Type] = &[Type::TEXT, Type::TEXT, Type::TEXT, Type::FLOAT8];
pub(super) const INSERT_Q_VALUES: &str =
    "INSERT INTO rl_q_values AS q (agent_id, state, action, value)
    SELECT DISTINCT ON (agent_id, state, action) agent_id, state, action, value
    FROM ferry_agentdb_stage_q_values
    ON CONFLICT (agent_id, state, action) DO UPDATE SET value = EXCLUDED.value, updated_at = now()
    WHERE q.value IS DISTINCT FROM EXCLUDED.value";

pub(super) const COPY_POLICIES: &str =
    "COPY ferry_agentdb_stage_policies (agent_id, policy) FROM STDIN (FORMAT binary)";
pub(super) const POLICY_TYPES: &[Type] = &[Type::TEXT, Type::JSONB];
pub(super) const INSERT_POLICIES: &str = "INSERT INTO rl_policies AS p (agent_id, policy)
    SELECT DISTINCT ON (agent_id) agent_id, policy FROM ferry_agentdb_stage_policies
    ON CONFLICT (agent_id) DO UPDATE SET policy = EXCLUDED.policy, updated_at = now()
    WHERE p.policy IS DISTINCT FROM EXCLUDED.policy";

pub(super) const SAVE_PROGRESS: &str = "INSERT INTO ferry_agentdb_progress (agent_id, kind, key_type, position, seq, failed, done)
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int8[], $6::int8[], $7::bool[])
    ON CONFLICT (agent_id, kind) DO UPDATE SET key_type = EXCLUDED.key_type,
        position = EXCLUDED.position, seq = EXCLUDED.seq, failed = EXCLUDED.failed,
        done = EXCLUDED.done, updated_at = now()";
