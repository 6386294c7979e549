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

use super::metrics::{MetricsShared, RateWindow};
use super::prefix_cache::PrefixCache;
use super::sampler::{self, Scratch};
use super::sequence::{response, IncrementalDetok, Sample, StopRules};
use super::{Command, PendingRequest, Shared, TokenDecoder};
use crate::engine::EngineConfig;
use crate::types::{EngineError, FinishReason, PromptTokenLogprob, RolloutRequest, StreamEvent};
use candle_core::{DType, Tensor};
use oxrl_models::{CacheConfig, KvCache, ModelError, SeqCache, StepLogits, StepSeq, Transformer};
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::{Instant, SystemTime, UNIX_EPOCH};
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
    prompt_lp: Option<Vec<Option<PromptTokenLogprob>>>,
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

/// A unit of prefill work planned for this iteration.
#[derive(Debug, Clone, Copy)]
enum PrefillItem {
    /// Prompt of request `id`, `len` more tokens.
    Prompt { id: u64, len: usize },
    /// Recompute of sample `idx` of request `id`, `len` more tokens.
    Recompute { id: u64, idx: usize, len: usize },
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
                    Command::SwapModel(m, reply) => self.swap(m, reply),
                    Command::Shutdown => break 'outer,
                }
            }
            self.drop_abandoned();
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

    /// Aborts requests whose client has gone away.
    fn drop_abandoned(&mut self) {
        let gone: Vec<u64> = self
            .reqs
            .iter()
            .filter(|(_, r)| r.tx.is_closed())
            .map(|(&id, _)| id)
            .collect();
        for id in gone {
            self.fail(id, EngineError::Aborted("the client went away".into()));
        }
        let before = self.waiting.len();
        self.waiting.retain(|p| !p.tx.is_closed());
        let dropped = before - self.waiting.len();
        if dropped > 0 {
            MetricsShared::add(&self.shared.metrics.requests_finished, dropped as u64);
        }
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

    /// Blocks still to be allocated by prompts being prefilled.
    fn prefill_reserve(&self) -> usize {
        self.reqs
            .values()
            .filter(|r| r.phase == Phase::Prefill)
            .map(|r| match &r.prompt_seq {
                Some(s) => self.cache.blocks_needed(s, r.prompt.len() - s.len()),
                None => r.prompt.len().div_ceil(self.cfg.block_size),
            })
            .sum()
    }

    /// Moves waiting requests into the running set while bounds allow.
    fn admit(&mut self) {
        loop {
            let Some(front) = self.waiting.front() else {
                return;
            };
            let n = front.request.params.n;
            let running: usize = self.reqs.values().map(Req::running_seqs).sum();
            if running > 0 && running + n > self.cfg.max_running_seqs {
                return;
            }
            let bs = self.cfg.block_size;
            let need = front.request.prompt_token_ids.len().div_ceil(bs) + 2 * n;
            let decoding: usize = self
                .reqs
                .values()
                .filter(|r| r.phase == Phase::Decode)
                .map(Req::running_seqs)
                .sum();
            let reserve = self.prefill_reserve() + decoding;
            let free = self.cache.free_blocks() + self.prefix.evictable_blocks();
            if !self.reqs.is_empty() && free < need + reserve {
                return;
            }
            let Some(p) = self.waiting.pop_front() else {
                return;
            };
            self.start_request(p);
        }
    }

    fn start_request(&mut self, p: PendingRequest) {
        let PendingRequest {
            id,
            request,
            stream,
            tx,
            slot,
        } = p;
        drop(slot); // admitted: no longer queued
        let RolloutRequest {
            prompt_token_ids: prompt,
            params,
        } = request;
        let m = &self.shared.metrics;
        MetricsShared::add(&m.requests, 1);
        MetricsShared::add(&m.prompt_tokens, prompt.len() as u64);
        let seed = params.seed.unwrap_or_else(|| {
            self.seed_counter = self.seed_counter.wrapping_add(0x9E37_79B9_7F4A_7C15);
            self.seed_counter
        });
        let samples = (0..params.n)
            .map(|i| {
                Sample::new(
                    i,
                    sampler::rng_for(seed, i),
                    params.logprobs.is_some(),
                    self.decoder
                        .as_ref()
                        .map(|_| IncrementalDetok::new(&prompt)),
                )
            })
            .collect();
        let mut r = Req {
            prompt_lp: params
                .prompt_logprobs
                .map(|_| (0..prompt.len()).map(|_| None).collect()),
            prompt,
            params,
            stream,
            tx,
            phase: Phase::Prefill,
            prompt_seq: None,
            cached_prompt_tokens: 0,
            samples,
        };
        // Prefix cache: reuse KV of an earlier prompt (not when prompt logprobs are wanted).
        if self.cfg.prefix_cache && r.prompt_lp.is_none() {
            if let Some(seq) = self.prefix.lookup(&mut self.cache, &r.prompt) {
                r.cached_prompt_tokens = seq.len();
                MetricsShared::add(&m.prefill_tokens_saved_prefix_cache, seq.len() as u64);
                r.prompt_seq = Some(seq);
            }
        }
        if r.params.max_tokens == 0 && r.prompt_lp.is_none() {
            // Nothing to compute: every completion is empty.
            for s in &mut r.samples {
                s.version_start = Some(self.version());
                s.version_end = self.version();
                s.force_finish(FinishReason::Length);
            }
            self.finish_request_now(r);
            return;
        }
        self.reqs.insert(id, r);
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

    /// Frees blocks: a cached prefix first, else the newest sequence (newest request, highest
    /// sample index, then its prompt prefill), never `protect` (request id and sample index, or
    /// `None` for the prompt). False when nothing can be freed.
    fn preempt_one(&mut self, protect: Option<(u64, Option<usize>)>) -> bool {
        // Cached prefixes go first.
        if self.prefix.evict_one(&mut self.cache) {
            return true;
        }
        for (&id, r) in self.reqs.iter_mut().rev() {
            let keep = |i: Option<usize>| protect == Some((id, i));
            if let Some(s) = r
                .samples
                .iter_mut()
                .rev()
                .find(|s| s.cache.is_some() && !s.done() && !keep(Some(s.index)))
            {
                if let Some(c) = s.cache.take() {
                    self.cache.release(c);
                }
                MetricsShared::add(&self.shared.metrics.preemptions, 1);
                return true;
            }
            if keep(None) {
                continue;
            }
            if let Some(seq) = r.prompt_seq.take() {
                self.cache.release(seq);
                r.cached_prompt_tokens = 0;
                if let Some(lp) = r.prompt_lp.as_mut() {
                    lp.iter_mut().for_each(|x| *x = None);
                }
                MetricsShared::add(&self.shared.metrics.preemptions, 1);
                return true;
            }
        }
        false
    }

    /// One scheduler iteration: a decode step and a prefill step.
    fn iteration(&mut self) -> Result<(), EngineError> {
        self.decode_step()?;
        self.complete_finished();
        self.prefill_step()?;
        self.complete_finished();
        Ok(())
    }

    /// (request id, sample index) of every sample that decodes this step.
    fn decode_set(&self) -> Vec<(u64, usize)> {
        let mut out = Vec::new();
        for (&id, r) in &self.reqs {
            if r.phase != Phase::Decode {
                continue;
            }
            for s in &r.samples {
                if !s.done() && s.cache.as_ref().map(SeqCache::len) == Some(decode_len(r, s)) {
                    out.push((id, s.index));
                }
            }
        }
        out
    }

    fn decode_step(&mut self) -> Result<(), EngineError> {
        let mut set = self.decode_set();
        loop {
            if set.is_empty() {
                return Ok(());
            }
            let needed: usize = set
                .iter()
                .filter_map(|&(id, i)| self.reqs.get(&id)?.samples[i].cache.as_ref())
                .map(|c| self.cache.blocks_needed(c, 1))
                .sum();
            if needed <= self.cache.free_blocks() {
                break;
            }
            if !self.preempt_one(None) {
                break;
            }
            set = self.decode_set();
        }
        if set.len() == 1 {
            // A lone sequence that still does not fit has outgrown the whole cache.
            let (id, i) = set[0];
            let needed = self.reqs[&id].samples[i]
                .cache
                .as_ref()
                .map(|c| self.cache.blocks_needed(c, 1))
                .unwrap_or(0);
            if needed > self.cache.free_blocks() {
                tracing::warn!("request {id}: sequence outgrew the KV cache; aborting it");
                if let Some(r) = self.reqs.get_mut(&id) {
                    r.samples[i].force_finish(FinishReason::Abort);
                    if let Some(c) = r.samples[i].cache.take() {
                        self.cache.release(c);
                    }
                }
                return Ok(());
            }
        }
        let t0 = Instant::now();
        // Take the caches out so that `step` can borrow them mutably alongside their tokens.
        let mut caches: Vec<SeqCache> = Vec::with_capacity(set.len());
        let mut toks: Vec<[u32; 1]> = Vec::with_capacity(set.len());
        for &(id, i) in &set {
            let s = &mut self
                .reqs
                .get_mut(&id)
                .ok_or_else(|| internal("decode set"))?
                .samples[i];
            caches.push(s.cache.take().ok_or_else(|| internal("decode cache"))?);
            toks.push([*s.tokens.last().ok_or_else(|| internal("decode token"))?]);
        }
        let result = {
            let mut steps: Vec<StepSeq<'_>> = caches
                .iter_mut()
                .zip(&toks)
                .map(|(c, t)| StepSeq {
                    cache: c,
                    tokens: t,
                })
                .collect();
            self.model
                .step(&mut self.cache, &mut steps, StepLogits::Last)
        };
        // Put the caches back whatever happened.
        for (&(id, i), c) in set.iter().zip(caches) {
            if let Some(r) = self.reqs.get_mut(&id) {
                r.samples[i].cache = Some(c);
            }
        }
        let logits = result.map_err(model_err)?;
        let t_model = t0.elapsed();
        let rows = logits_rows(&logits)?;
        let version = self.version();
        let vocab = self.vocab();
        let draws = {
            let mut jobs = Vec::with_capacity(set.len());
            for &(id, i) in &set {
                let r = self.reqs.get(&id).ok_or_else(|| internal("decode req"))?;
                jobs.push((&r.params, r.samples[i].rng.clone()));
            }
            sampler::sample_rows(&rows, vocab, jobs, self.sample_threads)
        };
        let generated = draws.len() as u64;
        for (&(id, i), (sampled, rng)) in set.iter().zip(draws) {
            self.apply_sampled(id, i, sampled, rng, version);
        }
        tracing::debug!(
            seqs = set.len(),
            model_ms = t_model.as_secs_f64() * 1e3,
            sample_ms = (t0.elapsed() - t_model).as_secs_f64() * 1e3,
            "decode step"
        );
        let m = &self.shared.metrics;
        MetricsShared::add(&m.generated_tokens, generated);
        MetricsShared::add(&m.decode_nanos, t0.elapsed().as_nanos() as u64);
        MetricsShared::add(&m.decode_steps, 1);
        let total = m.generated_tokens.load(Ordering::Relaxed);
        m.set_rate(self.rate.record(Instant::now(), total));
        self.release_finished();
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

    /// Plans this iteration's prefill chunks: recomputes first, then prompts, oldest first.
    fn plan_prefill(&mut self) -> Vec<PrefillItem> {
        let decoding: usize = self.decode_set().len();
        let mut budget = self.cfg.max_step_tokens.saturating_sub(decoding);
        let chunk_cap = self.cfg.prefill_chunk;
        let mut plan = Vec::new();
        let mut reserved = 0usize;
        let ids: Vec<u64> = self.reqs.keys().copied().collect();
        let bs = self.cfg.block_size;
        for pass in 0..2 {
            for &id in &ids {
                if budget == 0 {
                    return plan;
                }
                let Some(r) = self.reqs.get(&id) else {
                    continue;
                };
                let mut work: Vec<(Option<usize>, usize, usize)> = Vec::new(); // (sample, have, total)
                if pass == 0 && r.phase == Phase::Decode {
                    for s in &r.samples {
                        let have = s.cache.as_ref().map_or(0, SeqCache::len);
                        let total = decode_len(r, s);
                        if !s.done() && have < total {
                            // Recompute prompt + tokens[..len-1] after a preemption.
                            work.push((Some(s.index), have, total));
                        }
                    }
                }
                if pass == 1 && r.phase == Phase::Prefill {
                    let have = r.prompt_seq.as_ref().map_or(0, SeqCache::len);
                    work.push((None, have, r.prompt.len()));
                }
                for (idx, have, total) in work {
                    let mut len = (total - have).min(chunk_cap).min(budget);
                    if idx.is_none() && self.cfg.prefix_cache {
                        // Stop once at the block-aligned prefix so it can be cached.
                        let a = self.prefix.aligned_len(total);
                        if have < a && have + len > a {
                            len = a - have;
                        }
                    }
                    if len == 0 {
                        continue;
                    }
                    // Blocks this chunk allocates (a fresh sequence if none yet).
                    let blocks = (have + len).div_ceil(bs) - have.div_ceil(bs);
                    let free = self.cache.free_blocks().saturating_sub(reserved);
                    let len = if blocks <= free {
                        len
                    } else {
                        // Shrink to what fits: the rest of the partial block plus whole blocks.
                        let room = (bs - have % bs) % bs + free * bs;
                        len.min(room)
                    };
                    if len == 0 {
                        continue;
                    }
                    reserved += (have + len).div_ceil(bs) - have.div_ceil(bs);
                    budget -= len;
                    plan.push(match idx {
                        Some(idx) => PrefillItem::Recompute { id, idx, len },
                        None => PrefillItem::Prompt { id, len },
                    });
                }
            }
        }
        plan
    }

    fn prefill_step(&mut self) -> Result<(), EngineError> {
        let mut plan = self.plan_prefill();
        if plan.is_empty() {
            // Nothing fits: make room by preempting newer work for the oldest stuck item.
            let stuck = self.reqs.iter().find_map(|(&id, r)| match r.phase {
                Phase::Prefill => Some((id, None)),
                Phase::Decode => r
                    .samples
                    .iter()
                    .find(|s| {
                        !s.done() && s.cache.as_ref().map_or(0, SeqCache::len) < decode_len(r, s)
                    })
                    .map(|s| (id, Some(s.index))),
            });
            let Some((id, idx)) = stuck else {
                return Ok(());
            };
            if !self.decode_set().is_empty() {
                return Ok(()); // decoding sequences will finish and free blocks
            }
            if self.preempt_one(Some((id, idx))) {
                plan = self.plan_prefill();
            }
            if plan.is_empty() {
                self.fail(
                    id,
                    EngineError::Aborted("the KV cache is too small for this request".into()),
                );
                return Ok(());
            }
        }
        let t0 = Instant::now();
        // Prompt-logprob items need every position's logits: run them on their own.
        let (all, last): (Vec<_>, Vec<_>) = plan.into_iter().partition(|it| match it {
            PrefillItem::Prompt { id, .. } => {
                self.reqs.get(id).is_some_and(|r| r.prompt_lp.is_some())
            }
            PrefillItem::Recompute { .. } => false,
        });
        if !last.is_empty() {
            self.run_prefill(&last, StepLogits::Last)?;
        }
        for it in all {
            self.run_prefill(&[it], StepLogits::All)?;
        }
        MetricsShared::add(
            &self.shared.metrics.prefill_nanos,
            t0.elapsed().as_nanos() as u64,
        );
        Ok(())
    }

    fn run_prefill(&mut self, items: &[PrefillItem], want: StepLogits) -> Result<(), EngineError> {
        // Gather (cache, tokens) of every item.
        let mut caches: Vec<SeqCache> = Vec::with_capacity(items.len());
        let mut toks: Vec<Vec<u32>> = Vec::with_capacity(items.len());
        let mut starts: Vec<usize> = Vec::with_capacity(items.len());
        for it in items {
            match *it {
                PrefillItem::Prompt { id, len } => {
                    let r = self
                        .reqs
                        .get_mut(&id)
                        .ok_or_else(|| internal("prefill req"))?;
                    let seq = match r.prompt_seq.take() {
                        Some(s) => s,
                        None => self.cache.new_sequence(),
                    };
                    let have = seq.len();
                    toks.push(r.prompt[have..have + len].to_vec());
                    starts.push(have);
                    caches.push(seq);
                }
                PrefillItem::Recompute { id, idx, len } => {
                    let r = self
                        .reqs
                        .get_mut(&id)
                        .ok_or_else(|| internal("recompute req"))?;
                    // A recompute is a fresh sequence held in the sample's slot once started.
                    let seq = match r.samples[idx].cache.take() {
                        Some(s) => s,
                        None => self.cache.new_sequence(),
                    };
                    let have = seq.len();
                    let s = &r.samples[idx];
                    let full: Vec<u32> = r
                        .prompt
                        .iter()
                        .chain(&s.tokens[..s.tokens.len().saturating_sub(1)])
                        .copied()
                        .collect();
                    toks.push(full[have..have + len].to_vec());
                    starts.push(have);
                    caches.push(seq);
                }
            }
        }
        let result = {
            let mut steps: Vec<StepSeq<'_>> = caches
                .iter_mut()
                .zip(&toks)
                .map(|(c, t)| StepSeq {
                    cache: c,
                    tokens: t,
                })
                .collect();
            self.model.step(&mut self.cache, &mut steps, want)
        };
        let computed: usize = if result.is_ok() {
            toks.iter().map(Vec::len).sum()
        } else {
            0
        };
        MetricsShared::add(
            &self.shared.metrics.prefill_tokens_computed,
            computed as u64,
        );
        // Put the caches back (recomputes into a holding list until complete).
        let mut finished_prompts: Vec<u64> = Vec::new();
        for (it, c) in items.iter().zip(caches) {
            match *it {
                PrefillItem::Prompt { id, .. } => {
                    if let Some(r) = self.reqs.get_mut(&id) {
                        if c.len() == r.prompt.len() {
                            finished_prompts.push(id);
                        }
                        let a = self.prefix.aligned_len(r.prompt.len());
                        if self.cfg.prefix_cache && a > 0 && c.len() == a {
                            self.prefix.insert(&mut self.cache, &r.prompt[..a], &c);
                        }
                        r.prompt_seq = Some(c);
                    } else {
                        self.cache.release(c);
                    }
                }
                PrefillItem::Recompute { id, idx, .. } => {
                    if let Some(r) = self.reqs.get_mut(&id) {
                        // Until complete, `decode_set` skips it (its length is short).
                        r.samples[idx].cache = Some(c);
                    } else {
                        self.cache.release(c);
                    }
                }
            }
        }
        let logits = result.map_err(model_err)?;
        let rows = logits_rows(&logits)?;
        let vocab = self.vocab();
        // Walk the rows item by item.
        let mut off = 0usize;
        let version = self.version();
        for (k, it) in items.iter().enumerate() {
            let nrows = match want {
                StepLogits::Last => 1,
                StepLogits::All => toks[k].len(),
            };
            let item_rows = &rows[off * vocab..(off + nrows) * vocab];
            off += nrows;
            if let PrefillItem::Prompt { id, .. } = *it {
                if want == StepLogits::All {
                    self.record_prompt_logprobs(id, starts[k], item_rows);
                }
                if finished_prompts.contains(&id) {
                    let last = &item_rows[(nrows - 1) * vocab..nrows * vocab];
                    self.fork_group(id, last, version);
                }
            }
        }
        self.release_finished();
        Ok(())
    }

    fn record_prompt_logprobs(&mut self, id: u64, start: usize, rows: &[f32]) {
        let vocab = self.vocab();
        let Some(r) = self.reqs.get_mut(&id) else {
            return;
        };
        let k = r.params.prompt_logprobs.unwrap_or(0);
        let Some(lp) = r.prompt_lp.as_mut() else {
            return;
        };
        for (j, row) in rows.chunks(vocab).enumerate() {
            let target = start + j + 1;
            if target >= r.prompt.len() {
                break;
            }
            let (_, lse) = sampler::log_normalizer(row, 1.0);
            let tok = r.prompt[target];
            lp[target] = Some(PromptTokenLogprob {
                token_id: tok,
                logprob: (row[tok as usize] as f64 - lse) as f32,
                top_logprobs: sampler::top_logprobs(row, 1.0, lse, k),
            });
        }
    }

    /// The prompt of `id` is fully prefilled: fork it into the samples and draw first tokens.
    fn fork_group(&mut self, id: u64, row: &[f32], version: u64) {
        let Some(r) = self.reqs.get_mut(&id) else {
            return;
        };
        let Some(seq) = r.prompt_seq.take() else {
            return;
        };
        let n = r.samples.len();
        let plen = r.prompt.len();
        let computed_here = plen - r.cached_prompt_tokens;
        MetricsShared::add(
            &self.shared.metrics.prefill_tokens_saved_group,
            ((n - 1) * computed_here) as u64,
        );
        r.phase = Phase::Decode;
        if r.params.max_tokens == 0 {
            // Prompt scoring only.
            for s in &mut r.samples {
                s.version_start = Some(version);
                s.version_end = version;
                s.force_finish(FinishReason::Length);
            }
            self.cache.release(seq);
            return;
        }
        // Samples 0..n-1 fork (sharing full blocks); the last takes the prompt's own sequence.
        for i in 0..n - 1 {
            match self.cache.fork(&seq) {
                Ok(child) => r.samples[i].cache = Some(child),
                Err(_) => {
                    // No block for the partial copy: this sample recomputes later.
                    MetricsShared::add(&self.shared.metrics.preemptions, 1);
                }
            }
        }
        r.samples[n - 1].cache = Some(seq);
        for i in 0..n {
            let s = &mut r.samples[i];
            let sampled = sampler::sample(row, &r.params, &mut s.rng, &mut self.scratch);
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
        MetricsShared::add(&self.shared.metrics.generated_tokens, n as u64);
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
