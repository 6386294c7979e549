//! The numbers TRL's `DPOTrainer` logs per step, under its names: reward statistics from the
//! implicit rewards β·(log π − log π_ref), mean sequence log-probs, and the token statistics that
//! need the model's logits (entropy, mean logit, next-token accuracy) or the running token count.

use std::collections::BTreeMap;

use candle_core::{DType, Tensor, D};

use crate::masked::select;
use crate::{MathError, Result};

/// Statistics computed from the logits and the batch (the training loop fills them; 0 when there
/// are no logits, as TRL logs for an empty selection).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TokenStats {
    /// Mean entropy of the next-token distribution over completion tokens (both sides).
    pub entropy: f64,
    /// Mean over chosen completion tokens of the vocabulary-mean logit.
    pub logits_chosen: f64,
    /// The same over rejected completion tokens.
    pub logits_rejected: f64,
    /// Share of chosen completion tokens where the argmax logit is the label.
    pub mean_token_accuracy: f64,
    /// Tokens seen so far in training (TRL sums the attention masks, prompts included).
    pub num_tokens: f64,
}

/// The reward and log-prob statistics of one batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RewardStats {
    /// mean β·u_w.
    pub chosen: f64,
    /// mean β·u_l.
    pub rejected: f64,
    /// mean [β·u_w > β·u_l].
    pub accuracies: f64,
    /// mean β·(u_w − u_l).
    pub margins: f64,
    /// mean policy sequence log-prob of the chosen completions.
    pub logps_chosen: f64,
    /// mean policy sequence log-prob of the rejected completions.
    pub logps_rejected: f64,
}

fn mean(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(DType::F64)?.mean_all()?.to_scalar::<f64>()?)
}

impl RewardStats {
    /// From the implicit rewards and policy sequence log-probs (all `[B]`).
    pub fn new(
        chosen_rewards: &Tensor,
        rejected_rewards: &Tensor,
        chosen_logps: &Tensor,
        rejected_logps: &Tensor,
    ) -> Result<Self> {
        let acc = chosen_rewards.gt(rejected_rewards)?;
        Ok(Self {
            chosen: mean(chosen_rewards)?,
            rejected: mean(rejected_rewards)?,
            accuracies: mean(&acc)?,
            margins: mean(&(chosen_rewards - rejected_rewards)?)?,
            logps_chosen: mean(chosen_logps)?,
            logps_rejected: mean(rejected_logps)?,
        })
    }

    /// Every TRL DPO metric by its logged name.
    pub fn trl_metrics(&self, tokens: &TokenStats) -> BTreeMap<&'static str, f64> {
        BTreeMap::from([
            ("entropy", tokens.entropy),
            ("num_tokens", tokens.num_tokens),
            ("logits/chosen", tokens.logits_chosen),
            ("logits/rejected", tokens.logits_rejected),
            ("mean_token_accuracy", tokens.mean_token_accuracy),
            ("rewards/chosen", self.chosen),
            ("rewards/rejected", self.rejected),
            ("rewards/accuracies", self.accuracies),
            ("rewards/margins", self.margins),
            ("logps/chosen", self.logps_chosen),
            ("logps/rejected", self.logps_rejected),
        ])
    }
}

/// Token statistics from the (already shifted) logits `[B × T × V]` of both sides, the chosen
/// labels `[B × T]` (u32) and the completion masks `[B × T]`; `num_tokens` is passed through.
pub fn token_stats(
    chosen_logits: &Tensor,
    rejected_logits: &Tensor,
    chosen_labels: &Tensor,
    chosen_mask: &Tensor,
    rejected_mask: &Tensor,
    num_tokens: f64,
) -> Result<TokenStats> {
    let chosen_logits = chosen_logits.detach().to_dtype(DType::F64)?;
    let rejected_logits = rejected_logits.detach().to_dtype(DType::F64)?;
    let cm = chosen_mask.to_dtype(DType::F64)?;
    let rm = rejected_mask.to_dtype(DType::F64)?;
    for (name, l, m) in [
        ("chosen", &chosen_logits, &cm),
        ("rejected", &rejected_logits, &rm),
    ] {
        if l.rank() != 3 || l.dims()[..2] != *m.dims() {
            return Err(MathError::Shape(format!(
                "{name} logits {:?} do not fit the mask {:?}",
                l.dims(),
                m.dims()
            )));
        }
    }
    let entropy = |logits: &Tensor| -> Result<Tensor> {
        let max = logits.max_keepdim(D::Minus1)?;
        let z = logits.broadcast_sub(&max)?;
        let lse = z.exp()?.sum_keepdim(D::Minus1)?.log()?;
        let logp = z.broadcast_sub(&lse)?;
        Ok((logp.exp()? * &logp)?.sum(D::Minus1)?.neg()?)
    };
    let total = |t: &Tensor| -> Result<f64> { Ok(t.sum_all()?.to_scalar::<f64>()?) };
    let masked_total = |v: &Tensor, m: &Tensor| -> Result<f64> { total(&(select(v, m)? * m)?) };
    let (nc, nr) = (total(&cm)?, total(&rm)?);
    let ratio = |a: f64, n: f64| if n > 0.0 { a / n } else { 0.0 };
    let ent = masked_total(&entropy(&chosen_logits)?, &cm)?
        + masked_total(&entropy(&rejected_logits)?, &rm)?;
    let mean_c = masked_total(&chosen_logits.mean(D::Minus1)?, &cm)?;
    let mean_r = masked_total(&rejected_logits.mean(D::Minus1)?, &rm)?;
    let pred = chosen_logits.argmax(D::Minus1)?;
    let hit = pred
        .eq(&chosen_labels.to_dtype(pred.dtype())?)?
        .to_dtype(DType::F64)?;
    let correct = masked_total(&hit, &cm)?;
    Ok(TokenStats {
        entropy: ratio(ent, nc + nr),
        logits_chosen: ratio(mean_c, nc),
        logits_rejected: ratio(mean_r, nr),
        mean_token_accuracy: ratio(correct, nc),
        num_tokens,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn token_stats_by_hand() {
        // Chosen: one valid token with logits (ln 3, 0) → p = (¾, ¼), label 0 (argmax: correct);
        // the padded token is ignored. Rejected: uniform (0, 0), entropy ln 2.
        let dev = &Device::Cpu;
        let l3 = 3.0f64.ln();
        let cl = Tensor::new(&[[[l3, 0.0], [9.0, -9.0]]], dev).unwrap();
        let rl = Tensor::new(&[[[0.0f64, 0.0], [0.0, 0.0]]], dev).unwrap();
        let labels = Tensor::new(&[[0u32, 1]], dev).unwrap();
        let cm = Tensor::new(&[[1.0f64, 0.0]], dev).unwrap();
        let rm = Tensor::new(&[[1.0f64, 1.0]], dev).unwrap();
        let s = token_stats(&cl, &rl, &labels, &cm, &rm, 8.0).unwrap();
        let h = -(0.75 * 0.75f64.ln() + 0.25 * 0.25f64.ln());
        assert!(
            (s.entropy - (h + 2.0 * 2.0f64.ln()) / 3.0).abs() < 1e-12,
            "{s:?}"
        );
        assert!((s.logits_chosen - l3 / 2.0).abs() < 1e-12);
        assert_eq!(s.logits_rejected, 0.0);
        assert_eq!(s.mean_token_accuracy, 1.0);
        assert_eq!(s.num_tokens, 8.0);
    }
}
