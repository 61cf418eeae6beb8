//! Milvus URLs (`milvus://[user:password@]host[:port][/database]`, also `http://` and
//! `https://`) and collection names.

use ferry_core::jobs::vectors::{VectorError, VectorResult};

/// Milvus' default gRPC port.
pub const DEFAULT_PORT: u16 = 19530;

/// What a Milvus URL says: where the server is, who connects and to which database.
#[derive(Clone, PartialEq, Eq)]
pub struct MilvusAddress {
    /// The URI the SDK connects to: `http://host:port` (or `https://` for TLS).
    pub endpoint: String,
    /// `host:port`, for messages (never a password).
    pub shown: String,
    /// User and password, when the URL has them.
    pub credentials: Option<(String, String)>,
    /// The database (`None`: Milvus' `default`).
    pub database: Option<String>,
}

impl std::fmt::Debug for MilvusAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MilvusAddress")
            .field("endpoint", &self.endpoint)
            .field("user", &self.credentials.as_ref().map(|(u, _)| u))
            .field("database", &self.database)
            .finish()
    }
}

fn bad_url(url: &str, reason: &str) -> VectorError {
    VectorError::Config(format!(
        "bad Milvus URL `{}`: {reason}; write milvus://[user:password@]host:port[/database]",
        ferry_core::secret::redact(url)
    ))
}

impl MilvusAddress {
    /// Parses `url`.
    pub fn parse(url: &str) -> VectorResult<Self> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| bad_url(url, "no scheme"))?;
        let tls = match scheme.to_ascii_lowercase().as_str() {
            "milvus" | "http" => false,
            "https" => true,
            other => return Err(bad_url(url, &format!("unknown scheme `{other}`"))),
        };
        // Parsed under the `milvus` scheme so that an explicit :80 or :443 is kept (the URL
        // parser drops the default port of `http` and `https`).
        let parsed = url::Url::parse(&format!("milvus://{rest}"))
            .map_err(|e| bad_url(url, &e.to_string()))?;
        let host = parsed
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad_url(url, "no host"))?;
        let port = parsed.port().unwrap_or(DEFAULT_PORT);
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(bad_url(
                url,
                "query strings and fragments are not understood",
            ));
        }
        let database = match parsed.path().trim_matches('/') {
            "" => None,
            db if db.contains('/') => return Err(bad_url(url, "the path is one database name")),
            db => Some(decode(db).ok_or_else(|| bad_url(url, "the database is not UTF-8"))?),
        };
        let credentials = match (parsed.username(), parsed.password()) {
            ("", None) => None,
            (user, password) => {
                let user = decode(user).ok_or_else(|| bad_url(url, "the user is not UTF-8"))?;
                let password = decode(password.unwrap_or(""))
                    .ok_or_else(|| bad_url(url, "the password is not UTF-8"))?;
                Some((user, password))
            }
        };
        let shown = format!("{host}:{port}");
        let scheme = if tls { "https" } else { "http" };
        Ok(MilvusAddress {
            endpoint: format!("{scheme}://{shown}"),
            shown,
            credentials,
            database,
        })
    }
}

/// Percent-decodes a URL part (`None` when the bytes are not UTF-8).
fn decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// Checks a collection name as Milvus does: a letter or `_` first, then letters, digits and
/// `_`, at most 255 of them.
pub fn check_collection_name(name: &str) -> VectorResult<()> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if first_ok && rest_ok && name.len() <= 255 {
        return Ok(());
    }
    Err(VectorError::Config(format!(
        "`{name}` is not a Milvus collection name: use a letter or `_` first, then letters, digits or `_` (at most 255)"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milvus_and_http_urls_parse_with_credentials_and_database() {
        let a = MilvusAddress::parse("milvus://root:p%40ss%3Aw@db.local:19531/shop").unwrap();
        assert_eq!(a.endpoint, "http://db.local:19531");
        assert_eq!(a.shown, "db.local:19531");
        assert_eq!(
            a.credentials,
            Some(("root".to_string(), "p@ss:w".to_string()))
        );
        assert_eq!(a.database.as_deref(), Some("shop"));
        assert!(!format!("{a:?}").contains("p@ss"));

        let b = MilvusAddress::parse("http://127.0.0.1").unwrap();
        assert_eq!(b.endpoint, "http://127.0.0.1:19530");
        assert_eq!((b.credentials, b.database), (None, None));
        let c = MilvusAddress::parse("https://milvus.example:443/").unwrap();
        assert_eq!(c.endpoint, "https://milvus.example:443");
        let d = MilvusAddress::parse("HTTP://[::1]:80").unwrap();
        assert_eq!(d.endpoint, "http://[::1]:80");
    }

    #[test]
    fn bad_urls_are_config_errors_without_the_password() {
        for url in [
            "redis://u:secret@h:1",
            "milvus://u:secret@:1",
            "milvus:///x",
            "milvus://u:secret@h:1/a/b",
            "milvus://h:1?x=1",
            "not a url",
        ] {
            match MilvusAddress::parse(url) {
                Err(VectorError::Config(m)) => assert!(!m.contains("secret"), "{m}"),
                other => panic!("{url}: {other:?}"),
            }
        }
    }

    #[test]
    fn percent_decoding_keeps_lone_percents() {
        assert_eq!(decode("a%20b").as_deref(), Some("a b"));
        assert_eq!(decode("100%").as_deref(), Some("100%"));
        assert_eq!(decode("%zz%4").as_deref(), Some("%zz%4"));
        assert_eq!(decode("%ff"), None);
    }

    #[test]
    fn collection_names_follow_milvus_rules() {
        for ok in ["items", "_x", "Items_2024"] {
            assert!(check_collection_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "2x", "a-b", "a b", "é", &"a".repeat(256)] {
            assert!(check_collection_name(bad).is_err(), "{bad}");
        }
    }
}
