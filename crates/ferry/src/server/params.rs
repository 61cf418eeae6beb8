//! Query parameters, checked in one place: only the names an endpoint allows, no control
//! characters, and `limit` in range.

use std::collections::HashMap;

use axum::extract::Query;

use super::error::ApiError;

pub(crate) type Params = Query<HashMap<String, String>>;

/// Refuses query parameters not in `allowed`, naming the first unknown one.
pub(crate) fn check_params(
    params: &HashMap<String, String>,
    allowed: &[&str],
) -> Result<(), ApiError> {
    if let Some(unknown) = params.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(ApiError::bad_request(
            format!(
                "unknown query parameter `{unknown}` (allowed: {})",
                allowed.join(", ")
            ),
            Some(unknown),
        ));
    }
    // No stored value holds a control character (PostgreSQL refuses NUL outright).
    match params.iter().find(|(_, v)| v.chars().any(char::is_control)) {
        Some((name, _)) => Err(ApiError::bad_request(
            format!("query parameter `{name}` holds a control character (such as NUL)"),
            Some(name),
        )),
        None => Ok(()),
    }
}

/// Checks query parameters: only `allowed` names, `limit` a number in range.
pub(crate) fn query_limit(
    params: &HashMap<String, String>,
    allowed: &[&str],
    default: usize,
) -> Result<usize, ApiError> {
    check_params(params, allowed)?;
    match params.get("limit") {
        None => Ok(default),
        Some(l) => l
            .parse()
            .map_err(|_| {
                ApiError::bad_request(format!("limit `{l}` is not a number"), Some("limit"))
            })
            .and_then(check_limit),
    }
}

/// A page size: 1 to 1,000.
pub(crate) fn check_limit(limit: usize) -> Result<usize, ApiError> {
    if (1..=1000).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::bad_request(
            "limit must be between 1 and 1000",
            Some("limit"),
        ))
    }
}
