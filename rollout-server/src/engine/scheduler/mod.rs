//! The engine thread: continuous batching of prefill chunks and decode steps over the paged KV
//! cache, with group sharing, preemption and weight swaps between steps.
//!
//! One iteration:
//! 1. take new commands (requests, weight swaps, shutdown); a swap happens here, between steps;
//! 2. admit waiting requests (FIFO) while the running-sequence bound and free blocks allow;
//! 3. **decode**: every running sample feeds its last sampled token in one batched
//!    `Transformer::step`; if the cache lacks blocks, the newest sequences are preempted (their
//!    blocks released, recomputed later from prompt + generated tokens);
//! 4. **prefill**: the remaining token budget goes to prefill chunks (≤ `prefill_chunk` tokens per
//!    prompt) of admitted prompts and of preempted samples, oldest first, in one more `step`;
//!    prefill is chunked so that long prompts never starve decoding.
//!
//! A request's prompt is prefilled **once**; when its last chunk is done, the prompt's sequence is
//! forked into the `n` samples (full blocks shared by reference count) and every sample draws its
//! first token from the same last-position logits.
//!
//! Files: this one holds the scheduler's state, the loop, request bookkeeping and
//! [`Scheduler::run_step`], the one place where caches are taken out of their slots, stepped
//! and put back; `admission.rs` admits waiting requests and preempts; `prefill.rs` plans and
//! runs prefill chunks and forks groups; `decode.rs` runs the batched decode step.

mod admission;
mod decode;
mod prefill;

use super::metrics::{MetricsShared, RateWindow};
use super::prefix_cache::PrefixCache;
use super::sampler::{self, Scratch};
use super::sequence::{response, Sample, StopRules};
use super::{Command, PendingRequest, Shared, TokenDecoder};
use crate::engine::EngineConfig;
use crate::types::{EngineError, StreamEvent};
use candle_core::{DType, Tensor};
use oxrl_models::{CacheConfig, KvCache, ModelError, SeqCache, StepLogits, StepSeq, Transformer};
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc::UnboundedSender;

/// Where a request is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Admitted; the prompt is being prefilled.
    Prefill,
    /// The group has been forked; samples decode.
    Decode,
}

/// An admitted request.
struct Req {
    prompt: Vec<u32>,
    params: crate::types::SamplingParams,
    stream: bool,
    tx: UnboundedSender<StreamEvent>,
    phase: Phase,
    /// The prompt's KV while prefilling.
    prompt_seq: Option<SeqCache>,
    /// Prompt logprobs collected so far (index = prompt position).
    prompt_lp: Option<Vec<Option<crate::types::PromptTokenLogprob>>>,
    cached_prompt_tokens: usize,
    samples: Vec<Sample>,
}

impl Req {
    fn running_seqs(&self) -> usize {
        match self.phase {
            Phase::Prefill => self.params.n,
            Phase::Decode => self.samples.iter().filter(|s| !s.done()).count(),
        }
    }
}

/// Where a sequence's KV cache is kept between steps: the prompt of request `id` (while it is
/// prefilled) or its sample `idx`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SeqSlot {
    /// The prompt of request `id`.
    Prompt { id: u64 },
    /// Sample `idx` of request `id`.
    Sample { id: u64, idx: usize },
}

/// The scheduler state owned by the engine thread.
pub(crate) struct Scheduler {
    model: Arc<Transformer>,
    decoder: Option<Arc<dyn TokenDecoder>>,
    cfg: EngineConfig,
    shared: Arc<Shared>,
    cache: KvCache,
    prefix: PrefixCache,
    rules: StopRules,
    waiting: VecDeque<PendingRequest>,
    /// Admitted requests by id (= arrival order = priority: lower id first).
    reqs: BTreeMap<u64, Req>,
    scratch: Scratch,
    rate: RateWindow,
    seed_counter: u64,
    sample_threads: usize,
    /// Requests were served since the cache was last given back (`release_cache_when_idle`).
    worked_since_idle: bool,
}

/// The engine's view of a model failure: a full cache stays typed, the rest is reported as is.
fn model_err(e: ModelError) -> EngineError {
    match e {
        ModelError::CacheFull { needed, free } => EngineError::CacheFull { needed, free },
        e => EngineError::Model(e.to_string()),
    }
}

impl Scheduler {
    /// A scheduler for `model` with a freshly allocated KV cache.
    pub fn new(
        model: Arc<Transformer>,
        decoder: Option<Arc<dyn TokenDecoder>>,
        cfg: EngineConfig,
        shared: Arc<Shared>,
    ) -> Result<Self, ModelError> {
        let mcfg = model.config();
        let cache = KvCache::new(
            mcfg,
            CacheConfig {
                block_size: cfg.block_size,
                num_blocks: cfg.num_blocks,
            },
            model.dtype(),
            model.device(),
        )?;
        let eos = if cfg.eos_token_ids.is_empty() {
            mcfg.eos_token_ids.clone()
        } else {
            cfg.eos_token_ids.clone()
        };
        let rules = StopRules {
            eos,
            context_len: mcfg.max_position_embeddings,
            max_stop_len: cfg.limits.max_stop_len,
        };
        MetricsShared::set(&shared.metrics.total_blocks, cfg.num_blocks as u64);
        MetricsShared::set(&shared.metrics.free_blocks, cache.free_blocks() as u64);
        let seed_counter = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x5EED);
        Ok(Self {
            model,
            decoder,
            prefix: PrefixCache::new(cfg.block_size),
            cfg,
            shared,
            cache,
            rules,
            waiting: VecDeque::new(),
            reqs: BTreeMap::new(),
            scratch: Scratch::default(),
            rate: RateWindow::default(),
            seed_counter,
            sample_threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
                .min(8),
            worked_since_idle: false,
        })
    }

    /// The engine loop; returns on `Shutdown` or when every handle is gone. However it ends —
    /// a panic included — the engine is marked shut down (and, after a panic, crashed), so
    /// handles refuse new work and `/health` stops answering 200.
    pub fn run(mut self, rx: mpsc::Receiver<Command>) {
        let _guard = ShutDownOnDrop(self.shared.clone());
        'outer: loop {
            // 1. Commands: block only when there is nothing to do.
            let idle = self.reqs.is_empty() && self.waiting.is_empty();
            let first = if idle {
                if self.cfg.release_cache_when_idle && self.worked_since_idle {
                    self.worked_since_idle = false;
                    self.prefix.clear(&mut self.cache);
                    if let Err(e) = self.cache.discard_pages() {
                        tracing::warn!("could not give the idle KV cache back: {e}");
                    }
                }
                match rx.recv() {
                    Ok(c) => Some(c),
                    Err(_) => break 'outer,
                }
            } else {
                None
            };
            let mut cmds: Vec<Command> = first.into_iter().collect();
            loop {
                match rx.try_recv() {
                    Ok(c) => cmds.push(c),
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => {
                        if cmds.is_empty() && idle {
                            break 'outer;
                        }
                        break;
                    }
                }
            }
            for c in cmds {
                match c {
                    Command::Submit(p) => self.waiting.push_back(*p),
                    Command::SubmitBatch(ps) => self.waiting.extend(ps),
                    Command::SwapModel(m, reply) => self.swap(m, reply),
                    Command::Shutdown => break 'outer,
                }
            }
            self.drop_abandoned();
            self.worked_since_idle |= !self.waiting.is_empty() || !self.reqs.is_empty();
            self.admit();
            if let Err(e) = self.iteration() {
                // A model failure (not a capacity problem): fail every admitted request.
                tracing::error!("engine step failed: {e}");
                let ids: Vec<u64> = self.reqs.keys().copied().collect();
                for id in ids {
                    self.fail(id, e.clone());
                }
            }
            self.update_gauges();
        }
        self.shared.shut_down.store(true, Ordering::Release);
        let ids: Vec<u64> = self.reqs.keys().copied().collect();
        for id in ids {
            self.fail(id, EngineError::ShutDown);
        }
        for p in self.waiting.drain(..) {
            let _ = p.tx.send(StreamEvent::Error(EngineError::ShutDown));
        }
        self.prefix.clear(&mut self.cache);
    }

    fn swap(&mut self, m: Arc<Transformer>, reply: mpsc::Sender<u64>) {
        self.model = m.clone();
        if let Ok(mut g) = self.shared.model.write() {
            *g = m;
        }
        // Cached prefixes hold KV of the old weights.
        self.prefix.clear(&mut self.cache);
        let v = self.shared.version.fetch_add(1, Ordering::AcqRel) + 1;
        MetricsShared::set(&self.shared.metrics.policy_version, v);
        let _ = reply.send(v);
    }

    fn version(&self) -> u64 {
        self.shared.version.load(Ordering::Acquire)
    }

    fn update_gauges(&self) {
        let m = &self.shared.metrics;
        let running: usize = self.reqs.values().map(Req::running_seqs).sum();
        MetricsShared::set(&m.running_sequences, running as u64);
        MetricsShared::set(&m.free_blocks, self.cache.free_blocks() as u64);
    }

    /// Ends request `id` with an error, releasing its blocks.
    fn fail(&mut self, id: u64, e: EngineError) {
        if let Some(mut r) = self.reqs.remove(&id) {
            self.release_req(&mut r);
            let _ = r.tx.send(StreamEvent::Error(e));
            MetricsShared::add(&self.shared.metrics.requests_finished, 1);
        }
    }

    fn release_req(&mut self, r: &mut Req) {
        if let Some(s) = r.prompt_seq.take() {
            self.cache.release(s);
        }
        for s in &mut r.samples {
            if let Some(c) = s.cache.take() {
                self.cache.release(c);
            }
        }
    }

    fn finish_request_now(&mut self, mut r: Req) {
        self.release_req(&mut r);
        let resp = response(
            &r.prompt,
            r.prompt_lp.take(),
            &r.samples,
            r.cached_prompt_tokens,
        );
        // Gauges and counters first: a client that reads the metrics as soon as its response
        // arrives must see its blocks returned and its request counted.
        self.update_gauges();
        MetricsShared::add(&self.shared.metrics.requests_finished, 1);
        let _ = r.tx.send(StreamEvent::Done(resp));
    }

    /// Sends `Done` for every request whose samples have all finished.
    fn complete_finished(&mut self) {
        let done: Vec<u64> = self
            .reqs
            .iter()
            .filter(|(_, r)| r.phase == Phase::Decode && r.samples.iter().all(Sample::done))
            .map(|(&id, _)| id)
            .collect();
        for id in done {
            if let Some(r) = self.reqs.remove(&id) {
                self.finish_request_now(r);
            }
        }
    }

    /// One scheduler iteration: a decode step and a prefill step.
    fn iteration(&mut self) -> Result<(), EngineError> {
        self.decode_step()?;
        self.complete_finished();
        self.prefill_step()?;
        self.complete_finished();
        Ok(())
    }

    fn vocab(&self) -> usize {
        self.model.config().vocab_size
    }

    /// Records the drawn token of sample `i` of request `id` and streams the delta.
    fn apply_sampled(
        &mut self,
        id: u64,
        i: usize,
        sampled: sampler::Sampled,
        rng: rand_chacha::ChaCha8Rng,
        version: u64,
    ) {
        let Some(r) = self.reqs.get_mut(&id) else {
            return;
        };
        let plen = r.prompt.len();
        let s = &mut r.samples[i];
        s.rng = rng;
        let ev = s.on_token(
            sampled,
            &r.params,
            &self.rules,
            plen,
            self.decoder.as_deref(),
            version,
        );
        if r.stream {
            let _ = r.tx.send(ev);
        }
    }

    /// Releases the KV of finished samples.
    fn release_finished(&mut self) {
        for r in self.reqs.values_mut() {
            for s in &mut r.samples {
                if s.done() {
                    if let Some(c) = s.cache.take() {
                        self.cache.release(c);
                    }
                }
            }
        }
    }

    /// The cache slot `slot` names, when its request is still admitted.
    fn slot_mut(&mut self, slot: SeqSlot) -> Option<&mut Option<SeqCache>> {
        match slot {
            SeqSlot::Prompt { id } => self.reqs.get_mut(&id).map(|r| &mut r.prompt_seq),
            SeqSlot::Sample { id, idx } => self
                .reqs
                .get_mut(&id)
                .and_then(|r| r.samples.get_mut(idx))
                .map(|s| &mut s.cache),
        }
    }

    /// Runs one `Transformer::step` over the sequences in `slots`, feeding `toks[k]` to
    /// `slots[k]`: takes every cache out of its slot (a fresh sequence where the slot has none
    /// yet) so that the step can borrow them mutably alongside their tokens, runs the step, and
    /// puts every cache back whatever happened (a cache whose request is gone is released).
    /// Prefill and decode both go through here.
    fn run_step<T: AsRef<[u32]>>(
        &mut self,
        slots: &[SeqSlot],
        toks: &[T],
        want: StepLogits,
    ) -> Result<Tensor, EngineError> {
        if slots.len() != toks.len() || slots.iter().any(|&s| self.slot_mut(s).is_none()) {
            return Err(internal("step slots"));
        }
        let mut caches: Vec<SeqCache> = Vec::with_capacity(slots.len());
        for &slot in slots {
            let taken = self.slot_mut(slot).and_then(Option::take);
            caches.push(taken.unwrap_or_else(|| self.cache.new_sequence()));
        }
        let result = {
            let mut steps: Vec<StepSeq<'_>> = caches
                .iter_mut()
                .zip(toks)
                .map(|(c, t)| StepSeq {
                    cache: c,
                    tokens: t.as_ref(),
                })
                .collect();
            self.model.step(&mut self.cache, &mut steps, want)
        };
        for (&slot, c) in slots.iter().zip(caches) {
            match self.slot_mut(slot) {
                Some(s) => *s = Some(c),
                None => self.cache.release(c),
            }
        }
        result.map_err(model_err)
    }
}

/// Marks the engine shut down when the engine thread leaves [`Scheduler::run`], by return or by
/// panic (then also crashed). Dropped before the scheduler, so a client whose response channel
/// closes already sees the engine's new state.
struct ShutDownOnDrop(Arc<Shared>);

impl Drop for ShutDownOnDrop {
    fn drop(&mut self) {
        if std::thread::panicking() {
            tracing::error!("the engine thread panicked: the engine has stopped");
            self.0.crashed.store(true, Ordering::Release);
        }
        self.0.shut_down.store(true, Ordering::Release);
    }
}

/// Tokens a decoding sample's KV holds: the prompt and all but the last sampled token.
fn decode_len(r: &Req, s: &Sample) -> usize {
    r.prompt.len() + s.tokens.len().saturating_sub(1)
}

fn internal(what: &str) -> EngineError {
    EngineError::Model(format!("internal scheduler inconsistency ({what})"))
}

/// Flattens f32 logits `[rows, vocab]` to host memory.
fn logits_rows(logits: &Tensor) -> Result<Vec<f32>, EngineError> {
    let l = if logits.dtype() == DType::F32 {
        logits.clone()
    } else {
        logits
            .to_dtype(DType::F32)
            .map_err(|e| EngineError::Model(e.to_string()))?
    };
    l.flatten_all()
        .and_then(|t| t.to_vec1::<f32>())
        .map_err(|e| EngineError::Model(e.to_string()))
}
