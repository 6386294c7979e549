//! Training batches: token sequences with the mask of the tokens trained on (completion or
//! assistant tokens), optional rollout logprobs and a per-sequence advantage, padded into the
//! `[B × T]` tensors the training forward and the losses take.
//!
//! Alignment: column `t` of every `[B × T]` tensor refers to token `t` of the sequence, the same
//! convention as [`oxrl_models::TokenLogprobs`] (`logprobs[b, t] = log p(ids[b, t] | ids[b, <t])`).
//! Column 0 is never trained on.

use crate::train_error::{TrainError, TrainResult};
use candle_core::{Device, Tensor};

/// One training sequence.
#[derive(Debug, Clone, PartialEq)]
pub struct Sequence {
    /// Prompt and completion token ids.
    pub ids: Vec<u32>,
    /// `true` for each token that is a training target (same length as `ids`; false at 0).
    pub target: Vec<bool>,
    /// Per-token logprobs under the rollout policy at the target positions (0 elsewhere); GRPO.
    pub old_logprobs: Option<Vec<f32>>,
    /// The sequence's advantage (GRPO; 0 for SFT).
    pub advantage: f32,
    /// Per-token advantages (same length as `ids`, 0 off target), when they vary along the
    /// sequence (REINFORCE++ returns, KL in the reward); `advantage` is used otherwise.
    pub token_advantages: Option<Vec<f32>>,
}

impl Sequence {
    /// A prompt followed by a completion whose every token is a target; `logprobs` (one per
    /// completion token) are the rollout's.
    pub fn prompt_completion(
        prompt: &[u32],
        completion: &[u32],
        logprobs: Option<&[f32]>,
        advantage: f32,
    ) -> Self {
        let mut ids = prompt.to_vec();
        ids.extend_from_slice(completion);
        let mut target = vec![false; prompt.len()];
        target.extend(std::iter::repeat_n(true, completion.len()));
        if let Some(t) = target.first_mut() {
            *t = false;
        }
        let old_logprobs = logprobs.map(|lp| {
            let mut v = vec![0f32; prompt.len()];
            v.extend_from_slice(lp);
            v
        });
        Self {
            ids,
            target,
            old_logprobs,
            advantage,
            token_advantages: None,
        }
    }

    /// Sets per-token advantages of the completion (one per completion token, after a prompt of
    /// `prompt_len` tokens); the sequence advantage becomes their mean.
    pub fn with_completion_advantages(mut self, prompt_len: usize, adv: &[f32]) -> Self {
        let mut v = vec![0f32; prompt_len];
        v.extend_from_slice(adv);
        v.resize(self.ids.len(), 0.0);
        self.advantage = if adv.is_empty() {
            0.0
        } else {
            adv.iter().sum::<f32>() / adv.len() as f32
        };
        self.token_advantages = Some(v);
        self
    }

    /// Excludes every token from the loss (DAPO's overlong filtering).
    pub fn without_targets(mut self) -> Self {
        self.target.iter_mut().for_each(|t| *t = false);
        self
    }

    /// Number of target tokens.
    pub fn target_tokens(&self) -> usize {
        self.target.iter().filter(|&&t| t).count()
    }
}

/// Padded tensors of a list of sequences.
#[derive(Debug, Clone)]
pub struct PaddedBatch {
    /// `[B × T]` u32 token ids, right-padded with 0.
    pub ids: Tensor,
    /// Real length of each row.
    pub lengths: Vec<usize>,
    /// `[B × T]` f32: 1 on target tokens.
    pub mask: Tensor,
    /// `[B × T]` f32 rollout logprobs (0 off target), when every sequence has them.
    pub old_logprobs: Option<Tensor>,
    /// `[B × T]` f32: each target token's advantage (the row's, or its per-token value), 0
    /// elsewhere.
    pub advantages: Tensor,
    /// `[B]` f32: each row's advantage.
    pub seq_advantages: Tensor,
    /// Target tokens in the batch.
    pub target_tokens: usize,
    /// Every real token in the batch.
    pub total_tokens: usize,
}

/// Pads `seqs` into a [`PaddedBatch`] on `device`.
pub fn pad(seqs: &[&Sequence], device: &Device) -> TrainResult<PaddedBatch> {
    if seqs.is_empty() {
        return Err(TrainError::Invariant("an empty training batch".into()));
    }
    let b = seqs.len();
    let t = seqs.iter().map(|s| s.ids.len()).max().unwrap_or(0).max(2);
    let mut ids = vec![0u32; b * t];
    let mut mask = vec![0f32; b * t];
    let mut adv = vec![0f32; b * t];
    let with_old = seqs.iter().all(|s| s.old_logprobs.is_some());
    let mut old = vec![0f32; if with_old { b * t } else { 0 }];
    let mut lengths = Vec::with_capacity(b);
    for (i, s) in seqs.iter().enumerate() {
        if s.target.len() != s.ids.len() {
            return Err(TrainError::Invariant(format!(
                "sequence {i}: {} targets for {} tokens",
                s.target.len(),
                s.ids.len()
            )));
        }
        let row = i * t;
        ids[row..row + s.ids.len()].copy_from_slice(&s.ids);
        for (j, &on) in s.target.iter().enumerate() {
            if on && j > 0 {
                mask[row + j] = 1.0;
                adv[row + j] = match &s.token_advantages {
                    Some(a) => a.get(j).copied().unwrap_or(0.0),
                    None => s.advantage,
                };
            }
        }
        if let (true, Some(lp)) = (with_old, &s.old_logprobs) {
            for (j, &v) in lp.iter().enumerate().take(s.ids.len()) {
                if mask[row + j] > 0.0 {
                    old[row + j] = v;
                }
            }
        }
        lengths.push(s.ids.len());
    }
    let target_tokens = mask.iter().filter(|&&m| m > 0.0).count();
    Ok(PaddedBatch {
        ids: Tensor::from_vec(ids, (b, t), device)?,
        lengths: lengths.clone(),
        mask: Tensor::from_vec(mask, (b, t), device)?,
        old_logprobs: if with_old {
            Some(Tensor::from_vec(old, (b, t), device)?)
        } else {
            None
        },
        advantages: Tensor::from_vec(adv, (b, t), device)?,
        seq_advantages: Tensor::from_vec(
            seqs.iter().map(|s| s.advantage).collect::<Vec<f32>>(),
            b,
            device,
        )?,
        target_tokens,
        total_tokens: lengths.iter().sum(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_completion_masks_only_the_completion_and_aligns_logprobs() {
        let s = Sequence::prompt_completion(&[5, 6, 7], &[8, 9], Some(&[-0.5, -1.5]), 2.0);
        assert_eq!(s.ids, [5, 6, 7, 8, 9]);
        assert_eq!(s.target, [false, false, false, true, true]);
        let short = Sequence::prompt_completion(&[1], &[2], None, 0.0);
        let b = pad(&[&s, &short], &Device::Cpu).unwrap();
        assert_eq!(b.lengths, [5, 2]);
        assert_eq!(
            b.mask.to_vec2::<f32>().unwrap(),
            [[0., 0., 0., 1., 1.], [0., 1., 0., 0., 0.]]
        );
        assert_eq!(
            b.advantages.to_vec2::<f32>().unwrap()[0],
            [0., 0., 0., 2., 2.]
        );
        assert!(b.old_logprobs.is_none(), "one sequence has no logprobs");
        let t = s.clone().with_completion_advantages(3, &[1.0, 3.0]);
        assert_eq!(t.advantage, 2.0);
        let bt = pad(&[&t], &Device::Cpu).unwrap();
        assert_eq!(
            bt.advantages.to_vec2::<f32>().unwrap()[0],
            [0., 0., 0., 1., 3.]
        );
        let none = pad(&[&s.clone().without_targets()], &Device::Cpu).unwrap();
        assert_eq!(none.target_tokens, 0);
        let b = pad(&[&s], &Device::Cpu).unwrap();
        assert_eq!(
            b.old_logprobs.unwrap().to_vec2::<f32>().unwrap()[0],
            [0., 0., 0., -0.5, -1.5]
        );
        assert_eq!((b.target_tokens, b.total_tokens), (2, 5));
    }
}
