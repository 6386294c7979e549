//! The generation engine: a scheduler thread that owns the model, the paged KV cache and the
//! running batch, and the cloneable [`EngineHandle`] through which requests, weight updates and
//! metrics reach it.
//!
//! Requests travel over a channel to the engine thread; each gets its own response channel
//! ([`ResponseReceiver`], tokio mpsc: `recv().await` from async code, `blocking_recv()` from sync
//! code). The number of requests waiting for admission is bounded
//! ([`EngineConfig::max_queued_requests`]); beyond it [`EngineHandle::submit`] answers
//! [`EngineError::QueueFull`].
//!
//! **Weight updates** are validated on the caller's thread (`Transformer::with_weights`: names,
//! shapes, dtypes, finite values) and swapped in by the engine thread *between* two steps; the
//! policy version is then incremented and the prefix cache cleared. On any failure the old
//! weights keep serving. In-flight completions continue on the new weights: each reports the
//! version at its first token (`policy_version`) and at its last (`policy_version_end`).

pub mod metrics;
pub mod prefix_cache;
pub mod sampler;
pub mod scheduler;
pub mod sequence;

pub use metrics::EngineMetrics;

use crate::types::{EngineError, ParamLimits, RolloutRequest, RolloutResponse, StreamEvent};
use candle_core::Tensor;
use metrics::MetricsShared;
use oxrl_models::Transformer;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, RwLock};
use std::thread::JoinHandle;

/// Turns generated token ids into text (special tokens skipped). Implemented for the model's
/// tokenizer; tests may use a toy one.
pub trait TokenDecoder: Send + Sync {
    /// Decodes `ids`, skipping special tokens. Fails with the tokenizer's error
    /// (`ModelError::Tokenizer`: an id outside the vocabulary, a decoder failure).
    fn decode(&self, ids: &[u32]) -> Result<String, oxrl_models::ModelError>;
}

/// Sizes and limits of the engine.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineConfig {
    /// Tokens per KV-cache block.
    pub block_size: usize,
    /// KV-cache blocks (one is reserved by the cache as scratch).
    pub num_blocks: usize,
    /// Most sequences (samples being prefilled or decoded) in the running batch.
    pub max_running_seqs: usize,
    /// Token budget of one scheduler iteration (decode tokens + prefill chunk tokens).
    pub max_step_tokens: usize,
    /// Longest prefill chunk of one prompt per iteration (a multiple of `block_size` is best).
    pub prefill_chunk: usize,
    /// Most requests waiting for admission before `submit` answers `QueueFull`.
    pub max_queued_requests: usize,
    /// Keep block-aligned prompt prefixes across requests (cleared on weight updates).
    pub prefix_cache: bool,
    /// Bounds on sampling parameters.
    pub limits: ParamLimits,
    /// EOS token ids; empty: the model config's `eos_token_ids`.
    pub eos_token_ids: Vec<u32>,
    /// Policy version of the initial weights.
    pub initial_policy_version: u64,
    /// Give the KV cache's memory back to the kernel whenever the engine runs out of work
    /// (cached prefixes go with it; the pages come back as the next requests write them): an
    /// in-process trainer's backward then has that memory between rollouts. Off for a server,
    /// which keeps its prefix cache warm.
    pub release_cache_when_idle: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            block_size: 16,
            num_blocks: 4096,
            max_running_seqs: 256,
            max_step_tokens: 2048,
            prefill_chunk: 512,
            max_queued_requests: 1024,
            prefix_cache: true,
            limits: ParamLimits::default(),
            eos_token_ids: Vec::new(),
            initial_policy_version: 0,
            release_cache_when_idle: false,
        }
    }
}

impl EngineConfig {
    /// A config whose KV cache holds `tokens` tokens.
    pub fn with_cache_tokens(mut self, tokens: usize) -> Self {
        self.num_blocks = tokens.div_ceil(self.block_size.max(1)) + 1;
        self
    }
}

/// Messages from handles to the engine thread.
pub(crate) enum Command {
    /// A new request (already validated).
    Submit(Box<PendingRequest>),
    /// Several requests admitted together, in order (a trainer's batch: the engine sees the
    /// whole batch at once, so its step composition, and with it every logprob's rounding,
    /// does not depend on thread timing).
    SubmitBatch(Vec<PendingRequest>),
    /// Swap in new weights between steps; replies with the new version.
    SwapModel(Arc<Transformer>, mpsc::Sender<u64>),
    /// Finish: abort everything and exit.
    Shutdown,
}

/// A validated request on its way to the scheduler.
pub(crate) struct PendingRequest {
    pub id: u64,
    pub request: RolloutRequest,
    pub stream: bool,
    pub tx: tokio::sync::mpsc::UnboundedSender<StreamEvent>,
    /// Its place in the admission queue, given up when the request is admitted or dropped.
    pub slot: QueueSlot,
}

/// A place in the admission queue. [`Shared::queued`] counts the live slots: the count goes up
/// when a slot is taken and down when it is dropped (the request admitted, abandoned, refused,
/// or ended by a shutdown or a crash of the engine thread); nothing else writes the counter.
pub(crate) struct QueueSlot(Arc<Shared>);

impl QueueSlot {
    /// Takes a slot; with a `cap`, fails with `QueueFull` when `cap` slots are taken.
    fn take(shared: &Arc<Shared>, cap: Option<usize>) -> Result<Self, EngineError> {
        match cap {
            Some(cap) => {
                shared
                    .queued
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
                        (q < cap).then_some(q + 1)
                    })
                    .map_err(EngineError::QueueFull)?;
            }
            None => {
                shared.queued.fetch_add(1, Ordering::AcqRel);
            }
        }
        Ok(Self(shared.clone()))
    }
}

impl Drop for QueueSlot {
    fn drop(&mut self) {
        self.0.queued.fetch_sub(1, Ordering::AcqRel);
    }
}

/// State shared between handles and the engine thread.
pub(crate) struct Shared {
    pub metrics: MetricsShared,
    pub model: RwLock<Arc<Transformer>>,
    pub version: AtomicU64,
    /// Requests waiting for admission: written only by [`QueueSlot`].
    pub queued: AtomicUsize,
    pub shut_down: AtomicBool,
    /// Set with `shut_down` when the engine thread ended by a panic.
    pub crashed: AtomicBool,
}

/// Whether the engine serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineState {
    /// The engine thread runs and takes requests.
    Running,
    /// The engine was shut down (every later call fails with `ShutDown`).
    ShutDown,
    /// The engine thread panicked; the engine is shut down and every call fails with `ShutDown`.
    Crashed,
}

struct Inner {
    tx: Mutex<mpsc::Sender<Command>>,
    shared: Arc<Shared>,
    cfg: EngineConfig,
    vocab_size: usize,
    context_len: usize,
    has_decoder: bool,
    next_id: AtomicU64,
    update_lock: Mutex<()>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Ok(tx) = self.tx.lock() {
            let _ = tx.send(Command::Shutdown);
        }
        if let Ok(mut t) = self.thread.lock() {
            if let Some(t) = t.take() {
                let _ = t.join();
            }
        }
    }
}

/// A cloneable, thread-safe handle to a running engine. The engine stops when
/// [`EngineHandle::shutdown`] is called or the last handle is dropped.
#[derive(Clone)]
pub struct EngineHandle {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for EngineHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineHandle")
            .field("policy_version", &self.policy_version())
            .finish()
    }
}

/// The response channel of one request: deltas (when streaming), then one `Done` or `Error`.
#[derive(Debug)]
pub struct ResponseReceiver {
    id: u64,
    rx: tokio::sync::mpsc::UnboundedReceiver<StreamEvent>,
}

impl ResponseReceiver {
    /// The engine's id of this request.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The next event (async). `None` after the final event.
    pub async fn recv(&mut self) -> Option<StreamEvent> {
        self.rx.recv().await
    }

    /// The next event, blocking the thread (do not call from inside an async runtime).
    pub fn blocking_recv(&mut self) -> Option<StreamEvent> {
        self.rx.blocking_recv()
    }

    /// Blocks until the request finishes and returns its response, skipping deltas.
    pub fn wait(mut self) -> Result<RolloutResponse, EngineError> {
        loop {
            match self.rx.blocking_recv() {
                Some(StreamEvent::Done(r)) => return Ok(r),
                Some(StreamEvent::Error(e)) => return Err(e),
                Some(StreamEvent::Delta { .. }) => {}
                None => return Err(EngineError::ShutDown),
            }
        }
    }

    /// Awaits the end of the request and returns its response, skipping deltas.
    pub async fn finish(mut self) -> Result<RolloutResponse, EngineError> {
        loop {
            match self.rx.recv().await {
                Some(StreamEvent::Done(r)) => return Ok(r),
                Some(StreamEvent::Error(e)) => return Err(e),
                Some(StreamEvent::Delta { .. }) => {}
                None => return Err(EngineError::ShutDown),
            }
        }
    }

    /// The underlying tokio receiver.
    pub fn into_inner(self) -> tokio::sync::mpsc::UnboundedReceiver<StreamEvent> {
        self.rx
    }
}

impl EngineHandle {
    /// Starts an engine thread serving `model`. `decoder` turns tokens into text (without it,
    /// completions have empty `text` and stop strings are rejected).
    pub fn start(
        model: Arc<Transformer>,
        decoder: Option<Arc<dyn TokenDecoder>>,
        cfg: EngineConfig,
    ) -> Result<Self, EngineError> {
        if cfg.block_size == 0 || cfg.num_blocks < 2 {
            return Err(EngineError::Config(format!(
                "engine needs block_size > 0 and num_blocks >= 2, got {} and {}",
                cfg.block_size, cfg.num_blocks
            )));
        }
        if cfg.max_running_seqs == 0 || cfg.max_step_tokens == 0 || cfg.prefill_chunk == 0 {
            return Err(EngineError::Config(
                "max_running_seqs, max_step_tokens and prefill_chunk must be > 0".into(),
            ));
        }
        let mcfg = model.config().clone();
        let shared = Arc::new(Shared {
            metrics: MetricsShared::default(),
            model: RwLock::new(model.clone()),
            version: AtomicU64::new(cfg.initial_policy_version),
            queued: AtomicUsize::new(0),
            shut_down: AtomicBool::new(false),
            crashed: AtomicBool::new(false),
        });
        MetricsShared::set(&shared.metrics.policy_version, cfg.initial_policy_version);
        let (tx, rx) = mpsc::channel();
        let sched = scheduler::Scheduler::new(model, decoder.clone(), cfg.clone(), shared.clone())
            .map_err(|e| EngineError::Model(e.to_string()))?;
        let thread = std::thread::Builder::new()
            .name("oxrl-engine".into())
            .spawn(move || sched.run(rx))
            .map_err(|e| EngineError::Model(format!("cannot start the engine thread: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                tx: Mutex::new(tx),
                shared,
                cfg,
                vocab_size: mcfg.vocab_size,
                context_len: mcfg.max_position_embeddings,
                has_decoder: decoder.is_some(),
                next_id: AtomicU64::new(1),
                update_lock: Mutex::new(()),
                thread: Mutex::new(Some(thread)),
            }),
        })
    }

    /// The engine's configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.cfg
    }

    /// The model's context length (prompt + completion tokens).
    pub fn context_len(&self) -> usize {
        self.inner.context_len
    }

    /// Checks a request without submitting it.
    pub fn validate(&self, req: &RolloutRequest) -> Result<(), EngineError> {
        req.params.validate_with(&self.inner.cfg.limits)?;
        let p = req.prompt_token_ids.len();
        if p == 0 {
            return Err(EngineError::InvalidRequest(
                "the prompt must have at least one token".into(),
            ));
        }
        if p >= self.inner.context_len {
            return Err(EngineError::InvalidRequest(format!(
                "the prompt has {p} tokens; the model's context is {} tokens",
                self.inner.context_len
            )));
        }
        let blocks_for = |tokens: usize| tokens.div_ceil(self.inner.cfg.block_size);
        if blocks_for(p + 1) + 1 > self.inner.cfg.num_blocks.saturating_sub(1) {
            return Err(EngineError::InvalidRequest(format!(
                "the prompt has {p} tokens; the KV cache holds only {} tokens",
                (self.inner.cfg.num_blocks.saturating_sub(2)) * self.inner.cfg.block_size
            )));
        }
        if let Some(&t) = req
            .prompt_token_ids
            .iter()
            .find(|&&t| t as usize >= self.inner.vocab_size)
        {
            return Err(EngineError::InvalidRequest(format!(
                "prompt token id {t} is out of range (vocabulary size {})",
                self.inner.vocab_size
            )));
        }
        if !req.params.stop.is_empty() && !self.inner.has_decoder {
            return Err(EngineError::InvalidRequest(
                "stop strings need a tokenizer, and this engine has none".into(),
            ));
        }
        Ok(())
    }

    fn send(&self, cmd: Command) -> Result<(), EngineError> {
        if self.inner.shared.shut_down.load(Ordering::Acquire) {
            return Err(EngineError::ShutDown);
        }
        let tx = self.inner.tx.lock().map_err(|_| EngineError::ShutDown)?;
        tx.send(cmd).map_err(|_| EngineError::ShutDown)
    }

    fn pending_request(
        &self,
        request: RolloutRequest,
        stream: bool,
        bounded: bool,
    ) -> Result<(PendingRequest, ResponseReceiver), EngineError> {
        self.validate(&request)?;
        let cap = bounded.then_some(self.inner.cfg.max_queued_requests);
        let slot = QueueSlot::take(&self.inner.shared, cap)?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let pending = PendingRequest {
            id,
            request,
            stream,
            tx,
            slot,
        };
        Ok((pending, ResponseReceiver { id, rx }))
    }

    fn submit_inner(
        &self,
        request: RolloutRequest,
        stream: bool,
        bounded: bool,
    ) -> Result<ResponseReceiver, EngineError> {
        let (pending, rx) = self.pending_request(request, stream, bounded)?;
        // On failure the command, and with it the slot, is dropped.
        self.send(Command::Submit(Box::new(pending)))?;
        Ok(rx)
    }

    /// Submits a request with streaming: the receiver yields a `Delta` per generated token, then
    /// `Done` (or `Error`). Fails with `InvalidRequest` before queueing, or `QueueFull`.
    pub fn submit(&self, request: RolloutRequest) -> Result<ResponseReceiver, EngineError> {
        self.submit_inner(request, true, true)
    }

    /// Submits a request whose receiver yields only the final `Done` (or `Error`).
    pub fn submit_quiet(&self, request: RolloutRequest) -> Result<ResponseReceiver, EngineError> {
        self.submit_inner(request, false, true)
    }

    /// Runs a batch of requests to completion (blocking; call from a plain thread). The batch
    /// is admitted regardless of the queue bound, so a trainer's large batch is never refused.
    pub fn generate(
        &self,
        requests: Vec<RolloutRequest>,
    ) -> Result<Vec<RolloutResponse>, EngineError> {
        for r in &requests {
            self.validate(r)?;
        }
        let (batch, rxs): (Vec<PendingRequest>, Vec<ResponseReceiver>) = requests
            .into_iter()
            .map(|r| self.pending_request(r, false, false))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .unzip();
        // One command: the engine admits the whole batch between two steps.
        self.send(Command::SubmitBatch(batch))?;
        rxs.into_iter().map(ResponseReceiver::wait).collect()
    }

    /// Validates `tensors` against the current model (off the engine thread), then swaps them in
    /// between two steps and returns the new policy version. On any error the old weights keep
    /// serving. Updates are serialised.
    pub fn update_weights(&self, tensors: HashMap<String, Tensor>) -> Result<u64, EngineError> {
        let _guard = self
            .inner
            .update_lock
            .lock()
            .map_err(|_| EngineError::WeightUpdate("a previous update panicked".into()))?;
        let current = self
            .inner
            .shared
            .model
            .read()
            .map_err(|_| EngineError::WeightUpdate("model lock poisoned".into()))?
            .clone();
        let new = current
            .with_weights(tensors)
            .map_err(|e| EngineError::WeightUpdate(e.to_string()))?;
        self.swap_model_locked(Arc::new(new))
    }

    /// Serves `model` from the next step on (in-process weight sync: no copy, no validation
    /// beyond the config check) and returns the new policy version.
    pub fn set_model(&self, model: Arc<Transformer>) -> Result<u64, EngineError> {
        let _guard = self
            .inner
            .update_lock
            .lock()
            .map_err(|_| EngineError::WeightUpdate("a previous update panicked".into()))?;
        let current = self
            .inner
            .shared
            .model
            .read()
            .map_err(|_| EngineError::WeightUpdate("model lock poisoned".into()))?
            .clone();
        if current.config() != model.config() {
            return Err(EngineError::WeightUpdate(
                "the new model's config differs from the served model's".into(),
            ));
        }
        self.swap_model_locked(model)
    }

    fn swap_model_locked(&self, model: Arc<Transformer>) -> Result<u64, EngineError> {
        let (tx, rx) = mpsc::channel();
        self.send(Command::SwapModel(model, tx))?;
        rx.recv().map_err(|_| EngineError::ShutDown)
    }

    /// The policy version currently serving.
    pub fn policy_version(&self) -> u64 {
        self.inner.shared.version.load(Ordering::Acquire)
    }

    /// The model currently serving.
    pub fn model(&self) -> Arc<Transformer> {
        match self.inner.shared.model.read() {
            Ok(m) => m.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// A snapshot of the engine's counters.
    pub fn metrics(&self) -> EngineMetrics {
        let mut m = self.inner.shared.metrics.snapshot();
        m.queue_depth = self.inner.shared.queued.load(Ordering::Relaxed) as u64;
        m.policy_version = self.policy_version();
        m
    }

    /// Whether the engine has shut down (by request, or because its thread panicked).
    pub fn is_shut_down(&self) -> bool {
        self.inner.shared.shut_down.load(Ordering::Acquire)
    }

    /// Whether the engine runs, was shut down, or crashed.
    pub fn state(&self) -> EngineState {
        let s = &self.inner.shared;
        if s.crashed.load(Ordering::Acquire) {
            EngineState::Crashed
        } else if s.shut_down.load(Ordering::Acquire) {
            EngineState::ShutDown
        } else {
            EngineState::Running
        }
    }

    /// Stops the engine: running and queued requests end with `Error(ShutDown)`; later calls
    /// fail with `ShutDown`. Blocks until the engine thread exits.
    pub fn shutdown(&self) {
        if let Ok(tx) = self.inner.tx.lock() {
            let _ = tx.send(Command::Shutdown);
        }
        if let Ok(mut t) = self.inner.thread.lock() {
            if let Some(t) = t.take() {
                let _ = t.join();
            }
        }
        self.inner.shared.shut_down.store(true, Ordering::Release);
    }
}

impl TokenDecoder for oxrl_models::Tokenizer {
    fn decode(&self, ids: &[u32]) -> Result<String, oxrl_models::ModelError> {
        oxrl_models::Tokenizer::decode(self, ids, true)
    }
}
