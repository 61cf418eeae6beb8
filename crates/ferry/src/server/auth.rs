//! Who may call the HTTP API: one layer over the whole router ([`auth_layer`]).
//!
//! Two bearer tokens: the admin token may call every endpoint, the read token only `GET` and
//! `HEAD` ones. Once a token is configured, every route (and any unknown path) needs one, except
//! `/healthz` and, when `[serve] metrics_public = true`, `/metrics`. No token at all leaves the API
//! open, which [`super::ServeOptions::check`] allows only on a loopback address or with
//! `--insecure`.
//!
//! Tokens are compared in constant time, on their SHA-256 digests, so the comparison reveals
//! neither a token's bytes nor its length.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use axum::response::IntoResponse;
use ferry_core::secret::{ExposeSecret, Secret};
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};
use tower_http::validate_request::{ValidateRequest, ValidateRequestHeaderLayer};

use super::ServeOptions;
use super::error::ApiError;

/// Paths that answer without a token whatever the configuration: the health check, and the
/// dashboard's page and assets (they hold no data; the page asks for a token when the API
/// needs one).
pub const ALWAYS_OPEN: &[&str] = &["/healthz", "/", "/favicon.svg"];

/// Path prefixes that answer without a token: the dashboard's static assets.
pub const OPEN_PREFIXES: &[&str] = &["/assets/"];

/// What a caller's token allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// `GET` and `HEAD`.
    Read,
    /// Everything.
    Admin,
}

/// Whether `method` only reads (the read token may call it).
pub fn is_read_method(method: &Method) -> bool {
    method == Method::GET || method == Method::HEAD
}

/// The check run on every request (see the module documentation).
#[derive(Clone)]
pub struct BearerAuth {
    admin: Option<[u8; 32]>,
    read: Option<[u8; 32]>,
    metrics_public: bool,
    public_read: bool,
}

impl std::fmt::Debug for BearerAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BearerAuth")
            .field("admin_token", &self.admin.is_some())
            .field("read_token", &self.read.is_some())
            .field("metrics_public", &self.metrics_public)
            .field("public_read", &self.public_read)
            .finish()
    }
}

fn digest(token: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(&Sha256::digest(token));
    out
}

impl BearerAuth {
    /// The check for `options`' tokens (only their digests are kept).
    pub fn new(options: &ServeOptions) -> Self {
        let of = |t: &Option<Secret>| t.as_ref().map(|t| digest(t.expose_secret().as_bytes()));
        BearerAuth {
            admin: of(&options.token),
            read: of(&options.read_token),
            metrics_public: options.metrics_public,
            public_read: options.public_read,
        }
    }

    /// Whether no token is configured (the API is open).
    fn is_open(&self) -> bool {
        self.admin.is_none() && self.read.is_none()
    }

    /// What `given` allows, `None` when it is neither token. Both tokens are always compared.
    fn access(&self, given: &str) -> Option<Access> {
        let given = digest(given.as_bytes());
        let matches = |t: &Option<[u8; 32]>| t.map_or(Choice::from(0), |t| t[..].ct_eq(&given[..]));
        let (admin, read) = (matches(&self.admin), matches(&self.read));
        if bool::from(admin) {
            Some(Access::Admin)
        } else if bool::from(read) {
            Some(Access::Read)
        } else {
            None
        }
    }

    /// Whether `path` answers without a token.
    fn is_public(&self, path: &str) -> bool {
        ALWAYS_OPEN.contains(&path)
            || OPEN_PREFIXES.iter().any(|p| path.starts_with(p))
            || (self.metrics_public && path == "/metrics")
    }

    /// Decides one request: `Ok(access)` lets it through.
    fn decide(&self, method: &Method, path: &str, headers: &HeaderMap) -> Result<Access, Refusal> {
        if self.is_open() || self.is_public(path) {
            return Ok(Access::Admin);
        }
        let access = match bearer(headers) {
            // A read-only server answers reads without a token; a change still needs one.
            None if self.public_read && is_read_method(method) => return Ok(Access::Read),
            None => return Err(Refusal::Missing),
            Some(given) => self.access(given).ok_or(Refusal::Invalid)?,
        };
        if access == Access::Read && !is_read_method(method) {
            return Err(Refusal::ReadOnly);
        }
        Ok(access)
    }
}

/// The token of an `Authorization: Bearer TOKEN` header (the scheme in any case).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Why a request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// No `Authorization: Bearer …` header.
    Missing,
    /// A token that is neither the admin nor the read token.
    Invalid,
    /// The read token on a method that changes something.
    ReadOnly,
}

impl Refusal {
    /// 401 or 403 with the API's JSON error body and a `WWW-Authenticate` challenge (RFC 6750).
    fn response(self, method: &Method, path: &str) -> Response<Body> {
        let (status, message, challenge) = match self {
            Refusal::Missing => (
                StatusCode::UNAUTHORIZED,
                "this endpoint needs `Authorization: Bearer TOKEN`: the admin token, or the \
                 read token for GET and HEAD requests"
                    .to_string(),
                r#"Bearer realm="ferry""#,
            ),
            Refusal::Invalid => (
                StatusCode::UNAUTHORIZED,
                "the bearer token is neither the admin token nor the read token".to_string(),
                r#"Bearer realm="ferry", error="invalid_token""#,
            ),
            Refusal::ReadOnly => (
                StatusCode::FORBIDDEN,
                format!(
                    "the read token may only GET and HEAD; `{method} {path}` needs the admin token"
                ),
                r#"Bearer realm="ferry", error="insufficient_scope""#,
            ),
        };
        let mut response = ApiError {
            status,
            message,
            field: Some("authorization".into()),
        }
        .into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(challenge),
        );
        response
    }
}

impl<B> ValidateRequest<B> for BearerAuth {
    type ResponseBody = Body;

    fn validate(&mut self, request: &mut Request<B>) -> Result<(), Response<Body>> {
        let method = request.method();
        let path = request.uri().path();
        match self.decide(method, path, request.headers()) {
            Ok(access) => {
                request.extensions_mut().insert(access);
                Ok(())
            }
            Err(refusal) => {
                tracing::debug!(%method, path, ?refusal, "request refused");
                Err(refusal.response(method, path))
            }
        }
    }
}

/// The authentication layer for `options` (tower-http's request validation with
/// [`BearerAuth`]).
pub fn auth_layer(options: &ServeOptions) -> ValidateRequestHeaderLayer<BearerAuth> {
    ValidateRequestHeaderLayer::custom(BearerAuth::new(options))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(admin: Option<&str>, read: Option<&str>, metrics_public: bool) -> BearerAuth {
        BearerAuth::new(&ServeOptions {
            token: admin.map(Into::into),
            read_token: read.map(Into::into),
            metrics_public,
            ..ServeOptions::default()
        })
    }

    #[test]
    fn a_public_read_server_answers_reads_without_a_token_but_not_changes() {
        let a = BearerAuth::new(&ServeOptions {
            token: Some("admin-t".into()),
            public_read: true,
            ..ServeOptions::default()
        });
        let none = headers(None);
        let path = "/api/v1/overview";
        assert_eq!(a.decide(&Method::GET, path, &none), Ok(Access::Read));
        assert_eq!(
            a.decide(&Method::POST, "/api/v1/jobs/tier/pause", &none),
            Err(Refusal::Missing)
        );
        // A wrong token is still refused, even for a read.
        assert_eq!(
            a.decide(&Method::GET, path, &headers(Some("Bearer nope"))),
            Err(Refusal::Invalid)
        );
        // The page and its assets are open on any server; nothing else under them.
        let closed = auth(Some("t"), None, false);
        for open in ["/", "/assets/app.js", "/favicon.svg"] {
            assert!(closed.decide(&Method::GET, open, &none).is_ok(), "{open}");
        }
        for shut in ["/api/v1/overview", "/assetsx", "/index.html"] {
            assert!(closed.decide(&Method::GET, shut, &none).is_err(), "{shut}");
        }
    }

    fn headers(authorization: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(a) = authorization {
            h.insert(header::AUTHORIZATION, HeaderValue::from_str(a).unwrap());
        }
        h
    }

    #[test]
    fn tokens_grant_their_access_only() {
        let a = auth(Some("admin-t"), Some("read-t"), false);
        let get = Method::GET;
        let post = Method::POST;
        let path = "/api/v1/tier/status";
        assert_eq!(a.decide(&get, path, &headers(None)), Err(Refusal::Missing));
        assert_eq!(
            a.decide(&get, path, &headers(Some("Bearer nope"))),
            Err(Refusal::Invalid)
        );
        assert_eq!(
            a.decide(&get, path, &headers(Some("Basic YTpi"))),
            Err(Refusal::Missing)
        );
        assert_eq!(
            a.decide(&get, path, &headers(Some("Bearer read-t"))),
            Ok(Access::Read)
        );
        assert_eq!(
            a.decide(&Method::HEAD, path, &headers(Some("bearer read-t"))),
            Ok(Access::Read)
        );
        assert_eq!(
            a.decide(&post, path, &headers(Some("Bearer read-t"))),
            Err(Refusal::ReadOnly)
        );
        assert_eq!(
            a.decide(&post, path, &headers(Some("Bearer admin-t"))),
            Ok(Access::Admin)
        );
        // A prefix or an extension of a token is not the token.
        for near in ["Bearer admin", "Bearer admin-tt", "Bearer read-", "Bearer "] {
            assert!(
                a.decide(&get, path, &headers(Some(near))).is_err(),
                "{near}"
            );
        }
    }

    #[test]
    fn healthz_is_always_open_and_metrics_when_configured() {
        let closed = auth(Some("t"), None, false);
        let public = auth(Some("t"), None, true);
        let none = headers(None);
        assert!(closed.decide(&Method::GET, "/healthz", &none).is_ok());
        assert_eq!(
            closed.decide(&Method::GET, "/metrics", &none),
            Err(Refusal::Missing)
        );
        assert!(public.decide(&Method::GET, "/metrics", &none).is_ok());
        assert_eq!(
            public.decide(&Method::GET, "/api/v1/events", &none),
            Err(Refusal::Missing)
        );
        // No token configured: open.
        assert!(
            auth(None, None, false)
                .decide(&Method::POST, "/api/v1/tier/migrate", &none)
                .is_ok()
        );
    }

    #[test]
    fn debug_shows_no_digest() {
        let text = format!("{:?}", auth(Some("s3cret"), None, false));
        assert!(text.contains("admin_token: true"), "{text}");
        assert!(!text.contains("s3cret"), "{text}");
    }
}
