//! Policy losses: the per-token objectives of PPO-style RL post-training, their aggregation into
//! one scalar, and the diagnostics TRL and verl log with them.
//!
//! One entry point, [`policy_loss`], driven by a [`PolicyLossConfig`]:
//!
//! | oxrl mode | per-token loss | TRL `loss_type` | verl `loss_mode` |
//! |---|---|---|---|
//! | `clipped` | −min(r·A, clip(r, 1−ε_l, 1+ε_h)·A) (+ `ratio_cap` δ, `dual_clip` c) | grpo, bnpo, dr_grpo, dapo, luspo | vanilla |
//! | `clipped` + `ratio_level = sequence` | the same with r = GSPO's sequence ratio | `importance_sampling_level="sequence"` | gspo |
//! | `cispo` | −sg[clip(r)]·A·log π | cispo (cap = ε_h) | cispo (clamp [1−ε_l, 1+ε_h]) |
//! | `sapo` | −σ(τ(r−1))·4/τ·A | sapo | sapo |
//! | `vespo` | −φ(w)·A·log π | vespo | — |
//! | `reinforce` | −A·log π | — | gpg, reinforce |
//! | `geo_mean` | GMPO, per sequence | — | geo_mean |
//! | `clip_cov`, `kl_cov` | covariance-selected tokens | — | clip_cov, kl_cov |
//! | `bapo` | clipped with adaptive bounds | — | — (oxrl extension) |
//!
//! Around the objective: a rollout importance-sampling correction ([`importance`]), a KL term to
//! the reference model (TRL's `beta`, optionally ratio-weighted), an entropy bonus, and the
//! aggregation of [`crate::aggregation`]. [`TrlGrpoArgs`] and [`VerlActorArgs`] build the
//! configuration each anchor's names mean. Everything is dtype-generic and differentiable in
//! `logp` (the trainer runs it in f32 under autograd; `oxrl loss` in f64).

use candle_core::{DType, Tensor};

use crate::aggregation::{aggregate, AggregationNorm};
use crate::kl::{kl_penalty, KlPenalty};
use crate::{MathError, Result};

pub mod bapo;
pub mod cispo;
pub mod clipped;
pub mod config;
pub mod cov;
pub mod geo_mean;
pub mod importance;
pub mod metrics;
pub mod ratio;
pub mod reinforce;
pub mod sapo;
pub mod vespo;

pub use bapo::{BapoConfig, BapoOrder, BapoState};
pub use config::{KlTerm, PolicyLossConfig, PolicyLossMode, TrlGrpoArgs, VerlActorArgs};
pub use importance::{IsAction, IsLevel, RolloutCorrection};
pub use metrics::PolicyLossMetrics;
pub use ratio::RatioLevel;

use metrics::{host, indicator, nanmax, nanmin, row_means, trl_mean, verl_mean};

/// Optional inputs of [`policy_loss`] besides the four tensors every loss needs.
#[derive(Debug, Clone, Default)]
pub struct PolicyLossExtras<'a> {
    /// Reference-model logprobs `[B × T]` (needed when the config has a KL term).
    pub ref_logp: Option<&'a Tensor>,
    /// The rollout engine's logprobs `[B × T]` (for `rollout_correction`, BAPO's Eq. 8 weight).
    pub rollout_logp: Option<&'a Tensor>,
    /// Precomputed rollout importance weights (`[B × T]`, `[B × 1]` or `[B]`), used instead of
    /// computing them from `rollout_logp` (TRL's `importance_sampling_ratio`, verl's
    /// `rollout_is_weights`).
    pub is_weights: Option<&'a Tensor>,
    /// Per-token entropies `[B × T]` (entropy bonus and the `entropy` metric).
    pub entropies: Option<&'a Tensor>,
    /// Normalisers taken from outside the micro-batch.
    pub norm: AggregationNorm,
    /// BAPO's bounds from the previous step (used when `bapo.restart` is false).
    pub bapo_state: Option<BapoState>,
}

/// What [`policy_loss`] returns.
#[derive(Debug, Clone)]
pub struct PolicyLossOutput {
    /// The scalar loss (rank 0, the input dtype), differentiable in `logp`.
    pub loss: Tensor,
    /// Diagnostics.
    pub metrics: PolicyLossMetrics,
    /// BAPO's new bounds (mode `bapo` only): keep them in the trainer state.
    pub bapo_state: Option<BapoState>,
}

fn broadcast_rows(t: &Tensor, rows: usize, cols: usize, what: &str) -> Result<Tensor> {
    let t = match t.rank() {
        1 => t.reshape((t.dim(0)?, 1))?,
        2 => t.clone(),
        _ => {
            return Err(MathError::Shape(format!(
                "{what}: expected [B] or [B × T], got {:?}",
                t.dims()
            )))
        }
    };
    let (r, c) = t.dims2()?;
    if r != rows || (c != 1 && c != cols) {
        return Err(MathError::Shape(format!(
            "{what}: {:?} does not fit [B × T] = [{rows} × {cols}]",
            t.dims()
        )));
    }
    Ok(t.broadcast_as((rows, cols))?.contiguous()?)
}

fn check_finite(t: &Tensor, what: &str) -> Result<()> {
    let s = t
        .detach()
        .to_dtype(DType::F64)?
        .sum_all()?
        .to_scalar::<f64>()?;
    if s.is_nan() {
        return Err(MathError::InvalidInput(format!("{what} holds NaN")));
    }
    Ok(())
}

/// Evaluates a policy loss.
///
/// - `logp` `[B × T]`: log π_θ of the sampled tokens (the differentiated input).
/// - `old_logp` `[B × T]`: log π_old; `None` for the on-policy case (ratio 1, gradient kept).
/// - `advantages`: `[B]` (one per completion) or `[B × T]`.
/// - `mask` `[B × T]`: 1 on completion tokens that count.
///
/// Positions outside the mask may hold anything finite; they get no gradient (except through
/// the sequence-level terms that are masked themselves).
pub fn policy_loss(
    logp: &Tensor,
    old_logp: Option<&Tensor>,
    advantages: &Tensor,
    mask: &Tensor,
    cfg: &PolicyLossConfig,
    extras: &PolicyLossExtras,
) -> Result<PolicyLossOutput> {
    let (rows, cols) = logp
        .dims2()
        .map_err(|_| MathError::Shape(format!("logp must be [B × T], got {:?}", logp.dims())))?;
    let dtype = logp.dtype();
    if mask.dims() != logp.dims() {
        return Err(MathError::Shape(format!(
            "mask {:?} vs logp {:?}",
            mask.dims(),
            logp.dims()
        )));
    }
    let mask = mask.to_dtype(dtype)?;
    let per_sequence_adv = advantages.rank() == 1 || advantages.dims().get(1) == Some(&1);
    let adv = broadcast_rows(&advantages.to_dtype(dtype)?, rows, cols, "advantages")?;
    check_finite(&crate::masked::select(&adv, &mask)?, "advantages")?;
    let old = match old_logp {
        Some(o) => {
            if o.dims() != logp.dims() {
                return Err(MathError::Shape(format!(
                    "old_logp {:?} vs logp {:?}",
                    o.dims(),
                    logp.dims()
                )));
            }
            o.to_dtype(dtype)?.detach()
        }
        None => logp.detach(),
    };

    // Rollout importance weights (detached, [B × T]).
    let is_weights = match (
        extras.is_weights,
        cfg.rollout_correction,
        extras.rollout_logp,
    ) {
        (Some(w), _, _) => Some(broadcast_rows(
            &w.to_dtype(dtype)?.detach(),
            rows,
            cols,
            "is_weights",
        )?),
        (None, Some(c), Some(r)) => Some(importance::rollout_weights(
            &old,
            &r.to_dtype(dtype)?,
            &mask,
            &c,
        )?),
        (None, Some(_), None) => {
            return Err(MathError::InvalidInput(
                "rollout_correction needs the rollout logprobs".into(),
            ))
        }
        (None, None, _) => None,
    };

    let token_lr = ratio::token_log_ratio(logp, &old, cfg.log_ratio_clamp)?;
    let log_ratio = match cfg.ratio_level {
        RatioLevel::Token => token_lr.clone(),
        RatioLevel::Sequence => {
            ratio::sequence_log_ratio(&token_lr, &mask, cfg.sequence_log_ratio_max)?
        }
    };
    let ratio = log_ratio.exp()?;

    let m_h = host(&mask)?;
    let a_h = host(&adv)?;
    let n = m_h.len();
    let mut met = PolicyLossMetrics {
        approx_kl: Some(verl_mean(&host(&token_lr.neg()?)?, &m_h)),
        ..Default::default()
    };
    let mut bapo_state = None;
    // Whether per-row quantities are one value per sequence (TRL logs them per row then).
    let row_shaped = cfg.ratio_level == RatioLevel::Sequence && per_sequence_adv;

    let mut direct_loss: Option<Tensor> = None;
    let loss_mat = match cfg.mode {
        PolicyLossMode::Clipped | PolicyLossMode::Bapo => {
            let bounds = if cfg.mode == PolicyLossMode::Bapo {
                let weights = match (cfg.bapo.weight_by_rollout_prob, extras.rollout_logp) {
                    (true, Some(r)) => Some(host(&r.exp()?)?),
                    (true, None) => {
                        return Err(MathError::InvalidInput(
                            "BAPO's rollout-probability weighting needs the rollout logprobs"
                                .into(),
                        ))
                    }
                    (false, _) => None,
                };
                let s = bapo::search(
                    &host(&ratio)?,
                    &a_h,
                    &m_h,
                    weights.as_deref(),
                    &cfg.bapo,
                    extras.bapo_state.as_ref(),
                )?;
                met.bapo_c_low = Some(s.c_low);
                met.bapo_c_high = Some(s.c_high);
                met.bapo_positive_share = Some(s.positive_share);
                bapo_state = Some(s);
                clipped::ClipBounds {
                    ratio_min: s.c_low,
                    ratio_max: s.c_high,
                    ratio_cap: None,
                    dual_clip: cfg.bapo.dual_clip,
                }
            } else {
                cfg.clip_bounds()
            };
            let terms = clipped::clipped_surrogate(&ratio, &adv, &bounds)?;
            clip_metrics(
                &mut met, &terms, &ratio, &bounds, &a_h, &m_h, cols, row_shaped,
            )?;
            terms.loss
        }
        PolicyLossMode::Cispo => {
            let b = cfg.cispo_bounds();
            let r_h = host(&ratio)?;
            let w_h = host(&cispo::cispo_weight(&ratio, &b)?)?;
            met.clip_frac = Some(verl_mean(&indicator(n, |i| r_h[i] != w_h[i]), &m_h));
            met.clip_frac_lower = Some(0.0);
            let cap = b.ratio_max.unwrap_or(f64::INFINITY);
            let hit = indicator(n, |i| r_h[i] > cap && a_h[i] > 0.0);
            met.cispo_clip_frac = Some(per_row_or_token_mean(&hit, &m_h, cols, row_shaped));
            cispo::cispo_loss(&ratio, &adv, logp, &b)?
        }
        PolicyLossMode::Sapo => {
            met.clip_frac = Some(0.0);
            met.clip_frac_lower = Some(0.0);
            sapo::sapo_loss(&ratio, &adv, &cfg.sapo)?
        }
        PolicyLossMode::Vespo => {
            let lr = ratio::token_log_ratio(logp, &old, None)?;
            let phi = vespo::gamma_weights(&lr, &adv, &mask, is_weights.as_ref(), &cfg.vespo)?;
            met.vespo_phi_mean = Some(per_row_or_token_mean(
                &host(&phi)?,
                &m_h,
                cols,
                per_sequence_adv,
            ));
            vespo::vespo_loss(&phi, &adv, logp)?
        }
        PolicyLossMode::Reinforce => reinforce::reinforce_loss(&adv, logp)?,
        PolicyLossMode::GeoMean => {
            let g = geo_mean::geo_mean_loss(
                &token_lr,
                &adv,
                &mask,
                cfg.clip_low,
                cfg.clip_high,
                is_weights.as_ref(),
            )?;
            let c_h = host(&g.clipped)?;
            met.clip_frac = Some(verl_mean(
                &indicator(n, |i| c_h[i] != 0.0 && a_h[i] > 0.0),
                &m_h,
            ));
            met.clip_frac_lower = Some(verl_mean(
                &indicator(n, |i| c_h[i] != 0.0 && a_h[i] < 0.0),
                &m_h,
            ));
            direct_loss = Some(g.loss);
            Tensor::zeros_like(logp)?
        }
        PolicyLossMode::ClipCov => {
            let b = clipped::ClipBounds::from_epsilons(cfg.clip_low, cfg.clip_high);
            let terms = clipped::clipped_surrogate(&ratio, &adv, &b)?;
            let by_origin = terms.clipped.gt(&terms.unclipped)?.to_dtype(dtype)?;
            let keep = cov::clip_cov_keep(&adv, logp, &mask, &by_origin, &cfg.cov)?;
            let k_h = host(&keep)?;
            met.clip_frac = Some(verl_mean(&indicator(n, |i| k_h[i] == 0.0), &m_h));
            (terms.pessimistic * keep)?
        }
        PolicyLossMode::KlCov => {
            let sel = cov::kl_cov_select(&adv, logp, &mask, &cfg.cov)?;
            met.approx_kl = Some(verl_mean(&host(&token_lr.abs()?)?, &m_h));
            cov::kl_cov_loss(&ratio, &token_lr, &adv, &sel, cfg.cov.ppo_kl_coef)?
        }
    };

    // The rollout correction multiplies the per-token loss (VESPO and GMPO fold it in above).
    let mut loss_mat = match (&is_weights, cfg.mode) {
        (Some(w), m) if m != PolicyLossMode::Vespo && m != PolicyLossMode::GeoMean => {
            (loss_mat * w)?
        }
        _ => loss_mat,
    };

    if let Some(kl) = cfg.kl.filter(|k| k.coef != 0.0) {
        let reference = extras.ref_logp.ok_or_else(|| {
            MathError::InvalidInput("a KL term needs the reference logprobs".into())
        })?;
        let reference = reference.to_dtype(dtype)?;
        let pen = KlPenalty {
            estimator: kl.estimator,
            straight_through: kl.straight_through,
        };
        let mut k = kl_penalty(logp, &reference, pen)?;
        if kl.importance_weighted {
            k = (k * &ratio)?;
        }
        met.kl = Some(trl_mean(&host(&crate::masked::select(&k, &mask)?)?, &m_h));
        loss_mat = (loss_mat + (k * kl.coef)?)?;
        if let Some(d) = direct_loss.take() {
            direct_loss =
                Some((d + aggregate(&(loss_mat.clone()), &mask, cfg.aggregation, &extras.norm)?)?);
        }
    }

    let mut loss = match direct_loss {
        Some(d) => d,
        None => aggregate(&loss_mat, &mask, cfg.aggregation, &extras.norm)?,
    };

    if let Some(h) = extras.entropies {
        let h = h.to_dtype(dtype)?;
        if h.dims() != logp.dims() {
            return Err(MathError::Shape(format!(
                "entropies {:?} vs logp {:?}",
                h.dims(),
                logp.dims()
            )));
        }
        met.entropy = Some(trl_mean(&host(&crate::masked::select(&h, &mask)?)?, &m_h));
        if cfg.entropy_coef != 0.0 {
            let agg = cfg.entropy_aggregation.unwrap_or(cfg.aggregation);
            let bonus = aggregate(&h, &mask, agg, &extras.norm)?;
            loss = (loss - (bonus * cfg.entropy_coef)?)?;
        }
    } else if cfg.entropy_coef != 0.0 {
        return Err(MathError::InvalidInput(
            "an entropy bonus needs the token entropies".into(),
        ));
    }

    Ok(PolicyLossOutput {
        loss,
        metrics: met,
        bapo_state,
    })
}

/// Mean of a per-token indicator: over rows when the quantity is one value per sequence (TRL's
/// `[B × 1]` tensors), else over valid tokens.
fn per_row_or_token_mean(x: &[f64], m: &[f64], cols: usize, row_shaped: bool) -> f64 {
    if row_shaped {
        let firsts: Vec<f64> = x.chunks(cols).map(|r| r[0]).collect();
        firsts.iter().sum::<f64>() / (firsts.len() as f64).max(1.0)
    } else {
        trl_mean(x, m)
    }
}

/// verl's and TRL's clip statistics of a clipped surrogate.
#[allow(clippy::too_many_arguments)]
fn clip_metrics(
    met: &mut PolicyLossMetrics,
    terms: &clipped::ClippedTerms,
    ratio: &Tensor,
    b: &clipped::ClipBounds,
    a: &[f64],
    m: &[f64],
    cols: usize,
    row_shaped: bool,
) -> Result<()> {
    let n = a.len();
    let (u, c, p) = (
        host(&terms.unclipped)?,
        host(&terms.clipped)?,
        host(&terms.pessimistic)?,
    );
    met.clip_frac = Some(verl_mean(&indicator(n, |i| c[i] > u[i]), m));
    met.clip_frac_lower = Some(match b.dual_clip {
        Some(cc) => verl_mean(&indicator(n, |i| a[i] < 0.0 && p[i] > -a[i] * cc), m),
        None => 0.0,
    });
    // TRL compares the ratio after its `delta` cap.
    let r: Vec<f64> = host(ratio)?
        .into_iter()
        .map(|x| b.ratio_cap.map_or(x, |d| x.min(d)))
        .collect();
    let low = indicator(n, |i| r[i] < b.ratio_min && a[i] < 0.0);
    let high = indicator(n, |i| r[i] > b.ratio_max && a[i] > 0.0);
    let region = indicator(n, |i| low[i] != 0.0 || high[i] != 0.0);
    met.clip_low_mean = Some(per_row_or_token_mean(&low, m, cols, row_shaped));
    met.clip_high_mean = Some(per_row_or_token_mean(&high, m, cols, row_shaped));
    met.clip_region_mean = Some(per_row_or_token_mean(&region, m, cols, row_shaped));
    let (low_rows, high_rows) = if row_shaped {
        (
            low.chunks(cols).map(|r| r[0]).collect::<Vec<_>>(),
            high.chunks(cols).map(|r| r[0]).collect::<Vec<_>>(),
        )
    } else {
        (row_means(&low, m, cols), row_means(&high, m, cols))
    };
    met.clip_low_min = Some(nanmin(&low_rows));
    met.clip_high_max = Some(nanmax(&high_rows));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn bapo_worked_example_loss() {
        // SEED-MECHANISMS §1: (r, A) = (1.5, +1), (1.3, +0.5), (0.5, −1.5), (1.0, −1);
        // paper rule with ρ0 = 0.5 settles at (0.6, 1.30): losses [−1.3, −0.65, 0.9, 1.0].
        let d = &Device::Cpu;
        let r = [1.5f64, 1.3, 0.5, 1.0];
        let old = Tensor::new(&[[0.0f64; 4]], d).unwrap();
        let lp = Var::new(&[r.map(f64::ln)], d).unwrap();
        let adv = Tensor::new(&[[1.0f64, 0.5, -1.5, -1.0]], d).unwrap();
        let mask = Tensor::new(&[[1.0f64; 4]], d).unwrap();
        let cfg = PolicyLossConfig::bapo(BapoConfig {
            target_share: 0.5,
            ..BapoConfig::default()
        });
        let out = policy_loss(
            lp.as_tensor(),
            Some(&old),
            &adv,
            &mask,
            &cfg,
            &PolicyLossExtras::default(),
        )
        .unwrap();
        let loss = out.loss.to_scalar::<f64>().unwrap();
        assert!((loss + 0.0125).abs() < 1e-12, "{loss}");
        let s = out.bapo_state.unwrap();
        assert!((s.c_low - 0.6).abs() < 1e-9 && (s.c_high - 1.3).abs() < 1e-9);
        assert!((out.metrics.bapo_positive_share.unwrap() - 0.506494).abs() < 1e-6);
    }

    #[test]
    fn config_deserialises_with_anchor_aliases() {
        let cfg: PolicyLossConfig = serde_json::from_str(
            r#"{"loss_mode": "vanilla", "clip_ratio_low": 0.2, "clip_ratio_high": 0.28,
                "clip_ratio_c": 3.0, "loss_agg_mode": "seq-mean-token-mean",
                "kl": {"beta": 0.04, "use_bias_correction_kl": true}}"#,
        )
        .unwrap();
        assert_eq!(cfg.mode, PolicyLossMode::Clipped);
        assert_eq!(cfg.clip_high, 0.28);
        assert_eq!(cfg.kl.unwrap().estimator, crate::kl::KlEstimator::K3);
        let err = serde_json::from_str::<PolicyLossConfig>(r#"{"mode": "ppo2"}"#).unwrap_err();
        assert!(err.to_string().contains("clipped"), "{err}");
        assert!(serde_json::from_str::<PolicyLossConfig>(r#"{"epsilon_hi": 1}"#).is_err());
    }

    #[test]
    fn rollout_weights_and_entropy_bonus_by_hand() {
        // REINFORCE, token-mean over 2 tokens: L = −Σ w·A·logp / 2 − 0.1·mean(H).
        let d = &Device::Cpu;
        let lp = Var::new(&[[-1.0f64, -2.0]], d).unwrap();
        let old = Tensor::new(&[[-1.0f64, -2.0]], d).unwrap();
        let roll = Tensor::new(&[[-2.0f64, -2.5]], d).unwrap();
        let adv = Tensor::new(&[1.0f64], d).unwrap();
        let mask = Tensor::new(&[[1.0f64, 1.0]], d).unwrap();
        let h = Tensor::new(&[[0.5f64, 1.5]], d).unwrap();
        let cfg = PolicyLossConfig {
            mode: PolicyLossMode::Reinforce,
            rollout_correction: Some(
                RolloutCorrection::from_trl("token_truncate", None, Some(2.0)).unwrap(),
            ),
            entropy_coef: 0.1,
            ..PolicyLossConfig::default()
        };
        let extras = PolicyLossExtras {
            rollout_logp: Some(&roll),
            entropies: Some(&h),
            ..Default::default()
        };
        let out = policy_loss(lp.as_tensor(), Some(&old), &adv, &mask, &cfg, &extras).unwrap();
        // weights: min(e^1, 2) = 2, e^0.5
        let w1 = 0.5f64.exp();
        let want = (2.0 + 2.0 * w1) / 2.0 - 0.1;
        assert!((out.loss.to_scalar::<f64>().unwrap() - want).abs() < 1e-12);
        let g = out.loss.backward().unwrap();
        let g = g.get(lp.as_tensor()).unwrap().to_vec2::<f64>().unwrap();
        assert!((g[0][0] + 1.0).abs() < 1e-12 && (g[0][1] + w1 / 2.0).abs() < 1e-12);
        assert_eq!(out.metrics.entropy, Some(1.0));
    }
}
