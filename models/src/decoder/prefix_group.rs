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
//! Several groups run as one forward ([`Transformer::groups_token_logprobs`]), so a micro-batch's
//! matmuls stay as large as the padded forward's: the `G` prompts are **left**-padded to the
//! longest, `Pmax`, and run as one `[G, Pmax]` batch; every completion's keys are its own group's
//! prefix block (selected by row) followed by its own, and it sees its prompt's real keys
//! `Pmax - P_g..Pmax` ([`crate::ops::masked_softmax_window`]). Every row keeps its true RoPE
//! positions (prompt tokens `0..P_g`, completion tokens `P_g..`; per-row angle tables), so each
//! score is computed from exactly the rotations the separate forward uses.
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

/// One group of the shared-prefix forward: a prompt and its completions.
#[derive(Debug, Clone, Copy)]
pub struct PromptGroup<'a> {
    /// The shared prompt (non-empty).
    pub prompt: &'a [u32],
    /// The completions that follow it (at least one, each non-empty).
    pub completions: &'a [Vec<u32>],
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
        let mut out = self.groups_token_logprobs(
            &[PromptGroup {
                prompt,
                completions,
            }],
            opts,
        )?;
        out.pop()
            .ok_or_else(|| ModelError::Input("shared-prefix forward: no group".into()))
    }

    /// [`Self::group_token_logprobs`] of several groups in one forward (one result per group, in
    /// order): the prompts run as one left-padded batch and every completion attends to its own
    /// group's prompt only.
    pub fn groups_token_logprobs(
        &self,
        groups: &[PromptGroup<'_>],
        opts: TrainForward,
    ) -> Result<Vec<GroupLogprobs>> {
        if groups.is_empty() {
            return Err(ModelError::Input("shared-prefix forward: no group".into()));
        }
        for (gi, g) in groups.iter().enumerate() {
            if g.prompt.is_empty() {
                return Err(ModelError::Input(format!(
                    "shared-prefix forward: group {gi} has an empty prompt"
                )));
            }
            if g.completions.is_empty() {
                return Err(ModelError::Input(format!(
                    "shared-prefix forward: group {gi} has no completions"
                )));
            }
            if let Some(i) = g.completions.iter().position(|c| c.is_empty()) {
                return Err(ModelError::Input(format!(
                    "shared-prefix forward: completion {i} of group {gi} is empty"
                )));
            }
            self.check_ids(g.prompt)?;
            for c in g.completions {
                self.check_ids(c)?;
            }
        }
        Self::train_temperature(&opts)?;
        let mode = ForwardMode {
            track: opts.track,
            adapters: opts.adapters,
            step: false,
        };
        let ng = groups.len();
        let pmax = groups.iter().map(|g| g.prompt.len()).max().unwrap_or(1);
        // Prompts, left-padded to `pmax`.
        let mut prompt_ids = Vec::with_capacity(ng * pmax);
        let mut prompt_starts = Vec::with_capacity(ng);
        // Slot s of a prompt left-padded by `pad` is position s - pad (padding: 0).
        let mut prompt_positions = Vec::with_capacity(ng * pmax);
        for g in groups {
            let pad = pmax - g.prompt.len();
            prompt_ids.extend(std::iter::repeat_n(0u32, pad));
            prompt_ids.extend_from_slice(g.prompt);
            prompt_starts.push(pad);
            prompt_positions.extend((0..pmax).map(|s| s.saturating_sub(pad)));
        }
        // Completions, right-padded to `m`, each with its group's index and first real key.
        let lengths: Vec<usize> = groups
            .iter()
            .flat_map(|g| g.completions.iter().map(Vec::len))
            .collect();
        let n = lengths.len();
        let m = lengths.iter().copied().max().unwrap_or(1);
        let mut padded = Vec::with_capacity(n * m);
        let mut row_group = Vec::with_capacity(n);
        let mut own_starts = Vec::with_capacity(n);
        let mut own_positions = Vec::with_capacity(n * m);
        for (gi, g) in groups.iter().enumerate() {
            for c in g.completions {
                padded.extend_from_slice(c);
                padded.extend(std::iter::repeat_n(0u32, m - c.len()));
                row_group.push(gi as u32);
                own_starts.push(prompt_starts[gi]);
                own_positions.extend(g.prompt.len()..g.prompt.len() + m);
            }
        }
        // One group has no padding in front: the shared tables `0..P` and `P..P + m` are its
        // positions (the single-group forward's layout).
        let (prompt_positions, own_positions) = if ng > 1 {
            (Some(&prompt_positions[..]), Some(&own_positions[..]))
        } else {
            (None, None)
        };
        let prompt_ctx = self.train_ctx_window(
            ng,
            pmax,
            &vec![pmax; ng],
            0,
            &prompt_starts,
            prompt_positions,
        )?;
        let own_ctx = self.train_ctx_window(n, m, &lengths, pmax, &own_starts, own_positions)?;
        // Several groups: each completion row reads its own group's prefix block.
        let select = if ng > 1 {
            Some(Tensor::from_vec(row_group, n, &self.device)?)
        } else {
            None
        };
        let track_base = mode.track && self.base_trainable;
        let mut xp = self.embed_tokens(&prompt_ids, mode.track)?;
        let mut xc = self.embed_tokens(&padded, mode.track)?;
        for layer in &self.layers {
            let (next_p, kp, vp) = self.layer_train(layer, &xp, &prompt_ctx, None, mode)?;
            let (kp, vp) = match &select {
                Some(sel) => (kp.index_select(sel, 0)?, vp.index_select(sel, 0)?),
                None => (kp, vp),
            };
            xc = self
                .layer_train(layer, &xc, &own_ctx, Some((&kp, &vp)), mode)?
                .0;
            xp = next_p;
        }
        let norm = self.norm.get(track_base);
        let eps = self.cfg.rms_norm_eps;
        let hidden = Tensor::cat(&[&rms_norm(&xp, norm, eps)?, &rms_norm(&xc, norm, eps)?], 0)?;
        // Row predicting token j of completion row r (group g): the prompt's last row
        // (g·pmax + pmax - 1; prompts are left-padded) for j = 0, else the completion's row
        // j - 1 (rows of `hidden`: prompts 0..ng·pmax, then completion r at ng·pmax + r·m).
        let total: usize = lengths.iter().sum();
        let mut rows = Vec::with_capacity(total);
        let mut targets = Vec::with_capacity(total);
        let mut r = 0usize;
        for (gi, g) in groups.iter().enumerate() {
            for c in g.completions {
                rows.push((gi * pmax + pmax - 1) as u32);
                rows.extend((0..c.len() - 1).map(|j| (ng * pmax + r * m + j) as u32));
                targets.extend_from_slice(c);
                r += 1;
            }
        }
        let rows = Tensor::from_vec(rows, total, &self.device)?;
        let hidden = hidden.index_select(&rows, 0)?;
        let (lp, ent) = self.head_logprobs(&hidden, &targets, &opts, mode)?;
        let mut out = Vec::with_capacity(ng);
        let mut off = 0usize;
        for g in groups {
            let mut logprobs = Vec::with_capacity(g.completions.len());
            let mut entropy = ent
                .as_ref()
                .map(|_| Vec::with_capacity(g.completions.len()));
            for c in g.completions {
                logprobs.push(lp.narrow(0, off, c.len())?);
                if let (Some(e), Some(all)) = (entropy.as_mut(), ent.as_ref()) {
                    e.push(all.narrow(0, off, c.len())?);
                }
                off += c.len();
            }
            out.push(GroupLogprobs { logprobs, entropy });
        }
        Ok(out)
    }
}
