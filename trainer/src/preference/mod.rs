//! Preference optimisation: the DPO family under TRL 1.16's `loss_type` names (sigmoid, ipo,
//! hinge, robust, exo_pair, nca_pair, bco_pair, sppo_hard, aot, aot_unpaired, apo_zero, apo_down,
//! discopop, sft, sigmoid_norm, weighted lists of them, f-divergence scores, LD-DPO), and the
//! Bradley–Terry reward-model loss.
//!
//! [`preference_loss`] is the entry point of the training loop: per-token (or summed) policy
//! log-probs of both completions of each pair, the reference log-probs, a
//! [`PreferenceLossConfig`]; it returns the scalar loss (differentiable in the policy log-probs),
//! the implicit rewards β·(log π − log π_ref) and TRL's reward statistics. Works for any float
//! dtype; `oxrl loss` runs it in f64 on TRL's golden cases.

pub mod config;
pub mod logps;
pub mod losses;
pub mod metrics;
pub mod reward_model;
pub mod sigmoid;

use candle_core::Tensor;

pub use config::{FDivergence, LossTypes, PreferenceLossConfig, PreferenceLossType};
pub use logps::{reduce_pair, SequenceLogps, SideLogps};
pub use losses::{f_divergence_scores, per_sequence_loss, PairTerms};
pub use metrics::{token_stats, RewardStats, TokenStats};
pub use reward_model::{bradley_terry_loss, RewardLossConfig};

use crate::{MathError, Result};

/// What [`preference_loss`] returns.
#[derive(Debug, Clone)]
pub struct PreferenceOutput {
    /// Σ_k w_k · mean_b ℓ_k (rank 0), differentiable in the policy log-probs.
    pub loss: Tensor,
    /// β·(log π(y_w) − log π_ref(y_w)), `[B]`, detached.
    pub chosen_rewards: Tensor,
    /// β·(log π(y_l) − log π_ref(y_l)), `[B]`, detached.
    pub rejected_rewards: Tensor,
    /// The policy's sequence log-probs (after LD-DPO weighting), `[B]`, detached.
    pub chosen_logps: Tensor,
    /// Same for the rejected completions.
    pub rejected_logps: Tensor,
    /// TRL's reward and log-prob statistics.
    pub metrics: RewardStats,
}

/// The preference loss of a batch of pairs. `chosen` / `rejected`: the policy's log-probs
/// (`[B × T]` with masks, or `[B]` sums); `ref_chosen` / `ref_rejected`: the reference's, `[B]`
/// sums or per token in the policy's shape (summed under the same masks).
pub fn preference_loss(
    chosen: &SideLogps,
    rejected: &SideLogps,
    ref_chosen: &Tensor,
    ref_rejected: &Tensor,
    cfg: &PreferenceLossConfig,
) -> Result<PreferenceOutput> {
    let parts = cfg.weighted_types()?;
    if cfg
        .loss_type
        .0
        .iter()
        .any(|t| *t == PreferenceLossType::Sigmoid)
        && cfg.label_smoothing != 0.0
    {
        tracing::warn!(
            "loss_type `sigmoid` ignores label_smoothing (as TRL ≥ 1.0 does); use `cdpo` for conservative DPO"
        );
    }
    let (c, r) = reduce_pair(chosen, rejected, cfg.ld_alpha)?;
    let terms = PairTerms {
        ref_chosen_logps: c.reference(ref_chosen)?,
        ref_rejected_logps: r.reference(ref_rejected)?,
        chosen_logps: c.logps,
        rejected_logps: r.logps,
        chosen_lengths: c.lengths,
        rejected_lengths: r.lengths,
        chosen_token_sum: c.token_sum,
    };
    if terms.chosen_logps.elem_count() == 0 {
        return Err(MathError::InvalidInput("the batch has no pairs".into()));
    }
    let mut loss: Option<Tensor> = None;
    for (kind, weight) in parts {
        let part = (per_sequence_loss(kind, &terms, cfg)?.mean_all()? * weight)?;
        loss = Some(match loss {
            None => part,
            Some(acc) => (acc + part)?,
        });
    }
    let loss = loss.ok_or_else(|| MathError::InvalidInput("loss_type is an empty list".into()))?;
    let chosen_rewards = (terms.chosen_logratios()?.detach() * cfg.beta)?;
    let rejected_rewards = (terms.rejected_logratios()?.detach() * cfg.beta)?;
    let chosen_logps = terms.chosen_logps.detach();
    let rejected_logps = terms.rejected_logps.detach();
    let metrics = RewardStats::new(
        &chosen_rewards,
        &rejected_rewards,
        &chosen_logps,
        &rejected_logps,
    )?;
    Ok(PreferenceOutput {
        loss,
        chosen_rewards,
        rejected_rewards,
        chosen_logps,
        rejected_logps,
        metrics,
    })
}
