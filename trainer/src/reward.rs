//! Rewards of a training run: the task's weighted verifiers, built once through the registry
//! (the built-ins plus the trainer's `model` verifier, exactly as `oxrl verify` builds them), scoring groups of completions into rewards and
//! correctness.
//!
//! Accuracy is `oxrl verify`'s rule (`oxrl_task::Judge`): a completion is correct when the first
//! `<verifier>.correct` component (in the task's verifier order) is ≥ 0.5, or, when no verifier
//! reports one, when its reward is ≥ 0.5.

use crate::task::{Judge, TaskConfig};
use oxrl_datasets::Example;
use oxrl_verifiers::{Group, Verifier, WeightedVerifiers};

/// The task's verifiers, ready to score.
pub struct Reward {
    verifiers: WeightedVerifiers,
    judge: Judge,
}

impl std::fmt::Debug for Reward {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reward")
            .field("judge", &self.judge)
            .finish()
    }
}

/// The score of one completion as the loop uses it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Scored {
    /// The weighted reward.
    pub reward: f32,
    /// Whether it counts as correct.
    pub correct: bool,
    /// A verifier error, if one failed.
    pub error: Option<String>,
}

impl Reward {
    /// Builds the task's verifiers; the error is the registry's message.
    pub fn build(task: &TaskConfig) -> Result<Self, String> {
        let verifiers = task
            .build_verifiers(&crate::model_verifier::registry())
            .map_err(|e| e.to_string())?;
        let judge = Judge::new(&verifiers, 0.5);
        Ok(Self { verifiers, judge })
    }

    /// Scores each example's completions (one group per example), in order.
    pub fn score(&self, groups: &[(&Example, Vec<String>)]) -> Vec<Vec<Scored>> {
        let groups: Vec<Group> = groups
            .iter()
            .map(|(e, c)| Group {
                example: crate::task::verify_example(e),
                completions: c.clone(),
            })
            .collect();
        self.verifiers
            .score(&groups)
            .into_iter()
            .map(|scores| {
                scores
                    .into_iter()
                    .map(|s| {
                        let correct = self.judge.is_correct(&s);
                        Scored {
                            reward: if s.reward.is_finite() { s.reward } else { 0.0 },
                            correct,
                            error: s.error,
                        }
                    })
                    .collect()
            })
            .collect()
    }
}
