use redis::{ConnectionInfo, IntoConnectionInfo};

use super::ConnError;

/// A parsed Redis URL: `redis://`, `rediss://` or `redis+cluster://` (`rediss+cluster://`),
/// with optional `user:password@` and `/db`.
#[derive(Debug, Clone)]
pub struct RedisUrl {
    /// Connection settings of the first (or only) node.
    pub info: ConnectionInfo,
    /// Whether the URL names a Redis Cluster.
    pub cluster: bool,
    /// The URL with the password replaced by `***`, for logs and reports.
    pub redacted: String,
}

impl RedisUrl {
    /// Parses `url`; `password`, when given, replaces the URL's password (e.g. from
    /// `FERRY_SOURCE_PASSWORD`), so secrets need not appear on command lines.
    pub fn parse(url: &str, password: Option<&str>) -> Result<Self, ConnError> {
        let redacted = redact(url);
        let bad = |reason: String| ConnError::Url {
            url: redacted.clone(),
            reason,
        };
        let (cluster, plain) = if let Some(rest) = url.strip_prefix("redis+cluster://") {
            (true, format!("redis://{rest}"))
        } else if let Some(rest) = url.strip_prefix("rediss+cluster://") {
            (true, format!("rediss://{rest}"))
        } else if url.starts_with("redis://") || url.starts_with("rediss://") {
            (false, url.to_string())
        } else {
            return Err(bad(
                "expected a redis://, rediss:// or redis+cluster:// URL".to_string(),
            ));
        };
        if plain.starts_with("rediss://") && !cfg!(feature = "tls") {
            return Err(bad(
                "TLS (rediss://) needs a ferry built with the `tls` feature of ferry-connectors"
                    .to_string(),
            ));
        }
        let mut info = plain
            .as_str()
            .into_connection_info()
            .map_err(|e| bad(e.to_string()))?;
        if cluster && info.redis_settings().db() != 0 {
            return Err(bad("Redis Cluster has only database 0".to_string()));
        }
        if let Some(pw) = password.filter(|p| !p.is_empty()) {
            let settings = info.redis_settings().clone().set_password(pw);
            info = info.set_redis_settings(settings);
        }
        Ok(Self {
            info,
            cluster,
            redacted,
        })
    }

    /// The database number.
    pub fn db(&self) -> i64 {
        self.info.redis_settings().db()
    }
}

/// `url` with its password replaced by `***` (never the raw string: see
/// [`ferry_core::secret::redact`]).
pub fn redact(url: &str) -> String {
    ferry_core::secret::redact(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cluster_and_redacts_password() {
        let u = RedisUrl::parse("redis+cluster://u:secret@127.0.0.1:7000", None).unwrap();
        assert!(u.cluster);
        assert!(!u.redacted.contains("secret"), "{}", u.redacted);
        assert_eq!(u.info.redis_settings().password(), Some("secret"));
        let u = RedisUrl::parse("redis://127.0.0.1:6379/3", Some("pw")).unwrap();
        assert!(!u.cluster);
        assert_eq!(u.db(), 3);
        assert_eq!(u.info.redis_settings().password(), Some("pw"));
    }

    #[test]
    fn rejects_unknown_schemes_with_a_clear_message() {
        let e = RedisUrl::parse("http://x:1", None).unwrap_err().to_string();
        assert!(e.contains("redis://"), "{e}");
        let e = RedisUrl::parse("redis+cluster://h:1/2", None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("database 0"), "{e}");
    }
}
