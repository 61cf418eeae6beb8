//! PostgreSQL: the tier job's event store ([`PostgresEventStore`]) and the events job's log
//! with its outbox ([`EventLog`]).

pub mod events;
mod tier;

pub use events::{EventLog, EventLogError, EventQuery, EventStats, OutboxBatch};
pub use tier::PostgresEventStore;
