//! Evaluation on the task's held-out split: greedy completions through the rollout client, scored by the
//! task's verifiers into accuracy and mean reward.

use crate::prompts::prompt_ids;
use crate::reward::Reward;
use crate::train_error::{TrainError, TrainResult};
use oxrl_datasets::Example;
use oxrl_models::Tokenizer;
use oxrl_rollout::{RolloutClient, RolloutRequest, SamplingParams};

/// Greedy accuracy and mean reward.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GreedyEval {
    /// Share of examples whose greedy completion is correct.
    pub accuracy: f64,
    /// Mean reward of the greedy completions.
    pub reward: f64,
    /// Examples evaluated.
    pub count: usize,
}

/// Greedy completions of `examples` (`max_tokens` each), scored by `reward`.
pub fn greedy(
    engine: &dyn RolloutClient,
    tok: &Tokenizer,
    examples: &[Example],
    reward: &Reward,
    max_tokens: usize,
    stop: &[String],
) -> TrainResult<GreedyEval> {
    let mut requests = Vec::with_capacity(examples.len());
    for e in examples {
        let params = SamplingParams {
            stop: stop.to_vec(),
            ..SamplingParams::greedy(max_tokens)
        };
        requests.push(RolloutRequest::new(prompt_ids(tok, &e.prompt)?, params));
    }
    let responses = engine
        .generate(requests)
        .map_err(|e| TrainError::Rollout(e.to_string()))?;
    let groups: Vec<(&Example, Vec<String>)> = examples
        .iter()
        .zip(&responses)
        .map(|(e, r)| (e, r.completions.iter().map(|c| c.text.clone()).collect()))
        .collect();
    let scores = reward.score(&groups);
    let flat: Vec<_> = scores.iter().flatten().collect();
    let count = flat.len().max(1);
    Ok(GreedyEval {
        accuracy: flat.iter().filter(|s| s.correct).count() as f64 / count as f64,
        reward: flat.iter().map(|s| f64::from(s.reward)).sum::<f64>() / count as f64,
        count: flat.len(),
    })
}
