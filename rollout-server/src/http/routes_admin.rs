//! Operational routes, open without a key: `GET /health` (200 with the policy version while
//! the engine serves; 503 once shutting down, or when the engine has stopped or crashed) and
//! `GET /metrics` (Prometheus text).

use super::common::check_serving;
use super::errors::ApiError;
use super::metrics_text;
use super::state::AppState;
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;

/// `GET /health`.
pub async fn health(State(state): State<AppState>) -> Result<Response, ApiError> {
    check_serving(&state)?;
    Ok(Json(serde_json::json!({
        "status": "ok",
        "engine": "running",
        "model": state.cfg().served_model_name,
        "policy_version": state.engine().policy_version(),
    }))
    .into_response())
}

/// `GET /metrics`.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let text = metrics_text::render(
        &state.metrics().snapshot(),
        &state.engine().metrics(),
        &state.cfg().served_model_name,
    );
    let mut resp = text.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}
