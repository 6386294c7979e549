//! The HTTP server behind `oxrl serve` (axum on tokio): the OpenAI-compatible API, oxrl's
//! native rollout API, versioned weight updates, health, Prometheus metrics and the OpenAPI
//! document, all on one [`EngineHandle`](crate::engine::EngineHandle).
//!
//! [`ROUTES`] is the one list of routes: [`router`] is built from it and so is the OpenAPI
//! document at `GET /openapi.json` ([`openapi::document`]), so the two cannot disagree.
//!
//! | route | auth | what |
//! |---|---|---|
//! | `POST /v1/completions` | api key | OpenAI completions (text / token-id prompts, `echo` + `logprobs` scoring, SSE) |
//! | `POST /v1/chat/completions` | api key | OpenAI chat (chat template, logprobs, SSE deltas) |
//! | `GET /v1/models` | api key | the served model |
//! | `POST /v1/rollouts` | api key | many prompts × `n` → token ids, logprobs, policy versions |
//! | `POST /v1/weights` | admin key | atomic versioned weight update (safetensors body or path) |
//! | `GET /health`, `GET /metrics` | none | liveness + version; Prometheus text |
//! | `GET /openapi.json` | none | the OpenAPI 3.1 document of these routes |
//!
//! Every error is an OpenAI-style JSON object (see [`errors`]); bodies over the limit get 413;
//! a full engine queue gets 429 and a server shutting down 503 (both with `Retry-After`).

pub mod auth;
pub mod common;
pub mod errors;
pub mod extract;
pub mod metrics_text;
pub mod openai_types;
pub mod openapi;
pub mod routes_admin;
pub mod routes_openai;
pub mod routes_rollout;
pub mod routes_weights;
pub mod sse;
pub mod state;
pub mod watch;

pub use errors::ApiError;
pub use state::{AppState, ServerConfig};

use axum::extract::DefaultBodyLimit;
use axum::middleware::from_fn_with_state;
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::Router;
use std::future::Future;
use tokio::net::TcpListener;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteAuth {
    /// `--api-key` (when the server has one; the admin key is accepted too).
    ApiKey,
    /// `--admin-key` (without one the route refuses every call).
    AdminKey,
    /// No key.
    Open,
}

/// The HTTP methods the server's routes use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteMethod {
    /// `GET`.
    Get,
    /// `POST`.
    Post,
}

impl RouteMethod {
    /// The method's name (`GET`, `POST`).
    pub fn as_str(self) -> &'static str {
        match self {
            RouteMethod::Get => "GET",
            RouteMethod::Post => "POST",
        }
    }

    fn filter(self) -> MethodFilter {
        match self {
            RouteMethod::Get => MethodFilter::GET,
            RouteMethod::Post => MethodFilter::POST,
        }
    }
}

/// Names every route; [`router`] and [`openapi::document`] match on it exhaustively, so a new
/// route cannot be served without being documented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteId {
    /// `POST /v1/completions`.
    Completions,
    /// `POST /v1/chat/completions`.
    ChatCompletions,
    /// `GET /v1/models`.
    Models,
    /// `POST /v1/rollouts`.
    Rollouts,
    /// `POST /v1/weights`.
    Weights,
    /// `GET /health`.
    Health,
    /// `GET /metrics`.
    Metrics,
    /// `GET /openapi.json`.
    OpenApi,
}

/// One route of the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// Which handler.
    pub id: RouteId,
    /// Its method.
    pub method: RouteMethod,
    /// Its path.
    pub path: &'static str,
    /// Who may call it.
    pub auth: RouteAuth,
    /// One line on what it does (the OpenAPI `summary`).
    pub summary: &'static str,
}

/// Every route the server answers: the router and the OpenAPI document are both built from this.
pub const ROUTES: &[Route] = &[
    Route {
        id: RouteId::Completions,
        method: RouteMethod::Post,
        path: "/v1/completions",
        auth: RouteAuth::ApiKey,
        summary: "OpenAI completions: text or token-id prompts, echo + logprobs scoring, SSE",
    },
    Route {
        id: RouteId::ChatCompletions,
        method: RouteMethod::Post,
        path: "/v1/chat/completions",
        auth: RouteAuth::ApiKey,
        summary: "OpenAI chat completions: the model's chat template, logprobs, SSE deltas",
    },
    Route {
        id: RouteId::Models,
        method: RouteMethod::Get,
        path: "/v1/models",
        auth: RouteAuth::ApiKey,
        summary: "The served model, its context length and the policy version serving now",
    },
    Route {
        id: RouteId::Rollouts,
        method: RouteMethod::Post,
        path: "/v1/rollouts",
        auth: RouteAuth::ApiKey,
        summary: "Many prompts x n samples: token ids, text, logprobs, policy versions",
    },
    Route {
        id: RouteId::Weights,
        method: RouteMethod::Post,
        path: "/v1/weights",
        auth: RouteAuth::AdminKey,
        summary: "Atomic, versioned weight update (safetensors body, or a path on the server)",
    },
    Route {
        id: RouteId::Health,
        method: RouteMethod::Get,
        path: "/health",
        auth: RouteAuth::Open,
        summary: "Liveness: 200 with the policy version while the engine serves, else 503",
    },
    Route {
        id: RouteId::Metrics,
        method: RouteMethod::Get,
        path: "/metrics",
        auth: RouteAuth::Open,
        summary: "Prometheus metrics (text exposition format)",
    },
    Route {
        id: RouteId::OpenApi,
        method: RouteMethod::Get,
        path: "/openapi.json",
        auth: RouteAuth::Open,
        summary: "This OpenAPI 3.1 document",
    },
];

/// The handler of `route`.
fn method_router(route: &Route) -> MethodRouter<AppState> {
    let f = route.method.filter();
    match route.id {
        RouteId::Completions => on(f, routes_openai::completions),
        RouteId::ChatCompletions => on(f, routes_openai::chat_completions),
        RouteId::Models => on(f, routes_openai::list_models),
        RouteId::Rollouts => on(f, routes_rollout::rollouts),
        RouteId::Weights => on(f, routes_weights::update_weights),
        RouteId::Health => on(f, routes_admin::health),
        RouteId::Metrics => on(f, routes_admin::metrics),
        RouteId::OpenApi => on(f, openapi::openapi_json),
    }
}

/// The application: every route of [`ROUTES`] with its auth, limits, metrics and JSON fallbacks.
pub fn router(state: AppState) -> Router {
    let group = |auth: RouteAuth| {
        ROUTES
            .iter()
            .filter(|r| r.auth == auth)
            .fold(Router::new(), |router, r| {
                router.route(r.path, method_router(r))
            })
    };
    let inference = group(RouteAuth::ApiKey)
        .route_layer(from_fn_with_state(state.clone(), auth::require_api_key));
    let admin = group(RouteAuth::AdminKey)
        .route_layer(from_fn_with_state(state.clone(), auth::require_admin_key));
    let open = group(RouteAuth::Open);
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
