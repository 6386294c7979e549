//! The DPO-family loss of a batch of pairs: both sides of every pair padded into one `[2B × T]`
//! batch, one training forward of the policy (with the graph when training) and one of the
//! reference (never with a graph), per-token log-probs summed over each completion by
//! [`crate::preference::preference_loss`] under TRL's conventions. Log-probs are the model's own
//! (temperature 1): the sampling temperature of online DPO shapes the samples, not the
//! objective.

use super::pairs::PairSeqs;
use crate::batch::{pad, Sequence};
use crate::policy::Policy;
use crate::preference::{preference_loss, PreferenceLossConfig, RewardStats, SideLogps};
use crate::train_error::{TrainError, TrainResult};
use candle_core::Tensor;
use oxrl_models::TrainForward;

/// The loss of a batch of pairs and TRL's statistics of it.
#[derive(Debug, Clone)]
pub struct PairLoss {
    /// The scalar loss (differentiable in the trainable tensors when computed with `track`).
    pub loss: Tensor,
    /// Its value.
    pub value: f64,
    /// `rewards/*` and `logps/*` of the batch.
    pub stats: RewardStats,
    /// Completion tokens of both sides.
    pub target_tokens: usize,
    /// Every token of both sides.
    pub total_tokens: usize,
}

/// The preference loss of `pairs` under `cfg`; `track = false` evaluates without a graph.
pub fn pair_loss(
    policy: &Policy,
    pairs: &[PairSeqs],
    cfg: &PreferenceLossConfig,
    track: bool,
) -> TrainResult<PairLoss> {
    if pairs.is_empty() {
        return Err(TrainError::Invariant("a DPO batch without pairs".into()));
    }
    let b = pairs.len();
    let seqs: Vec<&Sequence> = pairs
        .iter()
        .map(|p| &p.chosen)
        .chain(pairs.iter().map(|p| &p.rejected))
        .collect();
    let batch = pad(&seqs, policy.model.device())?;
    let lp = policy
        .model
        .token_logprobs(
            &batch.ids,
            &batch.lengths,
            TrainForward {
                track,
                ..TrainForward::default()
            },
        )?
        .logprobs;
    let reference = policy
        .reference_logprobs(&batch, 1.0)?
        .ok_or_else(|| TrainError::Invariant("DPO without a reference policy".into()))?;
    let (lp_c, lp_r) = (lp.narrow(0, 0, b)?, lp.narrow(0, b, b)?);
    let (m_c, m_r) = (batch.mask.narrow(0, 0, b)?, batch.mask.narrow(0, b, b)?);
    let (ref_c, ref_r) = (reference.narrow(0, 0, b)?, reference.narrow(0, b, b)?);
    let out = preference_loss(
        &SideLogps::per_token(&lp_c, &m_c),
        &SideLogps::per_token(&lp_r, &m_r),
        &ref_c,
        &ref_r,
        cfg,
    )?;
    let value = out
        .loss
        .to_dtype(candle_core::DType::F64)?
        .to_scalar::<f64>()?;
    Ok(PairLoss {
        loss: out.loss,
        value,
        stats: out.metrics,
        target_tokens: batch.target_tokens,
        total_tokens: batch.total_tokens,
    })
}

/// Inserts TRL's names for `stats` (`rewards/chosen`, …, `logps/rejected`), each prefixed.
pub fn insert_stats(rec: &mut crate::metrics::Record, prefix: &str, stats: &RewardStats) {
    use crate::metrics::num;
    for (k, v) in [
        ("rewards/chosen", stats.chosen),
        ("rewards/rejected", stats.rejected),
        ("rewards/accuracies", stats.accuracies),
        ("rewards/margins", stats.margins),
        ("logps/chosen", stats.logps_chosen),
        ("logps/rejected", stats.logps_rejected),
    ] {
        rec.insert(format!("{prefix}{k}"), num(v));
    }
}
