//! The SQL of the event log: its schema migrations (with the triggers that hand out ids and
//! queue events, and the horizon function) and the statements the log sends.

use super::super::VersionedSchema;

/// Lowest first key of the in-flight locks (the triggers' literal 1178927104): an id `n` is
/// the lock `(IN_FLIGHT_LOCK + (n >> 31), n & 0x7fff_ffff)`.
pub(super) const IN_FLIGHT_LOCK: i32 = 0x4645_0000;
/// First key of the relays' per-camera advisory locks.
pub(super) const RELAY_LOCK: i32 = 0x6665_7277;
/// The events schema (its own migration lock, an arbitrary constant).
pub(super) const SCHEMA: VersionedSchema = VersionedSchema {
    component: "events",
    lock: 0x6665_7272_7965_7673,
    migrations: MIGRATIONS,
    first_table: Some("events"),
};

pub(super) const MIGRATIONS: &[&str] = &[
    r#"
CREATE SEQUENCE events_id_seq AS bigint;
CREATE TABLE events (
    id bigint PRIMARY KEY,
    event_type text NOT NULL,
    camera_id text NOT NULL,
    "timestamp" timestamptz NOT NULL DEFAULT now(),
    frame_number bigint,
    snapshot_path text,
    event_data jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    source_key text UNIQUE
);
ALTER SEQUENCE events_id_seq OWNED BY events.id;
CREATE INDEX events_camera_id ON events (camera_id, id);
CREATE INDEX events_event_type ON events (event_type, id);
CREATE INDEX events_timestamp ON events ("timestamp");
CREATE TABLE events_outbox (
    event_id bigint PRIMARY KEY,
    camera_id text NOT NULL,
    enqueued_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX events_outbox_camera ON events_outbox (camera_id, event_id);
CREATE FUNCTION ferry_events_assign_id() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Ids of one camera are handed out under a lock held until commit: they commit in order.
    PERFORM pg_advisory_xact_lock(1717924470, hashtext(NEW.camera_id));
    NEW.id := nextval('events_id_seq');
    RETURN NEW;
END $$;
CREATE TRIGGER events_assign_id BEFORE INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION ferry_events_assign_id();
CREATE FUNCTION ferry_events_enqueue() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO events_outbox (event_id, camera_id) SELECT id, camera_id FROM ferry_new_events;
    -- Ferry's own connections (ferry.notify = off) notify after their commit instead: a
    -- transaction that notifies holds a cluster-wide lock through its commit, which would
    -- serialise concurrent producers' commits.
    IF coalesce(current_setting('ferry.notify', true), '') <> 'off' THEN
        PERFORM pg_notify('ferry_events', '');
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER events_enqueue AFTER INSERT ON events
    REFERENCING NEW TABLE AS ferry_new_events
    FOR EACH STATEMENT EXECUTE FUNCTION ferry_events_enqueue();
"#,
    r#"
-- Version 2: no lock a producer can wait on. The per-camera exclusive lock of version 1 let two
-- transactions writing the same cameras in different orders deadlock.
CREATE FUNCTION ferry_events_next_id() RETURNS bigint LANGUAGE sql VOLATILE AS $$
    SELECT coalesce(pg_sequence_last_value('events_id_seq') + 1, 1)
$$;
CREATE OR REPLACE FUNCTION ferry_events_assign_id() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    next_id bigint;
BEGIN
    IF current_setting('ferry.in_flight', true) IS DISTINCT FROM 'on' THEN
        -- Announce this transaction before its first id: every id it takes is at or above
        -- the key of this lock, which is held until it commits or rolls back. Shared: no
        -- producer ever waits for another.
        next_id := ferry_events_next_id();
        PERFORM pg_advisory_xact_lock_shared(
            (1178927104 + least(next_id >> 31, 65535))::int, (next_id & 2147483647)::int);
        PERFORM set_config('ferry.in_flight', 'on', true);
    END IF;
    NEW.id := nextval('events_id_seq');
    RETURN NEW;
END $$;
-- The lowest id still to be committed by a transaction in flight or handed out later: every
-- queued event below it is final. The sequence is read before the locks, so a transaction
-- whose lock is not seen yet takes its ids after that read. A transaction still holding a
-- version 1 per-camera lock (1717924470) took ids before this version was installed, without
-- an in-flight lock: nothing is final until it ends.
CREATE FUNCTION ferry_events_horizon() RETURNS bigint LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    next_id bigint := ferry_events_next_id();
    held bigint;
    old_writers bigint;
    cache bigint;
BEGIN
    SELECT s.seqcache INTO cache FROM pg_sequence AS s
     WHERE s.seqrelid = 'events_id_seq'::regclass;
    IF cache > 1 THEN
        RAISE EXCEPTION 'events_id_seq has CACHE %, so its ids are not handed out in order and Ferry cannot publish in id order: run ALTER SEQUENCE events_id_seq CACHE 1', cache
            USING ERRCODE = '55000';
    END IF;
    SELECT min(((l.classid::bigint - 1178927104) << 31) | l.objid::bigint) FILTER (
               WHERE l.classid::bigint BETWEEN 1178927104 AND 1178927104 + 65535),
           count(*) FILTER (WHERE l.classid::bigint = 1717924470)
      INTO held, old_writers
      FROM pg_locks AS l
     WHERE l.locktype = 'advisory' AND l.objsubid = 2
       AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database());
    IF old_writers > 0 THEN
        RETURN 0;
    END IF;
    RETURN least(next_id, held);
END $$;
-- Renamed so that relays of an older Ferry, which publish without the horizon, fail instead of
-- publishing out of order.
ALTER TABLE events_outbox RENAME TO events_pending;
ALTER INDEX events_outbox_pkey RENAME TO events_pending_pkey;
ALTER INDEX events_outbox_camera RENAME TO events_pending_camera;
CREATE OR REPLACE FUNCTION ferry_events_enqueue() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO events_pending (event_id, camera_id) SELECT id, camera_id FROM ferry_new_events;
    -- Ferry's own connections (ferry.notify = off) notify after their commit instead: a
    -- transaction that notifies holds a cluster-wide lock through its commit, which would
    -- serialise concurrent producers' commits.
    IF coalesce(current_setting('ferry.notify', true), '') <> 'off' THEN
        PERFORM pg_notify('ferry_events', '');
    END IF;
    RETURN NULL;
END $$;
"#,
];

/// How many transactions are in flight (inserted events, not ended) and the age of the oldest.
pub(super) fn in_flight_transactions_sql() -> String {
    format!(
        "SELECT count(*), (extract(epoch FROM now() - min(a.xact_start)) * 1000)::bigint
         FROM pg_locks AS l LEFT JOIN pg_stat_activity AS a ON a.pid = l.pid
         WHERE l.locktype = 'advisory' AND l.objsubid = 2
           AND l.classid::bigint BETWEEN {IN_FLIGHT_LOCK} AND {IN_FLIGHT_LOCK} + 65535
           AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    )
}

pub(super) const COLUMNS: &str = r#"id, event_type, camera_id, "timestamp", frame_number, snapshot_path, event_data, created_at"#;

/// One relay claim, sent as one simple query (one round trip):
///
/// 1. open the transaction; its commit (marking events published) need not wait for the disk:
///    if a server crash loses it, the events are published again, which at-least-once allows;
/// 2. compute the horizon (`ferry_events_horizon()`): every queued id below it is final;
/// 3. in a new statement — so with a snapshot taken after the horizon, which sees every
///    committed event below it — take the cameras of the oldest `limit` queued events below
///    the horizon and lock those no other relay holds (never waiting), remembering them in a
///    transaction-local setting;
/// 4. in a new statement — so with a snapshot taken after the locks, which sees everything the
///    previous holder of a camera marked published — read those cameras' queued events below
///    the horizon in id order: the outbox id and the event as JSON (NULL if it was deleted
///    meanwhile), looked up by primary key per row so the plan stays cheap however stale the
///    outbox's statistics;
/// 5. whether queued events wait at or above the horizon (a transaction in flight holds them
///    back), as `held`, `1|0`.
pub(super) fn claim_sql(limit: i64) -> String {
    format!(
        r#"BEGIN;
SET LOCAL synchronous_commit = off;
SELECT set_config('ferry.relay_horizon', ferry_events_horizon()::text, true);
SELECT set_config('ferry.relay_cameras', coalesce(json_agg(c.camera_id)::text, '[]'), true)
    FROM (SELECT DISTINCT camera_id FROM
          (SELECT camera_id FROM events_pending
           WHERE event_id < current_setting('ferry.relay_horizon')::bigint
           ORDER BY event_id LIMIT {limit}) AS t) AS c
    WHERE pg_try_advisory_xact_lock({RELAY_LOCK}, hashtext(c.camera_id));
SELECT o.event_id, (SELECT json_build_object(
            'id', e.id, 'event_type', e.event_type, 'camera_id', e.camera_id,
            'timestamp', e."timestamp", 'frame_number', e.frame_number,
            'snapshot_path', e.snapshot_path, 'event_data', e.event_data,
            'created_at', e.created_at)::text
        FROM events AS e WHERE e.id = o.event_id)
    FROM events_pending AS o
    WHERE o.camera_id IN
          (SELECT json_array_elements_text(current_setting('ferry.relay_cameras')::json))
      AND o.event_id < current_setting('ferry.relay_horizon')::bigint
    ORDER BY o.event_id LIMIT {limit};
SELECT 'held', count(*)::text, current_setting('ferry.relay_horizon') FROM
    (SELECT 1 FROM events_pending
     WHERE event_id >= current_setting('ferry.relay_horizon')::bigint LIMIT 1) AS h;"#
    )
}

pub(super) const INSERT_BATCH: &str = r#"INSERT INTO events
        (event_type, camera_id, "timestamp", frame_number, snapshot_path, event_data, source_key)
    SELECT t, c, coalesce(ts, now()), f, s, d, k
    FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::int8[], $5::text[], $6::jsonb[], $7::text[])
        WITH ORDINALITY AS u(t, c, ts, f, s, d, k, n)
    ORDER BY n
    ON CONFLICT (source_key) DO NOTHING
    RETURNING id, source_key"#;
