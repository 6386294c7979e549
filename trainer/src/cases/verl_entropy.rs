//! Evaluates `entropy_loss` cases: verl's `compute_entropy_loss(logits, response_mask,
//! loss_agg_mode)` → `loss`, `entropy`.

use serde_json::{Map, Value};

use super::reader::{num, tensor_json};
use super::{CaseReader, CaseResult};
use crate::aggregation::{AggregationNorm, LossAggregation};
use crate::entropy::entropy_loss;

/// Evaluates one case.
pub(super) fn evaluate(r: &CaseReader) -> CaseResult<Map<String, Value>> {
    let logits = r.tensor("logits", 3)?;
    let (b, t, _) = logits.dims3()?;
    let mask = r.mask("response_mask", &[b, t])?;
    // verl's default `loss_agg_mode`.
    let mode = LossAggregation::from_name(r.str_or("loss_agg_mode", "token-mean")?)?;
    let e = entropy_loss(&logits, &mask, mode, &AggregationNorm::default())?;
    let mut out = Map::new();
    out.insert("loss".into(), num(e.loss.to_scalar::<f64>()?));
    out.insert("entropy".into(), tensor_json(&e.entropy)?);
    Ok(out)
}
