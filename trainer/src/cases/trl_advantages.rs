//! Evaluates `grpo_advantages` cases: TRL's GRPO advantage block (group normalisation with
//! `scale_rewards`, multi-reward `multi_objective_aggregation`) through
//! [`crate::advantages::multi_reward_advantages`].

use serde_json::{Map, Value};

use super::reader::tensor_json;
use super::{CaseError, CaseReader, CaseResult};
use crate::advantages::{self, GroupScale, MultiRewardAggregation};

/// Evaluates one case.
pub(super) fn evaluate(r: &CaseReader) -> CaseResult<Map<String, Value>> {
    let rewards = match r.opt_tensor("rewards_per_func", 2)? {
        Some(t) => {
            if r.has("rewards") {
                return Err(CaseError::Invalid {
                    field: "rewards".into(),
                    msg: "give either `rewards` or `rewards_per_func`, not both".into(),
                });
            }
            t
        }
        None => r.tensor("rewards", 1)?.unsqueeze(1)?,
    };
    let weights: Option<Vec<f64>> = match r.opt_tensor("reward_weights", 1)? {
        Some(t) => Some(t.to_vec1::<f64>()?),
        None => None,
    };
    let n = rewards.dim(0)?;
    let g = r
        .opt_usize("num_generations")?
        .ok_or_else(|| CaseError::Missing("num_generations".into()))?;
    let groups = advantages::groups_of_consecutive(n, g)?;

    let (scale, aggregation) = match r.object("config")? {
        Some(c) => {
            let scale = match c.raw("scale_rewards") {
                None => GroupScale::Group,
                Some(Value::Bool(b)) => GroupScale::from_bool(*b),
                Some(Value::String(s)) => GroupScale::from_trl_name(s)?,
                Some(v) => {
                    return Err(CaseError::Invalid {
                        field: "config.scale_rewards".into(),
                        msg: format!("expected a string or a boolean, got {v}"),
                    })
                }
            };
            let agg = MultiRewardAggregation::from_name(
                c.str_or("multi_objective_aggregation", "sum_then_normalize")?,
            )?;
            c.finish("grpo_advantages")?;
            (scale, agg)
        }
        None => (GroupScale::Group, MultiRewardAggregation::SumThenNormalize),
    };

    let adv = advantages::multi_reward_advantages(
        &rewards,
        weights.as_deref(),
        &groups,
        scale,
        aggregation,
    )?;
    let mut out = Map::new();
    out.insert("advantages".into(), tensor_json(&adv)?);
    Ok(out)
}
