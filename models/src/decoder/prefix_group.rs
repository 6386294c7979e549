//! Shared-prefix training forward (Prefix Grouper): a GRPO group's prompt is encoded once and its
//! `n` completions attend to it, with logprobs and gradients equal to `n` separate forwards of
//! `prompt + completion`.
//!
//! Per layer the prompt `[1, P]` runs as an ordinary causal sequence at positions `0..P`; its
//! post-RoPE keys and values then sit, shared (broadcast), in front of every completion's own keys
//! and values. The completions, right-padded to `[n, m]` at positions `P..P + m`, attend to
//! `[prompt ; own]` with each query seeing the whole prompt and its own causal past, never another
//! completion ([`crate::ops::masked_softmax_offset`]). Embeddings, norms, projections and MLPs act
//! per token, so nothing else changes. Because the prompt's activations are one tensor read by
//! every completion, autograd sums the completions' gradient contributions into it: exactly what
//! the `n` repeated prompts contribute to the shared weights in the unshared layout.
//!
//! The logprob of completion token `j` is read from the hidden state before it: the prompt's last
//! position for `j = 0`, the completion's position `j - 1` otherwise; the LM head runs once over
//! all those rows (fused and chunked like [`Transformer::token_logprobs`]).
//!
//! Cost: the prompt's projections, MLPs and `P × P` attention run once instead of `n` times; the
//! prompt keys and values are copied once per completion (`[n, kv, P + m, d]`) for the attention
//! matmuls, which is what the unshared layout holds too.

use crate::error::{ModelError, Result};
use crate::layers::{rms_norm, ForwardMode};
use candle_core::Tensor;

use super::{TrainForward, Transformer};

/// Per-token logprobs of one group's completions, from [`Transformer::group_token_logprobs`].
#[derive(Debug, Clone)]
pub struct GroupLogprobs {
    /// One `[len_i]` tensor per completion: `log p(c_i[j] | prompt, c_i[<j])` for every token `j`
    /// of completion `i` (f32; f64 for f64 models), at the temperature of the options.
    pub logprobs: Vec<Tensor>,
    /// The entropies of the distributions that predicted those tokens, if asked.
    pub entropy: Option<Vec<Tensor>>,
}

impl Transformer {
    /// Logprobs (and optionally entropies) of every token of each completion given the shared
    /// `prompt` and its own earlier tokens, from one forward in which the prompt is encoded once.
    /// Equal, in value and gradient, to [`Transformer::token_logprobs`] over the `n` sequences
    /// `prompt + completion_i` restricted to the completion positions. The prompt and every
    /// completion must be non-empty.
    pub fn group_token_logprobs(
        &self,
        prompt: &[u32],
        completions: &[Vec<u32>],
        opts: TrainForward,
    ) -> Result<GroupLogprobs> {
        if prompt.is_empty() {
            return Err(ModelError::Input(
                "shared-prefix forward: empty prompt".into(),
            ));
        }
        if completions.is_empty() {
            return Err(ModelError::Input(
                "shared-prefix forward: no completions".into(),
            ));
        }
        if let Some(i) = completions.iter().position(|c| c.is_empty()) {
            return Err(ModelError::Input(format!(
                "shared-prefix forward: completion {i} is empty"
            )));
        }
        self.check_ids(prompt)?;
        for c in completions {
            self.check_ids(c)?;
        }
        Self::train_temperature(&opts)?;
        let mode = ForwardMode {
            track: opts.track,
            adapters: opts.adapters,
            step: false,
        };
        let (p, n) = (prompt.len(), completions.len());
        let lengths: Vec<usize> = completions.iter().map(Vec::len).collect();
        let m = lengths.iter().copied().max().unwrap_or(1);
        let mut padded = Vec::with_capacity(n * m);
        for c in completions {
            padded.extend_from_slice(c);
            padded.extend(std::iter::repeat_n(0u32, m - c.len()));
        }
        let prompt_ctx = self.train_ctx(1, p, &[p], 0)?;
        let own_ctx = self.train_ctx(n, m, &lengths, p)?;
        let track_base = mode.track && self.base_trainable;
        let mut xp = self.embed_tokens(prompt, mode.track)?;
        let mut xc = self.embed_tokens(&padded, mode.track)?;
        for layer in &self.layers {
            let (next_p, kp, vp) = self.layer_train(layer, &xp, &prompt_ctx, None, mode)?;
            xc = self
                .layer_train(layer, &xc, &own_ctx, Some((&kp, &vp)), mode)?
                .0;
            xp = next_p;
        }
        let norm = self.norm.get(track_base);
        let eps = self.cfg.rms_norm_eps;
        let hidden = Tensor::cat(&[&rms_norm(&xp, norm, eps)?, &rms_norm(&xc, norm, eps)?], 0)?;
        // Row predicting token j of completion i: the prompt's last row for j = 0, else the
        // completion's row j - 1 (rows of `hidden`: prompt 0..p, then completion i at p + i·m).
        let total: usize = lengths.iter().sum();
        let mut rows = Vec::with_capacity(total);
        let mut targets = Vec::with_capacity(total);
        for (i, c) in completions.iter().enumerate() {
            rows.push((p - 1) as u32);
            rows.extend((0..c.len() - 1).map(|j| (p + i * m + j) as u32));
            targets.extend_from_slice(c);
        }
        let rows = Tensor::from_vec(rows, total, &self.device)?;
        let hidden = hidden.index_select(&rows, 0)?;
        let (lp, ent) = self.head_logprobs(&hidden, &targets, &opts, mode)?;
        let split = |x: &Tensor| -> Result<Vec<Tensor>> {
            let mut out = Vec::with_capacity(n);
            let mut off = 0;
            for &len in &lengths {
                out.push(x.narrow(0, off, len)?);
                off += len;
            }
            Ok(out)
        };
        Ok(GroupLogprobs {
            logprobs: split(&lp)?,
            entropy: ent.as_ref().map(split).transpose()?,
        })
    }
}
