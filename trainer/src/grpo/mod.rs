//! One GRPO-family step (PPO's too, with the critic of [`crate::ppo`]): collect scored groups through the [`RolloutClient`] (with DAPO's
//! dynamic sampling and overlong shaping, [`collect`]) → advantages of the configured estimator,
//! with the KL penalty in the reward when asked ([`advantage`]) → the configured policy loss over
//! `epochs` passes of shuffled mini-batches with gradient accumulation ([`optimize`]) → publish
//! the new weights (in-process: a version bump on shared tensors; remote: `POST /v1/weights`).
//!
//! The old-policy logprobs are the engine's own (one decoder serves both, at the sampling
//! temperature), so nothing is recomputed before the first update; the step records how far the
//! trainer's recomputed logprobs are from them on the first mini-batch
//! (`onpolicy_max_abs_logprob_diff`, expected ≈ 1e-6, and `onpolicy_max_abs_ratio_dev`). Every
//! completion must carry the policy version served when the step began, and the version after
//! the step must be one higher.

pub mod advantage;
pub mod collect;
pub mod optimize;
pub mod pending;
pub mod shaping;

use crate::batch::{pad, Sequence};
use crate::checkpoint::TrainerState;
use crate::config::{validate::sampling_params, AlgorithmName, TrainConfig};
use crate::metrics::{num, Record};
use crate::policy::Policy;
use crate::reward::Reward;
use crate::task::Task;
use crate::train_error::{TrainError, TrainResult};
use collect::Collected;
use oxrl_rollout::{FinishReason, RolloutClient};
use std::time::Instant;

fn mean(acc: (f64, usize)) -> serde_json::Value {
    if acc.1 == 0 {
        serde_json::Value::Null
    } else {
        num(acc.0 / acc.1 as f64)
    }
}

/// Reference logprobs of every completion (completion-aligned rows), in passes of `chunk`.
fn reference_rows(
    policy: &Policy,
    groups: &[collect::Group<'_>],
    chunk: usize,
    temperature: f32,
) -> TrainResult<Vec<Vec<f32>>> {
    let device = policy.model.device().clone();
    let mut items = Vec::new();
    for g in groups {
        for c in &g.completions {
            items.push((
                g.prompt.len(),
                c.token_ids.len(),
                Sequence::prompt_completion(&g.prompt, &c.token_ids, None, 0.0),
            ));
        }
    }
    let mut rows = Vec::with_capacity(items.len());
    for part in items.chunks(chunk.max(1)) {
        let seqs: Vec<&Sequence> = part.iter().map(|(_, _, s)| s).collect();
        let batch = pad(&seqs, &device)?;
        let lp = policy
            .reference_logprobs(&batch, temperature)?
            .ok_or_else(|| TrainError::Invariant("KL in the reward without a reference".into()))?
            .to_vec2::<f32>()?;
        for ((p, c, _), row) in part.iter().zip(lp) {
            rows.push(row[*p..*p + *c].to_vec());
        }
    }
    Ok(rows)
}

/// Publishes the weights after a step that `updated` them (served at `version` when the step
/// began) and checks that the version went up by exactly one; a step without an update
/// publishes nothing and keeps `version`. An engine that reads the trainer's tensors directly
/// gets a snapshot when rollouts overlap training (asynchronous mode). Online DPO syncs through
/// this too.
pub fn publish(
    client: &dyn RolloutClient,
    policy: &Policy,
    cfg: &TrainConfig,
    version: u64,
    updated: bool,
) -> TrainResult<u64> {
    if !updated {
        return Ok(version);
    }
    let v = if cfg.rollout.max_staleness > 0 && client.shares_weights() {
        client.sync_weights(&policy.model.inference_snapshot()?)
    } else {
        client.sync_weights(&policy.model)
    }
    .map_err(|e| TrainError::Rollout(e.to_string()))?;
    if v != version + 1 {
        return Err(TrainError::Invariant(format!(
            "policy version went {version} → {v}, expected {}",
            version + 1
        )));
    }
    Ok(v)
}

/// Runs GRPO step `state.step + 1`, advancing `state`, and returns its metrics record.
///
/// Asynchronous mode (`rollout.max_staleness >= 1`): the step trains on `pending` (gathered
/// during the previous step; gathered now if there is none) and, while it trains, gathers the
/// next step's rollouts from the weights before this step's update into `pending`.
#[allow(clippy::too_many_arguments)]
pub fn step(
    policy: &mut Policy,
    client: &dyn RolloutClient,
    task: &Task,
    reward: &Reward,
    cfg: &TrainConfig,
    state: &mut TrainerState,
    pending: &mut Option<pending::PendingRollouts>,
) -> TrainResult<Record> {
    let started = Instant::now();
    let step = state.step + 1;
    let a = &cfg.algorithm;
    let n = cfg.rollout.n;
    let version = client.policy_version();
    let asynchronous = cfg.rollout.max_staleness > 0;

    // Rollouts and rewards.
    let wait_start = Instant::now();
    let got = match pending.take() {
        Some(p) if p.step == step => p.into_collected(task)?,
        _ => collect::collect(
            client,
            &policy.tokenizer,
            task,
            reward,
            cfg,
            step,
            state.data_position,
            |seed| sampling_params(cfg, n, seed),
        )?,
    };
    let rollout_wait_s = wait_start.elapsed().as_secs_f64();
    let lag = version.checked_sub(got.version).ok_or_else(|| {
        TrainError::Invariant(format!(
            "rollouts from policy version {} are newer than the serving version {version}",
            got.version
        ))
    })?;
    if lag > cfg.rollout.max_staleness {
        return Err(TrainError::Invariant(format!(
            "rollouts are {lag} versions old, above rollout.max_staleness = {}",
            cfg.rollout.max_staleness
        )));
    }

    // Advantages (KL in the reward first, when on).
    let adv_start = Instant::now();
    let mut controller = match (&state.kl_controller, cfg.kl.reward_controller()) {
        (Some(c), Some(_)) => Some(c.clone()),
        (None, c) => c,
        (Some(_), None) => None,
    };
    let chunk = a
        .micro_batch_size
        .unwrap_or(a.mini_batch_size.unwrap_or(16));
    let refs = if controller.is_some() && !got.groups.is_empty() {
        Some(reference_rows(
            policy,
            &got.groups,
            chunk,
            cfg.rollout.temperature,
        )?)
    } else {
        None
    };
    let ctrl = if refs.is_some() {
        controller.as_mut()
    } else {
        None
    };
    // PPO: values and GAE instead of the outcome estimator (crate::ppo).
    let (adv, critic) = if a.name == AlgorithmName::Ppo {
        let (adv, critic) =
            crate::ppo::advantages(policy, &got.groups, cfg, refs.as_deref(), ctrl, chunk)?;
        (adv, Some(critic))
    } else {
        (
            advantage::compute(&got.groups, cfg, refs.as_deref(), ctrl)?,
            None,
        )
    };
    let reference_s = adv_start.elapsed().as_secs_f64();

    // Training sequences.
    let mut seqs = Vec::with_capacity(adv.rows.len());
    let mut filtered = 0usize;
    let mut row = adv.rows.iter();
    for g in &got.groups {
        for c in &g.completions {
            let a_row = row.next().ok_or_else(|| {
                TrainError::Invariant("fewer advantage rows than completions".into())
            })?;
            let mut s =
                Sequence::prompt_completion(&g.prompt, &c.token_ids, Some(&c.logprobs), 0.0)
                    .with_completion_advantages(g.prompt.len(), a_row);
            if a.overlong.filter && c.finish_reason == FinishReason::Length {
                s = s.without_targets();
                filtered += 1;
            }
            seqs.push(s);
        }
    }
    let kept = seqs.len();
    let response_len = seqs
        .iter()
        .zip(got.groups.iter().flat_map(|g| g.completions.iter()))
        .map(|(_, c)| c.token_ids.len())
        .sum::<usize>() as f64
        / kept.max(1) as f64;

    // Optimisation.
    let train_start = Instant::now();
    let mut bapo = if a.policy_loss.bapo.restart {
        None
    } else {
        state.bapo
    };
    let prefetch = asynchronous && step < a.steps as u64;
    let (sums, next) = if prefetch {
        // The next step's rollouts come from the weights the engine serves now (this step's
        // update is not published until both are done).
        let tokenizer = policy.tokenizer.clone();
        let next_position = state.data_position + got.prompts_drawn as u64;
        std::thread::scope(|scope| {
            let gather = scope.spawn(|| {
                collect::collect(
                    client,
                    &tokenizer,
                    task,
                    reward,
                    cfg,
                    step + 1,
                    next_position,
                    |seed| sampling_params(cfg, n, seed),
                )
            });
            let sums = optimize::optimize(
                policy,
                &seqs,
                cfg,
                step,
                &mut bapo,
                critic.as_ref().map(|c| &c.targets),
            );
            let next = gather
                .join()
                .map_err(|_| TrainError::Invariant("the rollout thread panicked".into()));
            (sums, next)
        })
    } else {
        (
            optimize::optimize(
                policy,
                &seqs,
                cfg,
                step,
                &mut bapo,
                critic.as_ref().map(|c| &c.targets),
            ),
            Ok(Ok(Collected::default())),
        )
    };
    let sums = sums?;
    let next = next??;
    let train_s = train_start.elapsed().as_secs_f64();
    *pending = prefetch.then(|| pending::PendingRollouts::of(&next, step + 1));

    // Weight sync.
    let sync_start = Instant::now();
    let new_version = publish(client, policy, cfg, version, sums.steps > 0)?;
    let sync_s = sync_start.elapsed().as_secs_f64();

    state.step = step;
    state.data_position += got.prompts_drawn as u64;
    state.policy_version = new_version;
    state.kl_controller = controller;
    state.bapo = bapo;

    let rewards: Vec<f64> = got.groups.iter().flat_map(|g| g.rewards.clone()).collect();
    let train_reward = rewards.iter().sum::<f64>() / rewards.len().max(1) as f64;
    let reward_std = (rewards
        .iter()
        .map(|r| (r - train_reward).powi(2))
        .sum::<f64>()
        / rewards.len().max(1) as f64)
        .sqrt();
    let (lp_diff, ratio_dev) = sums.onpolicy.unwrap_or((f64::NAN, f64::NAN));
    let step_s = started.elapsed().as_secs_f64();
    let mut r = Record::new();
    r.insert("step".into(), step.into());
    r.insert("policy_version".into(), new_version.into());
    r.insert("version_lag".into(), lag.into());
    r.insert("rollout_version".into(), got.version.into());
    r.insert("loss".into(), num(sums.loss / sums.steps.max(1) as f64));
    r.insert("reward".into(), num(got.reward_mean));
    r.insert("train_reward".into(), num(train_reward));
    r.insert("reward_std".into(), num(reward_std));
    r.insert("accuracy".into(), num(got.accuracy));
    r.insert("kl".into(), mean(sums.kl));
    if let Some(k) = adv.reward_kl {
        r.insert("reward_kl".into(), num(k));
    }
    if let Some(b) = adv.reward_kl_coef {
        r.insert("kl_coef".into(), num(b));
    }
    r.insert("approx_kl".into(), mean(sums.approx_kl));
    if let Some(c) = &critic {
        r.insert("value_loss".into(), mean(sums.value_loss));
        r.insert("vf_clipfrac".into(), mean(sums.vf_clip));
        r.insert("value_mean".into(), num(c.value_mean));
        if sums.critic_grad_norm.1 > 0 {
            r.insert("critic_grad_norm".into(), mean(sums.critic_grad_norm));
        }
        r.insert("return_mean".into(), num(c.return_mean));
    }
    r.insert("entropy".into(), mean(sums.entropy));
    r.insert("clip_fraction".into(), mean(sums.clip));
    if let Some(b) = &state.bapo {
        r.insert("bapo_c_low".into(), num(b.c_low));
        r.insert("bapo_c_high".into(), num(b.c_high));
    }
    r.insert(
        "grad_norm".into(),
        num(sums.grad_norm / sums.steps.max(1) as f64),
    );
    r.insert("lr".into(), num(sums.lr));
    r.insert("optimizer_steps".into(), sums.steps.into());
    r.insert("skipped_steps".into(), sums.skipped.into());
    r.insert("onpolicy_max_abs_logprob_diff".into(), num(lp_diff));
    r.insert("onpolicy_max_abs_ratio_dev".into(), num(ratio_dev));
    r.insert("response_length".into(), num(response_len));
    r.insert("verifier_errors".into(), got.verifier_errors.into());
    r.insert("completions".into(), got.sampled.into());
    r.insert("trained_completions".into(), kept.into());
    r.insert("truncated".into(), got.truncated.into());
    r.insert("overlong_filtered".into(), filtered.into());
    r.insert("dapo_refills".into(), got.refills.into());
    r.insert("dapo_dropped_groups".into(), got.dropped_groups.into());
    r.insert("rollout_tokens".into(), got.generated_tokens.into());
    r.insert(
        "tokens_per_s".into(),
        num(got.generated_tokens as f64 / got.rollout_s.max(1e-9)),
    );
    r.insert(
        "train_tokens_per_s".into(),
        num(sums.train_tokens as f64 / train_s.max(1e-9)),
    );
    r.insert("rollout_s".into(), num(got.rollout_s));
    r.insert("rollout_wait_s".into(), num(rollout_wait_s));
    r.insert("verify_s".into(), num(got.verify_s));
    r.insert("reference_s".into(), num(reference_s));
    r.insert("train_s".into(), num(train_s));
    r.insert("sync_s".into(), num(sync_s));
    r.insert("step_s".into(), num(step_s));
    Ok(r)
}
