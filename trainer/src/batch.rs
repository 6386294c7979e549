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

/// Sequences packed several to a row (SFT packing), for
/// [`oxrl_models::Transformer::packed_token_logprobs`].
#[derive(Debug, Clone)]
pub struct PackedBatch {
    /// `[R × T]` u32 token ids: each row's sequences back to back, then 0s.
    pub ids: Tensor,
    /// Per row, the lengths of the sequences in it, in order.
    pub segments: Vec<Vec<usize>>,
    /// Per row, the index (into the packed list) of each of its sequences.
    pub members: Vec<Vec<usize>>,
    /// `[R × T]` f32: 1 on target tokens (a sequence's first token never is).
    pub mask: Tensor,
    /// Target tokens in the batch.
    pub target_tokens: usize,
    /// Every real token in the batch.
    pub total_tokens: usize,
}

/// Packs `seqs` into rows of at most `capacity` tokens, best-fit decreasing (longest first,
/// each into the fullest row it still fits, else a new row): few rows, little padding. A
/// sequence longer than `capacity` is an error (SFT truncates to it first).
pub fn pack(seqs: &[&Sequence], capacity: usize, device: &Device) -> TrainResult<PackedBatch> {
    if seqs.is_empty() {
        return Err(TrainError::Invariant("an empty training batch".into()));
    }
    let mut order: Vec<usize> = (0..seqs.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(seqs[i].ids.len()));
    let mut members: Vec<Vec<usize>> = Vec::new();
    let mut used: Vec<usize> = Vec::new();
    for i in order {
        let s = seqs[i];
        if s.target.len() != s.ids.len() || s.ids.is_empty() {
            return Err(TrainError::Invariant(format!(
                "sequence {i}: {} targets for {} tokens",
                s.target.len(),
                s.ids.len()
            )));
        }
        let len = s.ids.len();
        if len > capacity {
            return Err(TrainError::Invariant(format!(
                "sequence {i} has {len} tokens, more than a packed row's {capacity}"
            )));
        }
        let best = (0..used.len())
            .filter(|&r| used[r] + len <= capacity)
            .max_by_key(|&r| (used[r], std::cmp::Reverse(r)));
        match best {
            Some(r) => {
                members[r].push(i);
                used[r] += len;
            }
            None => {
                members.push(vec![i]);
                used.push(len);
            }
        }
    }
    let t = used.iter().copied().max().unwrap_or(0).max(2);
    let rows = members.len();
    let mut ids = vec![0u32; rows * t];
    let mut mask = vec![0f32; rows * t];
    let mut segments = Vec::with_capacity(rows);
    for (r, m) in members.iter().enumerate() {
        let mut at = r * t;
        let mut lens = Vec::with_capacity(m.len());
        for &i in m {
            let s = seqs[i];
            ids[at..at + s.ids.len()].copy_from_slice(&s.ids);
            for (j, &on) in s.target.iter().enumerate() {
                if on && j > 0 {
                    mask[at + j] = 1.0;
                }
            }
            at += s.ids.len();
            lens.push(s.ids.len());
        }
        segments.push(lens);
    }
    Ok(PackedBatch {
        ids: Tensor::from_vec(ids, (rows, t), device)?,
        segments,
        members,
        target_tokens: mask.iter().filter(|&&m| m > 0.0).count(),
        mask: Tensor::from_vec(mask, (rows, t), device)?,
        total_tokens: used.iter().sum(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_fills_rows_best_fit_decreasing_and_masks_each_first_token() {
        let s = |n: usize, p: usize| {
            let ids: Vec<u32> = (1..=n as u32).collect();
            Sequence::prompt_completion(&ids[..p], &ids[p..], None, 0.0)
        };
        // Lengths 6, 5, 4, 3, 2 into rows of 8: 6+2, 5+3, 4.
        let seqs = [s(4, 1), s(6, 2), s(2, 1), s(5, 0), s(3, 1)];
        let refs: Vec<&Sequence> = seqs.iter().collect();
        let b = pack(&refs, 8, &Device::Cpu).unwrap();
        assert_eq!(b.members, [vec![1, 2], vec![3, 4], vec![0]]);
        assert_eq!(b.segments, [vec![6, 2], vec![5, 3], vec![4]]);
        assert_eq!(b.ids.dims(), [3, 8]);
        assert_eq!(b.total_tokens, 20);
        let mask = b.mask.to_vec2::<f32>().unwrap();
        // Row 0: sequence 1 (prompt 2 of 6) then sequence 2 (prompt 1 of 2).
        assert_eq!(mask[0], [0., 0., 1., 1., 1., 1., 0., 1.]);
        // Row 1: sequence 3 (no prompt: its first token is still not a target), then 4.
        assert_eq!(mask[1], [0., 1., 1., 1., 1., 0., 1., 1.]);
        assert_eq!(b.target_tokens, 4 + 1 + 4 + 2 + 3);
        assert_eq!(b.ids.to_vec2::<u32>().unwrap()[2], [1, 2, 3, 4, 0, 0, 0, 0]);
        assert!(pack(&refs, 5, &Device::Cpu).is_err());
    }

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
