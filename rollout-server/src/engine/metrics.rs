//! Engine counters: updated lock-free by the engine thread, read as an [`EngineMetrics`] snapshot
//! by any handle (the HTTP server renders them as Prometheus text).

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};

/// A point-in-time copy of the engine's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct EngineMetrics {
    /// Requests accepted since start.
    pub requests: u64,
    /// Requests finished (done, error or aborted).
    pub requests_finished: u64,
    /// Prompt tokens of accepted requests (each prompt counted once, whatever its `n`).
    pub prompt_tokens: u64,
    /// Tokens generated over all completions.
    pub generated_tokens: u64,
    /// Prompt tokens run through the model in prefill (including recomputation after preemption).
    pub prefill_tokens_computed: u64,
    /// Prompt tokens *not* computed thanks to group sharing: `(n − 1) × prompt length` per request.
    pub prefill_tokens_saved_group: u64,
    /// Prompt tokens not computed thanks to the cross-request prefix cache.
    pub prefill_tokens_saved_prefix_cache: u64,
    /// Sequences preempted (cache released, recomputed later) because the KV cache was full.
    pub preemptions: u64,
    /// Requests submitted but not yet admitted to the running batch.
    pub queue_depth: u64,
    /// Sequences currently being prefilled or decoded.
    pub running_sequences: u64,
    /// Free KV-cache blocks.
    pub free_blocks: u64,
    /// Total KV-cache blocks.
    pub total_blocks: u64,
    /// Generated tokens per second over the last few seconds of activity.
    pub tokens_per_s: f64,
    /// Seconds spent in decode steps (model + sampling).
    pub decode_seconds: f64,
    /// Seconds spent in prefill steps.
    pub prefill_seconds: f64,
    /// Decode steps run.
    pub decode_steps: u64,
    /// Current policy (weights) version.
    pub policy_version: u64,
}

/// The shared atomic counters behind [`EngineMetrics`].
#[derive(Debug, Default)]
pub(crate) struct MetricsShared {
    pub requests: AtomicU64,
    pub requests_finished: AtomicU64,
    pub prompt_tokens: AtomicU64,
    pub generated_tokens: AtomicU64,
    pub prefill_tokens_computed: AtomicU64,
    pub prefill_tokens_saved_group: AtomicU64,
    pub prefill_tokens_saved_prefix_cache: AtomicU64,
    pub preemptions: AtomicU64,
    pub queue_depth: AtomicU64,
    pub running_sequences: AtomicU64,
    pub free_blocks: AtomicU64,
    pub total_blocks: AtomicU64,
    pub tokens_per_s_bits: AtomicU64,
    pub decode_nanos: AtomicU64,
    pub prefill_nanos: AtomicU64,
    pub decode_steps: AtomicU64,
    pub policy_version: AtomicU64,
}

impl MetricsShared {
    /// Adds `v` to counter `c`.
    pub fn add(c: &AtomicU64, v: u64) {
        c.fetch_add(v, Ordering::Relaxed);
    }

    /// Sets gauge `c` to `v`.
    pub fn set(c: &AtomicU64, v: u64) {
        c.store(v, Ordering::Relaxed);
    }

    /// Stores the current generation rate.
    pub fn set_rate(&self, v: f64) {
        self.tokens_per_s_bits.store(v.to_bits(), Ordering::Relaxed);
    }

    /// A snapshot.
    pub fn snapshot(&self) -> EngineMetrics {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        EngineMetrics {
            requests: g(&self.requests),
            requests_finished: g(&self.requests_finished),
            prompt_tokens: g(&self.prompt_tokens),
            generated_tokens: g(&self.generated_tokens),
            prefill_tokens_computed: g(&self.prefill_tokens_computed),
            prefill_tokens_saved_group: g(&self.prefill_tokens_saved_group),
            prefill_tokens_saved_prefix_cache: g(&self.prefill_tokens_saved_prefix_cache),
            preemptions: g(&self.preemptions),
            queue_depth: g(&self.queue_depth),
            running_sequences: g(&self.running_sequences),
            free_blocks: g(&self.free_blocks),
            total_blocks: g(&self.total_blocks),
            tokens_per_s: f64::from_bits(g(&self.tokens_per_s_bits)),
            decode_seconds: g(&self.decode_nanos) as f64 * 1e-9,
            prefill_seconds: g(&self.prefill_nanos) as f64 * 1e-9,
            decode_steps: g(&self.decode_steps),
            policy_version: g(&self.policy_version),
        }
    }
}

/// Generation rate over a sliding window of recent steps.
#[derive(Debug, Default)]
pub(crate) struct RateWindow {
    samples: std::collections::VecDeque<(std::time::Instant, u64)>,
}

impl RateWindow {
    /// Records the running total `tokens` at `now` and returns tokens/s over the last ~5 s.
    pub fn record(&mut self, now: std::time::Instant, tokens: u64) -> f64 {
        self.samples.push_back((now, tokens));
        while let Some(&(t, _)) = self.samples.front() {
            if now.duration_since(t).as_secs_f64() > 5.0 && self.samples.len() > 2 {
                self.samples.pop_front();
            } else {
                break;
            }
        }
        match (self.samples.front(), self.samples.back()) {
            (Some(&(t0, n0)), Some(&(t1, n1))) if t1 > t0 => {
                (n1 - n0) as f64 / t1.duration_since(t0).as_secs_f64()
            }
            _ => 0.0,
        }
    }
}
