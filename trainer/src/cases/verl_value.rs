//! Evaluates `value_loss` cases: verl's `compute_value_loss(vpreds, returns, values,
//! response_mask, cliprange_value, loss_agg_mode)` → `loss`, `clipfrac`, `grad_vpreds`.

use candle_core::Var;
use serde_json::{Map, Value};

use super::reader::{num, tensor_json};
use super::{CaseReader, CaseResult};
use crate::aggregation::{AggregationNorm, LossAggregation};
use crate::value_loss::value_loss;

/// Evaluates one case.
pub(super) fn evaluate(r: &CaseReader) -> CaseResult<Map<String, Value>> {
    let vpreds = r.tensor("vpreds", 2)?;
    let returns = r.tensor_shaped("returns", vpreds.dims())?;
    let values = r.tensor_shaped("values", vpreds.dims())?;
    let mask = r.mask("response_mask", vpreds.dims())?;
    // verl's critic defaults: `cliprange_value = 0.5`, `loss_agg_mode = token-mean`.
    let clip = r.f64_or("cliprange_value", 0.5)?;
    let mode = LossAggregation::from_name(r.str_or("loss_agg_mode", "token-mean")?)?;
    let x = Var::from_tensor(&vpreds)?;
    let out_loss = value_loss(
        x.as_tensor(),
        &returns,
        &values,
        &mask,
        clip,
        mode,
        &AggregationNorm::default(),
    )?;
    let grad = out_loss
        .loss
        .backward()?
        .get(&x)
        .cloned()
        .unwrap_or(vpreds.zeros_like()?);
    let mut out = Map::new();
    out.insert("loss".into(), num(out_loss.loss.to_scalar::<f64>()?));
    out.insert(
        "clipfrac".into(),
        num(out_loss.clipfrac.to_scalar::<f64>()?),
    );
    out.insert("grad_vpreds".into(), tensor_json(&grad)?);
    Ok(out)
}
