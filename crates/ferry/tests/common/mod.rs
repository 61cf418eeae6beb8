//! Helpers shared by the integration tests of the `ferry` binary: [`call`] for the HTTP API
//! tests, [`serve`] for those that start `ferry serve`, [`keys`] for the keys job's and [`tier`]
//! for the tier job's.
//!
//! Every test binary includes this whole module with `mod common;` and uses only part of it.
#![allow(dead_code)]

pub mod keys;
pub mod serve;
pub mod tier;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

/// Sends one request through `router` (no socket); returns the status and the body as JSON
/// (a JSON string when the body is not JSON).
pub async fn call(
    router: &axum::Router,
    method: &str,
    uri: &str,
    body: Option<&str>,
    token: Option<&str>,
) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(uri);
    if body.is_some() {
        req = req.header(header::CONTENT_TYPE, "application/json");
    }
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let req = req
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .unwrap();
    let resp = router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, value)
}
