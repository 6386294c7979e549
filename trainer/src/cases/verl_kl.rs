//! Evaluates `kl_penalty` cases: verl's `kl_penalty(logprob, ref_logprob, kl_penalty)` (the `+`
//! names are the straight-through variants), aggregated as the actor's KL loss →
//! `kl`, `kl_loss`, `grad_logprob`.

use candle_core::Var;
use serde_json::{Map, Value};

use super::reader::{num, tensor_json};
use super::{CaseReader, CaseResult};
use crate::aggregation::{aggregate, AggregationNorm, LossAggregation};
use crate::kl::{kl_penalty, KlPenalty};

/// Evaluates one case.
pub(super) fn evaluate(r: &CaseReader) -> CaseResult<Map<String, Value>> {
    let logprob = r.tensor("logprob", 2)?;
    let ref_logprob = r.tensor_shaped("ref_logprob", logprob.dims())?;
    let mask = r.mask("response_mask", logprob.dims())?;
    let penalty = KlPenalty::from_verl_name(r.str("kl_penalty")?)?;
    // verl's actor default (`actor.loss_agg_mode`).
    let mode = LossAggregation::from_name(r.str_or("loss_agg_mode", "token-mean")?)?;
    let x = Var::from_tensor(&logprob)?;
    let kl = kl_penalty(x.as_tensor(), &ref_logprob, penalty)?;
    let loss = aggregate(&kl, &mask, mode, &AggregationNorm::default())?;
    let grad = loss
        .backward()?
        .get(&x)
        .cloned()
        .unwrap_or(logprob.zeros_like()?);
    let mut out = Map::new();
    out.insert("kl".into(), tensor_json(&kl)?);
    out.insert("kl_loss".into(), num(loss.to_scalar::<f64>()?));
    out.insert("grad_logprob".into(), tensor_json(&grad)?);
    Ok(out)
}
