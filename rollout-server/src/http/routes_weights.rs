//! `POST /v1/weights` (admin key required): a new set of weights, as a safetensors request body
//! (any content type but JSON) or as JSON `{"path": "..."}` naming a safetensors file or an
//! HF-layout directory on the server's disk. The update is one atomic, versioned transaction:
//! parsed, validated (names, shapes, dtypes, finite values) and swapped between two decode steps
//! by [`EngineHandle::update_weights`](crate::engine::EngineHandle::update_weights); the answer
//! carries the new policy version. On any failure the old weights keep serving and the client
//! gets a JSON error (400 for bad weights, 404 for a missing path).

use super::errors::ApiError;
use super::extract::{drain, parse_json, read_body, DRAIN_CAP};
use super::state::AppState;
use crate::types::{WeightsPathRequest, WeightsResponse};
use axum::extract::{Request, State};
use axum::http::header;
use axum::Json;
use candle_core::{DType, Device};
use oxrl_models::weights::{self, TensorMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

fn bad_weights(e: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("invalid weights: {e}")).with_code("invalid_weights")
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("weight update task failed: {e}")))?
}

/// Reads the tensors of `path` (a safetensors file, or an HF-layout directory with
/// `model.safetensors` or a sharded index) for a weight update, with the bytes read. A missing
/// path is a 404 (`weights_not_found`), unreadable or malformed weights a 400
/// (`invalid_weights`). Blocking: call it off the async threads. `oxrl serve --watch` loads its
/// checkpoints through this too.
pub fn load_path(path: &Path, dtype: DType, device: &Device) -> Result<(TensorMap, u64), ApiError> {
    let meta = std::fs::metadata(path).map_err(|e| {
        ApiError::not_found(format!("cannot read `{}`: {e}", path.display()))
            .with_param("path")
            .with_code("weights_not_found")
    })?;
    let t = if meta.is_dir() {
        weights::load_dir(path, dtype, device)
    } else {
        weights::load_file(path, dtype, device)
    }
    .map_err(bad_weights)?;
    let bytes = if meta.is_dir() {
        weights::weight_files(path)
            .map(|fs| {
                fs.iter()
                    .filter_map(|f| std::fs::metadata(f).ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    } else {
        meta.len()
    };
    Ok((t, bytes))
}

/// `POST /v1/weights`.
pub async fn update_weights(
    State(state): State<AppState>,
    req: Request,
) -> Result<Json<WeightsResponse>, ApiError> {
    if state.is_shutting_down() {
        drain(req.into_body(), DRAIN_CAP).await;
        return Err(ApiError::shutting_down());
    }
    let start = Instant::now();
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("application/json"));
    let model = state.engine().model();
    let (dtype, device) = (model.dtype(), model.device().clone());
    drop(model);
    let mut source = String::from("POST /v1/weights (safetensors body)");
    let (tensors, bytes): (TensorMap, u64) = if is_json {
        let body = read_body(req, state.cfg().max_body_bytes).await?;
        let p: WeightsPathRequest = parse_json(&body)?;
        let path = PathBuf::from(&p.path);
        source.clone_from(&p.path);
        blocking(move || load_path(&path, dtype, &device)).await?
    } else {
        let body = read_body(req, state.cfg().max_weights_body_bytes).await?;
        if body.is_empty() {
            return Err(bad_weights(
                "the request body is empty: send a safetensors file, or JSON {\"path\": ...}",
            ));
        }
        let len = body.len() as u64;
        let t = blocking(move || {
            weights::tensors_from_safetensors_bytes(&body, dtype, &device).map_err(bad_weights)
        })
        .await?;
        (t, len)
    };
    let num_tensors = tensors.len();
    let load_ms = start.elapsed().as_secs_f64() * 1e3;
    let engine = state.engine().clone();
    let version = blocking(move || engine.update_weights(tensors).map_err(ApiError::from)).await?;
    state.set_weights_source(source);
    tracing::info!(
        version,
        num_tensors,
        bytes,
        ms = start.elapsed().as_secs_f64() * 1e3,
        "weights updated"
    );
    Ok(Json(WeightsResponse {
        object: "weights_update".into(),
        policy_version: version,
        num_tensors,
        bytes,
        elapsed_ms: start.elapsed().as_secs_f64() * 1e3,
        load_ms,
        apply_ms: start.elapsed().as_secs_f64() * 1e3 - load_ms,
    }))
}
