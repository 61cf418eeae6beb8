//! What can go wrong with the event log ([`EventLogError`]), and how a PostgreSQL error is
//! told apart: the server unreachable, a statement failing, or the data refused.

use ferry_core::error::{Classify, ErrorClass};
use ferry_core::jobs::events::InvalidEvent;

use super::EventLog;
use crate::postgres::db_message;

/// What went wrong with the event log.
#[derive(Debug, thiserror::Error)]
pub enum EventLogError {
    /// PostgreSQL cannot be reached or the connection broke.
    #[error(
        "PostgreSQL at {url} is unavailable: {message}; is it running (`make test-setup` starts a local one)?"
    )]
    Unavailable {
        /// The server, password redacted.
        url: String,
        /// The cause.
        message: String,
    },
    /// A statement failed.
    #[error("PostgreSQL: {0}")]
    Backend(String),
    /// PostgreSQL refused the data itself (SQLSTATE classes 22 data exception, 23 integrity
    /// constraint violation, 54 program limit exceeded, P0 a PL/pgSQL `RAISE`, e.g. an
    /// application's validation trigger): the same data fails again, so it is
    /// never retried as if the server were unavailable.
    #[error("PostgreSQL refused the data: {message}")]
    Refused {
        /// The SQLSTATE code (`22021`, `23514`, …).
        sqlstate: String,
        /// The server's message (with the code and detail).
        message: String,
    },
    /// The schema is newer than this Ferry, or not Ferry's.
    #[error("{0}")]
    Schema(String),
    /// An event was refused; nothing of its batch was stored.
    #[error("event {index}: {source}")]
    Invalid {
        /// Position in the batch.
        index: usize,
        /// What is wrong.
        source: InvalidEvent,
    },
    /// The URL is not a PostgreSQL URL.
    #[error(
        "invalid PostgreSQL URL {url}: {message} (expected postgres://user[:password]@host:port/db)"
    )]
    Url {
        /// The URL, password redacted.
        url: String,
        /// What is wrong.
        message: String,
    },
}

impl Classify for EventLogError {
    fn class(&self) -> ErrorClass {
        match self {
            EventLogError::Unavailable { .. } | EventLogError::Backend(_) => ErrorClass::External,
            EventLogError::Schema(_)
            | EventLogError::Invalid { .. }
            | EventLogError::Refused { .. }
            | EventLogError::Url { .. } => ErrorClass::User,
        }
    }
}

/// Result of the event log.
pub type EventLogResult<T> = Result<T, EventLogError>;

impl EventLog {
    /// The server cannot be reached, for `message`.
    pub(super) fn unavailable(&self, message: impl std::fmt::Display) -> EventLogError {
        EventLogError::Unavailable {
            url: self.shown.clone(),
            message: message.to_string(),
        }
    }

    /// A failed call as an [`EventLogError`]: the data refused, a statement failing, or the
    /// server unavailable.
    pub(super) fn error(&self, e: tokio_postgres::Error) -> EventLogError {
        if let Some(db) = e.as_db_error() {
            let sqlstate = db.code().code();
            // Data exceptions, integrity, program limits, and PL/pgSQL `RAISE` (an
            // application's own validation trigger refusing a row).
            if ["22", "23", "54", "P0"]
                .iter()
                .any(|class| sqlstate.starts_with(class))
            {
                return EventLogError::Refused {
                    sqlstate: sqlstate.to_string(),
                    message: db_message(&e),
                };
            }
            EventLogError::Backend(db_message(&e))
        } else {
            self.unavailable(e)
        }
    }
}
