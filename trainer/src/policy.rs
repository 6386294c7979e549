//! The policy being trained: its model and tokenizer, the AdamW optimizer over its trainable
//! tensors, the learning-rate schedule, (when KL is on) the reference policy: the base model
//! with the LoRA adapters switched off (no copy), or a frozen copy of the initial weights,
//! (reward model, PPO) a score head on the trunk, and (PPO) a separate critic.

use crate::batch::PaddedBatch;
use crate::optim::{AdamW, LrSchedule, OptimError};
use crate::train_error::TrainResult;
use candle_core::backprop::GradStore;
use candle_core::Tensor;
use oxrl_models::{Tokenizer, TrainForward, Transformer};

/// The reference policy of the KL term.
#[derive(Debug)]
pub enum Reference {
    /// The trained model itself with its LoRA adapters off.
    AdaptersOff,
    /// A frozen copy of the initial weights.
    Frozen(Box<Transformer>),
}

impl Reference {
    /// A reference for `model`: the adapters-off base when it has LoRA, else a deep copy.
    pub fn of(model: &Transformer) -> TrainResult<Self> {
        if model.has_lora() {
            return Ok(Reference::AdaptersOff);
        }
        Self::frozen_copy(model)
    }

    /// A frozen deep copy of `model`'s current weights (LoRA adapters merged in), sharing no
    /// tensor with it.
    pub fn frozen_copy(model: &Transformer) -> TrainResult<Self> {
        let copied = model
            .named_tensors(true)?
            .into_iter()
            .map(|(k, t)| Ok((k, t.copy()?)))
            .collect::<candle_core::Result<_>>()?;
        Ok(Reference::Frozen(Box::new(Transformer::from_tensors(
            model.config().clone(),
            copied,
            model.dtype(),
            model.device(),
        )?)))
    }
}

/// What one optimizer step did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepInfo {
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Learning rate used.
    pub lr: f64,
    /// The step was skipped because the gradient norm was not finite.
    pub skipped: bool,
    /// PPO with a separate critic: the critic's gradient norm before its own clip.
    pub critic_grad_norm: Option<f64>,
}

/// The model, tokenizer, optimizer, schedule and reference of a run.
#[derive(Debug)]
pub struct Policy {
    /// The model (its trainable tensors are shared with the optimizer and the engine).
    pub model: Transformer,
    /// Its tokenizer.
    pub tokenizer: Tokenizer,
    /// AdamW over `model.trainable_vars()`.
    pub optimizer: AdamW,
    /// Learning rate per optimizer step.
    pub schedule: LrSchedule,
    /// Gradient-norm clip.
    pub max_grad_norm: Option<f64>,
    /// The KL reference, when KL is on.
    pub reference: Option<Reference>,
    /// The score head on the trunk (reward model; PPO's value head), trained by the same
    /// optimizer; saved as `score_head.safetensors` in checkpoints.
    pub head: Option<crate::score_head::ScoreHead>,
    /// PPO's separate critic (its own model, value head and optimizer), when
    /// `algorithm.ppo.critic = "separate"`; stepped by [`Self::apply`] on its own gradients.
    pub critic: Option<crate::ppo::critic::SeparateCritic>,
}

impl Policy {
    /// Backpropagates `loss`, clips, and steps AdamW at the schedule's learning rate. A
    /// non-finite gradient norm skips the step (reported in [`StepInfo::skipped`]).
    pub fn optimizer_step(&mut self, loss: &Tensor) -> TrainResult<StepInfo> {
        let grads = loss.backward()?;
        self.apply(grads)
    }

    /// Adds the gradients of `loss` to `acc` (gradient accumulation over micro-batches): only
    /// the trainable tensors' gradients are kept, so the graph's intermediates are freed.
    pub fn accumulate(&self, acc: &mut Option<GradStore>, loss: &Tensor) -> TrainResult<()> {
        let mut grads = loss.backward()?;
        let critic_vars = self.critic.iter().flat_map(|c| c.optimizer.vars());
        let vars: Vec<&candle_core::Var> = self.optimizer.vars().chain(critic_vars).collect();
        let mut kept = match acc.take() {
            Some(a) => a,
            None => {
                let mut fresh = GradStore::default();
                for v in &vars {
                    if let Some(g) = grads.remove(v.as_tensor()) {
                        fresh.insert(v.as_tensor(), g);
                    }
                }
                *acc = Some(fresh);
                return Ok(());
            }
        };
        for v in &vars {
            if let Some(g) = grads.remove(v.as_tensor()) {
                let sum = match kept.get(v.as_tensor()) {
                    Some(a) => (a + g)?,
                    None => g,
                };
                kept.insert(v.as_tensor(), sum);
            }
        }
        *acc = Some(kept);
        Ok(())
    }

    /// Clips `grads` and steps AdamW at the schedule's learning rate. A non-finite gradient
    /// norm skips the step (reported in [`StepInfo::skipped`]). A separate critic takes its
    /// own step on its gradients in `grads` ([`StepInfo::critic_grad_norm`]).
    pub fn apply(&mut self, mut grads: GradStore) -> TrainResult<StepInfo> {
        let critic_grad_norm = match self.critic.as_mut() {
            Some(c) => Some(c.apply(&mut grads)?.grad_norm),
            None => None,
        };
        let lr = self.schedule.lr_at(self.optimizer.step_count());
        let grad_norm = match self.max_grad_norm {
            Some(max) => match self.optimizer.clip_grad_norm(&mut grads, max) {
                Ok(n) => n,
                Err(OptimError::NonFiniteGradNorm { norm }) => {
                    return Ok(StepInfo {
                        grad_norm: norm,
                        lr,
                        skipped: true,
                        critic_grad_norm,
                    })
                }
                Err(e) => return Err(e.into()),
            },
            None => crate::optim::grad_norm(self.optimizer.vars(), &grads)?,
        };
        self.optimizer.step(&grads, lr)?;
        Ok(StepInfo {
            grad_norm,
            lr,
            skipped: false,
            critic_grad_norm,
        })
    }

    /// Per-token logprobs of `batch` under the reference (no graph) at the sampling
    /// `temperature` (as TRL and verl take them), when there is a reference.
    pub fn reference_logprobs(
        &self,
        batch: &PaddedBatch,
        temperature: f32,
    ) -> TrainResult<Option<Tensor>> {
        let opts = |adapters| TrainForward {
            track: false,
            adapters,
            entropy: false,
            temperature,
            ..TrainForward::default()
        };
        Ok(match &self.reference {
            None => None,
            Some(Reference::AdaptersOff) => Some(
                self.model
                    .token_logprobs(&batch.ids, &batch.lengths, opts(false))?
                    .logprobs,
            ),
            Some(Reference::Frozen(m)) => Some(
                m.token_logprobs(&batch.ids, &batch.lengths, opts(true))?
                    .logprobs,
            ),
        })
    }
}
