//! The server's configuration and the state every handler shares: the engine handle, the
//! tokenizer, limits, keys, HTTP counters and the shutting-down flag.

use super::metrics_text::HttpMetrics;
use crate::engine::EngineHandle;
use oxrl_models::Tokenizer;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How the HTTP server behaves (limits, keys, names).
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// The model id clients name (`model` field, `/v1/models`).
    pub served_model_name: String,
    /// Where the model came from (the initial `root` in `/v1/models`; see
    /// [`AppState::set_weights_source`]).
    pub model_source: String,
    /// Bearer key required on inference routes (`None`: open).
    pub api_key: Option<String>,
    /// Bearer key required on `/v1/weights` (`None`: the route refuses every call).
    pub admin_key: Option<String>,
    /// Largest JSON request body in bytes (larger: 413).
    pub max_body_bytes: usize,
    /// Largest `/v1/weights` body in bytes.
    pub max_weights_body_bytes: usize,
    /// How long in-flight requests may run after a shutdown signal.
    pub shutdown_grace: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            served_model_name: "oxrl-model".into(),
            model_source: String::new(),
            api_key: None,
            admin_key: None,
            max_body_bytes: 8 << 20,
            max_weights_body_bytes: 8 << 30,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// Everything handlers share (cheap to clone).
#[derive(Clone)]
pub struct AppState {
    inner: Arc<StateInner>,
}

struct StateInner {
    engine: EngineHandle,
    tokenizer: Arc<Tokenizer>,
    cfg: ServerConfig,
    weights_source: RwLock<String>,
    metrics: HttpMetrics,
    shutting_down: AtomicBool,
    created: u64,
    next_id: AtomicU64,
    id_salt: u64,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("served_model_name", &self.inner.cfg.served_model_name)
            .finish()
    }
}

impl AppState {
    /// State serving `engine` with `tokenizer` under `cfg`.
    pub fn new(engine: EngineHandle, tokenizer: Arc<Tokenizer>, cfg: ServerConfig) -> Self {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Self {
            inner: Arc::new(StateInner {
                engine,
                tokenizer,
                weights_source: RwLock::new(cfg.model_source.clone()),
                cfg,
                metrics: HttpMetrics::default(),
                shutting_down: AtomicBool::new(false),
                created: now.as_secs(),
                next_id: AtomicU64::new(1),
                id_salt: (now.as_nanos() as u64) ^ u64::from(std::process::id()).rotate_left(32),
            }),
        }
    }

    /// The engine.
    pub fn engine(&self) -> &EngineHandle {
        &self.inner.engine
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.inner.tokenizer
    }

    /// The configuration.
    pub fn cfg(&self) -> &ServerConfig {
        &self.inner.cfg
    }

    /// Largest `max_tokens` a request may ask for: the engine's
    /// [`ParamLimits::max_tokens`](crate::types::ParamLimits::max_tokens), the one source of this
    /// limit (`oxrl serve --max-tokens-limit` sets it).
    pub fn max_tokens_limit(&self) -> usize {
        self.inner.engine.config().limits.max_tokens
    }

    /// Where the weights serving now came from: [`ServerConfig::model_source`] until
    /// [`AppState::set_weights_source`] names another (`oxrl serve --watch` names each
    /// checkpoint it loads). Shown as `root` in `/v1/models`.
    pub fn weights_source(&self) -> String {
        match self.inner.weights_source.read() {
            Ok(s) => s.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Records where the weights serving now came from.
    pub fn set_weights_source(&self, source: impl Into<String>) {
        let source = source.into();
        match self.inner.weights_source.write() {
            Ok(mut s) => *s = source,
            Err(p) => *p.into_inner() = source,
        }
    }

    /// HTTP counters.
    pub fn metrics(&self) -> &HttpMetrics {
        &self.inner.metrics
    }

    /// Unix time the server started (the model's `created`).
    pub fn created(&self) -> u64 {
        self.inner.created
    }

    /// Marks the server as shutting down: new inference requests get 503.
    pub fn begin_shutdown(&self) {
        self.inner.shutting_down.store(true, Ordering::Release);
    }

    /// Whether [`AppState::begin_shutdown`] was called (the server's own graceful shutdown).
    pub fn is_shutting_down_by_request(&self) -> bool {
        self.inner.shutting_down.load(Ordering::Acquire)
    }

    /// Whether a shutdown has begun, or the engine no longer runs.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutting_down.load(Ordering::Acquire) || self.inner.engine.is_shut_down()
    }

    /// A fresh response id such as `cmpl-5f0c…`.
    pub fn new_id(&self, prefix: &str) -> String {
        let n = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let mixed = (self.inner.id_salt ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15)).rotate_left(17);
        format!("{prefix}-{mixed:016x}{n:08x}")
    }

    /// Unix time now, in seconds.
    pub fn now(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(self.inner.created)
    }
}
