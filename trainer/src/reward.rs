//! Rewards of a training run: the task's weighted verifiers, built once through the registry
//! (exactly as `oxrl verify` builds them), scoring groups of completions into rewards and
//! correctness.
//!
//! Accuracy: a completion is correct when the first `<verifier>.correct` component (in the task's
//! verifier order) is ≥ 0.5, or, when no verifier reports one, when its reward is ≥ 0.5.

use crate::task::TaskConfig;
use oxrl_datasets::Example;
use oxrl_verifiers::{Group, Registry, Verifier, WeightedVerifiers};

/// The task's verifiers, ready to score.
pub struct Reward {
    verifiers: WeightedVerifiers,
    correct_keys: Vec<String>,
}

impl std::fmt::Debug for Reward {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reward")
            .field("correct_keys", &self.correct_keys)
            .finish()
    }
}

/// The score of one completion as the loop uses it.
#[derive(Debug, Clone, PartialEq)]
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
            .build_verifiers(&Registry::builtin())
            .map_err(|e| e.to_string())?;
        let correct_keys = verifiers
            .members()
            .iter()
            .map(|m| format!("{}.correct", m.label))
            .collect();
        Ok(Self {
            verifiers,
            correct_keys,
        })
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
                        let correct = self
                            .correct_keys
                            .iter()
                            .find_map(|k| s.components.get(k))
                            .map_or(s.reward >= 0.5, |&c| c >= 0.5);
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
