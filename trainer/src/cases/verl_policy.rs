//! Evaluates verl `policy_loss` cases: `compute_policy_loss_<loss_mode>` of `core_algos.py`
//! through [`crate::policy_loss::policy_loss`] with the configuration [`VerlActorArgs`] builds.

use candle_core::Var;
use serde_json::{Map, Value};

use super::reader::{num, tensor_json};
use super::{CaseError, CaseReader, CaseResult};
use crate::aggregation::AggregationNorm;
use crate::policy_loss::{policy_loss, PolicyLossExtras, VerlActorArgs};

/// Evaluates one case.
pub(super) fn evaluate(r: &CaseReader) -> CaseResult<Map<String, Value>> {
    let loss_mode = r.str_or("loss_mode", "vanilla")?;
    let log_prob = r.tensor("log_prob", 2)?;
    let dims = log_prob.dims().to_vec();
    let old = r.tensor_shaped("old_log_prob", &dims)?;
    let mask = r.mask("response_mask", &dims)?;
    let adv = r
        .tensor("advantages", 2)
        .or_else(|_| r.tensor("advantages", 1))?;
    let is_weights = r.opt_tensor("rollout_is_weights", 2)?;
    if let Some(w) = &is_weights {
        r.check_shape("rollout_is_weights", w, &dims)?;
    }
    let mut args = VerlActorArgs {
        loss_mode: loss_mode.to_string(),
        loss_agg_mode: r.str_or("loss_agg_mode", "token-mean")?.to_string(),
        ..VerlActorArgs::default()
    };
    let mut norm = AggregationNorm::default();
    if let Some(c) = r.object("config")? {
        args.clip_ratio = c.f64_or("clip_ratio", args.clip_ratio)?;
        args.clip_ratio_low = c.opt_f64("clip_ratio_low")?;
        args.clip_ratio_high = c.opt_f64("clip_ratio_high")?;
        args.clip_ratio_c = c.f64_or("clip_ratio_c", args.clip_ratio_c)?;
        args.sapo.pos = c.f64_or("tau_pos", args.sapo.pos)?;
        args.sapo.neg = c.f64_or("tau_neg", args.sapo.neg)?;
        args.entropy_coeff = c.f64_or("entropy_coeff", 0.0)?;
        if let Some(p) = c.object("policy_loss")? {
            let cov = &mut args.cov;
            cov.clip_cov_ratio = p.f64_or("clip_cov_ratio", cov.clip_cov_ratio)?;
            cov.clip_cov_lb = p.f64_or("clip_cov_lb", cov.clip_cov_lb)?;
            cov.clip_cov_ub = p.f64_or("clip_cov_ub", cov.clip_cov_ub)?;
            cov.kl_cov_ratio = p.f64_or("kl_cov_ratio", cov.kl_cov_ratio)?;
            cov.ppo_kl_coef = p.f64_or("ppo_kl_coef", cov.ppo_kl_coef)?;
            p.accept(&["loss_mode"]);
            p.finish("policy_loss")?;
        }
        if let Some(g) = c.object("global_batch_info")? {
            norm.dp_size = g.f64_or("dp_size", 1.0)?;
            norm.num_tokens = g.opt_f64("batch_num_tokens")?;
            norm.num_sequences = g.opt_f64("global_batch_size")?;
            norm.length = g.opt_f64("loss_scale_factor")?;
            g.finish("policy_loss")?;
        }
        c.finish("policy_loss")?;
    }
    let cfg = args.config()?;
    let lp = Var::from_tensor(&log_prob)?;
    let extras = PolicyLossExtras {
        is_weights: is_weights.as_ref(),
        norm,
        ..Default::default()
    };
    let out = policy_loss(lp.as_tensor(), Some(&old), &adv, &mask, &cfg, &extras)?;
    let grads = out.loss.backward()?;
    let grad = grads
        .get(lp.as_tensor())
        .cloned()
        .unwrap_or(log_prob.zeros_like()?);

    // The metric keys verl's function of each mode returns.
    let m = &out.metrics;
    let mut metrics = Map::new();
    let mut put = |k: &str, v: Option<f64>| -> CaseResult<()> {
        let v = v.ok_or_else(|| CaseError::Invalid {
            field: "loss_mode".into(),
            msg: format!("metric {k} not computed"),
        })?;
        metrics.insert(k.into(), num(v));
        Ok(())
    };
    match loss_mode {
        "gpg" => {}
        "reinforce" | "kl_cov" => put("actor/ppo_kl", m.approx_kl)?,
        "clip_cov" => {
            put("actor/pg_clipfrac", m.clip_frac)?;
            put("actor/ppo_kl", m.approx_kl)?;
        }
        _ => {
            put("actor/pg_clipfrac", m.clip_frac)?;
            put("actor/ppo_kl", m.approx_kl)?;
            put("actor/pg_clipfrac_lower", m.clip_frac_lower)?;
        }
    }
    let mut res = Map::new();
    res.insert("loss".into(), tensor_json(&out.loss)?);
    res.insert("grad_log_prob".into(), tensor_json(&grad)?);
    res.insert("metrics".into(), Value::Object(metrics));
    Ok(res)
}
