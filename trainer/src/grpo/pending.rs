//! The rollouts of the next step, gathered ahead of time by asynchronous GRPO
//! (`rollout.max_staleness >= 1`): an owned, serialisable form of [`Collected`] that the loop
//! keeps between steps and writes into each checkpoint (`pending_rollouts.json`), so a resumed
//! asynchronous run trains on exactly the rollouts the uninterrupted one would have (they came
//! from weights the checkpoint no longer holds).

use super::collect::{Collected, Group};
use crate::reward::Scored;
use crate::task::Task;
use crate::train_error::{TrainError, TrainResult};
use oxrl_rollout::Completion;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// File of the pending rollouts inside a checkpoint.
pub const PENDING_FILE: &str = "pending_rollouts.json";

/// One saved group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingGroup {
    /// Index of the example in the task's training split.
    pub train_index: usize,
    /// Prompt token ids.
    pub prompt: Vec<u32>,
    /// The sampled completions.
    pub completions: Vec<Completion>,
    /// Their verdicts.
    pub scores: Vec<Scored>,
    /// The rewards they train on.
    pub rewards: Vec<f64>,
    /// ReMax's greedy baseline.
    pub baseline: Option<f64>,
}

/// The rollouts of step `step`, sampled from policy `version` before that step began.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingRollouts {
    /// The step they are for.
    pub step: u64,
    /// The policy version that generated them.
    pub version: u64,
    /// The groups.
    pub groups: Vec<PendingGroup>,
    /// [`Collected`]'s counters, in its order.
    pub prompts_drawn: usize,
    /// Dynamic-sampling refills.
    pub refills: usize,
    /// Groups dropped as uninformative.
    pub dropped_groups: usize,
    /// Mean verifier reward over every sampled completion.
    pub reward_mean: f64,
    /// Share judged correct.
    pub accuracy: f64,
    /// Verifier errors.
    pub verifier_errors: usize,
    /// Completions sampled.
    pub sampled: usize,
    /// Tokens generated.
    pub generated_tokens: usize,
    /// Completions cut at `max_tokens`.
    pub truncated: usize,
    /// Seconds spent generating (in the background).
    pub rollout_s: f64,
    /// Seconds spent scoring (in the background).
    pub verify_s: f64,
}

impl PendingRollouts {
    /// The owned form of `c`, gathered for `step`.
    pub fn of(c: &Collected<'_>, step: u64) -> Self {
        Self {
            step,
            version: c.version,
            groups: c
                .groups
                .iter()
                .map(|g| PendingGroup {
                    train_index: g.train_index,
                    prompt: g.prompt.clone(),
                    completions: g.completions.clone(),
                    scores: g.scores.clone(),
                    rewards: g.rewards.clone(),
                    baseline: g.baseline,
                })
                .collect(),
            prompts_drawn: c.prompts_drawn,
            refills: c.refills,
            dropped_groups: c.dropped_groups,
            reward_mean: c.reward_mean,
            accuracy: c.accuracy,
            verifier_errors: c.verifier_errors,
            sampled: c.sampled,
            generated_tokens: c.generated_tokens,
            truncated: c.truncated,
            rollout_s: c.rollout_s,
            verify_s: c.verify_s,
        }
    }

    /// Back to [`Collected`], its examples looked up in `task`.
    pub fn into_collected(self, task: &Task) -> TrainResult<Collected<'_>> {
        let mut groups = Vec::with_capacity(self.groups.len());
        for g in self.groups {
            let example = task.data.train.get(g.train_index).ok_or_else(|| {
                TrainError::Invariant(format!(
                    "pending rollouts name training example {} of {}",
                    g.train_index,
                    task.data.train.len()
                ))
            })?;
            groups.push(Group {
                example,
                train_index: g.train_index,
                prompt: g.prompt,
                completions: g.completions,
                scores: g.scores,
                rewards: g.rewards,
                baseline: g.baseline,
            });
        }
        Ok(Collected {
            version: self.version,
            groups,
            prompts_drawn: self.prompts_drawn,
            refills: self.refills,
            dropped_groups: self.dropped_groups,
            reward_mean: self.reward_mean,
            accuracy: self.accuracy,
            verifier_errors: self.verifier_errors,
            sampled: self.sampled,
            generated_tokens: self.generated_tokens,
            truncated: self.truncated,
            rollout_s: self.rollout_s,
            verify_s: self.verify_s,
        })
    }

    /// Writes them into checkpoint directory `dir`.
    pub fn save(&self, dir: &Path) -> TrainResult<()> {
        let path = dir.join(PENDING_FILE);
        let json = serde_json::to_vec(self)
            .map_err(|e| TrainError::Invariant(format!("cannot serialise rollouts: {e}")))?;
        std::fs::write(&path, json).map_err(|e| TrainError::io(&path, e))
    }

    /// Reads them from checkpoint directory `dir`, if it has them.
    pub fn load(dir: &Path) -> TrainResult<Option<Self>> {
        let path = dir.join(PENDING_FILE);
        if !path.is_file() {
            return Ok(None);
        }
        let bytes = std::fs::read(&path).map_err(|e| TrainError::io(&path, e))?;
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| TrainError::checkpoint(&path, format!("unreadable pending rollouts: {e}")))
    }
}
