//! The critic side of a PPO step: the rollout-time values of every completion token (one
//! no-graph forward through the critic's trunk, the policy's own or a [separate
//! critic](crate::ppo::critic)'s, and the value head), the value targets of each training
//! sequence, and the clipped value loss of a micro-batch ([`crate::value_loss`]) on the hidden
//! states of the same forward that gives the logprobs (shared trunk) or of the critic's forward.
//!
//! Alignment: the value of completion token j is the value head on the hidden state just before
//! it ([`ScoreHead::token_values`]), in the same column as its logprob.

use crate::aggregation::{AggregationNorm, LossAggregation};
use crate::batch::{pad, PaddedBatch, Sequence};
use crate::grpo::collect::Group;
use crate::policy::Policy;
use crate::score_head::ScoreHead;
use crate::train_error::{TrainError, TrainResult};
use crate::value_loss::{value_loss, ValueLoss};
use candle_core::{Device, Tensor};
use oxrl_models::TrainForward;

/// The value head of `policy` (PPO keeps one): the separate critic's, else the one on the
/// policy's trunk.
pub fn head(policy: &Policy) -> TrainResult<&ScoreHead> {
    match &policy.critic {
        Some(c) => Ok(&c.head),
        None => policy
            .head
            .as_ref()
            .ok_or_else(|| TrainError::Invariant("PPO without a value head".into())),
    }
}

/// The trunk the value head reads: the separate critic's model, else the policy's.
pub fn trunk(policy: &Policy) -> &oxrl_models::Transformer {
    match &policy.critic {
        Some(c) => &c.model,
        None => &policy.model,
    }
}

/// Values of every completion token under the current trunk and head (completion-aligned rows),
/// in passes of `chunk` sequences, no graph.
pub fn old_values(
    policy: &Policy,
    groups: &[Group<'_>],
    chunk: usize,
) -> TrainResult<Vec<Vec<f32>>> {
    let head = head(policy)?;
    let device = policy.model.device().clone();
    let mut items = Vec::new();
    for g in groups {
        for c in &g.completions {
            items.push((
                g.prompt.len(),
                c.token_ids.len(),
                Sequence::prompt_completion(&g.prompt, &c.token_ids, None, 0.0),
            ));
        }
    }
    let mut rows = Vec::with_capacity(items.len());
    for part in items.chunks(chunk.max(1)) {
        let seqs: Vec<&Sequence> = part.iter().map(|(_, _, s)| s).collect();
        let batch = pad(&seqs, &device)?;
        let hidden = trunk(policy).last_hidden(
            &batch.ids,
            &batch.lengths,
            TrainForward {
                track: false,
                ..TrainForward::default()
            },
        )?;
        let v = head
            .token_values(&hidden, false)?
            .to_dtype(candle_core::DType::F32)?
            .to_vec2::<f32>()?;
        for ((p, c, _), row) in part.iter().zip(v) {
            rows.push(row[*p..*p + *c].to_vec());
        }
    }
    Ok(rows)
}

/// One sequence's value targets (completion-aligned).
#[derive(Debug, Clone)]
struct Target {
    prompt_len: usize,
    returns: Vec<f32>,
    old_values: Vec<f32>,
}

/// The value targets of a rollout batch, one per training sequence (same order), and the
/// value-loss settings.
#[derive(Debug, Clone)]
pub struct ValueTargets {
    rows: Vec<Target>,
    /// Weight of the value loss.
    pub vf_coef: f64,
    /// ε_v of the clipped value loss.
    pub cliprange_value: f64,
}

impl ValueTargets {
    /// Targets from per-sequence prompt lengths, returns and old values (completion-aligned).
    pub fn new(
        prompt_lens: Vec<usize>,
        returns: Vec<Vec<f32>>,
        old_values: Vec<Vec<f32>>,
        vf_coef: f64,
        cliprange_value: f64,
    ) -> TrainResult<Self> {
        if prompt_lens.len() != returns.len() || returns.len() != old_values.len() {
            return Err(TrainError::Invariant(format!(
                "value targets: {} prompts, {} return rows, {} value rows",
                prompt_lens.len(),
                returns.len(),
                old_values.len()
            )));
        }
        let rows = prompt_lens
            .into_iter()
            .zip(returns.into_iter().zip(old_values))
            .map(|(prompt_len, (returns, old_values))| Target {
                prompt_len,
                returns,
                old_values,
            })
            .collect();
        Ok(Self {
            rows,
            vf_coef,
            cliprange_value,
        })
    }

    /// `(returns, old values)` `[B × T]` for sequences `idx` in a padded batch of width `t`.
    fn tensors(&self, idx: &[usize], t: usize, device: &Device) -> TrainResult<(Tensor, Tensor)> {
        let b = idx.len();
        let mut ret = vec![0f32; b * t];
        let mut old = vec![0f32; b * t];
        for (r, &i) in idx.iter().enumerate() {
            let tg = self
                .rows
                .get(i)
                .ok_or_else(|| TrainError::Invariant(format!("no value target for row {i}")))?;
            for (j, (&g, &v)) in tg.returns.iter().zip(&tg.old_values).enumerate() {
                let col = tg.prompt_len + j;
                if col < t {
                    ret[r * t + col] = g;
                    old[r * t + col] = v;
                }
            }
        }
        Ok((
            Tensor::from_vec(ret, (b, t), device)?,
            Tensor::from_vec(old, (b, t), device)?,
        ))
    }

    /// The clipped value loss of sequences `idx` (the micro-batch `batch`), from the hidden
    /// states of the policy's forward, under the policy loss's aggregation and normalisers.
    pub fn loss(
        &self,
        head: &ScoreHead,
        hidden: &Tensor,
        idx: &[usize],
        batch: &PaddedBatch,
        mode: LossAggregation,
        norm: &AggregationNorm,
    ) -> TrainResult<ValueLoss> {
        let vpreds = head.token_values(hidden, true)?;
        let (_, t) = vpreds.dims2()?;
        let (ret, old) = self.tensors(idx, t, vpreds.device())?;
        let dt = vpreds.dtype();
        Ok(value_loss(
            &vpreds,
            &ret.to_dtype(dt)?,
            &old.to_dtype(dt)?,
            &batch.mask.to_dtype(dt)?,
            self.cliprange_value,
            mode,
            norm,
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::{AdamW, AdamWConfig, LrSchedule, ScheduleConfig};
    use candle_core::DType;

    #[test]
    fn the_value_loss_reaches_every_value_head_parameter_and_the_trunk() {
        let (_d, m) = crate::test_model::load_tiny();
        let value_head = ScoreHead::new(16, DType::F32, &Device::Cpu, 5).unwrap();
        let mut vars = m.model.trainable_vars();
        vars.extend(value_head.vars());
        let policy = Policy {
            optimizer: AdamW::new(vars, AdamWConfig::default()).unwrap(),
            schedule: LrSchedule::new(&ScheduleConfig::default(), 1e-3, 1).unwrap(),
            model: m.model,
            tokenizer: m.tokenizer,
            max_grad_norm: None,
            reference: None,
            head: Some(value_head),
            critic: None,
        };
        let seqs = [
            Sequence::prompt_completion(&[5, 6, 7], &[8, 9], Some(&[-1.0, -1.0]), 0.0),
            Sequence::prompt_completion(&[5], &[10, 11, 12], Some(&[-1.0; 3]), 0.0),
        ];
        let refs: Vec<&Sequence> = seqs.iter().collect();
        let batch = pad(&refs, &Device::Cpu).unwrap();
        let (_, hidden) = policy
            .model
            .token_logprobs_and_hidden(&batch.ids, &batch.lengths, TrainForward::default())
            .unwrap();
        // Returns far from the (small) initial values, wide clip: every token has a gradient.
        let targets = ValueTargets::new(
            vec![3, 1],
            vec![vec![1.0, 2.0], vec![-1.0, 0.5, 3.0]],
            vec![vec![0.0, 0.0], vec![0.0, 0.0, 0.0]],
            0.1,
            10.0,
        )
        .unwrap();
        let vl = targets
            .loss(
                head(&policy).unwrap(),
                &hidden,
                &[0, 1],
                &batch,
                LossAggregation::TokenMean,
                &AggregationNorm::default(),
            )
            .unwrap();
        assert!(vl.loss.to_scalar::<f32>().unwrap() > 0.0);
        let grads = vl.loss.backward().unwrap();
        for (name, v) in head(&policy).unwrap().vars() {
            let g = grads
                .get(v.as_tensor())
                .unwrap_or_else(|| panic!("{name}: no grad"));
            let n = g
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(n > 0.0 && n.is_finite(), "{name}: |g|² = {n}");
        }
        // The shared trunk learns from the critic too.
        let trunk = policy
            .model
            .trainable_vars()
            .into_iter()
            .filter(|(_, v)| {
                grads.get(v.as_tensor()).is_some_and(|g| {
                    g.sqr()
                        .unwrap()
                        .sum_all()
                        .unwrap()
                        .to_scalar::<f32>()
                        .unwrap()
                        > 0.0
                })
            })
            .count();
        assert!(trunk > 0, "no trunk parameter got a value gradient");
    }
}
