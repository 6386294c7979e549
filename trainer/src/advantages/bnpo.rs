//! BNPO — Beta-normalised advantages, an oxrl extension following "BNPO: Beta Normalization
//! Policy Optimization" (Xiao, Zhang, Cao 2025, arXiv:2506.02864) and its authors' code
//! (github changyi7231/BNPO, `compute_bnpo_outcome_advantage`). Not TRL's `loss_type = "bnpo"`,
//! which is a loss aggregation ([`crate::aggregation`]).
//!
//! The paper's advantage (its Eq. for A_{α,β}, the BNPO estimator) is
//! A(q, o) = (R(q, o) − p(q)) / f(p(q); α, β), with f the Beta density, p(q) the group's mean
//! reward, and (α, β) = (1 + a/3, 1 + b/3) where Beta(a, b) is fitted by moments to the batch's
//! per-prompt success rates (the paper's variance-optimal choice of the normaliser's parameters).
//! Step by step, as the authors' code computes it:
//! 1. Scores (Σ_t of each row's token rewards) are mapped to [0, 1]: (R − min)/(max − min),
//!    default min 0, max 1. A group whose mean falls outside [0, 1] is an error.
//! 2. p_q = mean mapped score of group q; a group of one has p_q = 0 (as the code does).
//! 3. Over the distinct groups: m = mean(p_q), v = unbiased variance; with one group m = 0, v = 1.
//! 4. κ = m(1 − m)/v − 1, a = κm, b = κ(1 − m), α = max(1 + a/3, 1), β = max(1 + b/3, 1).
//! 5. A_i = clamp(1/f(p_q; α, β), 0, 1e6)·(R_i − p_q), broadcast over the row's tokens × mask.
//!
//! Special cases: α = β = 1 is REINFORCE with the group-mean baseline; α = β = 3/2 gives
//! 1/f(p) = B(3/2, 3/2)/√(p(1−p)) = (π/8)/√(p(1−p)), i.e. GRPO with the population std, no ε,
//! scaled by π/8. With several reward parts (the paper's advantage decomposition), each part is
//! normalised with its own (α, β) and the advantages averaged: [`bnpo_decomposed`].
//! (α, β) are re-estimated from every batch; there is no state.

use candle_core::{DType, Tensor};

use super::host;
use crate::{MathError, Result};

/// Options of [`bnpo`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BnpoOptions {
    /// The reward mapped to 0.
    pub min_value: f64,
    /// The reward mapped to 1.
    pub max_value: f64,
    /// Upper clamp of the weight 1/f(p) (the code's 1e6).
    pub max_weight: f64,
}

impl Default for BnpoOptions {
    fn default() -> Self {
        Self {
            min_value: 0.0,
            max_value: 1.0,
            max_weight: 1e6,
        }
    }
}

/// The fitted normaliser of one batch: the parameters of the Beta density that divides.
#[derive(Debug, Clone, PartialEq)]
pub struct BetaFit {
    /// α of the normalising Beta density.
    pub alpha: f64,
    /// β of the normalising Beta density.
    pub beta: f64,
}

/// BNPO advantages `[B × T]` (broadcast × mask) in the rewards' dtype; returned as both advantages
/// and returns, like verl's outcome estimators.
pub fn bnpo(
    token_level_rewards: &Tensor,
    response_mask: &Tensor,
    groups: &[usize],
    opts: &BnpoOptions,
) -> Result<Tensor> {
    let (scores, mask) = host::outcome_scores(token_level_rewards, response_mask, groups)?;
    let (adv, _) = bnpo_scores(&scores, groups, opts)?;
    host::tensor2(host::broadcast_masked(&adv, &mask), token_level_rewards)
}

/// BNPO with the advantage decomposition: one `[B × T]` reward tensor per reward part, each
/// normalised with its own (α, β); the result is the mean of the parts' advantages.
pub fn bnpo_decomposed(
    parts: &[Tensor],
    response_mask: &Tensor,
    groups: &[usize],
    opts: &BnpoOptions,
) -> Result<Tensor> {
    let (first, rest) = parts.split_first().ok_or_else(|| {
        MathError::InvalidInput("bnpo_decomposed needs at least one reward part".into())
    })?;
    let mut sum = bnpo(first, response_mask, groups, opts)?.to_dtype(DType::F64)?;
    for p in rest {
        sum = (sum + bnpo(p, response_mask, groups, opts)?.to_dtype(DType::F64)?)?;
    }
    Ok((sum / parts.len() as f64)?.to_dtype(first.dtype())?)
}

/// BNPO on host scores `[N]`: the per-row advantages and the fitted (α, β).
pub fn bnpo_scores(
    scores: &[f64],
    groups: &[usize],
    opts: &BnpoOptions,
) -> Result<(Vec<f64>, BetaFit)> {
    host::check_groups(groups, scores.len())?;
    let span = opts.max_value - opts.min_value;
    if !span.is_finite() || span <= 0.0 {
        return Err(MathError::InvalidInput(format!(
            "BNPO needs max_value > min_value, got [{}, {}]",
            opts.min_value, opts.max_value
        )));
    }
    let mapped: Vec<f64> = scores.iter().map(|s| (s - opts.min_value) / span).collect();
    let members = host::members(groups);
    let p: Vec<f64> = members
        .iter()
        .map(|idx| {
            if idx.len() == 1 {
                0.0
            } else {
                host::mean_of(&mapped, idx)
            }
        })
        .collect();
    if let Some(k) = p.iter().position(|&x| !(0.0..=1.0).contains(&x)) {
        return Err(MathError::InvalidInput(format!(
            "BNPO: group {k} has mean mapped reward {}, outside [0, 1]; set min_value / max_value \
             to the reward's range",
            p[k]
        )));
    }
    let fit = fit_beta(&p);
    let mut adv = vec![0.0; scores.len()];
    for (idx, &pq) in members.iter().zip(&p) {
        let weight = (1.0 / beta_pdf(pq, fit.alpha, fit.beta)).clamp(0.0, opts.max_weight);
        for &i in idx {
            adv[i] = weight * (mapped[i] - pq);
        }
    }
    Ok((adv, fit))
}

/// (α, β) from the groups' success rates by the method of moments, as in the module doc (steps 3–4).
/// When the rates have no spread (v = 0: every group has the same success rate, e.g. an all-zero
/// batch) the moments fix no Beta; oxrl then uses α = β = 1 (the authors' code yields NaN there).
pub fn fit_beta(p: &[f64]) -> BetaFit {
    let (m, v) = if p.len() > 1 {
        let n = p.len() as f64;
        let m = p.iter().sum::<f64>() / n;
        let v = p.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0);
        (m, v)
    } else {
        (0.0, 1.0)
    };
    if v.is_nan() || v <= 0.0 {
        return BetaFit {
            alpha: 1.0,
            beta: 1.0,
        };
    }
    let kappa = m * (1.0 - m) / v - 1.0;
    let (a, b) = (kappa * m, kappa * (1.0 - m));
    BetaFit {
        alpha: (1.0 + a / 3.0).max(1.0),
        beta: (1.0 + b / 3.0).max(1.0),
    }
}

/// The Beta(α, β) density at `p` ∈ [0, 1] (0⁰ = 1, so α = 1 is finite at 0).
pub fn beta_pdf(p: f64, alpha: f64, beta: f64) -> f64 {
    let xlogy = |x: f64, y: f64| if x == 0.0 { 0.0 } else { x * y.ln() };
    let log_b = ln_gamma(alpha) + ln_gamma(beta) - ln_gamma(alpha + beta);
    (xlogy(alpha - 1.0, p) + xlogy(beta - 1.0, 1.0 - p) - log_b).exp()
}

/// ln Γ(x) for x > 0 (Lanczos, g = 7, 9 terms; ~1e-15 relative).
pub fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x)Γ(1−x) = π / sin(πx).
        return (std::f64::consts::PI / (std::f64::consts::PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut acc = C[0];
    for (k, c) in C.iter().enumerate().skip(1) {
        acc += c / (x + k as f64);
    }
    let t = x + G + 0.5;
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + acc.ln()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn close(a: f64, b: f64, tol: f64) {
        assert!((a - b).abs() <= tol, "{a} vs {b}");
    }

    /// SEED-MECHANISMS §2 worked example: 4 prompts, G = 4, 1/2/3/3 successes.
    fn worked_example() -> (Vec<f64>, Vec<usize>) {
        let succ = [1, 2, 3, 3];
        let mut scores = Vec::new();
        let mut groups = Vec::new();
        for (g, &s) in succ.iter().enumerate() {
            for k in 0..4 {
                scores.push(if k < s { 1.0 } else { 0.0 });
                groups.push(g);
            }
        }
        (scores, groups)
    }

    #[test]
    fn worked_example_fit() {
        let fit = fit_beta(&[0.25, 0.5, 0.75, 0.75]);
        close(fit.alpha, 1.617898, 1e-6);
        close(fit.beta, 1.480587, 1e-6);
    }

    #[test]
    fn worked_example_densities() {
        let fit = fit_beta(&[0.25, 0.5, 0.75, 0.75]);
        close(beta_pdf(0.25, fit.alpha, fit.beta), 1.022844, 1e-6);
        close(beta_pdf(0.5, fit.alpha, fit.beta), 1.291778, 1e-6);
        close(beta_pdf(0.75, fit.alpha, fit.beta), 1.189387, 1e-6);
    }

    #[test]
    fn worked_example_advantages() {
        let (scores, groups) = worked_example();
        let (adv, _) = bnpo_scores(&scores, &groups, &BnpoOptions::default()).unwrap();
        // p = 0.25: one success, three failures.
        close(adv[0], 0.733250, 1e-6);
        close(adv[1], -0.244417, 1e-6);
        // p = 0.5.
        close(adv[4], 0.387063, 1e-6);
        close(adv[6], -0.387063, 1e-6);
        // p = 0.75.
        close(adv[8], 0.210192, 1e-6);
        close(adv[11], -0.630577, 1e-6);
        close(adv[15], -0.630577, 1e-6);
    }

    #[test]
    fn identity_alpha_beta_three_halves() {
        // 1/f(0.5; 1.5, 1.5) = π/4.
        close(
            1.0 / beta_pdf(0.5, 1.5, 1.5),
            std::f64::consts::FRAC_PI_4,
            1e-12,
        );
        // In general 1/f(p) = (π/8)/√(p(1−p)).
        for p in [0.1f64, 0.3, 0.7] {
            let expect = std::f64::consts::PI / 8.0 / (p * (1.0 - p)).sqrt();
            close(1.0 / beta_pdf(p, 1.5, 1.5), expect, 1e-12);
        }
    }

    #[test]
    fn uniform_beta_is_reinforce_with_group_mean() {
        close(beta_pdf(0.3, 1.0, 1.0), 1.0, 1e-12);
        close(beta_pdf(0.0, 1.0, 1.0), 1.0, 1e-12);
        // All groups with the same success rate: v = 0 → κ = ∞ … use distinct rates whose fit
        // clamps to α = β = 1 (large variance): p = [0, 1].
        let fit = fit_beta(&[0.0, 1.0]);
        assert_eq!((fit.alpha, fit.beta), (1.0, 1.0));
    }

    #[test]
    fn no_spread_falls_back_to_uniform() {
        let fit = fit_beta(&[0.0, 0.0, 0.0]);
        assert_eq!((fit.alpha, fit.beta), (1.0, 1.0));
        let (adv, _) = bnpo_scores(
            &[1.0, 0.0, 0.0, 1.0],
            &[0, 0, 1, 1],
            &BnpoOptions::default(),
        )
        .unwrap();
        for (a, e) in adv.iter().zip([0.5, -0.5, -0.5, 0.5]) {
            close(*a, e, 1e-12);
        }
    }

    #[test]
    fn saturated_groups_get_zero() {
        let scores = [0.0, 0.0, 1.0, 1.0, 1.0, 0.0];
        let groups = [0, 0, 1, 1, 2, 2];
        let (adv, fit) = bnpo_scores(&scores, &groups, &BnpoOptions::default()).unwrap();
        assert!(fit.alpha >= 1.0 && fit.beta >= 1.0);
        assert_eq!(&adv[..4], &[0.0; 4]);
        assert!(adv[4] > 0.0 && adv[5] < 0.0);
    }

    #[test]
    fn out_of_range_rewards_are_an_error() {
        let err = bnpo_scores(&[2.0, 3.0], &[0, 0], &BnpoOptions::default()).unwrap_err();
        assert!(err.to_string().contains("outside [0, 1]"));
        let opts = BnpoOptions {
            min_value: 0.0,
            max_value: 4.0,
            ..Default::default()
        };
        assert!(bnpo_scores(&[2.0, 3.0], &[0, 0], &opts).is_ok());
    }

    #[test]
    fn tensor_path_keeps_dtype_and_broadcasts() {
        let (scores, groups) = worked_example();
        let rows: Vec<f32> = scores.iter().flat_map(|&s| [s as f32, 0.0]).collect();
        let r = Tensor::from_vec(rows, (16, 2), &Device::Cpu).unwrap();
        let m = Tensor::ones((16, 2), DType::F32, &Device::Cpu).unwrap();
        let a = bnpo(&r, &m, &groups, &BnpoOptions::default()).unwrap();
        assert_eq!(a.dtype(), DType::F32);
        let a = a.to_vec2::<f32>().unwrap();
        close(a[0][0] as f64, 0.733250, 1e-6);
        close(a[0][1] as f64, 0.733250, 1e-6);
    }

    #[test]
    fn decomposition_averages_parts() {
        let (scores, groups) = worked_example();
        let r = Tensor::from_vec(scores.clone(), (16, 1), &Device::Cpu).unwrap();
        let m = Tensor::ones((16, 1), DType::F64, &Device::Cpu).unwrap();
        let zeros = r.zeros_like().unwrap();
        let a = bnpo_decomposed(&[r.clone(), zeros], &m, &groups, &BnpoOptions::default())
            .unwrap()
            .to_vec2::<f64>()
            .unwrap();
        close(a[0][0], 0.733250 / 2.0, 1e-6);
    }
}
