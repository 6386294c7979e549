//! Evaluates TRL `grpo` cases: `GRPOTrainer._compute_loss` of TRL 1.16 through
//! [`crate::policy_loss::policy_loss`] with the configuration [`TrlGrpoArgs`] builds. Rewards,
//! when given instead of advantages, go through TRL's group normalisation first.

use candle_core::{Tensor, Var};
use serde_json::{Map, Value};

use super::reader::{num, tensor_json};
use super::{CaseError, CaseReader, CaseResult};
use crate::advantages::grpo::{
    group_normalized, groups_of_consecutive, GroupNormalization, GroupScale,
};
use crate::policy_loss::{policy_loss, PolicyLossExtras, RolloutCorrection, TrlGrpoArgs};

/// Evaluates one case.
pub(super) fn evaluate(r: &CaseReader) -> CaseResult<Map<String, Value>> {
    let logps = r.tensor("policy_logps", 2)?;
    let dims = logps.dims().to_vec();
    let rows = dims[0];
    let old = r.opt_tensor("old_logps", 2)?;
    if let Some(o) = &old {
        r.check_shape("old_logps", o, &dims)?;
    }
    let reference = r.opt_tensor("ref_logps", 2)?;
    if let Some(t) = &reference {
        r.check_shape("ref_logps", t, &dims)?;
    }
    let mask = r.mask("completion_mask", &dims)?;
    let entropies = match r.opt_tensor("entropies", 2)? {
        Some(h) => {
            r.check_shape("entropies", &h, &dims)?;
            h
        }
        // TRL always logs the entropy; the golden harness feeds zeros when none are given.
        None => logps.zeros_like()?,
    };
    let sampling = r.opt_tensor("sampling_logps", 2)?;
    if let Some(s) = &sampling {
        r.check_shape("sampling_logps", s, &dims)?;
    }
    let is_ratio = match r.numbers("importance_sampling_ratio")? {
        None => None,
        Some((data, shape)) => Some(Tensor::from_vec(data, shape, logps.device())?),
    };
    let num_items = r.opt_f64("num_items_in_batch")?;

    let mut args = TrlGrpoArgs::default();
    let mut scale = GroupScale::Group;
    let mut correction: Option<(String, Option<f64>, Option<f64>)> = None;
    if let Some(c) = r.object("config")? {
        args.loss_type = c.str_or("loss_type", "dapo")?.to_string();
        args.epsilon = c.f64_or("epsilon", args.epsilon)?;
        args.epsilon_high = c.opt_f64("epsilon_high")?;
        args.delta = c.opt_f64("delta")?;
        args.beta = c.f64_or("beta", args.beta)?;
        args.importance_sampling_level =
            c.str_or("importance_sampling_level", "token")?.to_string();
        args.use_bias_correction_kl = c.bool_or("use_bias_correction_kl", false)?;
        args.max_completion_length =
            c.f64_or("max_completion_length", args.max_completion_length)?;
        args.sapo.pos = c.f64_or("sapo_temperature_pos", args.sapo.pos)?;
        args.sapo.neg = c.f64_or("sapo_temperature_neg", args.sapo.neg)?;
        args.vespo.k_pos = c.f64_or("vespo_k_pos", args.vespo.k_pos)?;
        args.vespo.lambda_pos = c.f64_or("vespo_lambda_pos", args.vespo.lambda_pos)?;
        args.vespo.k_neg = c.f64_or("vespo_k_neg", args.vespo.k_neg)?;
        args.vespo.lambda_neg = c.f64_or("vespo_lambda_neg", args.vespo.lambda_neg)?;
        args.entropy_coef = c.f64_or("entropy_coef", 0.0)?;
        scale = match c.raw("scale_rewards") {
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
        if c.bool_or("vllm_importance_sampling_correction", true)? {
            correction = Some((
                c.str_or("vllm_importance_sampling_mode", "sequence_mask")?
                    .to_string(),
                c.opt_f64("vllm_importance_sampling_clip_min")?,
                Some(c.f64_or("vllm_importance_sampling_clip_max", 3.0)?),
            ));
        }
        c.finish("grpo")?;
    }
    if sampling.is_some() {
        if let Some((mode, lo, hi)) = &correction {
            args.rollout_correction = Some(RolloutCorrection::from_trl(mode, *lo, *hi)?);
        }
    }

    let advantages = match r
        .opt_tensor("advantages", 1)
        .or_else(|_| r.opt_tensor("advantages", 2))?
    {
        Some(a) => {
            if r.has("rewards") {
                return Err(CaseError::Invalid {
                    field: "rewards".into(),
                    msg: "give either `advantages` or `rewards`, not both".into(),
                });
            }
            r.accept(&["num_generations"]);
            a
        }
        None => {
            let rewards = r.tensor_shaped("rewards", &[rows])?;
            let g = r
                .opt_usize("num_generations")?
                .ok_or_else(|| CaseError::Missing("num_generations".into()))?;
            let groups = groups_of_consecutive(rows, g)?;
            group_normalized(&rewards, &groups, &GroupNormalization::trl(scale))?
        }
    };

    let cfg = args.config()?;
    let lp = Var::from_tensor(&logps)?;
    let extras = PolicyLossExtras {
        ref_logp: reference.as_ref(),
        rollout_logp: sampling.as_ref(),
        is_weights: is_ratio.as_ref(),
        entropies: Some(&entropies),
        norm: args.norm(rows, num_items, 1.0),
        bapo_state: None,
    };
    let out = policy_loss(
        lp.as_tensor(),
        old.as_ref(),
        &advantages,
        &mask,
        &cfg,
        &extras,
    )?;
    let grads = out.loss.backward()?;
    let grad = grads
        .get(lp.as_tensor())
        .cloned()
        .unwrap_or(logps.zeros_like()?);

    // The metric keys TRL logs for this loss type, each as a one-element list.
    let m = &out.metrics;
    let mut metrics = Map::new();
    let mut put = |k: &str, v: Option<f64>| -> CaseResult<()> {
        let v = v.ok_or_else(|| CaseError::Invalid {
            field: "config.loss_type".into(),
            msg: format!("metric {k} not computed"),
        })?;
        metrics.insert(k.into(), Value::Array(vec![num(v)]));
        Ok(())
    };
    if args.beta != 0.0 {
        put("kl", m.kl)?;
    }
    put("entropy", m.entropy)?;
    match args.loss_type.as_str() {
        "cispo" => put("cispo_clip_ratio", m.cispo_clip_frac)?,
        "vespo" => put("vespo/phi_seq_mean", m.vespo_phi_mean)?,
        "sapo" => {}
        _ => {
            put("clip_ratio/low_mean", m.clip_low_mean)?;
            put("clip_ratio/high_mean", m.clip_high_mean)?;
            put("clip_ratio/region_mean", m.clip_region_mean)?;
            put("clip_ratio/low_min", m.clip_low_min)?;
            put("clip_ratio/high_max", m.clip_high_max)?;
        }
    }
    let mut res = Map::new();
    res.insert("loss".into(), tensor_json(&out.loss)?);
    res.insert("grad_policy_logps".into(), tensor_json(&grad)?);
    res.insert("advantages".into(), tensor_json(&advantages)?);
    res.insert("metrics".into(), Value::Object(metrics));
    Ok(res)
}
