//! Evaluates `agg_loss` cases: verl's `agg_loss(loss_mat, loss_mask, loss_agg_mode, dp_size,
//! batch_num_tokens, global_batch_size, loss_scale_factor)` → `loss`, `grad_loss_mat`.

use candle_core::Var;
use serde_json::{Map, Value};

use super::reader::{num, tensor_json};
use super::{CaseError, CaseReader, CaseResult};
use crate::aggregation::{aggregate, AggregationNorm, LossAggregation};

/// Evaluates one case.
pub(super) fn evaluate(r: &CaseReader) -> CaseResult<Map<String, Value>> {
    let loss_mat = r.tensor("loss_mat", 2)?;
    let mask = r.mask("loss_mask", loss_mat.dims())?;
    let mode = LossAggregation::from_name(r.str("loss_agg_mode")?)?;
    let norm = verl_norm(r)?;
    let x = Var::from_tensor(&loss_mat)?;
    let loss = aggregate(x.as_tensor(), &mask, mode, &norm)?;
    let grad = loss
        .backward()?
        .get(&x)
        .cloned()
        .unwrap_or(loss_mat.zeros_like()?);
    let mut out = Map::new();
    out.insert("loss".into(), num(loss.to_scalar::<f64>()?));
    out.insert("grad_loss_mat".into(), tensor_json(&grad)?);
    Ok(out)
}

/// verl's `dp_size`, `batch_num_tokens`, `global_batch_size`, `loss_scale_factor` (each > 0 when
/// given) as an [`AggregationNorm`].
pub(super) fn verl_norm(r: &CaseReader) -> CaseResult<AggregationNorm> {
    let positive = |key: &str| -> CaseResult<Option<f64>> {
        match r.opt_f64(key)? {
            Some(x) if x <= 0.0 => Err(CaseError::Invalid {
                field: key.into(),
                msg: format!("must be > 0, got {x}"),
            }),
            v => Ok(v),
        }
    };
    Ok(AggregationNorm {
        num_tokens: positive("batch_num_tokens")?,
        num_sequences: positive("global_batch_size")?,
        length: positive("loss_scale_factor")?,
        dp_size: positive("dp_size")?.unwrap_or(1.0),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::cases::evaluate_case;

    #[test]
    fn agg_case_by_hand_and_its_errors() {
        let ok = evaluate_case(&json!({
            "id": "a", "kind": "agg_loss", "loss_agg_mode": "seq-mean-token-sum",
            "loss_mat": [[1.0, 2.0], [3.0, 9.0]], "loss_mask": [[1, 1], [1, 0]],
            "dp_size": 2, "global_batch_size": 4
        }));
        // (3 + 3) / 4 · 2 = 3; d/dL = 2/4 where the mask is 1
        assert_eq!(ok["loss"], json!(3.0));
        assert_eq!(ok["grad_loss_mat"], json!([[0.5, 0.5], [0.5, 0.0]]));
        let bad = evaluate_case(&json!({
            "id": "b", "kind": "agg_loss", "loss_agg_mode": "token_mean",
            "loss_mat": [[1.0]], "loss_mask": [[1]]
        }));
        let e = bad["error"].as_str().unwrap();
        assert!(
            e.contains("token_mean") && e.contains("seq-mean-token-sum-norm"),
            "{e}"
        );
        let bad = evaluate_case(&json!({
            "id": "c", "kind": "agg_loss", "loss_agg_mode": "token-mean",
            "loss_mat": [[1.0]], "loss_mask": [[1]], "batch_num_tokens": 0
        }));
        assert!(bad["error"].as_str().unwrap().contains("batch_num_tokens"));
    }
}
