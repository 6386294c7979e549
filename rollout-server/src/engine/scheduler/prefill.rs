//! Prefill: planning this iteration's chunks (recomputes of preempted samples first, then
//! prompts, oldest first, within the token budget and the free blocks), running them, recording
//! prompt logprobs, and forking a fully prefilled prompt into its `n` samples.

use super::{decode_len, internal, logits_rows, Phase, Scheduler, SeqSlot};
use crate::engine::metrics::MetricsShared;
use crate::engine::sampler;
use crate::types::{EngineError, FinishReason, PromptTokenLogprob};
use oxrl_models::{SeqCache, StepLogits};
use std::time::Instant;

/// A unit of prefill work planned for this iteration: `len` more tokens of the sequence in
/// `slot` (a prompt, or a preempted sample's recompute of prompt + generated tokens).
#[derive(Debug, Clone, Copy)]
struct PrefillItem {
    slot: SeqSlot,
    len: usize,
}

/// A sequence that still needs prefill: the sample to recompute (`None`: the prompt), the tokens
/// its KV holds and the tokens it must hold.
#[derive(Debug, Clone, Copy)]
struct PrefillWork {
    sample: Option<usize>,
    have: usize,
    total: usize,
}

impl Scheduler {
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
                let mut work: Vec<PrefillWork> = Vec::new();
                if pass == 0 && r.phase == Phase::Decode {
                    for s in &r.samples {
                        let have = s.cache.as_ref().map_or(0, SeqCache::len);
                        let total = decode_len(r, s);
                        if !s.done() && have < total {
                            // Recompute prompt + tokens[..len-1] after a preemption.
                            work.push(PrefillWork {
                                sample: Some(s.index),
                                have,
                                total,
                            });
                        }
                    }
                }
                if pass == 1 && r.phase == Phase::Prefill {
                    work.push(PrefillWork {
                        sample: None,
                        have: r.prompt_seq.as_ref().map_or(0, SeqCache::len),
                        total: r.prompt.len(),
                    });
                }
                for PrefillWork {
                    sample,
                    have,
                    total,
                } in work
                {
                    let mut len = (total - have).min(chunk_cap).min(budget);
                    if sample.is_none() && self.cfg.prefix_cache {
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
                    let slot = match sample {
                        Some(idx) => SeqSlot::Sample { id, idx },
                        None => SeqSlot::Prompt { id },
                    };
                    plan.push(PrefillItem { slot, len });
                }
            }
        }
        plan
    }

    /// The prefill step: plans chunks (preempting newer work when nothing fits) and runs them,
    /// prompt-logprob prompts on their own (they need every position's logits).
    pub(super) fn prefill_step(&mut self) -> Result<(), EngineError> {
        let mut plan = self.plan_prefill();
        if plan.is_empty() {
            // Nothing fits: make room by preempting newer work for the oldest stuck item.
            let stuck = self.reqs.iter().find_map(|(&id, r)| match r.phase {
                Phase::Prefill => Some(SeqSlot::Prompt { id }),
                Phase::Decode => r
                    .samples
                    .iter()
                    .find(|s| {
                        !s.done() && s.cache.as_ref().map_or(0, SeqCache::len) < decode_len(r, s)
                    })
                    .map(|s| SeqSlot::Sample { id, idx: s.index }),
            });
            let Some(stuck) = stuck else {
                return Ok(());
            };
            if !self.decode_set().is_empty() {
                return Ok(()); // decoding sequences will finish and free blocks
            }
            if self.preempt_one(Some(stuck)) {
                plan = self.plan_prefill();
            }
            if plan.is_empty() {
                let (SeqSlot::Prompt { id } | SeqSlot::Sample { id, .. }) = stuck;
                self.fail(
                    id,
                    EngineError::Aborted("the KV cache is too small for this request".into()),
                );
                return Ok(());
            }
        }
        let t0 = Instant::now();
        // Prompt-logprob items need every position's logits: run them on their own.
        let (all, last): (Vec<_>, Vec<_>) = plan.into_iter().partition(|it| match it.slot {
            SeqSlot::Prompt { id } => self.reqs.get(&id).is_some_and(|r| r.prompt_lp.is_some()),
            SeqSlot::Sample { .. } => false,
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

    /// Runs the chunks `items` in one step, then records prompt logprobs (`want = All`), caches
    /// block-aligned prompt prefixes and forks the prompts that are complete.
    fn run_prefill(&mut self, items: &[PrefillItem], want: StepLogits) -> Result<(), EngineError> {
        // The tokens of every item, from where its KV ends.
        let mut toks: Vec<Vec<u32>> = Vec::with_capacity(items.len());
        let mut starts: Vec<usize> = Vec::with_capacity(items.len());
        for it in items {
            let (have, chunk) = match it.slot {
                SeqSlot::Prompt { id } => {
                    let r = self.reqs.get(&id).ok_or_else(|| internal("prefill req"))?;
                    let have = r.prompt_seq.as_ref().map_or(0, SeqCache::len);
                    (have, r.prompt[have..have + it.len].to_vec())
                }
                SeqSlot::Sample { id, idx } => {
                    let r = self
                        .reqs
                        .get(&id)
                        .ok_or_else(|| internal("recompute req"))?;
                    // A recompute is a fresh sequence held in the sample's slot once started.
                    let s = &r.samples[idx];
                    let have = s.cache.as_ref().map_or(0, SeqCache::len);
                    let full: Vec<u32> = r
                        .prompt
                        .iter()
                        .chain(&s.tokens[..s.tokens.len().saturating_sub(1)])
                        .copied()
                        .collect();
                    (have, full[have..have + it.len].to_vec())
                }
            };
            toks.push(chunk);
            starts.push(have);
        }
        let slots: Vec<SeqSlot> = items.iter().map(|it| it.slot).collect();
        // A recompute stays in its sample's slot until complete (`decode_set` skips it: its
        // length is short).
        let result = self.run_step(&slots, &toks, want);
        let computed: usize = if result.is_ok() {
            toks.iter().map(Vec::len).sum()
        } else {
            0
        };
        MetricsShared::add(
            &self.shared.metrics.prefill_tokens_computed,
            computed as u64,
        );
        let mut finished_prompts: Vec<u64> = Vec::new();
        for it in items {
            let SeqSlot::Prompt { id } = it.slot else {
                continue;
            };
            let Some(r) = self.reqs.get(&id) else {
                continue;
            };
            let Some(c) = r.prompt_seq.as_ref() else {
                continue;
            };
            if c.len() == r.prompt.len() {
                finished_prompts.push(id);
            }
            let a = self.prefix.aligned_len(r.prompt.len());
            if self.cfg.prefix_cache && a > 0 && c.len() == a {
                self.prefix.insert(&mut self.cache, &r.prompt[..a], c);
            }
        }
        let logits = result?;
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
            if let SeqSlot::Prompt { id } = it.slot {
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
