//! The API's one error type and JSON error shape (`{"error": …, "field": …}`), and JSON
//! bodies whose errors name the offending field.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ferry_core::error::ErrorClass;
use serde_json::json;

/// An API error: a status and a JSON body `{"error": …, "field": …}`.
#[derive(Debug)]
pub struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
    pub(crate) field: Option<String>,
}

impl ApiError {
    pub(crate) fn bad_request(message: impl Into<String>, field: Option<&str>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            field: field.map(str::to_string),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = match self.field {
            Some(f) => json!({"error": self.message, "field": f}),
            None => json!({"error": self.message}),
        };
        (self.status, Json(body)).into_response()
    }
}

/// The status of an error of `class`: `user` for the caller's mistakes, 503 when a service
/// Ferry needs is unavailable, 500 otherwise.
pub(crate) fn class_status(class: ErrorClass, user: StatusCode) -> StatusCode {
    match class {
        ErrorClass::User => user,
        ErrorClass::External => StatusCode::SERVICE_UNAVAILABLE,
        ErrorClass::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// Field named in a serde message such as "missing field `camera_id`" or "unknown field `x`".
fn field_of(message: &str) -> Option<&str> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(&message[start..start + len])
}

/// `Json<T>` whose rejections are JSON errors naming the field.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|r| ApiError {
                status: r.status(),
                message: r.body_text(),
                field: None,
            })?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Parses a JSON body; errors name the offending field (by path, or from serde's message).
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let message = format!("invalid JSON body: {}", e.inner());
        let field = if path == "." {
            field_of(&message).map(str::to_string)
        } else {
            Some(path)
        };
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            message,
            field,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_messages_name_their_field() {
        assert_eq!(
            field_of("missing field `camera_id` at line 1"),
            Some("camera_id")
        );
        assert_eq!(field_of("no field"), None);
    }
}
