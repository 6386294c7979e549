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

/// How [`evaluate`] samples.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalSpec {
    /// Completions per example (1 with temperature 0 = greedy).
    pub samples: usize,
    /// Sampling temperature (0 = greedy).
    pub temperature: f32,
    /// Nucleus sampling mass.
    pub top_p: f32,
    /// New tokens per completion.
    pub max_tokens: usize,
    /// Stop strings.
    pub stop: Vec<String>,
    /// Seed of the sampling (example `i` uses `seed + i`).
    pub seed: u64,
    /// Examples sent to the engine at once (the progress bar moves per chunk).
    pub chunk: usize,
}

/// Accuracy of a model on a list of examples, `samples` completions each.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EvalReport {
    /// Examples evaluated.
    pub examples: usize,
    /// Completions per example.
    pub samples: usize,
    /// Share of all completions that are correct (= pass@1).
    pub accuracy: f64,
    /// Mean reward of all completions.
    pub mean_reward: f64,
    /// Unbiased pass@k (Chen et al. 2021) for k = 1, 2, 4, … up to `samples`, and `samples`.
    pub pass_at_k: std::collections::BTreeMap<usize, f64>,
    /// Mean completion length in tokens.
    pub mean_completion_tokens: f64,
    /// Correct completions of each example, in order.
    pub correct_per_example: Vec<usize>,
}

/// The unbiased pass@k of one example with `c` of `n` samples correct: `1 − C(n−c, k) / C(n, k)`.
pub fn pass_at_k(n: usize, c: usize, k: usize) -> f64 {
    if k == 0 || k > n {
        return f64::NAN;
    }
    if n - c < k {
        return 1.0;
    }
    // C(n−c, k) / C(n, k) = Π_{i = n−c+1}^{n} (1 − k / i), computed as a product for stability.
    let miss: f64 = ((n - c + 1)..=n)
        .map(|i| 1.0 - k as f64 / i as f64)
        .product();
    1.0 - miss
}

/// Completions of `examples` under `spec`, scored by `reward`; `progress` is told how many
/// examples are done after each chunk.
pub fn evaluate(
    engine: &dyn RolloutClient,
    tok: &Tokenizer,
    examples: &[Example],
    reward: &Reward,
    spec: &EvalSpec,
    mut progress: impl FnMut(usize),
) -> TrainResult<EvalReport> {
    let n = spec.samples.max(1);
    let mut correct_per_example = Vec::with_capacity(examples.len());
    let (mut reward_sum, mut tokens, mut completions) = (0.0f64, 0usize, 0usize);
    for (c, chunk) in examples.chunks(spec.chunk.max(1)).enumerate() {
        let mut requests = Vec::with_capacity(chunk.len());
        for (j, e) in chunk.iter().enumerate() {
            let i = c * spec.chunk.max(1) + j;
            let params = SamplingParams {
                n,
                temperature: spec.temperature,
                top_p: spec.top_p,
                stop: spec.stop.clone(),
                seed: Some(spec.seed.wrapping_add(i as u64)),
                ..SamplingParams::greedy(spec.max_tokens)
            };
            requests.push(RolloutRequest::new(prompt_ids(tok, &e.prompt)?, params));
        }
        let responses = engine
            .generate(requests)
            .map_err(|e| TrainError::Rollout(e.to_string()))?;
        let groups: Vec<(&Example, Vec<String>)> = chunk
            .iter()
            .zip(&responses)
            .map(|(e, r)| (e, r.completions.iter().map(|c| c.text.clone()).collect()))
            .collect();
        for r in &responses {
            tokens += r
                .completions
                .iter()
                .map(|c| c.token_ids.len())
                .sum::<usize>();
        }
        for scores in reward.score(&groups) {
            correct_per_example.push(scores.iter().filter(|s| s.correct).count());
            reward_sum += scores.iter().map(|s| f64::from(s.reward)).sum::<f64>();
            completions += scores.len();
        }
        progress(correct_per_example.len());
    }
    let total = completions.max(1) as f64;
    let mut ks: Vec<usize> = std::iter::successors(Some(1usize), |k| Some(k * 2))
        .take_while(|&k| k <= n)
        .collect();
    if ks.last() != Some(&n) {
        ks.push(n);
    }
    let m = correct_per_example.len().max(1) as f64;
    let pass = ks
        .into_iter()
        .map(|k| {
            let p: f64 = correct_per_example
                .iter()
                .map(|&c| pass_at_k(n, c, k))
                .sum();
            (k, p / m)
        })
        .collect();
    Ok(EvalReport {
        examples: correct_per_example.len(),
        samples: n,
        accuracy: correct_per_example.iter().sum::<usize>() as f64 / total,
        mean_reward: reward_sum / total,
        pass_at_k: pass,
        mean_completion_tokens: tokens as f64 / total,
        correct_per_example,
    })
}

#[cfg(test)]
mod tests {
    use super::pass_at_k;

    #[test]
    fn pass_at_k_matches_the_closed_form() {
        // n = 5, c = 2, k = 2: 1 − C(3,2)/C(5,2) = 1 − 3/10.
        assert!((pass_at_k(5, 2, 2) - 0.7).abs() < 1e-12);
        // k = 1 is the share correct.
        assert!((pass_at_k(8, 3, 1) - 3.0 / 8.0).abs() < 1e-12);
        assert_eq!(pass_at_k(4, 0, 4), 0.0);
        assert_eq!(pass_at_k(4, 1, 4), 1.0);
        assert_eq!(pass_at_k(10, 8, 3), 1.0);
        // n = 10, c = 1, k = 5: 1 − C(9,5)/C(10,5) = 1 − 126/252.
        assert!((pass_at_k(10, 1, 5) - 0.5).abs() < 1e-12);
    }
}
