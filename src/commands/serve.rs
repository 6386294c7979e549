//! `oxrl serve`: loads a model, starts the generation engine and serves the OpenAI-compatible
//! API, the rollout API and weight updates over HTTP until ctrl-c / SIGTERM. With `--watch DIR`
//! it follows a training run: each new checkpoint under DIR is loaded as one atomic, versioned
//! weight update (`oxrl_rollout::http::watch`), and without `--model` the newest checkpoint is
//! the model served from the start.

use super::model_arg;
use anyhow::Context;
use clap::Args;
use oxrl_models::LoadedModel;
use oxrl_rollout::engine::{EngineConfig, EngineHandle, TokenDecoder};
use oxrl_rollout::http::watch::{self, Checkpoint, Watcher};
use oxrl_rollout::http::{self, AppState, ServerConfig};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Arguments of `oxrl serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Model: directory, .gguf file or HF id in the local cache (default: the newest checkpoint
    /// of --watch DIR, else the built-in tiny model).
    #[arg(long)]
    pub model: Option<String>,
    /// Follow a training run: DIR is its output_dir or its checkpoints folder. Each new complete
    /// checkpoint is loaded like `POST /v1/weights` (atomic; the policy version goes up by one);
    /// one that cannot be loaded is skipped with a warning and the old weights keep serving.
    #[arg(long, value_name = "DIR")]
    pub watch: Option<PathBuf>,
    /// Seconds between two looks at --watch DIR.
    #[arg(long, default_value_t = 2.0, value_name = "SECS")]
    pub watch_interval_secs: f64,
    /// Address to bind (127.0.0.1: this machine only; 0.0.0.0 exposes the server).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port (0: any free port; the bound address is printed on stdout).
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// Bearer key required on the inference routes.
    #[arg(long, env = "OXRL_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Bearer key required on POST /v1/weights (without it, weight updates are refused).
    #[arg(long, env = "OXRL_ADMIN_KEY", hide_env_values = true)]
    pub admin_key: Option<String>,
    /// Model id clients use (default: the --model argument).
    #[arg(long)]
    pub served_model_name: Option<String>,
    /// Largest JSON request body, in MiB.
    #[arg(long, default_value_t = 8)]
    pub max_body_mb: usize,
    /// Largest weight-update body (safetensors), in MiB.
    #[arg(long, default_value_t = 16384)]
    pub max_weights_body_mb: usize,
    /// Largest max_tokens a request may ask for (default: the model's context length).
    #[arg(long)]
    pub max_tokens_limit: Option<usize>,
    /// Requests waiting for admission before new ones get 429.
    #[arg(long, default_value_t = 1024)]
    pub max_queue: usize,
    /// Most sequences decoded together.
    #[arg(long, default_value_t = 256)]
    pub max_running_seqs: usize,
    /// KV-cache size in tokens.
    #[arg(long, default_value_t = 32768)]
    pub kv_cache_tokens: usize,
    /// Disable the cross-request prefix cache.
    #[arg(long)]
    pub no_prefix_cache: bool,
    /// Seconds in-flight requests may run after SIGTERM / ctrl-c.
    #[arg(long, default_value_t = 10.0)]
    pub shutdown_grace_secs: f64,
}

/// Waits until `dir` holds a checkpoint that loads as a model; returns it with the checkpoint.
fn first_checkpoint(dir: &Path, interval: Duration) -> anyhow::Result<(LoadedModel, Checkpoint)> {
    let mut watcher = Watcher::new(dir, None);
    let mut said = false;
    loop {
        if let Some(c) = watcher.poll() {
            match model_arg::load(Some(&c.dir.to_string_lossy())) {
                Ok(m) => return Ok((m, c)),
                Err(e) => eprintln!("oxrl serve: warning: skipping checkpoint {c}: {e:#}"),
            }
        }
        if !said {
            eprintln!(
                "oxrl serve: no --model and no loadable checkpoint in {} yet; waiting for one",
                dir.display()
            );
            said = true;
        }
        std::thread::sleep(interval);
    }
}

/// Runs `oxrl serve`.
pub fn run(a: ServeArgs) -> anyhow::Result<()> {
    let interval = Duration::from_secs_f64(a.watch_interval_secs.clamp(0.05, 3600.0));
    let (m, serving, source) = match (&a.model, &a.watch) {
        (None, Some(dir)) => {
            let (m, c) = first_checkpoint(dir, interval)?;
            let source = c.dir.display().to_string();
            eprintln!("oxrl serve: serving checkpoint {source}");
            (m, Some(c), source)
        }
        _ => (
            model_arg::load(a.model.as_deref())?,
            None,
            a.model.clone().unwrap_or_else(|| "oxrl-tiny".to_string()),
        ),
    };
    // The name clients send: stable while --watch swaps checkpoints.
    let default_name = match (&a.model, &a.watch) {
        (None, Some(dir)) => dir.display().to_string(),
        _ => source.clone(),
    };
    let context = m.config.max_position_embeddings;
    let max_tokens_limit = a.max_tokens_limit.unwrap_or(context).max(1);
    let mut cfg = EngineConfig {
        eos_token_ids: m.eos_token_ids(),
        prefix_cache: !a.no_prefix_cache,
        max_queued_requests: a.max_queue.max(1),
        max_running_seqs: a.max_running_seqs.max(1),
        ..EngineConfig::default()
    }
    .with_cache_tokens(a.kv_cache_tokens.max(64));
    cfg.limits.max_tokens = max_tokens_limit;
    let tokenizer = Arc::new(m.tokenizer);
    let decoder: Arc<dyn TokenDecoder> = tokenizer.clone();
    let engine = EngineHandle::start(Arc::new(m.model), Some(decoder), cfg)
        .map_err(|e| anyhow::anyhow!("starting the engine: {e}"))?;
    let server_cfg = ServerConfig {
        served_model_name: a.served_model_name.clone().unwrap_or(default_name),
        model_source: source,
        api_key: a.api_key.clone().filter(|k| !k.is_empty()),
        admin_key: a.admin_key.clone().filter(|k| !k.is_empty()),
        max_body_bytes: a.max_body_mb.saturating_mul(1 << 20),
        max_weights_body_bytes: a.max_weights_body_mb.saturating_mul(1 << 20),
        shutdown_grace: Duration::from_secs_f64(a.shutdown_grace_secs.clamp(0.0, 3600.0)),
    };
    let name = server_cfg.served_model_name.clone();
    let state = AppState::new(engine, tokenizer, server_cfg);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind((a.host.as_str(), a.port))
            .await
            .with_context(|| format!("binding {}:{}", a.host, a.port))?;
        let addr = listener.local_addr()?;
        {
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "oxrl serve: listening on http://{addr} (model `{name}`)"
            )?;
            out.flush()?;
        }
        if a.admin_key.is_none() {
            eprintln!("oxrl serve: no --admin-key: POST /v1/weights is disabled");
        }
        if let Some(dir) = &a.watch {
            eprintln!(
                "oxrl serve: watching {} for new checkpoints every {:.1} s",
                dir.display(),
                interval.as_secs_f64()
            );
            let watcher = Watcher::new(dir, serving);
            tokio::spawn(watch::run(state.clone(), watcher, interval));
        }
        http::serve(listener, state, http::shutdown_signal())
            .await
            .context("serving HTTP")?;
        eprintln!("oxrl serve: stopped");
        anyhow::Ok(())
    })
}
