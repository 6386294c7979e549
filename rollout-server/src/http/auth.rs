//! Bearer-key checks: `--api-key` guards the inference routes, `--admin-key` guards
//! `/v1/weights` (which refuses every call when no admin key is configured). Keys are compared in
//! constant time; the admin key is also accepted on inference routes.

use super::errors::ApiError;
use super::extract::{drain, DRAIN_CAP};
use super::state::AppState;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::Response;

/// The bearer token of a request (`Authorization: Bearer <key>`), if any.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// Compares two keys without leaking where they first differ.
pub fn keys_equal(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut diff = (a.len() ^ b.len()) as u64;
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0xff);
        diff |= u64::from(x ^ y);
    }
    diff == 0
}

/// Checks the request's key against the API key (when one is set). `Ok` when allowed.
pub fn check_api_key(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(key) = state.cfg().api_key.as_deref() else {
        return Ok(());
    };
    match bearer_token(headers) {
        None => Err(ApiError::unauthorized(
            "missing API key: send `Authorization: Bearer <key>` (the server runs with --api-key)",
        )),
        Some(t) => {
            let admin_ok = state
                .cfg()
                .admin_key
                .as_deref()
                .is_some_and(|a| keys_equal(t, a));
            if keys_equal(t, key) || admin_ok {
                Ok(())
            } else {
                Err(ApiError::unauthorized("incorrect API key"))
            }
        }
    }
}

/// Checks the request's key against the admin key; without an admin key every call is refused.
pub fn check_admin_key(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(key) = state.cfg().admin_key.as_deref() else {
        return Err(ApiError::forbidden(
            "weight updates are disabled: start `oxrl serve` with --admin-key <KEY> \
             (or OXRL_ADMIN_KEY) and send `Authorization: Bearer <KEY>`",
        )
        .with_code("admin_disabled"));
    };
    match bearer_token(headers) {
        None => Err(ApiError::unauthorized(
            "missing admin key: send `Authorization: Bearer <admin key>`",
        )),
        Some(t) if keys_equal(t, key) => Ok(()),
        Some(_) => Err(ApiError::unauthorized("incorrect admin key")),
    }
}

/// Middleware for inference routes.
pub async fn require_api_key(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if let Err(e) = check_api_key(&state, req.headers()) {
        drain(req.into_body(), DRAIN_CAP).await;
        return Err(e);
    }
    Ok(next.run(req).await)
}

/// Middleware for admin routes.
pub async fn require_admin_key(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if let Err(e) = check_admin_key(&state, req.headers()) {
        drain(req.into_body(), DRAIN_CAP).await;
        return Err(e);
    }
    Ok(next.run(req).await)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn bearer_parsing_and_comparison() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer_token(&h), None);
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer  k1 "),
        );
        assert_eq!(bearer_token(&h), Some("k1"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("bearer k2"));
        assert_eq!(bearer_token(&h), Some("k2"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer_token(&h), None);
        assert!(keys_equal("secret", "secret"));
        assert!(!keys_equal("secret", "secreT"));
        assert!(!keys_equal("secret", "secret1"));
        assert!(!keys_equal("", "x"));
        assert!(keys_equal("", ""));
    }
}
