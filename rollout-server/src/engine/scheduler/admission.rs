//! Admission and preemption: moving waiting requests into the running set while the
//! running-sequence bound and the free blocks allow (a request's prompt is looked up in the
//! prefix cache on the way in), dropping requests whose client went away, and freeing blocks by
//! preempting the newest work when the cache runs short.

use super::{Phase, Req, Scheduler, SeqSlot};
use crate::engine::metrics::MetricsShared;
use crate::engine::sampler;
use crate::engine::sequence::{IncrementalDetok, Sample};
use crate::engine::PendingRequest;
use crate::types::{EngineError, FinishReason, RolloutRequest};

impl Scheduler {
    /// Aborts requests whose client has gone away.
    pub(super) fn drop_abandoned(&mut self) {
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
    pub(super) fn admit(&mut self) {
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

    /// Frees blocks: a cached prefix first, else the newest sequence (newest request, highest
    /// sample index, then its prompt prefill), never the sequence in `protect`. False when
    /// nothing can be freed.
    pub(super) fn preempt_one(&mut self, protect: Option<SeqSlot>) -> bool {
        // Cached prefixes go first.
        if self.prefix.evict_one(&mut self.cache) {
            return true;
        }
        for (&id, r) in self.reqs.iter_mut().rev() {
            let keep = |slot: SeqSlot| protect == Some(slot);
            if let Some(s) = r.samples.iter_mut().rev().find(|s| {
                s.cache.is_some() && !s.done() && !keep(SeqSlot::Sample { id, idx: s.index })
            }) {
                if let Some(c) = s.cache.take() {
                    self.cache.release(c);
                }
                MetricsShared::add(&self.shared.metrics.preemptions, 1);
                return true;
            }
            if keep(SeqSlot::Prompt { id }) {
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
}
