//! The `Verifier` trait: the one contract every reward source (built-in, external command, HTTP)
//! implements, and the types it exchanges with the trainer and `oxrl verify`.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One example as the verifier sees it: the prompt it was asked, its reference answer (if any)
/// and free metadata from the dataset row (test cases, allowed choices, a schema, ...).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct VerifyExample {
    /// Stable id of the dataset row.
    #[serde(default)]
    pub id: String,
    /// The rendered prompt text (or the user message), for verifiers that need it.
    #[serde(default)]
    pub prompt: String,
    /// The reference answer, when the task has one.
    #[serde(default)]
    pub answer: Option<String>,
    /// Every other field of the row, as JSON.
    #[serde(default)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

/// The score of one completion.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Score {
    /// The scalar reward used for training.
    pub reward: f32,
    /// Named sub-scores (e.g. `correct`, `format`, `tests_passed`), for metrics and debugging.
    #[serde(default)]
    pub components: BTreeMap<String, f32>,
    /// Why scoring failed, when it did; the reward is then 0 unless the verifier says otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Score {
    /// A plain reward with no components.
    pub fn reward(reward: f32) -> Self {
        Self {
            reward,
            ..Self::default()
        }
    }

    /// A failed scoring: reward 0 and the error recorded.
    pub fn failed(error: impl Into<String>) -> Self {
        Self {
            reward: 0.0,
            components: BTreeMap::new(),
            error: Some(error.into()),
        }
    }
}

/// All completions of one prompt (a GRPO group), scored together so group-aware verifiers can
/// compare them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Group {
    /// The example the completions answer.
    pub example: VerifyExample,
    /// The completion texts (the generated part only).
    pub completions: Vec<String>,
}

/// A source of rewards. Implementations must return exactly one `Score` per completion of every
/// group, in order, and must not panic on any completion text: problems are reported in
/// `Score::error`.
pub trait Verifier: Send + Sync {
    /// The name it is registered under.
    fn name(&self) -> &str;

    /// Scores a batch of groups. The outer `Vec` has one entry per group, the inner one entry per
    /// completion.
    fn score(&self, groups: &[Group]) -> Vec<Vec<Score>>;
}
