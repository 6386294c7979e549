//! Preference pairs as training sequences: offline, an example's prompt followed by its
//! `chosen` and by its `rejected` text (encoded exactly as SFT encodes a target, the loss mask on
//! the completion only); online, a prompt's best and worst sampled completions by verifier
//! reward, prompts whose rewards are all equal skipped.

use crate::batch::Sequence;
use crate::grpo::collect::Group;
use crate::sft::encode_prompt_target;
use crate::train_error::{TrainError, TrainResult};
use oxrl_datasets::Example;
use oxrl_models::Tokenizer;

/// One pair: prompt + chosen, prompt + rejected (same prompt tokens).
#[derive(Debug, Clone, PartialEq)]
pub struct PairSeqs {
    /// The preferred sequence.
    pub chosen: Sequence,
    /// The dispreferred sequence.
    pub rejected: Sequence,
}

/// The pair of a preference example, each side truncated to `max_len` tokens.
pub fn encode_example(tok: &Tokenizer, e: &Example, max_len: usize) -> TrainResult<PairSeqs> {
    let (Some(chosen), Some(rejected)) = (e.chosen.as_deref(), e.rejected.as_deref()) else {
        return Err(TrainError::Invariant(format!(
            "example `{}` is not a preference pair",
            e.id
        )));
    };
    Ok(PairSeqs {
        chosen: encode_prompt_target(tok, &e.prompt, chosen, max_len, &e.id)?,
        rejected: encode_prompt_target(tok, &e.prompt, rejected, max_len, &e.id)?,
    })
}

/// Indices of the best and the worst reward (the first of each on ties), or `None` when all
/// rewards are equal (no preference to learn) or there are fewer than two.
pub fn best_worst(rewards: &[f64]) -> Option<(usize, usize)> {
    if rewards.len() < 2 || rewards.iter().any(|r| !r.is_finite()) {
        return None;
    }
    let mut best = 0;
    let mut worst = 0;
    for (i, &r) in rewards.iter().enumerate() {
        if r > rewards[best] {
            best = i;
        }
        if r < rewards[worst] {
            worst = i;
        }
    }
    (rewards[best] > rewards[worst]).then_some((best, worst))
}

/// Pairs built from sampled groups, with what they were built from.
#[derive(Debug, Clone, Default)]
pub struct OnlinePairs {
    /// One pair per prompt whose rewards differ.
    pub pairs: Vec<PairSeqs>,
    /// Prompts skipped because every sample had the same reward.
    pub skipped: usize,
    /// Sum of the chosen completions' rewards.
    pub chosen_reward: f64,
    /// Sum of the rejected completions' rewards.
    pub rejected_reward: f64,
}

/// The best-vs-worst pair of every group (rewards as trained on: verifier + overlong shaping).
pub fn from_groups(groups: &[Group<'_>]) -> OnlinePairs {
    let mut out = OnlinePairs::default();
    for g in groups {
        let Some((b, w)) = best_worst(&g.rewards) else {
            out.skipped += 1;
            continue;
        };
        let side = |i: usize| {
            Sequence::prompt_completion(&g.prompt, &g.completions[i].token_ids, None, 0.0)
        };
        out.chosen_reward += g.rewards[b];
        out.rejected_reward += g.rewards[w];
        out.pairs.push(PairSeqs {
            chosen: side(b),
            rejected: side(w),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn best_and_worst_take_the_first_on_ties_and_skip_uniform_groups() {
        assert_eq!(best_worst(&[0.2, 1.0, 0.0, 1.0, 0.0]), Some((1, 2)));
        assert_eq!(best_worst(&[0.5, 0.5, 0.5]), None);
        assert_eq!(best_worst(&[1.0]), None);
        assert_eq!(best_worst(&[1.0, f64::NAN]), None);
        assert_eq!(best_worst(&[-1.0, 3.0]), Some((1, 0)));
    }
}
