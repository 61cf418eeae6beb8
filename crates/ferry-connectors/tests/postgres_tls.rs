//! PostgreSQL over TLS: every connection Ferry opens honours the URL's `sslmode`
//! (`connect_config`). Against the local server (`ssl = on`, Debian's snakeoil certificate) and
//! against a server this test starts with `initdb`/`pg_ctl` and a CA and certificate it
//! generates (that server refuses connections without TLS).

#![cfg(feature = "postgres")]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use ferry_connectors::postgres::{EventLog, PostgresEventStore, TlsMode, connect_config};
use ferry_core::jobs::events::NewEvent;
use ferry_core::jobs::tier::{CameraState, EntryId, EventStatus, EventStore, TierEvent, event_id};
use ferry_testkit::PgDatabase;
use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{BasicConstraints, KeyUsage, SubjectAlternativeName};
use openssl::x509::{X509, X509NameBuilder};

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// The local server of the project's machines (`FERRY_TEST_PG` overrides it).
fn local_server() -> String {
    std::env::var("FERRY_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// Whether the server behind `url` sees this connection encrypted (`pg_stat_ssl`).
async fn encrypted(url: &str) -> Result<bool, String> {
    let (config, tls) = connect_config(url).map_err(|e| e.to_string())?;
    let (client, connection) = config
        .connect(tls)
        .await
        .map_err(|e| match e.as_db_error() {
            Some(db) => format!("{e}: {}", db.message()),
            None => format!(
                "{e}{}",
                ferry_connectors::postgres::tls_hint(&e.to_string())
            ),
        })?;
    tokio::spawn(connection);
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(row.get(0))
}

fn with_query(server: &str, db: &str, query: &str) -> String {
    format!("{server}/{db}?{query}")
}

#[tokio::test]
async fn sslmode_require_encrypts_and_disable_does_not_on_the_local_server() {
    let server = local_server();
    let require = with_query(&server, "postgres", "sslmode=require");
    assert_eq!(
        encrypted(&require).await,
        Ok(true),
        "{require}: the local server has `ssl = on` (scripts/setup.sh)"
    );
    let disable = with_query(&server, "postgres", "sslmode=disable");
    assert_eq!(encrypted(&disable).await, Ok(false), "{disable}");
    // No sslmode: libpq's default, prefer, encrypts when the server offers TLS.
    assert_eq!(encrypted(&format!("{server}/postgres")).await, Ok(true));
    // The key=value form takes the same parameters.
    let u = url_parts(&server);
    let kv = format!(
        "host={} port={} user={} dbname=postgres sslmode=require",
        u.0, u.1, u.2
    );
    assert_eq!(encrypted(&kv).await, Ok(true), "{kv}");
    let kv = kv.replace("require", "disable");
    assert_eq!(encrypted(&kv).await, Ok(false), "{kv}");
    // The snakeoil certificate is self-signed for the machine's name: verify-full with the
    // system's roots refuses it.
    let err = encrypted(&with_query(&server, "postgres", "sslmode=verify-full"))
        .await
        .unwrap_err();
    assert!(err.contains("TLS") || err.contains("certificate"), "{err}");
}

/// (host, port, user) of `postgres://user@host:port`.
fn url_parts(server: &str) -> (String, u16, String) {
    let rest = server.trim_start_matches("postgres://");
    let (user, hostport) = rest.split_once('@').expect("postgres://user@host:port");
    let (host, port) = hostport.split_once(':').unwrap_or((hostport, "5432"));
    (host.into(), port.parse().unwrap(), user.into())
}

fn key() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
}

/// A certificate for `cn`: a CA when `issuer` is `None` (self-signed), else a server
/// certificate for the DNS names `sans`, signed by the issuer.
fn certificate(
    cn: &str,
    key: &PKey<Private>,
    issuer: Option<(&X509, &PKey<Private>)>,
    sans: &[&str],
) -> X509 {
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_nid(Nid::COMMONNAME, cn).unwrap();
    let name = name.build();
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    let mut serial = BigNum::new().unwrap();
    serial.rand(64, MsbOption::MAYBE_ZERO, false).unwrap();
    b.set_serial_number(&serial.to_asn1_integer().unwrap())
        .unwrap();
    b.set_subject_name(&name).unwrap();
    match issuer {
        Some((ca, _)) => b.set_issuer_name(ca.subject_name()).unwrap(),
        None => b.set_issuer_name(&name).unwrap(),
    }
    b.set_pubkey(key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(2).unwrap())
        .unwrap();
    match issuer {
        None => {
            b.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
                .unwrap();
            b.append_extension(
                KeyUsage::new()
                    .critical()
                    .key_cert_sign()
                    .crl_sign()
                    .build()
                    .unwrap(),
            )
            .unwrap();
        }
        Some((ca, _)) => {
            let mut san = SubjectAlternativeName::new();
            for s in sans {
                san.dns(s);
            }
            let ext = san.build(&b.x509v3_context(Some(ca), None)).unwrap();
            b.append_extension(ext).unwrap();
        }
    }
    let signer = issuer.map_or(key, |(_, k)| k);
    b.sign(signer, MessageDigest::sha256()).unwrap();
    b.build()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs a PostgreSQL tool, as the `postgres` user when this test runs as root (initdb refuses
/// root).
fn pg_tool(tool: &str, args: &[&str]) -> std::process::Output {
    let path = format!("{PG_BIN}/{tool}");
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let mut cmd = if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", &path]);
        c
    } else {
        Command::new(&path)
    };
    cmd.args(args).output().unwrap_or_else(|e| {
        panic!("cannot run {path} ({e}); run `make test-setup` (scripts/setup.sh) to install PostgreSQL 15")
    })
}

/// A PostgreSQL 15 server on a free port that accepts only TLS connections, with a certificate
/// for `localhost` signed by a CA generated here. Stopped on drop.
struct TlsServer {
    dir: tempfile::TempDir,
    port: u16,
}

impl TlsServer {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let ca_key = key();
        let ca = certificate("Ferry test CA", &ca_key, None, &[]);
        let server_key = key();
        let server = certificate(
            "localhost",
            &server_key,
            Some((&ca, &ca_key)),
            &["localhost"],
        );
        // A second CA that signed nothing of this server's.
        let other_key = key();
        let other = certificate("Another CA", &other_key, None, &[]);
        std::fs::write(root.join("ca.pem"), ca.to_pem().unwrap()).unwrap();
        std::fs::write(root.join("other-ca.pem"), other.to_pem().unwrap()).unwrap();
        std::fs::write(root.join("server.crt"), server.to_pem().unwrap()).unwrap();
        std::fs::write(
            root.join("server.key"),
            server_key.private_key_to_pem_pkcs8().unwrap(),
        )
        .unwrap();
        let postgres = Command::new("id").args(["-u", "postgres"]).output();
        let am_root = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(
            root.join("server.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        if am_root {
            let out = postgres.expect("id -u postgres");
            let uid: u32 = String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse()
                .expect("a `postgres` user (Debian's postgresql package creates it)");
            for p in [root.to_path_buf(), root.join("server.key")] {
                std::os::unix::fs::chown(&p, Some(uid), None).unwrap();
            }
        }
        let data = root.join("data");
        let out = pg_tool(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
            ],
        );
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let conf = format!(
            "\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{dir}'\n\
             ssl = on\nssl_cert_file = '{dir}/server.crt'\nssl_key_file = '{dir}/server.key'\n\
             fsync = off\n",
            dir = root.display()
        );
        append(&data.join("postgresql.conf"), &conf);
        // TLS only: a connection without it is rejected.
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostnossl all all 127.0.0.1/32 reject\n",
        )
        .unwrap();
        let log = root.join("server.log");
        let out = pg_tool(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-w",
                "-t",
                "30",
                "start",
            ],
        );
        assert!(
            out.status.success(),
            "pg_ctl start: {} {}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        TlsServer { dir, port }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `postgres://postgres@HOST:PORT/postgres?hostaddr=127.0.0.1&…`: the name `host` is what
    /// verify-full checks, the address is always this server.
    fn url(&self, host: &str, query: &str) -> String {
        format!(
            "postgres://postgres@{host}:{}/postgres?hostaddr=127.0.0.1&{query}",
            self.port
        )
    }
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let data = self.path("data");
        let _ = pg_tool(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
    }
}

#[tokio::test]
async fn verify_full_checks_the_certificate_authority_and_the_host_name() {
    let server = TlsServer::start();
    let ca = server.path("ca.pem");
    let ca = ca.display();
    let good = server.url(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    );
    assert_eq!(encrypted(&good).await, Ok(true), "{good}");
    assert_eq!(connect_config(&good).unwrap().1.mode(), TlsMode::VerifyFull);

    // A host name the certificate does not hold.
    let wrong_host = server.url(
        "db.wrong.example",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    );
    let err = encrypted(&wrong_host).await.unwrap_err();
    assert!(
        err.contains("TLS") && err.contains("names the host"),
        "a wrong host name fails clearly: {err}"
    );
    // verify-ca does not check the name.
    let ca_only = server.url(
        "db.wrong.example",
        &format!("sslmode=verify-ca&sslrootcert={ca}"),
    );
    assert_eq!(encrypted(&ca_only).await, Ok(true), "{ca_only}");

    // Without the root certificate (the system's roots do not hold the test CA).
    let no_root = server.url("localhost", "sslmode=verify-full");
    let err = encrypted(&no_root).await.unwrap_err();
    assert!(
        err.contains("TLS") && err.contains("sslrootcert"),
        "no root certificate fails clearly: {err}"
    );
    // Another CA: refused, with require too (sslrootcert makes require verify, as in libpq).
    let other = server.path("other-ca.pem");
    for mode in ["verify-full", "verify-ca", "require"] {
        let url = server.url(
            "localhost",
            &format!("sslmode={mode}&sslrootcert={}", other.display()),
        );
        assert!(encrypted(&url).await.is_err(), "{url}");
    }
    // require without a root certificate encrypts without verifying, as libpq does.
    let require = server.url("db.wrong.example", "sslmode=require");
    assert_eq!(encrypted(&require).await, Ok(true));
    // This server takes no unencrypted connection: sslmode=disable is refused by it.
    let disable = server.url("localhost", "sslmode=disable");
    let err = encrypted(&disable).await.unwrap_err();
    assert!(
        err.contains("no encryption") || err.contains("pg_hba"),
        "{err}"
    );
}

fn tier_event(camera: &str) -> TierEvent {
    let first = EntryId::new(1_000, 0);
    TierEvent {
        id: event_id(camera, first),
        camera_id: camera.into(),
        caption: "a van at the gate".into(),
        start_ms: 1_000,
        end_ms: 6_000,
        frame_count: 3,
        captions: Vec::new(),
        centroid: vec![0.5, -0.25],
        previous_event_id: None,
        run_id: "run-tls".into(),
        status: EventStatus::Closed,
        first_entry: first,
        last_entry: EntryId::new(6_000, 0),
    }
}

/// The events log (its pool and its LISTEN connection) and the tier store work end to end over
/// TLS, on a server that takes nothing else.
#[tokio::test]
async fn event_log_and_tier_store_work_over_tls() {
    let server = TlsServer::start();
    let ca = server.path("ca.pem");
    for query in [
        "sslmode=require".to_string(),
        format!("sslmode=verify-full&sslrootcert={}", ca.display()),
    ] {
        let url = server.url("localhost", &query);
        let log = EventLog::open(&url, 2)
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        let wake = std::sync::Arc::new(tokio::sync::Notify::new());
        let listener = log
            .listen(vec![wake.clone()])
            .await
            .expect("LISTEN over TLS");
        let saved = log
            .save(&NewEvent::new("motion", "cam-tls"))
            .await
            .expect("save over TLS");
        tokio::time::timeout(std::time::Duration::from_secs(10), wake.notified())
            .await
            .expect("the LISTEN connection hears the new event");
        let page = log
            .query(&ferry_connectors::postgres::EventQuery {
                camera_id: Some("cam-tls".into()),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(page.events.iter().any(|e| e.id == saved.id), "{query}");
        drop(listener);

        let store = PostgresEventStore::open(&url)
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        store.migrate().await.unwrap();
        let event = tier_event("cam-tls");
        let state = CameraState {
            camera_id: "cam-tls".into(),
            watermark: Some(event.last_entry),
            open: None,
        };
        store
            .commit(std::slice::from_ref(&event), &state, None)
            .await
            .unwrap();
        let events = store.events(Some("cam-tls"), 10).await.unwrap();
        assert_eq!(events, vec![event], "{query}");
    }
}

/// The same on the local server, in its own database.
#[tokio::test]
async fn event_log_and_tier_store_with_sslmode_require_on_the_local_server() {
    let db = PgDatabase::create();
    let url = format!("{}?sslmode=require", db.url());
    let log = EventLog::open(&url, 2).await.expect("open");
    let saved = log.save(&NewEvent::new("anpr", "cam-1")).await.unwrap();
    let page = log
        .query(&ferry_connectors::postgres::EventQuery {
            limit: 5,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.events[0].id, saved.id);
    let store = PostgresEventStore::open(&url).await.unwrap();
    store.migrate().await.unwrap();
    let event = tier_event("cam-1");
    let state = CameraState {
        camera_id: "cam-1".into(),
        watermark: Some(event.last_entry),
        open: None,
    };
    store
        .commit(std::slice::from_ref(&event), &state, None)
        .await
        .unwrap();
    assert_eq!(store.events(None, 5).await.unwrap(), vec![event]);
}
