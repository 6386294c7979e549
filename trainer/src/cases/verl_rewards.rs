//! Evaluates `compute_rewards` cases: verl's `compute_rewards(token_level_scores, old_log_prob,
//! ref_log_prob, kl_ratio)` → `token_level_rewards`.

use serde_json::{Map, Value};

use super::reader::tensor_json;
use super::{CaseReader, CaseResult};
use crate::kl::reward::compute_rewards;

/// Evaluates one case.
pub(super) fn evaluate(r: &CaseReader) -> CaseResult<Map<String, Value>> {
    let scores = r.tensor("token_level_scores", 2)?;
    let old = r.tensor_shaped("old_log_prob", scores.dims())?;
    let reference = r.tensor_shaped("ref_log_prob", scores.dims())?;
    let kl_ratio = r.f64("kl_ratio")?;
    let rewards = compute_rewards(&scores, &old, &reference, kl_ratio)?;
    let mut out = Map::new();
    out.insert("token_level_rewards".into(), tensor_json(&rewards)?);
    Ok(out)
}
