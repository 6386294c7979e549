//! The per-pair preference objectives, each a `[B]` tensor differentiable in the policy's
//! sequence log-probs (TRL 1.16's `DPOTrainer._compute_loss` formulas).
//!
//! Notation: u_w = log π(y_w) − log π_ref(y_w), u_l likewise (the log-ratios); s_w, s_l their
//! f-divergence scores (s = u for `reverse_kl`); Δ = s_w − s_l; Δ̄ = s_w/|y_w| − s_l/|y_l| with
//! completion lengths clamped at 1; ε = `label_smoothing`.

use candle_core::{DType, Tensor};

use super::config::{FDivergence, PreferenceLossConfig, PreferenceLossType};
use super::sigmoid::{log_sigmoid, relu, sigmoid};
use crate::{MathError, Result};

/// Everything the objectives read, per pair (`[B]` each).
#[derive(Debug, Clone)]
pub struct PairTerms {
    /// Policy sequence log-probs of the chosen completions.
    pub chosen_logps: Tensor,
    /// Policy sequence log-probs of the rejected completions.
    pub rejected_logps: Tensor,
    /// Reference sequence log-probs of the chosen completions.
    pub ref_chosen_logps: Tensor,
    /// Reference sequence log-probs of the rejected completions.
    pub ref_rejected_logps: Tensor,
    /// Chosen completion lengths (1 for summed inputs).
    pub chosen_lengths: Tensor,
    /// Rejected completion lengths.
    pub rejected_lengths: Tensor,
    /// Unweighted Σ_t log π over the chosen completions (for `sft`).
    pub chosen_token_sum: Tensor,
}

impl PairTerms {
    /// u_w = log π(y_w) − log π_ref(y_w).
    pub fn chosen_logratios(&self) -> Result<Tensor> {
        Ok((&self.chosen_logps - &self.ref_chosen_logps)?)
    }

    /// u_l = log π(y_l) − log π_ref(y_l).
    pub fn rejected_logratios(&self) -> Result<Tensor> {
        Ok((&self.rejected_logps - &self.ref_rejected_logps)?)
    }
}

/// The f-divergence score of log-ratios `u` (see [`FDivergence`]).
pub fn f_divergence_scores(u: &Tensor, div: FDivergence, alpha: f64) -> Result<Tensor> {
    Ok(match div {
        FDivergence::ReverseKl => u.clone(),
        FDivergence::ForwardKl => u.neg()?.exp()?.neg()?,
        FDivergence::JsDivergence => log_sigmoid(u)?,
        FDivergence::AlphaDivergence => {
            if (alpha - 1.0).abs() < 1e-6 {
                u.clone()
            } else {
                // TRL clamps the exponent at 80 so that exp stays finite in f32 / bf16.
                let t = (u * (alpha - 1.0))?.minimum(80.0)?;
                (t.exp()? * (1.0 / (alpha - 1.0)))?
            }
        }
    })
}

/// Sorts `x` ascending along its only axis, differentiably (a gather by the host-side order).
fn sorted(x: &Tensor) -> Result<Tensor> {
    let v = x.to_dtype(DType::F64)?.to_vec1::<f64>()?;
    let mut order: Vec<u32> = (0..v.len() as u32).collect();
    order.sort_by(|&a, &b| v[a as usize].total_cmp(&v[b as usize]));
    let idx = Tensor::from_vec(order, v.len(), x.device())?;
    Ok(x.index_select(&idx, 0)?)
}

/// −(1 − ε) log σ(βd) − ε log σ(−βd): the label-smoothed logistic loss of margins `d`.
fn smoothed_logistic(d: &Tensor, beta: f64, eps: f64) -> Result<Tensor> {
    let h = (d * beta)?;
    let pos = (log_sigmoid(&h)? * (-(1.0 - eps)))?;
    if eps == 0.0 {
        return Ok(pos);
    }
    Ok((pos - (log_sigmoid(&h.neg()?)? * eps)?)?)
}

/// The `[B]` loss of one objective.
pub fn per_sequence_loss(
    kind: PreferenceLossType,
    t: &PairTerms,
    cfg: &PreferenceLossConfig,
) -> Result<Tensor> {
    use PreferenceLossType as L;
    let beta = cfg.beta;
    let eps = cfg.label_smoothing;
    let u_w = t.chosen_logratios()?;
    let u_l = t.rejected_logratios()?;
    let s_w = f_divergence_scores(&u_w, cfg.f_divergence_type, cfg.f_alpha_divergence_coef)?;
    let s_l = f_divergence_scores(&u_l, cfg.f_divergence_type, cfg.f_alpha_divergence_coef)?;
    let delta = (&s_w - &s_l)?;
    let avg_delta = || -> Result<Tensor> {
        let w = (&s_w / t.chosen_lengths.maximum(1.0)?)?;
        let l = (&s_l / t.rejected_lengths.maximum(1.0)?)?;
        Ok((w - l)?)
    };
    Ok(match kind {
        L::Sigmoid => smoothed_logistic(&delta, beta, 0.0)?,
        L::Cdpo => smoothed_logistic(&delta, beta, eps)?,
        L::Hinge => relu(&((&delta * -beta)? + 1.0)?)?,
        L::Ipo => (avg_delta()? - 1.0 / (2.0 * beta))?.sqr()?,
        L::SigmoidNorm => smoothed_logistic(&avg_delta()?, beta, 0.0)?,
        L::ExoPair => {
            let h = (&delta * beta)?;
            let log_qw = log_sigmoid(&h)?;
            let log_ql = log_sigmoid(&h.neg()?)?;
            let term_w = (log_qw.exp()? * (log_qw - (-eps).ln_1p())?)?;
            let term_l = (log_ql.exp()? * (log_ql - eps.ln())?)?;
            (term_w + term_l)?
        }
        L::NcaPair => {
            let r_w = (&s_w * beta)?;
            let r_l = (&s_l * beta)?;
            let a = log_sigmoid(&r_w)?.neg()?;
            let b = (log_sigmoid(&r_w.neg()?)? * 0.5)?;
            let c = (log_sigmoid(&r_l.neg()?)? * 0.5)?;
            ((a - b)? - c)?
        }
        L::Robust => {
            let h = (&delta * beta)?;
            let clean = (log_sigmoid(&h)? * (-(1.0 - eps)))?;
            let flipped = (log_sigmoid(&h.neg()?)? * (-eps))?;
            ((clean - flipped)? / (1.0 - 2.0 * eps))?
        }
        L::BcoPair => {
            let a = log_sigmoid(&(&s_w * beta)?)?;
            let b = log_sigmoid(&(&s_l * -beta)?)?;
            (a + b)?.neg()?
        }
        L::SppoHard => {
            let w = (&s_w - 0.5 / beta)?.sqr()?;
            let l = (&s_l + 0.5 / beta)?.sqr()?;
            (w + l)?
        }
        L::Aot => {
            let policy = sorted(&(&t.chosen_logps - &t.rejected_logps)?)?;
            let reference = sorted(&(&t.ref_chosen_logps - &t.ref_rejected_logps)?)?;
            smoothed_logistic(&(policy - reference)?, beta, eps)?
        }
        L::AotUnpaired => {
            let d = (sorted(&u_w)? - sorted(&u_l)?)?;
            smoothed_logistic(&d, beta, eps)?
        }
        L::ApoZero => {
            let w = (sigmoid(&(&u_w * beta)?)?.neg()? + 1.0)?;
            let l = sigmoid(&(&u_l * beta)?)?;
            (w + l)?
        }
        L::ApoDown => {
            let w = sigmoid(&(&u_w * beta)?)?;
            let l = (sigmoid(&(&delta * beta)?)?.neg()? + 1.0)?;
            (w + l)?
        }
        L::Discopop => {
            let logits = (&delta * beta)?;
            let modulation = sigmoid(&(&logits / cfg.discopop_tau)?)?;
            let logistic = log_sigmoid(&logits)?.neg()?;
            let exponential = logits.neg()?.exp()?;
            let keep = (modulation.neg()? + 1.0)?;
            ((logistic * keep)? + (exponential * modulation)?)?
        }
        L::Sft => {
            let tokens = t
                .chosen_lengths
                .sum_all()?
                .to_dtype(DType::F64)?
                .to_scalar::<f64>()?;
            if tokens <= 0.0 {
                return Err(MathError::InvalidInput(
                    "sft needs at least one chosen completion token".into(),
                ));
            }
            let nll = (t.chosen_token_sum.sum_all()? * (-1.0 / tokens))?;
            nll.broadcast_as(t.chosen_logps.dims())?.contiguous()?
        }
    })
}
