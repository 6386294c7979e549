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
    if cfg.loss_type.0.contains(&PreferenceLossType::Sigmoid) && cfg.label_smoothing != 0.0 {
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

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn t1(v: &[f64]) -> Tensor {
        Tensor::new(v, &Device::Cpu).unwrap()
    }

    fn grads(out: &PreferenceOutput, c: &Var, r: &Var) -> (Vec<f64>, Vec<f64>) {
        let g = out.loss.backward().unwrap();
        let flat = |v: &Var| {
            g.get(v)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f64>()
                .unwrap()
        };
        (flat(c), flat(r))
    }

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() <= 1e-12 + 1e-12 * b.abs(), "{a} vs {b}");
    }

    #[test]
    fn sigmoid_by_hand() {
        // u_w = 1, u_l = −1, β = 0.5: h = 1, loss = log(1 + e^{−1}), dℓ/dlogπ(y_w) = −β σ(−1).
        let c = Var::new(&[-1.0f64], &Device::Cpu).unwrap();
        let r = Var::new(&[-3.0f64], &Device::Cpu).unwrap();
        let cfg = PreferenceLossConfig::new(PreferenceLossType::Sigmoid, 0.5);
        let out = preference_loss(
            &SideLogps::summed(c.as_tensor()),
            &SideLogps::summed(r.as_tensor()),
            &t1(&[-2.0]),
            &t1(&[-2.0]),
            &cfg,
        )
        .unwrap();
        close(
            out.loss.to_scalar::<f64>().unwrap(),
            0.313_261_687_518_222_9,
        );
        let (gc, gr) = grads(&out, &c, &r);
        close(gc[0], -0.5 * 0.268_941_421_369_995_1);
        close(gr[0], 0.5 * 0.268_941_421_369_995_1);
        close(out.chosen_rewards.to_vec1::<f64>().unwrap()[0], 0.5);
        close(out.rejected_rewards.to_vec1::<f64>().unwrap()[0], -0.5);
        assert_eq!(out.metrics.accuracies, 1.0);
        close(out.metrics.margins, 1.0);
    }

    #[test]
    fn ipo_averages_per_token() {
        // chosen: two tokens of −1 (third padded), ref sum −3 → u_w = 1, per token 0.5;
        // rejected: one token −2, ref −1 → u_l = −1, per token −1. Δ̄ = 1.5, β = 0.25:
        // loss = (1.5 − 2)² = 0.25; dℓ/dtoken = 2(−0.5)·(±1/len) = −0.5 (chosen), +1 (rejected).
        let dev = &Device::Cpu;
        let c = Var::new(&[[-1.0f64, -1.0, 7.0]], dev).unwrap();
        let r = Var::new(&[[-2.0f64, 9.0, 9.0]], dev).unwrap();
        let cm = Tensor::new(&[[1.0f64, 1.0, 0.0]], dev).unwrap();
        let rm = Tensor::new(&[[1.0f64, 0.0, 0.0]], dev).unwrap();
        let cfg = PreferenceLossConfig::new(PreferenceLossType::Ipo, 0.25);
        let out = preference_loss(
            &SideLogps::per_token(c.as_tensor(), &cm),
            &SideLogps::per_token(r.as_tensor(), &rm),
            &t1(&[-3.0]),
            &t1(&[-1.0]),
            &cfg,
        )
        .unwrap();
        close(out.loss.to_scalar::<f64>().unwrap(), 0.25);
        let (gc, gr) = grads(&out, &c, &r);
        assert_eq!(gc, vec![-0.5, -0.5, 0.0]);
        assert_eq!(gr, vec![1.0, 0.0, 0.0]);
    }

    #[test]
    fn hinge_by_hand() {
        // β = 1, Δ = (0.5, 2): losses (0.5, 0), mean 0.25; only the first pair has a gradient, ∓½.
        let c = Var::new(&[0.0f64, 0.0], &Device::Cpu).unwrap();
        let r = Var::new(&[-0.5f64, -2.0], &Device::Cpu).unwrap();
        let zero = t1(&[0.0, 0.0]);
        let cfg = PreferenceLossConfig::new(PreferenceLossType::Hinge, 1.0);
        let out = preference_loss(
            &SideLogps::summed(c.as_tensor()),
            &SideLogps::summed(r.as_tensor()),
            &zero,
            &zero,
            &cfg,
        )
        .unwrap();
        close(out.loss.to_scalar::<f64>().unwrap(), 0.25);
        let (gc, gr) = grads(&out, &c, &r);
        assert_eq!(gc, vec![-0.5, 0.0]);
        assert_eq!(gr, vec![0.5, 0.0]);
    }

    #[test]
    fn ld_alpha_weights_the_tail() {
        // chosen 3 tokens, rejected 1: shared length 1, chosen tail (2 tokens) weighs α = 0.5.
        let dev = &Device::Cpu;
        let c = Tensor::new(&[[-1.0f64, -2.0, -4.0]], dev).unwrap();
        let r = Tensor::new(&[[-3.0f64, 0.0, 0.0]], dev).unwrap();
        let cm = Tensor::new(&[[1.0f64, 1.0, 1.0]], dev).unwrap();
        let rm = Tensor::new(&[[1.0f64, 0.0, 0.0]], dev).unwrap();
        let (sc, sr) = reduce_pair(
            &SideLogps::per_token(&c, &cm),
            &SideLogps::per_token(&r, &rm),
            Some(0.5),
        )
        .unwrap();
        close(sc.logps.to_vec1::<f64>().unwrap()[0], -1.0 - 0.5 * 6.0);
        close(sc.token_sum.to_vec1::<f64>().unwrap()[0], -7.0);
        close(sr.logps.to_vec1::<f64>().unwrap()[0], -3.0);
    }

    #[test]
    fn config_names_and_errors() {
        let cfg: PreferenceLossConfig = serde_json::from_str(
            r#"{"loss_type": ["sigmoid", "sft"], "loss_weights": [0.8, 1.0]}"#,
        )
        .unwrap();
        assert_eq!(cfg.weighted_types().unwrap().len(), 2);
        assert_eq!(cfg.beta, 0.1);
        let one: PreferenceLossConfig = serde_json::from_str(r#"{"loss_type": "ipo"}"#).unwrap();
        assert_eq!(one.loss_type.0, vec![PreferenceLossType::Ipo]);
        let bad = serde_json::from_str::<PreferenceLossConfig>(r#"{"loss_type": "dpo"}"#)
            .unwrap_err()
            .to_string();
        assert!(
            bad.contains("sigmoid_norm") && bad.contains("`dpo`"),
            "{bad}"
        );
        let bad = serde_json::from_str::<PreferenceLossConfig>(r#"{"f_divergence_type": "kl"}"#)
            .unwrap_err()
            .to_string();
        assert!(bad.contains("js_divergence"), "{bad}");
        let mismatch = PreferenceLossConfig {
            loss_weights: Some(vec![1.0, 2.0]),
            ..PreferenceLossConfig::default()
        };
        assert!(mismatch.weighted_types().is_err());
        let exo = PreferenceLossConfig::new(PreferenceLossType::ExoPair, 0.1);
        assert!(
            exo.weighted_types().is_err(),
            "exo_pair with label_smoothing = 0"
        );
    }
}
