//! Checks of a parsed [`TrainConfig`] that need no model: value ranges, combinations that cannot
//! work (`n < 2` with a group estimator, GRPO or PPO without verifiers, a reward model without
//! preference pairs; the DPO family's in [`crate::dpo::config`]), and the task's data and
//! verifiers, which [`prepare_task`] loads and builds once. Each error names its key.

use super::{AlgorithmName, TrainConfig};
use crate::reward::Reward;
use crate::task::{Task, TaskConfig};
use crate::train_error::{TrainError, TrainResult};
use oxrl_rollout::SamplingParams;

/// Checks every value of `c` that can be checked without reading data or the model.
pub fn check(c: &TrainConfig, task: &TaskConfig, origin: &str) -> TrainResult<()> {
    let err = |key: &str, msg: String| Err(TrainError::config(origin, key, msg));
    match (&c.model.path, &c.model.init) {
        (Some(_), Some(_)) => return err("model.init", "give `path` or `init`, not both".into()),
        (None, None) => {
            return err(
                "model",
                "needs `path = \"DIR|FILE.gguf|HF_ID\"` or `init = \"tiny\"`".into(),
            )
        }
        (Some(p), None) => {
            if let Err(e) = oxrl_models::resolve_model(p) {
                return err("model.path", e.to_string());
            }
        }
        (None, Some(_)) => {
            let t = &c.model.tiny;
            if t.vocab_size < 300 {
                return err(
                    "model.tiny.vocab_size",
                    format!("must be >= 300, got {}", t.vocab_size),
                );
            }
            if t.num_heads == 0
                || t.num_kv_heads == 0
                || !t.num_heads.is_multiple_of(t.num_kv_heads)
            {
                return err(
                    "model.tiny.num_kv_heads",
                    "num_heads must be a positive multiple of num_kv_heads".into(),
                );
            }
            if t.hidden_size == 0 || !t.hidden_size.is_multiple_of(t.num_heads) {
                return err(
                    "model.tiny.hidden_size",
                    "must be a positive multiple of num_heads".into(),
                );
            }
        }
    }
    if let Some(l) = &c.model.lora {
        if let Err(e) = l.to_lora().validate() {
            return err("model.lora", e.to_string());
        }
    }
    let a = &c.algorithm;
    if a.steps == 0 {
        return err("algorithm.steps", "must be at least 1".into());
    }
    if a.batch_size == 0 {
        return err("algorithm.batch_size", "must be at least 1".into());
    }
    if a.epochs == 0 {
        return err("algorithm.epochs", "must be at least 1".into());
    }
    if a.max_seq_len < 2 {
        return err("algorithm.max_seq_len", "must be at least 2".into());
    }
    if a.sft.packing
        && !matches!(
            a.sft.aggregation,
            crate::aggregation::LossAggregation::TokenMean
                | crate::aggregation::LossAggregation::TokenMeanLocal
        )
    {
        return err(
            "algorithm.sft.packing",
            format!(
                "packed rows hold several examples, so a per-sequence aggregation ({:?}) cannot be taken per row; use aggregation = \"token-mean\" or turn packing off",
                a.sft.aggregation
            ),
        );
    }
    let r = &c.rollout;
    if let Some(urls) = r.engine.urls() {
        if urls.is_empty() {
            return err(
                "rollout.engine",
                "an empty list: give `\"local\"` or the URLs of `oxrl serve` processes".into(),
            );
        }
        if let Some(u) = urls
            .iter()
            .find(|u| !(u.starts_with("http://") || u.starts_with("https://")))
        {
            return err(
                "rollout.engine",
                format!("`{u}`: expected `\"local\"` or server URLs like `http://127.0.0.1:8000`"),
            );
        }
        if !(r.timeout_s.is_finite() && r.timeout_s > 0.0) {
            return err(
                "rollout.timeout_s",
                format!("must be a positive number of seconds, got {}", r.timeout_s),
            );
        }
    }
    if a.shared_prefix == Some(true) && a.name != AlgorithmName::Grpo {
        return err(
            "algorithm.shared_prefix",
            "the shared-prefix forward is a GRPO option (PPO's critic reads the plain forward's hidden states); remove it".into(),
        );
    }
    if r.max_staleness > 0 && a.name != AlgorithmName::Grpo {
        return err(
            "rollout.max_staleness",
            format!(
                "asynchronous rollouts are a GRPO option; `{:?}` has no rollouts to overlap (set 0)",
                a.name
            )
            .to_lowercase(),
        );
    }
    if a.name == AlgorithmName::Ppo {
        super::rlhf::check_ppo(&a.ppo, r.n).map_err(|(k, m)| TrainError::config(origin, k, m))?;
    }
    if matches!(a.name, AlgorithmName::Grpo | AlgorithmName::Ppo) {
        if a.name == AlgorithmName::Grpo && a.advantage.estimator.needs_groups() && r.n < 2 {
            return err(
                "rollout.n",
                format!(
                    "the `{:?}` advantage estimator compares completions within a group: needs n >= 2, got {}",
                    a.advantage.estimator, r.n
                )
                .to_lowercase(),
            );
        }
        if let Some(m) = a.mini_batch_size {
            if m == 0 {
                return err("algorithm.mini_batch_size", "must be at least 1".into());
            }
        }
        if let Some(m) = a.micro_batch_size {
            if m == 0 {
                return err("algorithm.micro_batch_size", "must be at least 1".into());
            }
        }
        let o = &a.overlong;
        if o.buffer_tokens >= r.max_tokens.max(1) && o.buffer_tokens > 0 {
            return err(
                "algorithm.overlong.buffer_tokens",
                format!(
                    "must be below rollout.max_tokens ({}), got {}",
                    r.max_tokens, o.buffer_tokens
                ),
            );
        }
        if !(o.penalty.is_finite() && o.penalty >= 0.0) {
            return err(
                "algorithm.overlong.penalty",
                format!("must be a number >= 0, got {}", o.penalty),
            );
        }
        let k = &c.kl;
        if k.controller == super::KlControllerKind::Adaptive {
            if !k.in_reward {
                return err(
                    "kl.controller",
                    "the adaptive controller steers the KL penalty in the reward: set kl.in_reward = true".into(),
                );
            }
            if !(k.target.is_finite() && k.target > 0.0) {
                return err("kl.target", format!("must be > 0, got {}", k.target));
            }
            if !(k.horizon.is_finite() && k.horizon > 0.0) {
                return err("kl.horizon", format!("must be > 0, got {}", k.horizon));
            }
        }
        if !(r.temperature.is_finite() && r.temperature > 0.0) {
            return err(
                "rollout.temperature",
                format!(
                    "GRPO samples its groups: the temperature must be a positive number (0 is greedy: every completion of a group would be the same); got {}",
                    r.temperature
                ),
            );
        }
        if r.max_tokens == 0 {
            return err("rollout.max_tokens", "must be at least 1".into());
        }
        let p = &a.policy_loss;
        if !(p.clip_low >= 0.0 && p.clip_high >= 0.0) {
            return err(
                "algorithm.policy_loss.clip_low",
                "clip ranges must be >= 0".into(),
            );
        }
        if p.kl.is_some() {
            return err(
                "algorithm.policy_loss.kl",
                "set the KL term under [kl] (coef, estimator), which also keeps the reference model".into(),
            );
        }
        if !p.entropy_coef.is_finite() {
            return err(
                "algorithm.policy_loss.entropy_coef",
                "must be a finite number".into(),
            );
        }
        if task.verifiers.is_empty() {
            return err(
                "task.verifiers",
                format!(
                    "{} needs at least one [[task.verifiers]]",
                    if a.name == AlgorithmName::Ppo {
                        "PPO"
                    } else {
                        "GRPO"
                    }
                ),
            );
        }
    }
    crate::dpo::config::check(c, task, origin)?;
    let params = sampling_params(c, r.n, None);
    if let Err(e) = params.validate() {
        return err(&format!("rollout.{}", e.field), e.message);
    }
    let o = &c.optim;
    if !(o.lr.is_finite() && o.lr > 0.0) {
        return err(
            "optim.lr",
            format!("must be a positive number, got {}", o.lr),
        );
    }
    if let Err(e) = o.adamw().validate() {
        return err("optim", e.to_string());
    }
    if let Err(e) = crate::optim::LrSchedule::new(&o.schedule, o.lr, a.steps as u64) {
        return err("optim.schedule", e.to_string());
    }
    if let Some(g) = o.max_grad_norm {
        if !(g.is_finite() && g > 0.0) {
            return err(
                "optim.max_grad_norm",
                format!("must be a positive number, got {g}"),
            );
        }
    }
    if !(c.kl.coef.is_finite() && c.kl.coef >= 0.0) {
        return err("kl.coef", format!("must be >= 0, got {}", c.kl.coef));
    }
    if c.log.metrics_file.is_empty() || c.log.metrics_file.contains('/') {
        return err("log.metrics_file", "must be a plain file name".into());
    }
    Ok(())
}

/// The sampling parameters of the rollouts (`seed` per request).
pub fn sampling_params(c: &TrainConfig, n: usize, seed: Option<u64>) -> SamplingParams {
    let r = &c.rollout;
    SamplingParams {
        n,
        max_tokens: r.max_tokens,
        temperature: r.temperature,
        top_p: r.top_p,
        top_k: r.top_k,
        min_p: r.min_p,
        stop: r.stop.clone(),
        ignore_eos: r.ignore_eos,
        seed,
        ..SamplingParams::default()
    }
}

/// Loads the task's data and builds its verifiers (once), failing with the key that is wrong:
/// a missing dataset (`task.dataset.source`), an empty training split, a verifier that cannot be
/// built (`task.verifiers`), SFT data without the target field.
pub fn prepare_task(
    c: &TrainConfig,
    task: &TaskConfig,
    origin: &str,
) -> TrainResult<(Task, Option<Reward>)> {
    let src = &task.dataset.source;
    let looks_local = !src.starts_with("synthetic:") && !src.starts_with("hf://");
    if looks_local && !task.base_dir.join(src).exists() {
        return Err(TrainError::config(
            origin,
            "task.dataset.source",
            format!(
                "dataset `{src}` not found (looked for {})",
                task.base_dir.join(src).display()
            ),
        ));
    }
    let loaded = task
        .load()
        .map_err(|e| TrainError::config(origin, "task.dataset", e.to_string()))?;
    if loaded.data.train.is_empty() {
        return Err(TrainError::config(
            origin,
            "task.dataset",
            "the training split is empty",
        ));
    }
    let wants_reward = matches!(
        c.algorithm.name,
        AlgorithmName::Grpo | AlgorithmName::Ppo | AlgorithmName::OnlineDpo
    ) || (c.eval.accuracy
        && (c.eval.every > 0 || c.eval.at_start || c.eval.at_end));
    let reward = if wants_reward && !task.verifiers.is_empty() {
        Some(Reward::build(task).map_err(|e| TrainError::config(origin, "task.verifiers", e))?)
    } else {
        None
    };
    if c.algorithm.name == AlgorithmName::Sft {
        let target = c.algorithm.sft.target;
        if let Some(bad) = loaded
            .data
            .train
            .iter()
            .find(|e| crate::sft::target_text(e, target).is_none())
        {
            return Err(TrainError::config(
                origin,
                "algorithm.sft.target",
                format!(
                    "example `{}` has no {target:?} target (algorithm.sft.target: \"completion\" for prompt + completion data, \"answer\" for prompt + answer data, \"conversation\" for chat data with assistant turns)",
                    bad.id
                )
                .to_lowercase(),
            ));
        }
    }
    if c.algorithm.name == AlgorithmName::RewardModel {
        for (split, rows) in [
            ("training", &loaded.data.train),
            ("held-out", &loaded.data.eval),
        ] {
            if let Some(bad) = rows
                .iter()
                .find(|e| e.chosen.is_none() || e.rejected.is_none())
            {
                return Err(TrainError::config(
                    origin,
                    "task.dataset",
                    format!(
                        "the reward model trains on preference pairs: {split} example `{}` has no `chosen` / `rejected` (JSONL with prompt, chosen, rejected, or source = \"synthetic:arith_pairs\")",
                        bad.id
                    ),
                ));
            }
        }
    }
    crate::dpo::config::check_data(c, &loaded, origin)?;
    let evaluating = c.eval.every > 0 || c.eval.at_start || c.eval.at_end;
    if evaluating && loaded.data.eval.is_empty() {
        return Err(TrainError::config(
            origin,
            "eval",
            "evaluation is on but the task has no held-out split (set task.dataset.eval_count or eval_fraction)",
        ));
    }
    Ok((loaded, reward))
}
