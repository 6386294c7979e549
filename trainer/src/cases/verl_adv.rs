//! Evaluates `adv` cases: verl's advantage estimators (`estimator`, verl's field names) through
//! [`crate::advantages::compute_advantages`], plus oxrl's `bnpo`.
//!
//! `params` holds the keyword arguments of verl's estimator function (`gamma`, `lam`, `epsilon`,
//! `norm_adv_by_std_in_grpo`, `handle_zero_tail`, `f_norm`, `alpha`) and optionally `config`, a
//! verl `AlgoConfig` (`gamma`, `lam`, `norm_adv_by_std_in_grpo`, … ). Where verl's function reads a
//! setting from `config` (`grpo_passk`: `norm_adv_by_std_in_grpo`; `reinforce_plus_plus`:
//! `gamma`), the config wins. `grpo` and `grpo_vectorized` ignore `config.norm_adv_by_std_in_grpo`
//! exactly as verl's functions do (only their own argument counts). For `gae`, whose verl function
//! takes no config, `config.gamma` / `config.lam` stand in for what verl's trainer passes when the
//! direct parameter is absent. A parameter verl's function does not take is an error.

use serde_json::{Map, Value};

use super::reader::tensor_json;
use super::{CaseError, CaseReader, CaseResult};
use crate::advantages::{
    compute_advantages, AdvantageEstimator as E, AdvantageInputs, AdvantageOptions,
};

/// verl `AlgoConfig` fields accepted in `params.config` (those no estimator reads are ignored, as
/// verl's estimators ignore them).
const ALGO_CONFIG_FIELDS: [&str; 12] = [
    "gamma",
    "lam",
    "adv_estimator",
    "norm_adv_by_std_in_grpo",
    "use_kl_in_reward",
    "kl_penalty",
    "kl_ctrl",
    "use_pf_ppo",
    "pf_ppo",
    "filter_groups",
    "rollout_correction",
    "_target_",
];

/// The `params` verl's function for `est` takes (besides `config`).
fn param_names(est: E) -> &'static [&'static str] {
    match est {
        E::Gae => &["gamma", "lam"],
        E::Grpo | E::GrpoVectorized | E::GrpoPassk => &["epsilon", "norm_adv_by_std_in_grpo"],
        E::Rloo | E::RlooVectorized | E::Opo | E::ReinforcePlusPlusBaseline => &["epsilon"],
        E::ReinforcePlusPlus | E::Remax => &[],
        E::Gpg => &["epsilon", "f_norm", "alpha"],
        E::OptimalTokenBaseline | E::TirOptimalTokenBaseline => &["handle_zero_tail", "epsilon"],
        E::Bnpo => &["min_value", "max_value", "max_weight"],
    }
}

/// Settings read from `params.config`.
#[derive(Default)]
struct AlgoConfig {
    gamma: Option<f64>,
    lam: Option<f64>,
    norm_adv_by_std_in_grpo: Option<bool>,
}

fn algo_config(p: &CaseReader, est: E) -> CaseResult<AlgoConfig> {
    let Some(c) = p.object("config")? else {
        return Ok(AlgoConfig::default());
    };
    let cfg = AlgoConfig {
        gamma: c.opt_f64("gamma")?,
        lam: c.opt_f64("lam")?,
        norm_adv_by_std_in_grpo: match c.raw("norm_adv_by_std_in_grpo") {
            None => None,
            Some(_) => Some(c.bool_or("norm_adv_by_std_in_grpo", true)?),
        },
    };
    if let Some(name) = c.opt_str("adv_estimator")? {
        if E::from_name(name)? != est {
            return Err(CaseError::Invalid {
                field: "params.config.adv_estimator".into(),
                msg: format!("`{name}` contradicts the case's estimator `{}`", est.name()),
            });
        }
    }
    c.accept(&ALGO_CONFIG_FIELDS);
    c.finish("adv")?;
    Ok(cfg)
}

/// Evaluates one case.
pub(super) fn evaluate(r: &CaseReader) -> CaseResult<Map<String, Value>> {
    let est = E::from_name(r.str("estimator")?)?;
    let rewards = r.tensor("token_level_rewards", 2)?;
    let dims = rewards.dims().to_vec();
    let mask = r.mask("response_mask", &dims)?;
    let groups = if est.needs_groups() {
        let g = r.group_ids("index")?;
        if g.len() != dims[0] {
            return Err(CaseError::Invalid {
                field: "index".into(),
                msg: format!("{} group ids for {} rows", g.len(), dims[0]),
            });
        }
        Some(g)
    } else {
        r.accept(&["index"]);
        None
    };
    let opt2 = |key: &str| -> CaseResult<Option<candle_core::Tensor>> {
        match r.opt_tensor(key, 2)? {
            Some(t) => {
                r.check_shape(key, &t, &dims)?;
                Ok(Some(t))
            }
            None => Ok(None),
        }
    };
    let values = opt2("values")?;
    let old_log_probs = opt2("old_log_probs")?;
    let sum_pi_squared = opt2("sum_pi_squared")?;
    let rollout_is_weights = opt2("rollout_is_weights")?;
    let reward_baselines = match r.opt_tensor("reward_baselines", 1)? {
        Some(t) => {
            r.check_shape("reward_baselines", &t, &dims[..1])?;
            Some(t)
        }
        None => None,
    };

    let otb = matches!(est, E::OptimalTokenBaseline | E::TirOptimalTokenBaseline);
    let mut opts = AdvantageOptions::default();
    if let Some(p) = r.object("params")? {
        let cfg = algo_config(&p, est)?;
        let names = param_names(est);
        let get = |k: &str| -> CaseResult<Option<f64>> {
            if names.contains(&k) {
                p.opt_f64(k)
            } else {
                Ok(None)
            }
        };
        let get_bool = |k: &str| -> CaseResult<Option<bool>> {
            if names.contains(&k) && p.has(k) {
                Ok(Some(p.bool_or(k, false)?))
            } else {
                Ok(None)
            }
        };
        let direct_gamma = get("gamma")?;
        opts.gamma = match est {
            E::ReinforcePlusPlus => cfg.gamma.or(direct_gamma),
            _ => direct_gamma.or(cfg.gamma),
        }
        .unwrap_or(1.0);
        opts.lam = get("lam")?.or(cfg.lam).unwrap_or(1.0);
        if let Some(e) = get("epsilon")? {
            if otb {
                opts.otb_epsilon = e;
            } else {
                opts.epsilon = e;
            }
        }
        let direct_norm = get_bool("norm_adv_by_std_in_grpo")?;
        // verl's `grpo` and `grpo_vectorized` take the flag as their own argument and never read
        // it from `config`; `grpo_passk` reads only `config` (falling back here to the argument).
        opts.norm_adv_by_std = match est {
            E::GrpoPassk => cfg.norm_adv_by_std_in_grpo.or(direct_norm),
            _ => direct_norm,
        }
        .unwrap_or(true);
        opts.handle_zero_tail = get_bool("handle_zero_tail")?;
        if let Some(f) = get("f_norm")? {
            opts.f_norm = f;
        }
        // verl's gpg overwrites `alpha` with B / #non-zero scores: accepted, not used.
        get("alpha")?;
        if let Some(x) = get("min_value")? {
            opts.bnpo.min_value = x;
        }
        if let Some(x) = get("max_value")? {
            opts.bnpo.max_value = x;
        }
        if let Some(x) = get("max_weight")? {
            opts.bnpo.max_weight = x;
        }
        p.finish("adv")?;
    }

    let inputs = AdvantageInputs {
        groups: groups.as_deref(),
        values: values.as_ref(),
        reward_baselines: reward_baselines.as_ref(),
        old_log_probs: old_log_probs.as_ref(),
        sum_pi_squared: sum_pi_squared.as_ref(),
        rollout_is_weights: rollout_is_weights.as_ref(),
        ..AdvantageInputs::new(&rewards, &mask)
    };
    let out = compute_advantages(est, &inputs, &opts)?;
    let mut res = Map::new();
    res.insert("advantages".into(), tensor_json(&out.advantages)?);
    res.insert("returns".into(), tensor_json(&out.returns)?);
    Ok(res)
}
