//! The HTTP API of `ferry serve`, driven through the router without a socket.

mod common;

use std::sync::Arc;

use axum::http::StatusCode;
use ferry::jobs::tier::{Backend, Layout, TierContext, TierOptions};
use ferry::server::{AppState, ServeOptions, app};
use ferry_testkit::RedisServer;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

struct Api {
    router: axum::Router,
    redis: RedisServer,
    _dir: tempfile::TempDir,
}

async fn api(token: Option<&str>) -> Api {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let options = TierOptions {
        redis: redis.url().into(),
        store: format!("sqlite://{}", dir.path().join("api.db").display()).into(),
        layout: Layout::Stream,
        similarity: Backend::Lexical,
        ..TierOptions::default()
    };
    let ctx = TierContext::connect(options).await.expect("connect");
    let serve = ServeOptions {
        token: token.map(Into::into),
        max_body_bytes: 4096,
        ..ServeOptions::default()
    };
    let state = Arc::new(AppState::new(
        Some(ctx),
        serve,
        ferry::server::prometheus(),
        CancellationToken::new(),
    ));
    Api {
        router: app(state),
        redis,
        _dir: dir,
    }
}

impl Api {
    async fn call(
        &self,
        method: &str,
        uri: &str,
        body: Option<&str>,
        token: Option<&str>,
    ) -> (StatusCode, Value) {
        common::call(&self.router, method, uri, body, token).await
    }

    fn add_due_captions(&self, camera: &str, n: usize) {
        let mut c = self.redis.conn();
        let t0 = ferry_core::checkpoint::now_ms() - 3 * 3_600_000;
        for i in 0..n {
            let _: String = redis::cmd("XADD")
                .arg(format!("captions:{camera}"))
                .arg(format!("{}-0", t0 + i as i64 * 5_000))
                .arg("caption")
                .arg("man in fields")
                .query(&mut c)
                .unwrap();
        }
    }
}

#[tokio::test]
async fn health_metrics_status_and_history_answer() {
    let api = api(None).await;
    let (status, body) = api.call("GET", "/healthz", None, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "ok");
    api.add_due_captions("cam1", 3);
    let (status, body) = api.call("GET", "/api/v1/tier/status", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["cameras"][0]["camera_id"], "cam1");
    assert_eq!(body["cameras"][0]["due"], true);
    assert_eq!(body["pending_captions"], 3);
    let (status, _) = api.call("POST", "/api/v1/tier/migrate", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = api
        .call("GET", "/api/v1/tier/history?limit=5", None, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body[0]["captions_migrated"], 3);
    assert_eq!(body[0]["trigger"], "api");
    let (status, body) = api.call("GET", "/metrics", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let text = body.as_str().unwrap();
    assert!(
        text.contains("ferry_tier_captions_migrated_total"),
        "{text}"
    );
}

#[tokio::test]
async fn preview_shows_events_and_writes_nothing() {
    let api = api(None).await;
    api.add_due_captions("cam1", 4);
    let (status, body) = api
        .call(
            "POST",
            "/api/v1/tier/preview",
            Some(r#"{"camera_id":"cam1"}"#),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["events"][0]["frame_count"], 4);
    let (_, status_body) = api.call("GET", "/api/v1/tier/status", None, None).await;
    assert_eq!(status_body["pending_captions"], 4);
    assert_eq!(status_body["counts"]["events"], 0);
}

#[tokio::test]
async fn endpoints_need_the_bearer_token_except_healthz() {
    let api = api(Some("s3cret")).await;
    api.add_due_captions("cam1", 2);
    let (status, body) = api
        .call(
            "POST",
            "/api/v1/tier/migrate",
            Some(r#"{"camera_id":"cam1"}"#),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, _) = api
        .call("POST", "/api/v1/tier/migrate", Some("{}"), Some("wrong"))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = api
        .call(
            "POST",
            "/api/v1/tier/clear",
            Some(r#"{"camera_id":"cam1"}"#),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = api
        .call(
            "POST",
            "/api/v1/tier/migrate",
            Some(r#"{"camera_id":"cam1"}"#),
            Some("s3cret"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["run"]["captions_migrated"], 2);
    // With a token set, reads and previews (a full model pass) need it too; /healthz does not.
    let (status, body) = api.call("GET", "/api/v1/tier/status", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["field"], "authorization");
    let (status, _) = api
        .call(
            "POST",
            "/api/v1/tier/preview",
            Some(r#"{"camera_id":"cam1"}"#),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = api
        .call("GET", "/api/v1/tier/status", None, Some("s3cret"))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = api.call("GET", "/healthz", None, None).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn bad_requests_get_4xx_naming_the_field() {
    let api = api(None).await;
    let cases = [
        ("POST", "/api/v1/tier/preview", Some("{}"), "camera_id"),
        (
            "POST",
            "/api/v1/tier/preview",
            Some(r#"{"camera_id":"a:b"}"#),
            "camera_id",
        ),
        (
            "POST",
            "/api/v1/tier/preview",
            Some(r#"{"camera_id":"c","limit":0}"#),
            "limit",
        ),
        (
            "POST",
            "/api/v1/tier/preview",
            Some(r#"{"camera_id":"c","colour":1}"#),
            "colour",
        ),
        (
            "POST",
            "/api/v1/tier/migrate",
            Some(r#"{"camera_id":5}"#),
            "camera_id",
        ),
        (
            "POST",
            "/api/v1/tier/clear",
            Some(r#"{"camera_id":"c","discard":true}"#),
            "confirm",
        ),
        ("GET", "/api/v1/tier/history?limit=abc", None, "limit"),
        ("GET", "/api/v1/tier/history?limit=5000", None, "limit"),
    ];
    for (method, uri, body, field) in cases {
        let (status, reply) = api.call(method, uri, body, None).await;
        assert!(
            status.is_client_error(),
            "{method} {uri} {body:?}: {status} {reply}"
        );
        assert_eq!(reply["field"], field, "{method} {uri} {body:?}: {reply}");
        assert!(reply["error"].as_str().is_some_and(|e| !e.is_empty()));
    }
    let big = json!({"camera_id": "c".repeat(10_000)}).to_string();
    let (status, _) = api
        .call("POST", "/api/v1/tier/preview", Some(&big), None)
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let (status, reply) = api
        .call("POST", "/api/v1/tier/preview", Some("not json"), None)
        .await;
    assert!(status.is_client_error(), "{status} {reply}");
}
