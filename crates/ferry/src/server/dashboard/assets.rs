//! The page and its assets, compiled into the binary (`include_str!`: a handful of small files
//! need no embedding crate). No CDN, no build step: the page works offline.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::server::AppState;

const INDEX_HTML: &str = include_str!("../../../assets/dashboard/index.html");
const APP_JS: &str = include_str!("../../../assets/dashboard/app.js");
const DOM_JS: &str = include_str!("../../../assets/dashboard/dom.js");
const CHARTS_JS: &str = include_str!("../../../assets/dashboard/charts.js");
const APP_CSS: &str = include_str!("../../../assets/dashboard/app.css");
const FAVICON_SVG: &str = include_str!("../../../assets/dashboard/favicon.svg");

/// The asset `name` and its content type, if there is one of that name.
pub fn lookup(name: &str) -> Option<(&'static str, &'static str)> {
    match name {
        "app.js" => Some(("text/javascript; charset=utf-8", APP_JS)),
        "dom.js" => Some(("text/javascript; charset=utf-8", DOM_JS)),
        "charts.js" => Some(("text/javascript; charset=utf-8", CHARTS_JS)),
        "app.css" => Some(("text/css; charset=utf-8", APP_CSS)),
        _ => None,
    }
}

fn reply(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            // The assets change with the binary: always revalidate.
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
                 connect-src 'self'; frame-ancestors 'none'",
            ),
        ],
        body,
    )
        .into_response()
}

/// `GET /`: the dashboard's page, told whether the API needs a token (`token`), answers reads
/// without one (`public-read`) or is open (`open`), so it asks for a token before it calls
/// the API rather than after a refusal.
pub(crate) async fn index(State(state): State<Arc<AppState>>) -> Response {
    let auth = match (&state.options.token, state.options.public_read) {
        (None, _) => "open",
        (Some(_), true) => "public-read",
        (Some(_), false) => "token",
    };
    let page = INDEX_HTML.replace("__FERRY_AUTH__", auth);
    let mut response = reply("text/html; charset=utf-8", "");
    *response.body_mut() = page.into();
    response
}

/// `GET /favicon.svg`.
pub(crate) async fn favicon() -> Response {
    reply("image/svg+xml", FAVICON_SVG)
}

/// `GET /assets/{file}`: the page's script and style sheet.
pub(crate) async fn asset(Path(file): Path<String>) -> Response {
    match lookup(&file) {
        Some((content_type, body)) => reply(content_type, body),
        None => super::not_found(&format!("asset `{file}`")),
    }
}
