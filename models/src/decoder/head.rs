//! The LM head of the training forward: per-row logprobs of given targets (and entropies) at a
//! temperature, through the fused chunked kernel ([`crate::ops::linear_logprob`]) when it
//! applies, or full logits otherwise.
//!
//! The fused path applies on the CPU in f32/f64 when the head is a plain weight (tied embedding,
//! or an untied `lm_head` without LoRA, or with its adapter switched off); then no
//! `[rows × vocab]` tensor larger than one chunk is kept for backward. Everything else (other
//! devices and dtypes, `LogitChunks::Off`) materialises `[rows, vocab]` logits as before.

use crate::error::{ModelError, Result};
use crate::layers::ForwardMode;
use candle_core::{Tensor, D};

use super::{LogitChunks, TrainForward, Transformer};

impl Transformer {
    /// The temperature of `opts`, checked (0 means 1, as in the engine).
    pub(super) fn train_temperature(opts: &TrainForward) -> Result<f32> {
        let temperature = if opts.temperature == 0.0 {
            1.0
        } else {
            opts.temperature
        };
        if !(temperature.is_finite() && temperature > 0.0) {
            return Err(ModelError::Input(format!(
                "temperature must be a positive number, got {}",
                opts.temperature
            )));
        }
        Ok(temperature)
    }

    /// The plain head weight `[vocab, hidden]` the fused kernel can use, if the head is one
    /// (tracked when it is trained).
    fn plain_head_weight(&self, mode: ForwardMode) -> Option<&Tensor> {
        match &self.lm_head {
            None => Some(self.embed.get(mode.track && self.base_trainable)),
            Some(head) if head.bias.is_none() && (head.lora.is_none() || !mode.adapters) => Some(
                head.weight
                    .get(mode.track && self.base_trainable && head.base_trainable),
            ),
            Some(_) => None,
        }
    }

    /// `log softmax(hidden · Wᵀ / T)[targets]` per row of `hidden` `[n, hidden]` and optionally
    /// the entropies, `[n]` each in the work dtype (f32; f64 for f64 models).
    pub(super) fn head_logprobs(
        &self,
        hidden: &Tensor,
        targets: &[u32],
        opts: &TrainForward,
        mode: ForwardMode,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let temperature = Self::train_temperature(opts)?;
        let work = self.work_dtype();
        let chunk_rows = match opts.logit_chunks {
            LogitChunks::Off => None,
            LogitChunks::Auto => Some(crate::ops::auto_chunk_rows(self.cfg.vocab_size, work)),
            LogitChunks::Rows(0) => {
                return Err(ModelError::Input(
                    "logit chunks must hold at least one row".into(),
                ))
            }
            LogitChunks::Rows(r) => Some(r),
        };
        if let (Some(rows), Some(w)) = (chunk_rows, self.plain_head_weight(mode)) {
            if crate::ops::supported(hidden) && hidden.dtype() == work && w.dtype() == work {
                return Ok(crate::ops::linear_logprob(
                    hidden,
                    w,
                    targets,
                    temperature as f64,
                    opts.entropy,
                    rows,
                    work,
                )?);
            }
        }
        let logits = self.lm_logits(hidden, mode)?.to_dtype(work)?;
        // Divide exactly as the sampler does (`v / T`), so the two paths round alike.
        let logits = if temperature == 1.0 {
            logits
        } else {
            let t = Tensor::new(temperature, &self.device)?.to_dtype(work)?;
            logits.broadcast_div(&t)?
        };
        if crate::ops::supported(&logits) {
            let lp = crate::ops::target_logprob(&logits, targets)?;
            let ent = if opts.entropy {
                Some(crate::ops::entropy(&logits)?)
            } else {
                None
            };
            return Ok((lp, ent));
        }
        let n = targets.len();
        let targets = Tensor::from_vec(targets.to_vec(), (n, 1), &self.device)?;
        let lse = logits.log_sum_exp(D::Minus1)?;
        let picked = logits.gather(&targets, 1)?.squeeze(1)?;
        let ent = if opts.entropy {
            let p = candle_nn::ops::softmax(&logits, D::Minus1)?;
            Some((&lse - (p * &logits)?.sum(D::Minus1)?)?)
        } else {
            None
        };
        Ok(((picked - &lse)?, ent))
    }
}
