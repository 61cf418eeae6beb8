use ferry_core::error::{Classify, ErrorClass};

/// Errors connecting to or talking with a Redis endpoint.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    /// The URL cannot be used.
    #[error("invalid Redis URL `{url}`: {reason}")]
    Url {
        /// The URL, with any password redacted.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The server could not be reached.
    #[error(
        "cannot connect to Redis at {endpoint}: {source}; check that the server runs and the host and port are right"
    )]
    Connect {
        /// The endpoint, password redacted.
        endpoint: String,
        /// The cause.
        source: redis::RedisError,
    },
    /// The server refused the credentials.
    #[error(
        "Redis at {endpoint} refused the credentials ({detail}); pass the right user and password in the URL or in FERRY_SOURCE_PASSWORD / FERRY_TARGET_PASSWORD"
    )]
    Auth {
        /// The endpoint, password redacted.
        endpoint: String,
        /// The server's message.
        detail: String,
    },
    /// A command failed on the connection level (I/O, timeout, protocol).
    #[error("Redis at {endpoint}: {source}")]
    Command {
        /// The endpoint, password redacted.
        endpoint: String,
        /// The cause.
        source: redis::RedisError,
    },
    /// The cluster reported something Ferry cannot use.
    #[error("Redis Cluster at {endpoint}: {reason}")]
    Cluster {
        /// The endpoint, password redacted.
        endpoint: String,
        /// What is wrong.
        reason: String,
    },
}

impl Classify for ConnError {
    fn class(&self) -> ErrorClass {
        match self {
            ConnError::Url { .. } | ConnError::Auth { .. } => ErrorClass::User,
            ConnError::Connect { .. } | ConnError::Command { .. } | ConnError::Cluster { .. } => {
                ErrorClass::External
            }
        }
    }
}

/// Whether `e` says the server could not be reached or did not answer (I/O, refused or dropped
/// connection, timeout), as opposed to a command it answered with an error.
pub fn is_unreachable(e: &redis::RedisError) -> bool {
    e.is_io_error() || e.is_connection_refusal() || e.is_connection_dropped() || e.is_timeout()
}

/// Whether retrying `e` later may succeed: the server was unreachable, or said it is busy for
/// now (loading its data, running a script, a slot migrating, no master).
pub fn is_transient(e: &redis::RedisError) -> bool {
    is_unreachable(e)
        || matches!(
            e.code(),
            Some("LOADING" | "BUSY" | "TRYAGAIN" | "MASTERDOWN")
        )
}

/// Whether a server error means the credentials are missing or wrong.
pub(crate) fn is_auth_error(e: &redis::RedisError) -> bool {
    if e.kind() == redis::ErrorKind::AuthenticationFailed {
        return true;
    }
    let code = e.code().unwrap_or_default();
    matches!(code, "WRONGPASS" | "NOAUTH" | "NOPERM")
        || e.to_string().contains("WRONGPASS")
        || e.to_string().contains("NOAUTH")
}
