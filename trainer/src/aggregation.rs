//! Loss aggregation: how a per-token loss matrix `[B × T]` and its mask become one scalar.
//!
//! One oxrl name per formula; the TRL `loss_type` and verl `loss_agg_mode` names are aliases that
//! resolve to exactly what that anchor computes (see `docs/losses.md`). The normalisers that an
//! anchor takes from outside the micro-batch (tokens in the global batch, sequences in the global
//! batch, a fixed length) are explicit fields of [`AggregationNorm`]; left as `None` they are
//! computed from the micro-batch's own mask.

use candle_core::Tensor;

use crate::masked::{mask_row_counts, mask_total, masked_row_sum, masked_sum};
use crate::{MathError, Result};

/// One aggregation formula.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum LossAggregation {
    /// Σ M·L / N, N = valid tokens (of the global batch when given), × dp_size.
    /// TRL `dapo` (N = `num_items_in_batch`), `cispo`, `vespo`; verl `token-mean`.
    #[serde(rename = "token-mean")]
    TokenMean,
    /// Σ M·L / max(Σ M, 1) over the micro-batch only. TRL `bnpo`.
    #[serde(rename = "token-mean-local")]
    TokenMeanLocal,
    /// (1/S) Σ_i (Σ_t M·L / n_i): per-sequence token means, averaged over sequences. TRL `grpo`
    /// (S = B, every row), verl `seq-mean-token-mean` (S = rows with a valid token).
    #[serde(rename = "seq-mean-token-mean")]
    SeqMeanTokenMean,
    /// (1/S) Σ_i Σ_t M·L. verl `seq-mean-token-sum`.
    #[serde(rename = "seq-mean-token-sum")]
    SeqMeanTokenSum,
    /// Σ M·L / L (no division by B): verl `seq-mean-token-sum-norm`, L = `loss_scale_factor` or T.
    #[serde(rename = "seq-mean-token-sum-norm")]
    SeqMeanTokenSumNorm,
    /// Σ M·L / (B · L): TRL `dr_grpo`, L = `max_completion_length`; B× smaller than verl's.
    #[serde(rename = "seq-mean-token-sum-norm-trl")]
    SeqMeanTokenSumNormTrl,
}

impl LossAggregation {
    /// The oxrl names, in the order of the enum.
    pub const NAMES: [&'static str; 6] = [
        "token-mean",
        "token-mean-local",
        "seq-mean-token-mean",
        "seq-mean-token-sum",
        "seq-mean-token-sum-norm",
        "seq-mean-token-sum-norm-trl",
    ];

    /// The oxrl name.
    pub fn name(self) -> &'static str {
        match self {
            Self::TokenMean => "token-mean",
            Self::TokenMeanLocal => "token-mean-local",
            Self::SeqMeanTokenMean => "seq-mean-token-mean",
            Self::SeqMeanTokenSum => "seq-mean-token-sum",
            Self::SeqMeanTokenSumNorm => "seq-mean-token-sum-norm",
            Self::SeqMeanTokenSumNormTrl => "seq-mean-token-sum-norm-trl",
        }
    }

    /// An oxrl name or a verl `loss_agg_mode` (the verl names are the oxrl names).
    pub fn from_name(name: &str) -> Result<Self> {
        Ok(match name {
            "token-mean" => Self::TokenMean,
            "token-mean-local" => Self::TokenMeanLocal,
            "seq-mean-token-mean" => Self::SeqMeanTokenMean,
            "seq-mean-token-sum" => Self::SeqMeanTokenSum,
            "seq-mean-token-sum-norm" => Self::SeqMeanTokenSumNorm,
            "seq-mean-token-sum-norm-trl" => Self::SeqMeanTokenSumNormTrl,
            other => return Err(MathError::unknown("loss aggregation", other, &Self::NAMES)),
        })
    }

    /// The aggregation TRL 1.16 applies for a `loss_type`, and whether TRL averages per sequence
    /// over *every* row (`grpo`, `sapo`: S = B). `luspo` has its own rule (see `policy_loss`).
    pub fn from_trl_loss_type(loss_type: &str) -> Result<Self> {
        Ok(match loss_type {
            "grpo" | "sapo" => Self::SeqMeanTokenMean,
            "bnpo" => Self::TokenMeanLocal,
            "dr_grpo" => Self::SeqMeanTokenSumNormTrl,
            "dapo" | "cispo" | "vespo" => Self::TokenMean,
            other => {
                return Err(MathError::unknown(
                    "TRL loss_type (for aggregation)",
                    other,
                    &["grpo", "sapo", "bnpo", "dr_grpo", "dapo", "cispo", "vespo"],
                ))
            }
        })
    }
}

/// The normalisers an aggregation may take from outside the micro-batch.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AggregationNorm {
    /// Valid tokens in the global batch (token-mean). `None`: Σ mask of this micro-batch.
    pub num_tokens: Option<f64>,
    /// Sequences in the global batch (seq-mean-…). `None`: rows with at least one valid token.
    pub num_sequences: Option<f64>,
    /// The length L of the `…-sum-norm` modes. `None`: T, the mask's second dimension.
    pub length: Option<f64>,
    /// Data-parallel world size the token/sequence means are multiplied by (verl's `dp_size`),
    /// so that averaging gradients over ranks gives the global mean. 1 on one process.
    pub dp_size: f64,
}

impl Default for AggregationNorm {
    fn default() -> Self {
        Self {
            num_tokens: None,
            num_sequences: None,
            length: None,
            dp_size: 1.0,
        }
    }
}

/// Aggregates `loss_mat` `[B × T]` under `mask` `[B × T]` into a rank-0 tensor of the same dtype.
///
/// Normalisers computed from the mask are floored at 1, so a micro-batch without valid tokens
/// aggregates to 0 instead of NaN; normalisers given in `norm` are used as they are.
pub fn aggregate(
    loss_mat: &Tensor,
    mask: &Tensor,
    mode: LossAggregation,
    norm: &AggregationNorm,
) -> Result<Tensor> {
    let (rows, cols) = loss_mat.dims2().map_err(|_| {
        MathError::Shape(format!(
            "aggregation needs a [B × T] loss matrix, got {:?}",
            loss_mat.dims()
        ))
    })?;
    let loss = match mode {
        LossAggregation::TokenMean => {
            let n = match norm.num_tokens {
                Some(n) => n,
                None => mask_total(mask)?.max(1.0),
            };
            (masked_sum(loss_mat, mask)? * (norm.dp_size / n))?
        }
        LossAggregation::TokenMeanLocal => {
            let n = mask_total(mask)?.max(1.0);
            (masked_sum(loss_mat, mask)? / n)?
        }
        LossAggregation::SeqMeanTokenMean | LossAggregation::SeqMeanTokenSum => {
            let counts = mask_row_counts(mask)?;
            let sums = masked_row_sum(loss_mat, mask)?;
            let per_seq = if mode == LossAggregation::SeqMeanTokenMean {
                let inv: Vec<f64> = counts.iter().map(|&n| 1.0 / n.max(1.0)).collect();
                let inv = Tensor::new(inv, loss_mat.device())?.to_dtype(loss_mat.dtype())?;
                (sums * inv)?
            } else {
                sums
            };
            let s = match norm.num_sequences {
                Some(s) => s,
                None => (counts.iter().filter(|&&n| n > 0.0).count() as f64).max(1.0),
            };
            (per_seq.sum_all()? * (norm.dp_size / s))?
        }
        LossAggregation::SeqMeanTokenSumNorm => {
            let l = norm.length.unwrap_or(cols as f64);
            (masked_sum(loss_mat, mask)? / l)?
        }
        LossAggregation::SeqMeanTokenSumNormTrl => {
            let l = norm.length.unwrap_or(cols as f64);
            (masked_sum(loss_mat, mask)? / (rows as f64 * l))?
        }
    };
    Ok(loss)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn t(v: &[[f64; 3]; 2]) -> Tensor {
        Tensor::new(v, &Device::Cpu).unwrap()
    }

    fn agg(mode: LossAggregation, norm: AggregationNorm) -> f64 {
        let l = t(&[[1.0, 2.0, 3.0], [4.0, 100.0, 100.0]]);
        let m = t(&[[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]]);
        aggregate(&l, &m, mode, &norm)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
    }

    #[test]
    fn each_mode_by_hand() {
        let d = AggregationNorm::default();
        assert!((agg(LossAggregation::TokenMean, d) - 10.0 / 4.0).abs() < 1e-12);
        assert!((agg(LossAggregation::TokenMeanLocal, d) - 10.0 / 4.0).abs() < 1e-12);
        assert!((agg(LossAggregation::SeqMeanTokenMean, d) - (2.0 + 4.0) / 2.0).abs() < 1e-12);
        assert!((agg(LossAggregation::SeqMeanTokenSum, d) - (6.0 + 4.0) / 2.0).abs() < 1e-12);
        assert!((agg(LossAggregation::SeqMeanTokenSumNorm, d) - 10.0 / 3.0).abs() < 1e-12);
        assert!((agg(LossAggregation::SeqMeanTokenSumNormTrl, d) - 10.0 / 6.0).abs() < 1e-12);
        let global = AggregationNorm {
            num_tokens: Some(8.0),
            dp_size: 2.0,
            ..d
        };
        assert!((agg(LossAggregation::TokenMean, global) - 10.0 / 8.0 * 2.0).abs() < 1e-12);
    }

    #[test]
    fn names_round_trip_and_unknown_names_list_the_accepted_ones() {
        for name in LossAggregation::NAMES {
            assert_eq!(LossAggregation::from_name(name).unwrap().name(), name);
        }
        let err = LossAggregation::from_name("token_mean")
            .unwrap_err()
            .to_string();
        assert!(err.contains("token_mean") && err.contains("seq-mean-token-sum-norm-trl"));
        assert_eq!(
            LossAggregation::from_trl_loss_type("dr_grpo").unwrap(),
            LossAggregation::SeqMeanTokenSumNormTrl
        );
    }
}
