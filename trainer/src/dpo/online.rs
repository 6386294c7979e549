//! Online DPO: each step samples `rollout.n` completions of `algorithm.batch_size` prompts
//! through the [`RolloutClient`] and scores them with the task's verifiers (GRPO's
//! [`crate::grpo::collect`], so version checks, DAPO dynamic sampling and overlong shaping are
//! the same), pairs each prompt's best completion with its worst (prompts whose rewards are all
//! equal are skipped), takes one optimizer step on the preference loss against the reference,
//! and publishes the new weights ([`crate::grpo::publish`]). A step without a single pair takes
//! no optimizer step and keeps the policy version.

use super::loss::{insert_stats, pair_loss};
use super::pairs::from_groups;
use crate::checkpoint::TrainerState;
use crate::config::{validate::sampling_params, TrainConfig};
use crate::grpo::{collect::collect, publish};
use crate::metrics::{num, Record};
use crate::policy::Policy;
use crate::reward::Reward;
use crate::task::Task;
use crate::train_error::TrainResult;
use oxrl_rollout::RolloutClient;
use std::time::Instant;

/// Runs online DPO step `state.step + 1`, advancing `state`, and returns its metrics record.
pub fn step(
    policy: &mut Policy,
    client: &dyn RolloutClient,
    task: &Task,
    reward: &Reward,
    cfg: &TrainConfig,
    state: &mut TrainerState,
) -> TrainResult<Record> {
    let started = Instant::now();
    let step = state.step + 1;
    let a = &cfg.algorithm;
    let n = cfg.rollout.n;
    let version = client.policy_version();
    let got = collect(
        client,
        &policy.tokenizer,
        task,
        reward,
        cfg,
        step,
        state.data_position,
        |seed| sampling_params(cfg, n, seed),
    )?;
    let built = from_groups(&got.groups);
    let pairs = built.pairs.len();

    let train_start = Instant::now();
    let (out, info) = if pairs > 0 {
        let out = pair_loss(policy, &built.pairs, &a.preference_loss, true)?;
        let info = policy.optimizer_step(&out.loss)?;
        (Some(out), Some(info))
    } else {
        (None, None)
    };
    let train_s = train_start.elapsed().as_secs_f64();

    let sync_start = Instant::now();
    let updated = info.is_some_and(|i| !i.skipped);
    let new_version = publish(client, policy, cfg, version, updated)?;
    let sync_s = sync_start.elapsed().as_secs_f64();

    state.step = step;
    state.data_position += got.prompts_drawn as u64;
    state.policy_version = new_version;

    let sampled: Vec<usize> = got
        .groups
        .iter()
        .flat_map(|g| g.completions.iter().map(|c| c.token_ids.len()))
        .collect();
    let response_len = sampled.iter().sum::<usize>() as f64 / sampled.len().max(1) as f64;
    let per_pair = |x: f64| {
        if pairs == 0 {
            serde_json::Value::Null
        } else {
            num(x / pairs as f64)
        }
    };
    let mut r = Record::new();
    r.insert("step".into(), step.into());
    r.insert("policy_version".into(), new_version.into());
    r.insert("version_lag".into(), 0u64.into());
    r.insert(
        "loss".into(),
        out.as_ref()
            .map_or(serde_json::Value::Null, |o| num(o.value)),
    );
    r.insert("reward".into(), num(got.reward_mean));
    r.insert("accuracy".into(), num(got.accuracy));
    if let Some(o) = &out {
        insert_stats(&mut r, "", &o.stats);
    }
    r.insert("pairs".into(), pairs.into());
    r.insert("skipped_prompts".into(), built.skipped.into());
    r.insert("chosen_reward".into(), per_pair(built.chosen_reward));
    r.insert("rejected_reward".into(), per_pair(built.rejected_reward));
    if let Some(i) = info {
        r.insert("grad_norm".into(), num(i.grad_norm));
        r.insert("lr".into(), num(i.lr));
    }
    r.insert("optimizer_steps".into(), usize::from(updated).into());
    r.insert(
        "skipped_steps".into(),
        usize::from(info.is_some_and(|i| i.skipped)).into(),
    );
    r.insert("response_length".into(), num(response_len));
    r.insert("verifier_errors".into(), got.verifier_errors.into());
    r.insert("completions".into(), got.sampled.into());
    r.insert("truncated".into(), got.truncated.into());
    r.insert("dapo_refills".into(), got.refills.into());
    r.insert("dapo_dropped_groups".into(), got.dropped_groups.into());
    r.insert("rollout_tokens".into(), got.generated_tokens.into());
    r.insert(
        "tokens_per_s".into(),
        num(got.generated_tokens as f64 / got.rollout_s.max(1e-9)),
    );
    if let Some(o) = &out {
        r.insert(
            "train_tokens_per_s".into(),
            num(o.total_tokens as f64 / train_s.max(1e-9)),
        );
    }
    r.insert("rollout_s".into(), num(got.rollout_s));
    r.insert("verify_s".into(), num(got.verify_s));
    r.insert("train_s".into(), num(train_s));
    r.insert("sync_s".into(), num(sync_s));
    r.insert("step_s".into(), num(started.elapsed().as_secs_f64()));
    Ok(r)
}
