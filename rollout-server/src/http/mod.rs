//! The HTTP server behind `oxrl serve` (axum on tokio): the OpenAI-compatible API, oxrl's
//! native rollout API, versioned weight updates, health and Prometheus metrics, all on one
//! [`EngineHandle`](crate::engine::EngineHandle).
//!
//! | route | auth | what |
//! |---|---|---|
//! | `POST /v1/completions` | api key | OpenAI completions (text / token-id prompts, `echo` + `logprobs` scoring, SSE) |
//! | `POST /v1/chat/completions` | api key | OpenAI chat (chat template, logprobs, SSE deltas) |
//! | `GET /v1/models` | api key | the served model |
//! | `POST /v1/rollouts` | api key | many prompts × `n` → token ids, logprobs, policy versions |
//! | `POST /v1/weights` | admin key | atomic versioned weight update (safetensors body or path) |
//! | `GET /health`, `GET /metrics` | none | liveness + version; Prometheus text |
//!
//! Every error is an OpenAI-style JSON object (see [`errors`]); bodies over the limit get 413;
//! a full engine queue gets 429 and a server shutting down 503 (both with `Retry-After`).

pub mod auth;
pub mod common;
pub mod errors;
pub mod extract;
pub mod metrics_text;
pub mod openai_types;
pub mod routes_admin;
pub mod routes_openai;
pub mod routes_rollout;
pub mod routes_weights;
pub mod sse;
pub mod state;

pub use errors::ApiError;
pub use state::{AppState, ServerConfig};

use axum::extract::DefaultBodyLimit;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use axum::Router;
use std::future::Future;
use tokio::net::TcpListener;

/// The application: every route with its auth, limits, metrics and JSON fallbacks.
pub fn router(state: AppState) -> Router {
    let inference = Router::new()
        .route("/v1/completions", post(routes_openai::completions))
        .route(
            "/v1/chat/completions",
            post(routes_openai::chat_completions),
        )
        .route("/v1/models", get(routes_openai::list_models))
        .route("/v1/rollouts", post(routes_rollout::rollouts))
        .route_layer(from_fn_with_state(state.clone(), auth::require_api_key));
    let admin = Router::new()
        .route("/v1/weights", post(routes_weights::update_weights))
        .route_layer(from_fn_with_state(state.clone(), auth::require_admin_key));
    let open = Router::new()
        .route("/health", get(routes_admin::health))
        .route("/metrics", get(routes_admin::metrics));
    Router::new()
        .merge(inference)
        .merge(admin)
        .merge(open)
        .fallback(errors::not_found_fallback)
        .method_not_allowed_fallback(errors::method_not_allowed_fallback)
        // Our extractors enforce their own limits (JSON vs weights) with JSON 413s.
        .layer(DefaultBodyLimit::disable())
        .layer(from_fn_with_state(state.clone(), metrics_text::track))
        .with_state(state)
}

/// Serves `state` on `listener` until `shutdown` resolves, then shuts down gracefully: new
/// requests get 503 and no new connections are accepted, in-flight requests get
/// [`ServerConfig::shutdown_grace`] to finish, then the engine stops (aborting what is left).
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let app = router(state.clone());
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        let _ = stop_rx.wait_for(|v| *v).await;
    });
    let mut server = tokio::spawn(async move { server.await });
    let result = tokio::select! {
        r = &mut server => Some(r),
        _ = shutdown => None,
    };
    let outcome = match result {
        Some(r) => r.map_err(std::io::Error::other).and_then(|r| r),
        None => {
            tracing::info!("shutting down: finishing in-flight requests");
            state.begin_shutdown();
            let _ = stop_tx.send(true);
            let grace = state.cfg().shutdown_grace;
            match tokio::time::timeout(grace, &mut server).await {
                Ok(r) => r.map_err(std::io::Error::other).and_then(|r| r),
                Err(_) => {
                    tracing::warn!(
                        "requests still running after {:.1} s; aborting them",
                        grace.as_secs_f64()
                    );
                    server.abort();
                    Ok(())
                }
            }
        }
    };
    let engine = state.engine().clone();
    let _ = tokio::task::spawn_blocking(move || engine.shutdown()).await;
    outcome
}

/// Resolves on ctrl-c or (on Unix) SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
