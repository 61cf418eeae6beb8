//! PostgreSQL: the tier job's event store ([`PostgresEventStore`]) and the events job's log
//! with its outbox ([`EventLog`]), the vectors job's table source ([`vectors::PgVectorSource`]), and
//! the agentdb job's tables and loader ([`agentdb`]).

pub mod agentdb;
pub mod events;
mod tier;
pub mod vectors;

pub use events::{EventLog, EventLogError, EventQuery, EventStats, OutboxBatch, Published};
pub use tier::PostgresEventStore;

use std::path::{Path, PathBuf};

use postgres_native_tls::MakeTlsConnector;
use tokio_postgres::config::SslMode;
use tokio_postgres::tls::MakeTlsConnect;

use ferry_core::secret::{self, conninfo_pairs};

/// How a connection is protected: libpq's `sslmode` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// No TLS.
    Disable,
    /// TLS when the server offers it, without verifying its certificate (libpq's default;
    /// `allow` is read as this too).
    Prefer,
    /// TLS or no connection; the certificate is not verified unless `sslrootcert` is given
    /// (then as `verify-ca`, as libpq does).
    Require,
    /// TLS, with a certificate signed by `sslrootcert` (or a system root).
    VerifyCa,
    /// As `verify-ca`, and the certificate names the host connected to.
    VerifyFull,
}

impl TlsMode {
    fn parse(value: &str) -> Result<Self, String> {
        Ok(match value {
            "disable" => TlsMode::Disable,
            "allow" | "prefer" => TlsMode::Prefer,
            "require" => TlsMode::Require,
            "verify-ca" => TlsMode::VerifyCa,
            "verify-full" => TlsMode::VerifyFull,
            other => {
                return Err(format!(
                    "sslmode={other} is not one of disable, allow, prefer, require, verify-ca, verify-full"
                ));
            }
        })
    }

    /// libpq's name of the mode.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsMode::Disable => "disable",
            TlsMode::Prefer => "prefer",
            TlsMode::Require => "require",
            TlsMode::VerifyCa => "verify-ca",
            TlsMode::VerifyFull => "verify-full",
        }
    }
}

/// The TLS connector of a PostgreSQL connection, built from the URL's `ssl*` parameters by
/// [`connect_config`]; usable wherever `tokio_postgres::NoTls` was.
#[derive(Clone)]
pub struct PgTls {
    inner: MakeTlsConnector,
    mode: TlsMode,
}

impl PgTls {
    /// The `sslmode` it was built for.
    pub fn mode(&self) -> TlsMode {
        self.mode
    }
}

impl std::fmt::Debug for PgTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgTls").field("mode", &self.mode).finish()
    }
}

impl<S> MakeTlsConnect<S> for PgTls
where
    MakeTlsConnector: MakeTlsConnect<S>,
{
    type Stream = <MakeTlsConnector as MakeTlsConnect<S>>::Stream;
    type TlsConnect = <MakeTlsConnector as MakeTlsConnect<S>>::TlsConnect;
    type Error = <MakeTlsConnector as MakeTlsConnect<S>>::Error;

    fn make_tls_connect(&mut self, domain: &str) -> Result<Self::TlsConnect, Self::Error> {
        self.inner.make_tls_connect(domain)
    }
}

/// A PostgreSQL URL or `key=value` string that cannot be used. The message never holds the
/// password.
#[derive(Debug, thiserror::Error)]
#[error("PostgreSQL connection string {url}: {message}")]
pub struct PgConfigError {
    /// The string, redacted.
    pub url: String,
    /// What is wrong and what to do.
    pub message: String,
}

/// The TLS parameters of a connection string, taken out of it.
#[derive(Debug, Default)]
struct TlsParams {
    mode: Option<String>,
    root_cert: Option<String>,
    cert: Option<String>,
    key: Option<String>,
}

impl TlsParams {
    /// Takes `key=value` when it is a TLS parameter this module handles.
    fn take(&mut self, key: &str, value: String) -> bool {
        let slot = match key {
            "sslmode" => &mut self.mode,
            "sslrootcert" => &mut self.root_cert,
            "sslcert" => &mut self.cert,
            "sslkey" => &mut self.key,
            _ => return false,
        };
        *slot = Some(value);
        true
    }
}

/// Percent-decodes a URL query value.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(v) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Splits the TLS parameters off `url`: what is left is for `tokio_postgres::Config`.
fn split_tls(url: &str) -> (String, TlsParams) {
    let mut tls = TlsParams::default();
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        // The query starts at the first `?` after the user part (whose password may hold one):
        // after the last `@` that is followed by a host and path (no `=` before the next `?`).
        let from = url
            .match_indices('@')
            .map(|(at, _)| at)
            .rev()
            .find(|&at| !url[at..].split('?').next().unwrap_or("").contains('='))
            .unwrap_or(0);
        let Some(q) = url[from..].find('?').map(|q| from + q) else {
            return (url.to_string(), tls);
        };
        let kept: Vec<&str> = url[q + 1..]
            .split('&')
            .filter(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                !tls.take(k, percent_decode(v))
            })
            .collect();
        let mut rest = url[..q].to_string();
        if !kept.is_empty() {
            rest.push('?');
            rest.push_str(&kept.join("&"));
        }
        return (rest, tls);
    }
    match conninfo_pairs(url) {
        Some(pairs) => {
            let kept: Vec<&str> = pairs
                .into_iter()
                .filter_map(|p| (!tls.take(&p.key, p.value)).then(|| &url[p.span]))
                .collect();
            (kept.join(" "), tls)
        }
        None => (url.to_string(), tls),
    }
}

/// Every certificate of a PEM file.
fn read_certs(path: &Path) -> Result<Vec<native_tls::Certificate>, String> {
    let pem = std::fs::read(path)
        .map_err(|e| format!("cannot read sslrootcert {}: {e}", path.display()))?;
    let text = String::from_utf8_lossy(&pem);
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut certs = Vec::new();
    let mut rest = text.as_ref();
    while let Some(start) = rest.find(BEGIN) {
        let Some(len) = rest[start..].find(END) else {
            break;
        };
        let block = &rest[start..start + len + END.len()];
        certs.push(
            native_tls::Certificate::from_pem(block.as_bytes()).map_err(|e| {
                format!("sslrootcert {}: not a PEM certificate: {e}", path.display())
            })?,
        );
        rest = &rest[start + len + END.len()..];
    }
    if certs.is_empty() {
        return Err(format!(
            "sslrootcert {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        ));
    }
    Ok(certs)
}

/// The client certificate and key (`sslcert`, `sslkey`; PEM, the key in PKCS#8).
fn read_identity(cert: &Path, key: &Path) -> Result<native_tls::Identity, String> {
    let read = |p: &Path, what: &str| {
        std::fs::read(p).map_err(|e| format!("cannot read {what} {}: {e}", p.display()))
    };
    native_tls::Identity::from_pkcs8(&read(cert, "sslcert")?, &read(key, "sslkey")?).map_err(
        |e| {
            format!(
                "sslcert {} / sslkey {}: {e}; both must be PEM, the key PKCS#8 (`openssl pkcs8 -topk8 -nocrypt -in KEY -out KEY.pk8`)",
                cert.display(),
                key.display()
            )
        },
    )
}

/// Turns a PostgreSQL URL (`postgres://…?sslmode=verify-full&sslrootcert=ca.pem`) or libpq
/// `key=value` string into the `tokio_postgres` settings and the TLS connector to open every
/// connection with: the one place Ferry reads `sslmode`. It is libpq's: `disable`; `prefer`
/// (the default) and `require` encrypt without verifying the server (unless `sslrootcert` is
/// given with `require`: then as `verify-ca`); `verify-ca` checks the certificate against
/// `sslrootcert` (or the system's roots when it is absent or `system`); `verify-full` also
/// checks that it names the host. `sslcert` and `sslkey` give a client certificate.
pub fn connect_config(url: &str) -> Result<(tokio_postgres::Config, PgTls), PgConfigError> {
    let bad = |message: String| PgConfigError {
        url: secret::redact(url),
        message,
    };
    let (rest, params) = split_tls(url);
    let mut config: tokio_postgres::Config = rest.parse().map_err(|e: tokio_postgres::Error| {
        bad(format!(
            "{e}; expected postgres://user[:password]@host[:port]/db[?sslmode=…] or host=… dbname=…"
        ))
    })?;
    let mut mode = match &params.mode {
        Some(m) => TlsMode::parse(m).map_err(bad)?,
        None => TlsMode::Prefer,
    };
    let root = params
        .root_cert
        .filter(|r| !r.is_empty() && r != "system")
        .map(PathBuf::from);
    if mode == TlsMode::Require && root.is_some() {
        mode = TlsMode::VerifyCa;
    }
    let mut builder = native_tls::TlsConnector::builder();
    match mode {
        TlsMode::Disable | TlsMode::Prefer | TlsMode::Require => {
            builder
                .danger_accept_invalid_certs(true)
                .danger_accept_invalid_hostnames(true);
        }
        TlsMode::VerifyCa | TlsMode::VerifyFull => {
            if let Some(root) = &root {
                builder.disable_built_in_roots(true);
                for cert in read_certs(root).map_err(bad)? {
                    builder.add_root_certificate(cert);
                }
            }
            builder.danger_accept_invalid_hostnames(mode == TlsMode::VerifyCa);
        }
    }
    match (&params.cert, &params.key) {
        (Some(cert), Some(key)) => {
            builder.identity(read_identity(Path::new(cert), Path::new(key)).map_err(bad)?);
        }
        (None, None) => {}
        _ => return Err(bad("sslcert and sslkey must be given together".into())),
    }
    let connector = builder
        .build()
        .map_err(|e| bad(format!("cannot set up TLS: {e}")))?;
    config.ssl_mode(match mode {
        TlsMode::Disable => SslMode::Disable,
        TlsMode::Prefer => SslMode::Prefer,
        _ => SslMode::Require,
    });
    Ok((
        config,
        PgTls {
            inner: MakeTlsConnector::new(connector),
            mode,
        },
    ))
}

/// What to check when a connection failed in its TLS handshake, for error messages (empty for
/// other failures).
pub fn tls_hint(error: &str) -> &'static str {
    if error.contains("TLS") || error.contains("certificate") || error.contains("SSL") {
        "; check sslmode, that sslrootcert holds the CA that signed the server's certificate and (verify-full) that the certificate names the host in the URL"
    } else {
        ""
    }
}

#[cfg(test)]
mod tls_tests {
    use super::*;

    #[test]
    fn tls_parameters_are_taken_out_of_urls_and_key_value_strings() {
        let (rest, p) = split_tls(
            "postgres://u:p?w@h:5/db?application_name=x&sslmode=verify-full&sslrootcert=%2Ftmp%2Fca.pem",
        );
        assert_eq!(rest, "postgres://u:p?w@h:5/db?application_name=x");
        assert_eq!(p.mode.as_deref(), Some("verify-full"));
        assert_eq!(p.root_cert.as_deref(), Some("/tmp/ca.pem"));
        let (rest, p) = split_tls("postgres://u@h/db?application_name=a@b&sslmode=verify-ca");
        assert_eq!(rest, "postgres://u@h/db?application_name=a@b");
        assert_eq!(p.mode.as_deref(), Some("verify-ca"));
        let (rest, p) =
            split_tls("host=h password='a b' sslmode=require sslrootcert='/x y/ca.pem' dbname=d");
        assert_eq!(rest, "host=h password='a b' dbname=d");
        assert_eq!(p.mode.as_deref(), Some("require"));
        assert_eq!(p.root_cert.as_deref(), Some("/x y/ca.pem"));
    }

    #[test]
    fn modes_map_to_tokio_postgres_and_bad_ones_are_refused() {
        for (url, mode, ssl) in [
            ("postgres://h/db", TlsMode::Prefer, SslMode::Prefer),
            (
                "postgres://h/db?sslmode=disable",
                TlsMode::Disable,
                SslMode::Disable,
            ),
            (
                "postgres://h/db?sslmode=require",
                TlsMode::Require,
                SslMode::Require,
            ),
            (
                "host=h sslmode=verify-full",
                TlsMode::VerifyFull,
                SslMode::Require,
            ),
            (
                "host=h sslmode=verify-ca",
                TlsMode::VerifyCa,
                SslMode::Require,
            ),
        ] {
            let (config, tls) = connect_config(url).unwrap();
            assert_eq!(tls.mode(), mode, "{url}");
            assert_eq!(config.get_ssl_mode(), ssl, "{url}");
        }
        let e = connect_config("postgres://u:hunter2@h/db?sslmode=sometimes")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("sslmode=sometimes") && !e.contains("hunter2"),
            "{e}"
        );
        let e = connect_config(
            "postgres://u:hunter2@h/db?sslmode=verify-full&sslrootcert=/no/such.pem",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("/no/such.pem") && !e.contains("hunter2"), "{e}");
        let e = connect_config("host=h password=hunter2 sslcert=/c.pem")
            .unwrap_err()
            .to_string();
        assert!(e.contains("sslkey") && !e.contains("hunter2"), "{e}");
    }
}

/// A server error's own code, message and detail: says far more than "db error".
fn db_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => match db.detail() {
            Some(detail) => format!("{}: {} ({detail})", db.code().code(), db.message()),
            None => format!("{}: {}", db.code().code(), db.message()),
        },
        None => e.to_string(),
    }
}

/// The advisory lock taken before `ferry_schema` is created ("ferrysch").
const SCHEMA_TABLE_LOCK: i64 = 0x6665_7272_7973_6368;

/// One component's schema, versioned in the table `ferry_schema`: its migrations are applied in
/// order and its version is their count.
struct VersionedSchema {
    /// The row of `ferry_schema` (`tier`, `events`).
    component: &'static str,
    /// The advisory lock that serialises concurrent migrations of this component.
    lock: i64,
    /// The migrations, oldest first.
    migrations: &'static [&'static str],
    /// A table that must not exist yet when the component has no version (Ferry did not
    /// create it, so it is not Ferry's to change).
    first_table: Option<&'static str>,
}

/// Why a schema could not be brought up to date.
#[derive(Debug)]
enum MigrateError {
    /// A statement failed.
    Db(tokio_postgres::Error),
    /// The recorded version is one this Ferry does not know (a newer Ferry wrote it).
    UnknownVersion(i64),
    /// [`VersionedSchema::first_table`] exists although the component has no version.
    ForeignTable(&'static str),
}

impl From<tokio_postgres::Error> for MigrateError {
    fn from(e: tokio_postgres::Error) -> Self {
        MigrateError::Db(e)
    }
}

impl VersionedSchema {
    /// Brings the schema up to date inside `tx` (under the advisory lock); the caller commits.
    async fn apply(&self, tx: &tokio_postgres::Transaction<'_>) -> Result<(), MigrateError> {
        // `ferry_schema` is shared by every component: two components creating it at once on a
        // new database would collide (`CREATE TABLE IF NOT EXISTS` is not safe concurrently),
        // so its creation is serialised by a lock of its own.
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_TABLE_LOCK])
            .await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&self.lock])
            .await?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS ferry_schema (component text PRIMARY KEY, version bigint NOT NULL)",
        )
        .await?;
        let version: i64 = tx
            .query_opt(
                "SELECT version FROM ferry_schema WHERE component = $1",
                &[&self.component],
            )
            .await?
            .map_or(0, |r| r.get(0));
        if version < 0 || version as usize > self.migrations.len() {
            return Err(MigrateError::UnknownVersion(version));
        }
        if version == 0
            && let Some(table) = self.first_table
        {
            let taken = tx
                .query_opt("SELECT to_regclass($1)::text", &[&table])
                .await?
                .and_then(|r| r.get::<_, Option<String>>(0));
            if taken.is_some() {
                return Err(MigrateError::ForeignTable(table));
            }
        }
        for sql in &self.migrations[version as usize..] {
            tx.batch_execute(sql).await?;
        }
        tx.execute(
            "INSERT INTO ferry_schema (component, version) VALUES ($1, $2)
             ON CONFLICT (component) DO UPDATE SET version = EXCLUDED.version",
            &[&self.component, &(self.migrations.len() as i64)],
        )
        .await?;
        Ok(())
    }
}
