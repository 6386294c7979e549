//! PPO (`algorithm.name = "ppo"`): a value head on the policy's own trunk (`critic = "shared"`)
//! or a separate critic model with its own optimizer (`critic = "separate"`, [`critic`]),
//! per-token rewards (the verifiers' score on the last completion token, minus β·KL to the
//! reference on every token when `kl.in_reward`, β from the fixed or adaptive controller),
//! optional reward whitening, GAE (γ, λ) against the rollout-time values, optional advantage
//! whitening, then the clipped policy loss plus `vf_coef` × the clipped value loss over
//! `epochs` × mini-batches.
//!
//! A PPO step *is* the GRPO-family step ([`crate::grpo::step`]): the same rollout collection
//! through the [`RolloutClient`], reward shaping, reference logprobs, optimisation loop
//! (policy loss, mini-batches, micro-batch accumulation) and weight sync. What PPO adds is
//! here: [`advantages`] (values, GAE) in place of the outcome estimator, and the value targets
//! [`value::ValueTargets`] that the optimisation loop turns into the value loss. The value head
//! and its AdamW moments are in every checkpoint (`score_head.safetensors`,
//! `optimizer.safetensors`), so a resumed run continues exactly.

pub mod critic;
pub mod returns;
pub mod value;

use crate::checkpoint::TrainerState;
use crate::config::TrainConfig;
use crate::grpo::advantage::{shaped_rewards, ComputedAdvantages, Layout};
use crate::grpo::collect::Group;
use crate::kl::controller::KlController;
use crate::masked::masked_mean;
use crate::metrics::Record;
use crate::policy::Policy;
use crate::reward::Reward;
use crate::task::Task;
use crate::train_error::TrainResult;
use candle_core::DType;
use oxrl_rollout::RolloutClient;
use value::ValueTargets;

/// Runs PPO step `state.step + 1` (the shared RL step with the critic on), advancing `state`.
pub fn step(
    policy: &mut Policy,
    client: &dyn RolloutClient,
    task: &Task,
    reward: &Reward,
    cfg: &TrainConfig,
    state: &mut TrainerState,
) -> TrainResult<Record> {
    crate::grpo::step(policy, client, task, reward, cfg, state, &mut None)
}

/// What [`advantages`] computed besides the advantages.
#[derive(Debug, Clone)]
pub struct Critic {
    /// The value targets of every completion, in order.
    pub targets: ValueTargets,
    /// Mean rollout-time value over the completion tokens.
    pub value_mean: f64,
    /// Mean return over the completion tokens.
    pub return_mean: f64,
}

/// PPO's advantages of `groups`: token rewards (KL-shaped when `ref_logprobs` and `controller`
/// are given), the current critic's values, GAE; plus the value targets.
pub fn advantages(
    policy: &Policy,
    groups: &[Group<'_>],
    cfg: &TrainConfig,
    ref_logprobs: Option<&[Vec<f32>]>,
    controller: Option<&mut KlController>,
    chunk: usize,
) -> TrainResult<(ComputedAdvantages, Critic)> {
    let p = &cfg.algorithm.ppo;
    let prompt_lens: Vec<usize> = groups
        .iter()
        .flat_map(|g| g.completions.iter().map(|_| g.prompt.len()))
        .collect();
    let Some(lay) = Layout::of(groups)? else {
        let targets = ValueTargets::new(
            Vec::new(),
            Vec::new(),
            Vec::new(),
            p.vf_coef,
            p.cliprange_value,
        )?;
        return Ok((
            ComputedAdvantages {
                rows: Vec::new(),
                reward_kl: None,
                reward_kl_coef: None,
            },
            Critic {
                targets,
                value_mean: f64::NAN,
                return_mean: f64::NAN,
            },
        ));
    };
    let (rewards, reward_kl, reward_kl_coef) = shaped_rewards(&lay, cfg, ref_logprobs, controller)?;
    let old_rows = value::old_values(policy, groups, chunk)?;
    let values = lay.tensor(&old_rows)?;
    let (adv, ret) = returns::advantages_and_returns(&rewards, &values, &lay.mask, p)?;
    let mean = |t: &candle_core::Tensor| -> TrainResult<f64> {
        Ok(masked_mean(t, &lay.mask)?
            .to_dtype(DType::F64)?
            .to_scalar::<f64>()?)
    };
    let critic = Critic {
        value_mean: mean(&values)?,
        return_mean: mean(&ret)?,
        targets: ValueTargets::new(
            prompt_lens,
            lay.rows(&ret)?,
            old_rows,
            p.vf_coef,
            p.cliprange_value,
        )?,
    };
    Ok((
        ComputedAdvantages {
            rows: lay.rows(&adv)?,
            reward_kl,
            reward_kl_coef,
        },
        critic,
    ))
}
