//! `[algorithm.dpo]` (the reference policy of DPO and online DPO) and the checks of a DPO-family
//! configuration that need no model: the reference against `[model.lora]`, the preference loss
//! (`[algorithm.preference_loss]`, TRL's names), online DPO's sampling (`rollout.n >= 2`, a
//! positive temperature, verifiers). Each error names its key.

use crate::config::{AlgorithmName, TrainConfig};
use crate::task::TaskConfig;
use crate::train_error::{TrainError, TrainResult};
use serde::{Deserialize, Serialize};

/// Where the reference log-probs π_ref come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReferenceKind {
    /// A frozen copy of the initial weights (LoRA adapters merged). On resume it is rebuilt
    /// from the base model (`model.path`, or the run's built-in `base-model`), which holds
    /// exactly the initial weights; nothing extra is stored in checkpoints.
    #[default]
    Copy,
    /// The trained model itself with its LoRA adapters off (no copy); needs `[model.lora]`.
    AdaptersOff,
}

/// `[algorithm.dpo]`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DpoConfig {
    /// `copy` (default) or `adapters_off`.
    pub reference: ReferenceKind,
}

/// Whether `name` is a DPO-family algorithm.
pub fn is_dpo(name: AlgorithmName) -> bool {
    matches!(name, AlgorithmName::Dpo | AlgorithmName::OnlineDpo)
}

/// Checks the DPO-family keys of `c` (nothing for other algorithms).
pub fn check(c: &TrainConfig, task: &TaskConfig, origin: &str) -> TrainResult<()> {
    let a = &c.algorithm;
    if !is_dpo(a.name) {
        return Ok(());
    }
    let err = |key: &str, msg: String| Err(TrainError::config(origin, key, msg));
    if a.dpo.reference == ReferenceKind::AdaptersOff && c.model.lora.is_none() {
        return err(
            "algorithm.dpo.reference",
            "`adapters_off` evaluates the base model with its LoRA adapters off: add a \
             [model.lora] table, or use reference = \"copy\""
                .into(),
        );
    }
    if let Err(e) = a.preference_loss.weighted_types() {
        return err("algorithm.preference_loss", e.to_string());
    }
    if let Some(alpha) = a.preference_loss.ld_alpha {
        if !alpha.is_finite() {
            return err(
                "algorithm.preference_loss.ld_alpha",
                format!("must be finite, got {alpha}"),
            );
        }
    }
    if c.kl.coef != 0.0 {
        return err(
            "kl.coef",
            "the DPO family's pull towards the reference is algorithm.preference_loss.beta; \
             [kl] is not used: remove it (or set kl.coef = 0)"
                .into(),
        );
    }
    if a.micro_batch_size.is_some() {
        return err(
            "algorithm.micro_batch_size",
            "not supported by the DPO family yet: every pair of a step is one forward pass \
             (lower algorithm.batch_size instead)"
                .into(),
        );
    }
    if a.name == AlgorithmName::OnlineDpo {
        let r = &c.rollout;
        if r.n < 2 {
            return err(
                "rollout.n",
                format!(
                    "online_dpo builds each pair from the best and worst of a prompt's samples: \
                     needs n >= 2, got {}",
                    r.n
                ),
            );
        }
        if !(r.temperature.is_finite() && r.temperature > 0.0) {
            return err(
                "rollout.temperature",
                format!(
                    "online_dpo samples its pairs: the temperature must be a positive number \
                     (0 is greedy: every sample of a prompt would be the same); got {}",
                    r.temperature
                ),
            );
        }
        if r.max_tokens == 0 {
            return err("rollout.max_tokens", "must be at least 1".into());
        }
        if task.verifiers.is_empty() {
            return err(
                "task.verifiers",
                "online_dpo ranks samples with the verifiers: add at least one [[task.verifiers]]"
                    .into(),
            );
        }
    }
    Ok(())
}

/// Checks that offline DPO's data holds pairs: every training example (and held-out one, when
/// the held-out margin is evaluated) has `chosen` and `rejected`.
pub fn check_data(c: &TrainConfig, task: &crate::task::Task, origin: &str) -> TrainResult<()> {
    if c.algorithm.name != AlgorithmName::Dpo {
        return Ok(());
    }
    let e = &c.eval;
    let evaluating = e.every > 0 || e.at_start || e.at_end;
    let eval: &[oxrl_datasets::Example] = if evaluating { &task.data.eval } else { &[] };
    if let Some(bad) = task
        .data
        .train
        .iter()
        .chain(eval)
        .find(|x| x.chosen.is_none() || x.rejected.is_none())
    {
        return Err(TrainError::config(
            origin,
            "task.dataset",
            format!(
                "dpo trains on preference pairs, but example `{}` has no `chosen` / `rejected` \
                 (JSONL fields `prompt`, `chosen`, `rejected`, mapped with task.dataset.fields; \
                 or source = \"synthetic:arith_pairs\")",
                bad.id
            ),
        ));
    }
    Ok(())
}
