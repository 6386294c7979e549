//! The training forward: a right-padded batch of full sequences through ops with a correct
//! backward, returning logits or per-token logprobs (and entropies) of the batch's own tokens.

use crate::error::{ModelError, Result};
use crate::layers::{rms_norm, ForwardMode};
use candle_core::{DType, Tensor};

use super::Transformer;

/// Per-token log-probabilities (and optionally entropies) from the training forward.
#[derive(Debug, Clone)]
pub struct TokenLogprobs {
    /// `[b, t]`: `log p(ids[b,t] | ids[b,<t])` for `1 <= t < len_b`, 0 at `t = 0` and on padding
    /// (f32; f64 for f64 models).
    pub logprobs: Tensor,
    /// `[b, t]`: entropy of the distribution that predicted `ids[b,t]` (same masking), if asked.
    pub entropy: Option<Tensor>,
}

/// Options of the training forward.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrainForward {
    /// Build the autograd graph (false: evaluation only, e.g. the old or reference policy).
    pub track: bool,
    /// Apply LoRA adapters (false: the base model, used as the reference policy).
    pub adapters: bool,
    /// Also return per-token entropies.
    pub entropy: bool,
    /// Sampling temperature the logprobs (and entropies) are taken at: `log softmax(logits / T)`,
    /// the rollout engine's convention, so recomputed logprobs equal the ones it reported at any
    /// `T`. 1 is the model's own distribution; 0 (greedy) also means 1, as in the engine.
    pub temperature: f32,
    /// How the LM head is evaluated for the logprobs: fused and chunked over token rows (the
    /// default; no full `[tokens × vocab]` logits are kept for backward) or full logits.
    pub logit_chunks: LogitChunks,
}

/// How the training forward turns final hidden states into logprobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogitChunks {
    /// Fused head + logprob kernel, chunks of about 64 MiB of logits (at least 128 rows), where
    /// it applies (CPU, f32/f64, head without an active LoRA adapter); full logits elsewhere.
    #[default]
    Auto,
    /// Fused kernel with this many token rows per chunk (where it applies).
    Rows(usize),
    /// Always materialise the full `[tokens, vocab]` logits (the reference path).
    Off,
}

impl Default for TrainForward {
    fn default() -> Self {
        Self {
            track: true,
            adapters: true,
            entropy: false,
            temperature: 1.0,
            logit_chunks: LogitChunks::Auto,
        }
    }
}

impl Transformer {
    // ----------------------------------------------------------------------------------------
    // Training forward
    // ----------------------------------------------------------------------------------------

    fn check_batch(
        &self,
        input_ids: &Tensor,
        lengths: &[usize],
    ) -> Result<(usize, usize, Vec<u32>)> {
        let (b, t) = input_ids.dims2().map_err(|_| {
            ModelError::Input(format!(
                "input_ids must be [batch, time], got {:?}",
                input_ids.dims()
            ))
        })?;
        if b == 0 || t == 0 {
            return Err(ModelError::Input("empty batch".into()));
        }
        if lengths.len() != b {
            return Err(ModelError::Input(format!(
                "{} lengths for a batch of {b}",
                lengths.len()
            )));
        }
        if let Some(&l) = lengths.iter().find(|&&l| l == 0 || l > t) {
            return Err(ModelError::Input(format!(
                "sequence length {l} outside 1..={t}"
            )));
        }
        let ids = input_ids
            .to_dtype(DType::U32)?
            .flatten_all()?
            .to_vec1::<u32>()?;
        self.check_ids(&ids)?;
        Ok((b, t, ids))
    }

    /// Final hidden states `[b·t, hidden]` of a right-padded batch (training path).
    fn hidden_train(
        &self,
        ids: &[u32],
        b: usize,
        t: usize,
        lengths: &[usize],
        mode: ForwardMode,
    ) -> Result<Tensor> {
        let ctx = self.train_ctx(b, t, lengths, 0)?;
        self.hidden_with_ctx(ids, &ctx, mode)
    }

    /// Final hidden states `[b·t, hidden]` of `ids` under a prepared context.
    fn hidden_with_ctx(
        &self,
        ids: &[u32],
        ctx: &super::train_layer::TrainCtx,
        mode: ForwardMode,
    ) -> Result<Tensor> {
        let track_base = mode.track && self.base_trainable;
        let mut x = self.embed_tokens(ids, mode.track)?;
        for layer in &self.layers {
            x = self.layer_train(layer, &x, ctx, None, mode)?.0;
        }
        rms_norm(&x, self.norm.get(track_base), self.cfg.rms_norm_eps)
    }

    /// Full logits `[b, t, vocab]` (f32) of a right-padded batch through the training path, with
    /// no gradient. Positions at or after a sequence's length hold meaningless values.
    pub fn logits(&self, input_ids: &Tensor, lengths: &[usize]) -> Result<Tensor> {
        let (b, t, ids) = self.check_batch(input_ids, lengths)?;
        let mode = ForwardMode {
            track: false,
            adapters: true,
            step: false,
        };
        let hidden = self.hidden_train(&ids, b, t, lengths, mode)?;
        Ok(self
            .lm_logits(&hidden, mode)?
            .to_dtype(DType::F32)?
            .reshape((b, t, self.cfg.vocab_size))?)
    }

    /// Final hidden states `[b, t, hidden]` (after the last norm) of a right-padded batch
    /// through the differentiable path, for heads on the trunk (a reward model's or a critic's
    /// score head). `opts.track` / `opts.adapters` apply; `temperature` and `entropy` are
    /// ignored. Positions at or after a row's length hold meaningless values.
    pub fn last_hidden(
        &self,
        input_ids: &Tensor,
        lengths: &[usize],
        opts: TrainForward,
    ) -> Result<Tensor> {
        let (b, t, ids) = self.check_batch(input_ids, lengths)?;
        let mode = ForwardMode {
            track: opts.track,
            adapters: opts.adapters,
            step: false,
        };
        Ok(self
            .hidden_train(&ids, b, t, lengths, mode)?
            .reshape((b, t, self.cfg.hidden_size))?)
    }

    /// [`Self::token_logprobs`] and [`Self::last_hidden`] from one forward pass (PPO's policy
    /// and shared-trunk critic).
    pub fn token_logprobs_and_hidden(
        &self,
        input_ids: &Tensor,
        lengths: &[usize],
        opts: TrainForward,
    ) -> Result<(TokenLogprobs, Tensor)> {
        let (b, t, ids) = self.check_batch(input_ids, lengths)?;
        let mode = ForwardMode {
            track: opts.track,
            adapters: opts.adapters,
            step: false,
        };
        let hidden = self.hidden_train(&ids, b, t, lengths, mode)?;
        let out = self.logprobs_from_hidden(&hidden, &ids, b, t, lengths, mode, opts)?;
        Ok((out, hidden.reshape((b, t, self.cfg.hidden_size))?))
    }

    /// Per-token log-probabilities of the batch's own tokens (and optionally entropies), through
    /// the differentiable path. `input_ids` is `[b, t]` right-padded; `lengths[i]` is row i's real
    /// length. With [`LogitChunks::Auto`] the LM head runs chunk by chunk over token rows
    /// ([`crate::ops::linear_logprob`]): no tensor of vocabulary width larger than one chunk is
    /// kept for backward.
    pub fn token_logprobs(
        &self,
        input_ids: &Tensor,
        lengths: &[usize],
        opts: TrainForward,
    ) -> Result<TokenLogprobs> {
        let (b, t, ids) = self.check_batch(input_ids, lengths)?;
        let mode = ForwardMode {
            track: opts.track,
            adapters: opts.adapters,
            step: false,
        };
        let hidden = self.hidden_train(&ids, b, t, lengths, mode)?;
        self.logprobs_from_hidden(&hidden, &ids, b, t, lengths, mode, opts)
    }

    /// [`Self::token_logprobs`] over **packed** rows: row `r` of `input_ids` `[b, t]` holds
    /// several sequences back to back, of lengths `segments[r]` (their sum is the row's real
    /// length, the rest is padding). Each sequence restarts at position 0 and attends to itself
    /// only, so token `j` of a sequence gets `log p(token_j | its own tokens before j)`: the
    /// value (and gradient) the padded forward gives that sequence alone. The first token of
    /// every sequence, like padding, gets 0.
    pub fn packed_token_logprobs(
        &self,
        input_ids: &Tensor,
        segments: &[Vec<usize>],
        opts: TrainForward,
    ) -> Result<TokenLogprobs> {
        let lengths: Vec<usize> = segments.iter().map(|s| s.iter().sum()).collect();
        if segments.iter().flatten().any(|&l| l == 0) {
            return Err(ModelError::Input("a packed sequence of length 0".into()));
        }
        let (b, t, ids) = self.check_batch(input_ids, &lengths)?;
        let mode = ForwardMode {
            track: opts.track,
            adapters: opts.adapters,
            step: false,
        };
        let ctx = self.train_ctx_packed(b, t, segments)?;
        let hidden = self.hidden_with_ctx(&ids, &ctx, mode)?;
        let mut out = self.logprobs_from_hidden(&hidden, &ids, b, t, &lengths, mode, opts)?;
        // A sequence's first token is not predicted by the one packed before it.
        let mut keep = vec![1f32; b * t];
        for (r, segs) in segments.iter().enumerate() {
            let mut at = 0;
            for &len in segs {
                keep[r * t + at] = 0.0;
                at += len;
            }
        }
        let keep = Tensor::from_vec(keep, (b, t), &self.device)?.to_dtype(out.logprobs.dtype())?;
        out.logprobs = (out.logprobs * &keep)?;
        out.entropy = out.entropy.map(|e| e * &keep).transpose()?;
        Ok(out)
    }

    /// The logprob part of [`Self::token_logprobs`] on hidden states `[b·t, hidden]`.
    #[allow(clippy::too_many_arguments)]
    fn logprobs_from_hidden(
        &self,
        hidden: &Tensor,
        ids: &[u32],
        b: usize,
        t: usize,
        lengths: &[usize],
        mode: ForwardMode,
        opts: TrainForward,
    ) -> Result<TokenLogprobs> {
        if t < 2 {
            let z = Tensor::zeros((b, t), DType::F32, &self.device)?;
            return Ok(TokenLogprobs {
                logprobs: z.clone(),
                entropy: opts.entropy.then_some(z),
            });
        }
        // Rows 0..t-1 of each sequence predict tokens 1..t.
        let hidden = hidden
            .reshape((b, t, self.cfg.hidden_size))?
            .narrow(1, 0, t - 1)?;
        let hidden = hidden.reshape((b * (t - 1), self.cfg.hidden_size))?;
        let work = self.work_dtype();
        let mut targets = Vec::with_capacity(b * (t - 1));
        let mut valid = Vec::with_capacity(b * t);
        for (bi, &len) in lengths.iter().enumerate() {
            targets.extend_from_slice(&ids[bi * t + 1..(bi + 1) * t]);
            valid.extend((0..t).map(|j| if j >= 1 && j < len { 1f32 } else { 0f32 }));
        }
        let valid = Tensor::from_vec(valid, (b, t), &self.device)?.to_dtype(work)?;
        let shift = |x: Tensor| -> Result<Tensor> {
            let x = x.reshape((b, t - 1))?;
            let zero = Tensor::zeros((b, 1), work, &self.device)?;
            Ok((Tensor::cat(&[&zero, &x], 1)? * &valid)?)
        };
        let (logprobs, entropy) = self.head_logprobs(&hidden, &targets, &opts, mode)?;
        let logprobs = shift(logprobs)?;
        let entropy = entropy.map(shift).transpose()?;
        Ok(TokenLogprobs { logprobs, entropy })
    }
}
