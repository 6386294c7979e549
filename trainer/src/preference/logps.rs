//! From per-token log-probabilities to the per-sequence quantities the preference losses use:
//! masked sums over the completion (TRL's `per_token_logps.sum(dim=1)` after zeroing non-completion
//! tokens), LD-DPO's down-weighting of the tokens beyond the shorter completion of a pair
//! (`ld_alpha`), completion lengths (the per-token averages of IPO and `sigmoid_norm`, the SFT term).
//!
//! A side may also arrive already summed (`[B]`): it then counts as one token per sequence, as in
//! TRL when each completion is one token long.

use candle_core::{DType, Tensor};

use crate::masked::select;
use crate::{MathError, Result};

/// One side (chosen or rejected) of a batch of pairs: per-token log-probs `[B × T]` with an
/// optional 0/1 completion mask (absent: every position counts), or per-sequence sums `[B]`.
#[derive(Debug, Clone, Copy)]
pub struct SideLogps<'a> {
    /// `[B × T]` per-token log-probs or `[B]` sums.
    pub logps: &'a Tensor,
    /// `[B × T]` completion mask (only with per-token log-probs).
    pub mask: Option<&'a Tensor>,
}

impl<'a> SideLogps<'a> {
    /// Per-token log-probs under a mask.
    pub fn per_token(logps: &'a Tensor, mask: &'a Tensor) -> Self {
        Self {
            logps,
            mask: Some(mask),
        }
    }

    /// Already summed per sequence (`[B]`).
    pub fn summed(logps: &'a Tensor) -> Self {
        Self { logps, mask: None }
    }

    /// Rows B.
    pub fn rows(&self) -> Result<usize> {
        Ok(self.logps.dims().first().copied().unwrap_or(0))
    }

    /// The mask as a `[B × T]` tensor of the log-probs' dtype (ones when absent); `None` for sums.
    fn mask_tensor(&self) -> Result<Option<Tensor>> {
        match (self.logps.rank(), self.mask) {
            (1, None) => Ok(None),
            (1, Some(_)) => Err(MathError::Shape(
                "a completion mask was given with summed [B] log-probs".into(),
            )),
            (2, None) => Ok(Some(self.logps.ones_like()?)),
            (2, Some(m)) => {
                if m.dims() != self.logps.dims() {
                    return Err(MathError::Shape(format!(
                        "mask {:?} vs per-token log-probs {:?}",
                        m.dims(),
                        self.logps.dims()
                    )));
                }
                Ok(Some(m.to_dtype(self.logps.dtype())?))
            }
            (r, _) => Err(MathError::Shape(format!(
                "log-probs must be [B × T] or [B], got rank {r} ({:?})",
                self.logps.dims()
            ))),
        }
    }
}

/// Per-sequence quantities of one side, all `[B]`.
#[derive(Debug, Clone)]
pub struct SequenceLogps {
    /// Σ_t weight·log π over the completion (the LD-DPO weighting when `ld_alpha` is set);
    /// differentiable in the input log-probs.
    pub logps: Tensor,
    /// Σ_t log π over the completion, unweighted (the SFT term's numerator).
    pub token_sum: Tensor,
    /// Completion lengths Σ_t mask (1 for summed inputs), no gradient.
    pub lengths: Tensor,
    /// Per-token weights `[B × T]` used for `logps` (None for summed inputs), reused for the
    /// reference log-probs when they come per token.
    weights: Option<Tensor>,
}

/// The chosen and rejected sides of a batch reduced to per-sequence quantities, with LD-DPO's
/// weighting when `ld_alpha` is given: tokens at completion positions ≤ min(|y_w|, |y_l|) weigh 1,
/// later ones `ld_alpha` (TRL's `shared_logps + ld_alpha · tail_logps`).
pub fn reduce_pair(
    chosen: &SideLogps,
    rejected: &SideLogps,
    ld_alpha: Option<f64>,
) -> Result<(SequenceLogps, SequenceLogps)> {
    let b = chosen.rows()?;
    if rejected.rows()? != b {
        return Err(MathError::Shape(format!(
            "chosen has {b} rows, rejected {}",
            rejected.rows()?
        )));
    }
    let cm = chosen.mask_tensor()?;
    let rm = rejected.mask_tensor()?;
    let (cw, rw) = match (ld_alpha, &cm, &rm) {
        (None, _, _) => (cm.clone(), rm.clone()),
        (Some(alpha), Some(cm), Some(rm)) => {
            if !alpha.is_finite() {
                return Err(MathError::InvalidInput(format!(
                    "ld_alpha must be finite, got {alpha}"
                )));
            }
            ld_weights(cm, rm, alpha)?
        }
        (Some(_), _, _) => {
            return Err(MathError::InvalidInput(
                "ld_alpha needs per-token log-probs with masks on both sides, not [B] sums".into(),
            ))
        }
    };
    Ok((
        reduce_side(chosen.logps, cm.as_ref(), cw)?,
        reduce_side(rejected.logps, rm.as_ref(), rw)?,
    ))
}

fn reduce_side(
    logps: &Tensor,
    mask: Option<&Tensor>,
    weights: Option<Tensor>,
) -> Result<SequenceLogps> {
    match (mask, weights) {
        (Some(mask), Some(w)) => {
            let kept = select(logps, mask)?;
            Ok(SequenceLogps {
                logps: (&kept * &w)?.sum(1)?,
                token_sum: (&kept * mask)?.sum(1)?,
                lengths: mask.sum(1)?.detach(),
                weights: Some(w),
            })
        }
        _ => Ok(SequenceLogps {
            logps: logps.clone(),
            token_sum: logps.clone(),
            lengths: logps.ones_like()?.detach(),
            weights: None,
        }),
    }
}

/// LD-DPO weights: 1 at completion positions 1..=shared, `alpha` beyond, 0 outside the mask.
fn ld_weights(cm: &Tensor, rm: &Tensor, alpha: f64) -> Result<(Option<Tensor>, Option<Tensor>)> {
    let c = cm.to_dtype(DType::F64)?.to_vec2::<f64>()?;
    let r = rm.to_dtype(DType::F64)?.to_vec2::<f64>()?;
    let count = |row: &Vec<f64>| row.iter().filter(|&&x| x != 0.0).count();
    let weigh = |rows: &[Vec<f64>], other: &[Vec<f64>]| -> Vec<f64> {
        let mut out = Vec::new();
        for (row, orow) in rows.iter().zip(other) {
            let shared = count(row).min(count(orow));
            let mut pos = 0usize;
            for &m in row {
                if m != 0.0 {
                    pos += 1;
                    out.push(if pos <= shared { 1.0 } else { alpha });
                } else {
                    out.push(0.0);
                }
            }
        }
        out
    };
    let cw = Tensor::from_vec(weigh(&c, &r), cm.dims(), cm.device())?.to_dtype(cm.dtype())?;
    let rw = Tensor::from_vec(weigh(&r, &c), rm.dims(), rm.device())?.to_dtype(rm.dtype())?;
    Ok((Some(cw), Some(rw)))
}

impl SequenceLogps {
    /// Reference log-probs for this side as `[B]`: summed ones are taken as they are, per-token
    /// ones are summed with this side's mask and weights (no gradient either way).
    pub fn reference(&self, reference: &Tensor) -> Result<Tensor> {
        let b = self.logps.dims()[0];
        let reference = &reference.to_dtype(self.logps.dtype())?;
        match (reference.rank(), &self.weights) {
            (1, _) if reference.dims()[0] == b => Ok(reference.detach()),
            (2, Some(w)) if reference.dims() == w.dims() => {
                let mask = w.ne(0.0)?;
                let kept = mask.where_cond(reference, &reference.zeros_like()?)?;
                Ok((kept * w)?.sum(1)?.detach())
            }
            _ => Err(MathError::Shape(format!(
                "reference log-probs {:?} fit neither [B] = [{b}] nor the policy's per-token shape",
                reference.dims()
            ))),
        }
    }
}
