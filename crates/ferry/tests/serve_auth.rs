//! Authentication of `ferry serve` (issue 12): one layer over the whole router, an admin token
//! and a read token, `/healthz` always open, `/metrics` open only when configured; empty tokens
//! and an open API on a network address are refused at start.
//!
//! The route tests walk [`ferry::server::routes`], the list the router is built from, so a
//! route added later is covered without touching them.

mod common;

use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use common::serve::{Serve, request};
use ferry::jobs::events::{EventsContext, EventsOptions};
use ferry::jobs::tier::{Backend, Layout, TierContext, TierOptions};
use ferry::server::{ALWAYS_OPEN, AppState, OPEN_PREFIXES, ServeOptions, app, routes};
use ferry_testkit::{PgDatabase, RedisServer, output_text};
use http_body_util::BodyExt;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

const ADMIN: &str = "admin-token-for-tests";
const READ: &str = "read-token-for-tests";

/// A sample body for each route that takes one; a new mutating route must get one here.
fn sample_body(path: &str) -> &'static str {
    match path {
        "/api/v1/tier/preview" | "/api/v1/tier/clear" => r#"{"camera_id":"cam1"}"#,
        "/api/v1/tier/migrate" => "{}",
        "/api/v1/events" => r#"{"event_type":"motion","camera_id":"cam1"}"#,
        // Actions that take no body.
        "/api/v1/jobs/{job}/pause"
        | "/api/v1/jobs/{job}/resume"
        | "/api/v1/keys/runs/{run}/verify"
        | "/api/v1/keys/plan" => "",
        other => panic!("no sample body for POST {other}: add one to sample_body"),
    }
}

struct Env {
    redis: RedisServer,
    db: Option<PgDatabase>,
    dir: tempfile::TempDir,
}

impl Env {
    fn new(with_events: bool) -> Self {
        Env {
            redis: RedisServer::start(),
            db: with_events.then(PgDatabase::create),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// The router of `ferry serve` with `serve`'s tokens (tier on SQLite, events when a
    /// database was created).
    async fn router(&self, serve: ServeOptions) -> axum::Router {
        let tier = TierContext::connect(TierOptions {
            redis: self.redis.url().into(),
            store: format!("sqlite://{}", self.dir.path().join("tier.db").display()).into(),
            layout: Layout::Stream,
            similarity: Backend::Lexical,
            ..TierOptions::default()
        })
        .await
        .expect("tier context");
        let mut state = AppState::new(
            Some(tier),
            serve,
            ferry::server::prometheus(),
            CancellationToken::new(),
        );
        if let Some(db) = &self.db {
            let events = EventsContext::connect(EventsOptions {
                postgres: db.url().into(),
                redis: self.redis.url().into(),
                ..EventsOptions::default()
            })
            .await
            .expect("events context");
            state = state.with_events(Arc::new(events));
        }
        app(Arc::new(state))
    }
}

fn tokens() -> ServeOptions {
    ServeOptions {
        token: Some(ADMIN.into()),
        read_token: Some(READ.into()),
        ..ServeOptions::default()
    }
}

/// What came back: status, `WWW-Authenticate`, and the body as JSON (`Null` for a stream or a
/// body that is not JSON).
struct Answer {
    status: StatusCode,
    challenge: Option<String>,
    body: Value,
}

/// One request through the router. The live view (Server-Sent Events) never ends, so only
/// JSON bodies are read.
/// A route pattern with its parameters filled in (`/assets/{file}` → `/assets/app.js`).
fn concrete(path: &str) -> String {
    match path {
        "/api/v1/metrics/history" => return format!("{path}?metrics=ferry_events_published_total"),
        "/api/v1/tier/hot" => return format!("{path}?camera_id=cam1"),
        _ => {}
    }
    path.replace("{file}", "app.js")
        .replace("{job}", "tier")
        .replace("{run}", "run-1")
}

/// Whether authentication let the request through (it may still fail for other reasons: a job
/// not configured here answers 404, a missing parameter 400).
fn authorised(status: StatusCode) -> bool {
    status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN
}

async fn send(router: &axum::Router, method: &Method, path: &str, token: Option<&str>) -> Answer {
    let mut req = Request::builder()
        .method(method.clone())
        .uri(concrete(path));
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let body = if method == Method::POST {
        req = req.header(header::CONTENT_TYPE, "application/json");
        Body::from(sample_body(path))
    } else {
        Body::empty()
    };
    let resp = router
        .clone()
        .oneshot(req.body(body).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let challenge = resp
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap().to_string());
    let json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|c| c.as_bytes().starts_with(b"application/json"));
    let body = if json {
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap_or(Value::Null) // HEAD: no body
    } else {
        Value::Null
    };
    Answer {
        status,
        challenge,
        body,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_needs_a_token_the_read_token_reads_and_the_admin_token_does_all() {
    let env = Env::new(true);
    let router = env.router(tokens()).await;
    let all = routes();
    assert!(all.len() >= 12, "{all:?}");
    for (method, path) in &all {
        let what = format!("{method} {path}");
        let open = ALWAYS_OPEN.contains(path) || OPEN_PREFIXES.iter().any(|p| path.starts_with(p));

        let none = send(&router, method, path, None).await;
        if open {
            assert_eq!(none.status, StatusCode::OK, "{what} is always open");
        } else {
            assert_eq!(
                none.status,
                StatusCode::UNAUTHORIZED,
                "{what} without a token"
            );
            assert_eq!(none.body["field"], "authorization", "{what}: {}", none.body);
            assert!(none.body["error"].as_str().is_some_and(|e| !e.is_empty()));
            assert_eq!(
                none.challenge.as_deref(),
                Some(r#"Bearer realm="ferry""#),
                "{what}"
            );
            let wrong = send(&router, method, path, Some("not-a-token")).await;
            assert_eq!(
                wrong.status,
                StatusCode::UNAUTHORIZED,
                "{what}, wrong token"
            );
            assert!(
                wrong
                    .challenge
                    .as_deref()
                    .is_some_and(|c| c.contains(r#"error="invalid_token""#)),
                "{what}: {:?}",
                wrong.challenge
            );
        }

        let read = send(&router, method, path, Some(READ)).await;
        if *method == Method::GET {
            assert!(
                authorised(read.status) && read.status != StatusCode::METHOD_NOT_ALLOWED,
                "{what} with the read token: {} {}",
                read.status,
                read.body
            );
            let head = send(&router, &Method::HEAD, path, Some(READ)).await;
            assert_eq!(head.status, read.status, "HEAD {path} answers as GET does");
        } else {
            assert_eq!(read.status, StatusCode::FORBIDDEN, "{what}, read token");
            assert_eq!(read.body["field"], "authorization", "{what}: {}", read.body);
            assert!(
                read.challenge
                    .as_deref()
                    .is_some_and(|c| c.contains(r#"error="insufficient_scope""#)),
                "{what}: {:?}",
                read.challenge
            );
        }

        let admin = send(&router, method, path, Some(ADMIN)).await;
        // This router runs the tier and events jobs only, and no job loop (nothing to pause).
        let served_here = !["/api/v1/keys", "/api/v1/vectors", "/api/v1/jobs/"]
            .iter()
            .any(|p| path.starts_with(p));
        assert!(
            if served_here {
                admin.status.is_success()
            } else {
                authorised(admin.status)
            },
            "{what} with the admin token: {} {}",
            admin.status,
            admin.body
        );
    }
    // A path that is not a route is refused like the others, without saying it does not exist.
    let unknown = send(&router, &Method::GET, "/api/v1/nothing-here", None).await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    let unknown = send(&router, &Method::GET, "/api/v1/nothing-here", Some(ADMIN)).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_open_only_when_configured_and_everything_without_tokens() {
    let env = Env::new(false);
    let closed = env.router(tokens()).await;
    let get = Method::GET;
    assert_eq!(
        send(&closed, &get, "/metrics", None).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(&closed, &get, "/metrics", Some(READ)).await.status,
        StatusCode::OK
    );
    let public = env
        .router(ServeOptions {
            metrics_public: true,
            ..tokens()
        })
        .await;
    assert_eq!(
        send(&public, &get, "/metrics", None).await.status,
        StatusCode::OK
    );
    assert_eq!(
        send(&public, &get, "/api/v1/tier/status", None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    // No token at all (loopback only, see below): open.
    let open = env.router(ServeOptions::default()).await;
    for (method, path) in routes() {
        if method == Method::GET && !path.starts_with("/api/v1/events") {
            let a = send(&open, &method, path, None).await;
            assert!(authorised(a.status), "{method} {path}: {}", a.status);
        }
    }
    let a = send(&open, &Method::POST, "/api/v1/tier/migrate", None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
}

/// `ferry serve ARGS` with a config file holding `serve_toml` under `[serve]`, its
/// environment cleared of FERRY_* options, plus `env`.
fn serve_command(
    redis: &RedisServer,
    dir: &tempfile::TempDir,
    serve_toml: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> Command {
    let config = dir.path().join("ferry.toml");
    std::fs::write(
        &config,
        format!(
            "[tier]\nredis = \"{}\"\nstore = \"sqlite://{}\"\nsimilarity = \"lexical\"\n\
             [serve]\ninterval_s = 3600\n{serve_toml}\n",
            redis.url(),
            dir.path().join("t.db").display()
        ),
    )
    .unwrap();
    let mut c = Command::new(env!("CARGO_BIN_EXE_ferry"));
    c.arg("--config")
        .arg(&config)
        .arg("serve")
        .args(args)
        .current_dir(dir.path());
    for var in [
        "FERRY_CONFIG",
        "FERRY_SERVE_TOKEN",
        "FERRY_SERVE_READ_TOKEN",
        "FERRY_LISTEN",
        "FERRY_REDIS",
        "FERRY_STORE",
        "FERRY_EVENTS_POSTGRES",
    ] {
        c.env_remove(var);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

/// Runs a `ferry serve` that must refuse to start: exit code 2 and a message containing every
/// one of `needles`.
fn assert_refused(mut c: Command, needles: &[&str]) -> Output {
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    // A refused start exits at once; one that started would serve until killed.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("ferry serve started: {}", output_text(&out));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    for n in needles {
        assert!(text.contains(n), "{n:?} not in: {text}");
    }
    out
}

#[test]
fn empty_tokens_and_a_read_token_alone_are_refused_at_start() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let listen = ["--listen", "127.0.0.1:0"];
    assert_refused(
        serve_command(&redis, &dir, "token = \"\"", &listen, &[]),
        &["[serve] token is empty"],
    );
    assert_refused(
        serve_command(
            &redis,
            &dir,
            "token = \"t\"\nread_token = \"\"",
            &listen,
            &[],
        ),
        &["[serve] read_token is empty"],
    );
    assert_refused(
        serve_command(&redis, &dir, "", &listen, &[("FERRY_SERVE_TOKEN", "")]),
        &["FERRY_SERVE_TOKEN", "empty"],
    );
    assert_refused(
        serve_command(
            &redis,
            &dir,
            "",
            &listen,
            &[("FERRY_SERVE_TOKEN", "t"), ("FERRY_SERVE_READ_TOKEN", "")],
        ),
        &["FERRY_SERVE_READ_TOKEN", "empty"],
    );
    assert_refused(
        serve_command(
            &redis,
            &dir,
            "",
            &["--token", "", "--listen", "127.0.0.1:0"],
            &[],
        ),
        &["--token", "empty"],
    );
    assert_refused(
        serve_command(&redis, &dir, "read_token = \"r\"", &listen, &[]),
        &["read token is set but no admin token"],
    );
    assert_refused(
        serve_command(
            &redis,
            &dir,
            "",
            &listen,
            &[
                ("FERRY_SERVE_TOKEN", "same"),
                ("FERRY_SERVE_READ_TOKEN", "same"),
            ],
        ),
        &["the same as the admin token"],
    );
    // A stray newline (from a file or a variable) could never match a trimmed header.
    assert_refused(
        serve_command(
            &redis,
            &dir,
            "",
            &listen,
            &[("FERRY_SERVE_TOKEN", "t0ken\n")],
        ),
        &["admin token starts or ends with white space"],
    );
    assert_refused(
        serve_command(
            &redis,
            &dir,
            "token = \"t\"\nread_token = \" r\"",
            &listen,
            &[],
        ),
        &["read token starts or ends with white space"],
    );
}

/// Starts `c`, a `ferry serve` that must start; killed on drop.
fn start(mut c: Command) -> Serve {
    Serve::start(c.stderr(Stdio::null()), "ferry serve prints its address")
}

/// `GET path` on loopback, at the port the server bound; the status.
fn get(serve: &Serve, path: &str, token: Option<&str>) -> u16 {
    request(
        &serve.loopback(),
        "GET",
        path,
        token,
        None,
        Duration::from_secs(30),
    )
    .0
}

#[test]
fn a_network_address_without_a_token_is_refused_unless_insecure() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let any = ["--listen", "0.0.0.0:0"];
    assert_refused(
        serve_command(&redis, &dir, "", &any, &[]),
        &["0.0.0.0:0", "not a loopback address", "--insecure"],
    );
    // From the config file too.
    assert_refused(
        serve_command(&redis, &dir, "listen = \"0.0.0.0:0\"", &[], &[]),
        &["--insecure"],
    );

    let insecure = start(serve_command(
        &redis,
        &dir,
        "",
        &["--listen", "0.0.0.0:0", "--insecure"],
        &[],
    ));
    assert!(insecure.addr.starts_with("0.0.0.0:"), "{}", insecure.addr);
    assert_eq!(get(&insecure, "/api/v1/tier/status", None), 200);
    drop(insecure);

    let with_token = start(serve_command(
        &redis,
        &dir,
        "",
        &any,
        &[("FERRY_SERVE_TOKEN", ADMIN)],
    ));
    assert_eq!(get(&with_token, "/healthz", None), 200);
    assert_eq!(get(&with_token, "/api/v1/tier/status", None), 401);
    assert_eq!(get(&with_token, "/metrics", None), 401);
    assert_eq!(get(&with_token, "/api/v1/tier/status", Some(ADMIN)), 200);
}
