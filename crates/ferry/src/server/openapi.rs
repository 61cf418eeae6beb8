//! The API's OpenAPI description, generated from the handlers' own annotations (utoipa) and
//! served at `GET /api/v1/openapi.json`; `docs/openapi.json` is a copy a test keeps current.

use axum::Json;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::jobs::{bridge, events, keys, tier, vectors};

/// Adds the bearer tokens (`Authorization: Bearer TOKEN`) every endpoint but the open ones
/// needs.
struct BearerTokens;

impl Modify for BearerTokens {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        // Every endpoint but the open ones answers 401 without a token; those that change
        // something answer 403 to the read token.
        for (path, item) in openapi.paths.paths.iter_mut() {
            if super::ALWAYS_OPEN.contains(&path.as_str()) {
                continue;
            }
            let reads = [&mut item.get, &mut item.head];
            for op in reads.into_iter().flatten() {
                add_refusals(op, false);
            }
            let changes = [
                &mut item.post,
                &mut item.put,
                &mut item.delete,
                &mut item.patch,
            ];
            for op in changes.into_iter().flatten() {
                add_refusals(op, true);
            }
        }
    }
}

/// The 401 (and, for a change, 403) answers of the authentication layer.
fn add_refusals(op: &mut utoipa::openapi::path::Operation, changes: bool) {
    use utoipa::openapi::{RefOr, Response};
    let answers = &mut op.responses.responses;
    answers.entry("401".into()).or_insert_with(|| {
        RefOr::T(Response::new(
            "no token, or neither the admin nor the read token (when a token is configured)",
        ))
    });
    if changes {
        answers.entry("403".into()).or_insert_with(|| {
            RefOr::T(Response::new(
                "the read token: this endpoint needs the admin token",
            ))
        });
    }
}

/// Ferry's HTTP API.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Ferry",
        description = "The HTTP API of `ferry serve`: health, metrics, the jobs' endpoints and \
            the dashboard's. Every endpoint but /healthz, the page and its assets needs \
            `Authorization: Bearer TOKEN` once a token is configured: the admin token for \
            everything, the read token for GET and HEAD (see docs/api.md)."
    ),
    security(("bearer" = [])),
    modifiers(&BearerTokens),
    paths(
        super::router::healthz,
        super::router::metrics,
        openapi_json,
        super::dashboard::overview,
        super::dashboard::history,
        super::dashboard::pause,
        super::dashboard::resume,
        tier::routes::status,
        tier::routes::history,
        tier::routes::events,
        tier::routes::hot,
        tier::routes::preview,
        tier::routes::migrate,
        tier::routes::clear,
        events::routes::save,
        events::routes::query,
        events::routes::stats,
        events::routes::live,
        bridge::routes::list,
        keys::routes::list,
        keys::routes::one,
        keys::routes::verify,
        keys::routes::plan,
        keys::routes::replan,
        vectors::routes::view,
    ),
    tags(
        (name = "service", description = "Health and metrics"),
        (name = "dashboard", description = "What the page at / reads and does"),
        (name = "tier", description = "The tier job: captions in Redis → time-range events"),
        (name = "events", description = "The events job: save, then publish"),
        (name = "bridge", description = "The bridges: Kafka ⇄ Redis Streams"),
        (name = "keys", description = "The keys job's runs, watched"),
        (name = "vectors", description = "The vectors migration, watched"),
    )
)]
pub struct ApiDoc;

/// The OpenAPI document as pretty JSON (what `docs/openapi.json` holds).
pub fn document() -> String {
    ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

/// This API's OpenAPI 3.1 description.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "service",
    responses((status = 200, description = "the OpenAPI document", body = Object)))]
pub(crate) async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// The page and its assets are not API endpoints.
    const PAGE: &[&str] = &["/", "/favicon.svg", "/assets/{file}"];

    #[test]
    fn the_openapi_document_lists_exactly_the_routes() {
        let doc: serde_json::Value = serde_json::from_str(&document()).unwrap();
        let mut documented = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for method in item.as_object().unwrap().keys() {
                documented.insert((method.to_uppercase(), path.clone()));
            }
        }
        let served: BTreeSet<(String, String)> = super::super::routes()
            .into_iter()
            .filter(|(_, path)| !PAGE.contains(path))
            .map(|(method, path)| (method.to_string(), path.to_string()))
            .collect();
        let undocumented: Vec<_> = served.difference(&documented).collect();
        let unserved: Vec<_> = documented.difference(&served).collect();
        assert!(
            undocumented.is_empty(),
            "routes missing from the OpenAPI document: {undocumented:?}"
        );
        assert!(
            unserved.is_empty(),
            "documented paths no route serves: {unserved:?}"
        );
        assert!(served.len() >= 25, "{served:?}");
    }

    #[test]
    fn docs_openapi_json_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");
        let generated = document() + "\n";
        if std::env::var_os("FERRY_UPDATE_DOCS").is_some() {
            std::fs::write(path, &generated).unwrap();
        }
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == generated,
            "docs/openapi.json is not what the code generates: run \
             `FERRY_UPDATE_DOCS=1 cargo test -p ferry --lib openapi` and commit it"
        );
    }
}
