//! OpenAI-style JSON errors: every failure of the server is answered with
//! `{"error": {"message", "type", "param", "code"}}` and a 4xx (client mistakes) or 5xx status,
//! never with axum's plain-text rejections.

use crate::types::{EngineError, ParamError};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// The body of an error response (`{"error": ...}`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErrorBody {
    /// The error object.
    pub error: ErrorObject,
}

/// The OpenAI error object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErrorObject {
    /// Human-readable description.
    pub message: String,
    /// Error class: `invalid_request_error`, `authentication_error`, `permission_error`,
    /// `not_found_error`, `rate_limit_error`, `server_error`, `service_unavailable_error`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The request field at fault, when one is.
    pub param: Option<String>,
    /// A short machine-readable code.
    pub code: Option<String>,
}

/// An error answered to an HTTP client.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{status}: {message}")]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Human-readable description.
    pub message: String,
    /// Error class (OpenAI `type`).
    pub kind: &'static str,
    /// The request field at fault.
    pub param: Option<String>,
    /// Machine-readable code.
    pub code: Option<&'static str>,
}

impl ApiError {
    /// An error with the given status, class and message.
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            kind,
            param: None,
            code: None,
        }
    }

    /// A 400 `invalid_request_error`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    /// A 400 naming the offending field.
    pub fn invalid_param(param: impl Into<String>, message: impl Into<String>) -> Self {
        Self::bad_request(message).with_param(param)
    }

    /// A 401 (missing or wrong API key).
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "authentication_error", message)
            .with_code("invalid_api_key")
    }

    /// A 403 (the route is disabled or the key lacks the right).
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "permission_error", message)
    }

    /// A 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found_error", message)
    }

    /// A 413 (request body over the limit).
    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            format!("the request body exceeds the limit of {limit} bytes"),
        )
        .with_code("payload_too_large")
    }

    /// A 503 (the server is shutting down).
    pub fn shutting_down() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable_error",
            "the server is shutting down",
        )
        .with_code("shutting_down")
    }

    /// A 503 (the engine no longer runs: `how` is `crashed` or `shut down`), while the server
    /// itself is not shutting down; a restart is needed.
    pub fn engine_stopped(how: &str) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable_error",
            format!("the engine has {how}; no request can be served (restart the server)"),
        )
        .with_code("engine_stopped")
    }

    /// A 500.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message)
    }

    /// Sets `param`.
    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    /// Sets `code`.
    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    /// The JSON body.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorObject {
                message: self.message.clone(),
                kind: self.kind.to_string(),
                param: self.param.clone(),
                code: self.code.map(str::to_string),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status;
        let mut resp = (status, axum::Json(self.body())).into_response();
        if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        resp
    }
}

impl From<ParamError> for ApiError {
    fn from(e: ParamError) -> Self {
        ApiError::invalid_param(e.field, e.to_string())
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        let msg = e.to_string();
        match e {
            EngineError::InvalidRequest(_) => ApiError::bad_request(msg),
            EngineError::QueueFull(_) => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                format!("{msg}; retry later"),
            )
            .with_code("queue_full"),
            EngineError::ShutDown => ApiError::shutting_down(),
            EngineError::WeightUpdate(_) => ApiError::bad_request(msg).with_code("invalid_weights"),
            EngineError::Model(_) => ApiError::internal(msg).with_code("model_error"),
            EngineError::Aborted(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "service_unavailable_error",
                msg,
            )
            .with_code("aborted"),
            EngineError::Config(_) => ApiError::internal(msg).with_code("engine_config"),
            EngineError::CacheFull { .. } => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "service_unavailable_error",
                format!("{msg}; retry later"),
            )
            .with_code("cache_full"),
        }
    }
}

/// Answers unknown routes with a JSON 404 (after discarding the body).
pub async fn not_found_fallback(req: axum::extract::Request) -> ApiError {
    let path = req.uri().path().to_string();
    super::extract::drain(req.into_body(), super::extract::DRAIN_CAP).await;
    ApiError::not_found(format!("no route for {path}")).with_code("unknown_route")
}

/// Answers a known route called with the wrong method with a JSON 405 (after discarding the
/// body).
pub async fn method_not_allowed_fallback(req: axum::extract::Request) -> ApiError {
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    super::extract::drain(req.into_body(), super::extract::DRAIN_CAP).await;
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request_error",
        format!("method {method} is not allowed on {path}"),
    )
    .with_code("method_not_allowed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_errors_map_to_statuses() {
        let s = |e: EngineError| ApiError::from(e).status.as_u16();
        assert_eq!(s(EngineError::InvalidRequest("x".into())), 400);
        assert_eq!(s(EngineError::QueueFull(3)), 429);
        assert_eq!(s(EngineError::ShutDown), 503);
        assert_eq!(s(EngineError::WeightUpdate("nan".into())), 400);
        assert_eq!(s(EngineError::Model("boom".into())), 500);
        assert_eq!(s(EngineError::Config("no blocks".into())), 500);
        assert_eq!(s(EngineError::CacheFull { needed: 3, free: 1 }), 503);
    }

    #[test]
    fn body_has_openai_shape() {
        let e = ApiError::invalid_param("n", "n must be at least 1");
        let v = serde_json::to_value(e.body()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"error": {"message": "n must be at least 1",
                "type": "invalid_request_error", "param": "n", "code": null}})
        );
        let resp = ApiError::from(EngineError::QueueFull(1)).into_response();
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "1");
    }
}
