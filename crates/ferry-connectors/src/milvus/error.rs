//! SDK errors as [`VectorError`]s.

use ferry_core::jobs::vectors::VectorError;
use milvus::v2::error::Error as SdkError;

/// gRPC status codes (a wire standard) that mean the server could not be reached or did not
/// answer in time: CANCELLED, UNKNOWN (transport), DEADLINE_EXCEEDED, UNAVAILABLE.
const UNREACHABLE_CODES: [i32; 4] = [1, 2, 4, 14];
/// PERMISSION_DENIED, UNAUTHENTICATED.
const AUTH_CODES: [i32; 2] = [7, 16];

/// Where an operation went: the server (no password) and the collection.
#[derive(Debug, Clone)]
pub struct Place {
    /// `host:port`.
    pub server: String,
    /// The collection.
    pub collection: String,
}

impl Place {
    /// `Milvus at host:port`.
    pub fn store(&self) -> String {
        format!("Milvus at {}", self.server)
    }

    /// A failed `op` on the collection.
    pub fn backend(&self, op: &str, message: impl std::fmt::Display) -> VectorError {
        VectorError::Backend {
            store: self.store(),
            message: format!("{op} on collection `{}`: {message}", self.collection),
        }
    }

    /// The server could not be reached during `op`.
    pub fn unreachable(&self, op: &str, message: impl std::fmt::Display) -> VectorError {
        VectorError::Unreachable {
            store: self.store(),
            message: format!(
                "{op}: {message}; check that Milvus runs there and that the host and port are right"
            ),
        }
    }

    /// Maps an SDK error of `op`.
    pub fn sdk(&self, op: &str, e: SdkError) -> VectorError {
        match class(&e) {
            Class::Unreachable => self.unreachable(op, &e),
            Class::Auth => VectorError::Config(format!(
                "{} refused the credentials ({e}): check the user and password in the URL",
                self.store()
            )),
            Class::Other => self.backend(op, &e),
        }
    }
}

enum Class {
    Unreachable,
    Auth,
    Other,
}

fn class(e: &SdkError) -> Class {
    match e {
        SdkError::Grpc(status) => {
            let code = status.code() as i32;
            if UNREACHABLE_CODES.contains(&code) {
                Class::Unreachable
            } else if AUTH_CODES.contains(&code) {
                Class::Auth
            } else {
                Class::Other
            }
        }
        SdkError::Timeout(_) => Class::Unreachable,
        SdkError::RetryExhausted { source, .. } => class(source),
        _ => Class::Other,
    }
}

/// Milvus' error code for a collection that is not loaded (released, or after a restart).
const NOT_LOADED: i32 = 101;

/// Whether `e` says the collection must be loaded first.
pub fn is_not_loaded(e: &SdkError) -> bool {
    match e {
        SdkError::Server(s) => {
            s.code() == NOT_LOADED || s.reason().to_ascii_lowercase().contains("not loaded")
        }
        _ => false,
    }
}

/// Milvus' error code for a missing index, and the older `IndexNotExist` code.
const INDEX_NOT_FOUND: i32 = 700;
const LEGACY_INDEX_NOT_EXIST: i32 = 25;

/// Whether `e` says the field has no index.
pub fn is_index_missing(e: &SdkError) -> bool {
    match e {
        SdkError::Server(s) => {
            s.code() == INDEX_NOT_FOUND
                || s.legacy_code() == LEGACY_INDEX_NOT_EXIST
                || s.reason().to_ascii_lowercase().contains("index not")
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place() -> Place {
        Place {
            server: "db:19530".into(),
            collection: "items".into(),
        }
    }

    #[test]
    fn timeouts_are_unreachable_and_name_the_server() {
        let e = place().sdk("upserting", SdkError::Timeout("connecting".into()));
        match &e {
            VectorError::Unreachable { store, message } => {
                assert_eq!(store, "Milvus at db:19530");
                assert!(message.starts_with("upserting: "), "{message}");
            }
            other => panic!("{other:?}"),
        }
        let nested = SdkError::RetryExhausted {
            attempts: 3,
            source: Box::new(SdkError::Timeout("x".into())),
        };
        assert!(matches!(
            place().sdk("reading", nested),
            VectorError::Unreachable { .. }
        ));
    }

    #[test]
    fn other_failures_are_backend_errors_naming_the_collection() {
        let e = place().sdk("reading", SdkError::Unexpected("boom".into()));
        match e {
            VectorError::Backend { store, message } => {
                assert_eq!(store, "Milvus at db:19530");
                assert_eq!(message, "reading on collection `items`: boom");
            }
            other => panic!("{other:?}"),
        }
        assert!(!is_not_loaded(&SdkError::Unexpected("x".into())));
        assert!(!is_index_missing(&SdkError::Unexpected("x".into())));
    }
}
