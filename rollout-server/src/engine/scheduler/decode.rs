//! Decode: every running sample whose KV is complete feeds its last sampled token into one
//! batched step; when the cache lacks blocks for the step, the newest sequences are preempted.

use super::{decode_len, internal, logits_rows, Phase, Scheduler, SeqSlot};
use crate::engine::metrics::MetricsShared;
use crate::engine::sampler;
use crate::types::{EngineError, FinishReason};
use oxrl_models::{SeqCache, StepLogits};
use std::sync::atomic::Ordering;
use std::time::Instant;

/// Sample `idx` of request `id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SampleRef {
    pub id: u64,
    pub idx: usize,
}

impl SampleRef {
    /// Where this sample's cache is kept.
    fn slot(self) -> SeqSlot {
        SeqSlot::Sample {
            id: self.id,
            idx: self.idx,
        }
    }
}

impl Scheduler {
    /// Every sample that decodes this step: running, with its KV complete.
    pub(super) fn decode_set(&self) -> Vec<SampleRef> {
        let mut out = Vec::new();
        for (&id, r) in &self.reqs {
            if r.phase != Phase::Decode {
                continue;
            }
            for s in &r.samples {
                if !s.done() && s.cache.as_ref().map(SeqCache::len) == Some(decode_len(r, s)) {
                    out.push(SampleRef { id, idx: s.index });
                }
            }
        }
        out
    }

    /// The decode step: makes room (preempting), feeds every sample of the decode set its last
    /// token, samples the next one and streams it.
    pub(super) fn decode_step(&mut self) -> Result<(), EngineError> {
        let mut set = self.decode_set();
        loop {
            if set.is_empty() {
                return Ok(());
            }
            let needed: usize = set
                .iter()
                .filter_map(|s| self.reqs.get(&s.id)?.samples[s.idx].cache.as_ref())
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
        if let [SampleRef { id, idx }] = set[..] {
            // A lone sequence that still does not fit has outgrown the whole cache.
            let needed = self.reqs[&id].samples[idx]
                .cache
                .as_ref()
                .map(|c| self.cache.blocks_needed(c, 1))
                .unwrap_or(0);
            if needed > self.cache.free_blocks() {
                tracing::warn!("request {id}: sequence outgrew the KV cache; aborting it");
                if let Some(r) = self.reqs.get_mut(&id) {
                    r.samples[idx].force_finish(FinishReason::Abort);
                    if let Some(c) = r.samples[idx].cache.take() {
                        self.cache.release(c);
                    }
                }
                return Ok(());
            }
        }
        let t0 = Instant::now();
        let mut toks: Vec<[u32; 1]> = Vec::with_capacity(set.len());
        for s in &set {
            let r = self.reqs.get(&s.id).ok_or_else(|| internal("decode set"))?;
            let last = r.samples[s.idx].tokens.last();
            toks.push([*last.ok_or_else(|| internal("decode token"))?]);
        }
        let slots: Vec<SeqSlot> = set.iter().map(|s| s.slot()).collect();
        let logits = self.run_step(&slots, &toks, StepLogits::Last)?;
        let t_model = t0.elapsed();
        let rows = logits_rows(&logits)?;
        let version = self.version();
        let vocab = self.vocab();
        let draws = {
            let mut jobs = Vec::with_capacity(set.len());
            for s in &set {
                let r = self.reqs.get(&s.id).ok_or_else(|| internal("decode req"))?;
                jobs.push((&r.params, r.samples[s.idx].rng.clone()));
            }
            sampler::sample_rows(&rows, vocab, jobs, self.sample_threads)
        };
        let generated = draws.len() as u64;
        for (s, (sampled, rng)) in set.iter().zip(draws) {
            self.apply_sampled(s.id, s.idx, sampled, rng, version);
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
}
