//! PPO's separate critic (`algorithm.ppo.critic = "separate"`): a model of its own with a value
//! head, trained by its own AdamW on the value loss only, as in TRL (`value_model`), verl and
//! OpenRLHF (the critic worker). It starts as a copy of the policy's initial weights (LoRA
//! merged, every tensor trainable; verl's default `critic.model.path` is the actor's) and a
//! fresh value head, and learns at `algorithm.ppo.critic_lr` (default `optim.lr`) on the
//! policy's schedule shape, with the policy's gradient-norm clip applied to its own gradients.
//!
//! In a checkpoint it is the directory `critic/`: `config.json` and `model.safetensors` in HF
//! layout (loadable as a model), `score_head.safetensors` and `optimizer.safetensors`, so a
//! resumed run continues exactly.

use crate::optim::{AdamW, AdamWConfig, LrSchedule, OptimError, ScheduleConfig};
use crate::policy::StepInfo;
use crate::score_head::{ScoreHead, SCORE_HEAD_FILE};
use crate::train_error::{TrainError, TrainResult};
use candle_core::backprop::GradStore;
use oxrl_models::Transformer;
use std::path::Path;

/// The critic's directory inside a checkpoint.
pub const CRITIC_DIR: &str = "critic";
const OPTIMIZER_FILE: &str = "optimizer.safetensors";

/// A critic model with its value head, optimizer and learning-rate schedule.
#[derive(Debug)]
pub struct SeparateCritic {
    /// The critic's trunk (its own weights, all trainable).
    pub model: Transformer,
    /// The value head on that trunk.
    pub head: ScoreHead,
    /// AdamW over the trunk's and the head's tensors.
    pub optimizer: AdamW,
    /// Learning rate per optimizer step.
    pub schedule: LrSchedule,
    /// Gradient-norm clip of the critic's own gradients.
    pub max_grad_norm: Option<f64>,
}

/// How to build a [`SeparateCritic`].
#[derive(Debug, Clone)]
pub struct CriticSettings<'a> {
    /// AdamW settings (the policy's).
    pub adamw: AdamWConfig,
    /// Schedule shape (the policy's).
    pub schedule: &'a ScheduleConfig,
    /// Peak learning rate.
    pub lr: f64,
    /// Optimizer steps of the run.
    pub total_steps: u64,
    /// Gradient-norm clip.
    pub max_grad_norm: Option<f64>,
    /// Seed of the value head's initialisation.
    pub head_seed: u64,
}

impl SeparateCritic {
    /// A critic initialised from `policy`'s current weights (LoRA merged) and a fresh value
    /// head. It shares no tensor with the policy.
    pub fn new(policy: &Transformer, s: &CriticSettings<'_>) -> TrainResult<Self> {
        let copied = policy
            .named_tensors(true)?
            .into_iter()
            .map(|(k, t)| Ok((k, t.copy()?)))
            .collect::<candle_core::Result<_>>()?;
        let model = Transformer::from_tensors(
            policy.config().clone(),
            copied,
            policy.dtype(),
            policy.device(),
        )?;
        let head = ScoreHead::new(
            model.config().hidden_size,
            model.dtype(),
            model.device(),
            s.head_seed,
        )?;
        let mut vars = model.trainable_vars();
        vars.extend(head.vars());
        let optimizer = AdamW::new(vars, s.adamw.clone())?;
        let schedule = LrSchedule::new(s.schedule, s.lr, s.total_steps)?;
        Ok(Self {
            model,
            head,
            optimizer,
            schedule,
            max_grad_norm: s.max_grad_norm,
        })
    }

    /// Clips the critic's gradients in `grads` and steps its AdamW; a non-finite gradient norm
    /// skips the step (reported, as for the policy).
    pub fn apply(&mut self, grads: &mut GradStore) -> TrainResult<StepInfo> {
        let lr = self.schedule.lr_at(self.optimizer.step_count());
        let grad_norm = match self.max_grad_norm {
            Some(max) => match self.optimizer.clip_grad_norm(grads, max) {
                Ok(n) => n,
                Err(OptimError::NonFiniteGradNorm { norm }) => {
                    return Ok(StepInfo {
                        grad_norm: norm,
                        lr,
                        skipped: true,
                        critic_grad_norm: None,
                    })
                }
                Err(e) => return Err(e.into()),
            },
            None => crate::optim::grad_norm(self.optimizer.vars(), grads)?,
        };
        self.optimizer.step(grads, lr)?;
        Ok(StepInfo {
            grad_norm,
            lr,
            skipped: false,
            critic_grad_norm: None,
        })
    }

    /// Writes the critic into `checkpoint/critic/` (HF layout, value head, optimizer).
    pub fn save(&self, checkpoint: &Path) -> TrainResult<()> {
        let dir = checkpoint.join(CRITIC_DIR);
        oxrl_models::save::save_model(&self.model, &dir, None)?;
        self.head.save(&dir.join(SCORE_HEAD_FILE))?;
        self.optimizer.save(dir.join(OPTIMIZER_FILE))?;
        Ok(())
    }

    /// Sets the critic's weights, value head and optimizer state from `checkpoint/critic/`.
    pub fn restore(&mut self, checkpoint: &Path) -> TrainResult<()> {
        let dir = checkpoint.join(CRITIC_DIR);
        if !dir.is_dir() {
            return Err(TrainError::checkpoint(
                checkpoint,
                format!(
                    "no `{CRITIC_DIR}/` directory: was it written by a run with \
                     algorithm.ppo.critic = \"separate\"?"
                ),
            ));
        }
        crate::checkpoint::restore_trainable(&dir, &self.model, false)?;
        self.head.restore(&dir.join(SCORE_HEAD_FILE))?;
        self.optimizer.load(dir.join(OPTIMIZER_FILE))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn critic() -> (tempfile::TempDir, Transformer, SeparateCritic) {
        let (d, m) = crate::test_model::load_tiny();
        let schedule = ScheduleConfig::default();
        let settings = CriticSettings {
            adamw: AdamWConfig::default(),
            schedule: &schedule,
            lr: 1e-3,
            total_steps: 4,
            max_grad_norm: Some(1.0),
            head_seed: 3,
        };
        let c = SeparateCritic::new(&m.model, &settings).unwrap();
        (d, m.model, c)
    }

    #[test]
    fn the_critic_is_a_copy_that_shares_no_tensor_and_round_trips() {
        let (_d, policy, mut c) = critic();
        let (pt, ct) = (
            policy.named_tensors(false).unwrap(),
            c.model.named_tensors(false).unwrap(),
        );
        let name = "model.layers.0.mlp.down_proj.weight";
        let v = |t: &candle_core::Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(v(&pt[name]), v(&ct[name]));
        // Moving the critic leaves the policy as it was.
        let (_, var) = c
            .model
            .trainable_vars()
            .into_iter()
            .find(|(n, _)| n.contains("down_proj"))
            .unwrap();
        var.set(&(var.as_tensor() + 1.0).unwrap()).unwrap();
        assert_eq!(v(&policy.named_tensors(false).unwrap()[name]), v(&pt[name]));
        // Save, change, restore: the saved weights come back.
        let ckpt = tempfile::tempdir().unwrap();
        c.save(ckpt.path()).unwrap();
        let saved = v(&c.model.named_tensors(false).unwrap()[name]);
        var.set(&(var.as_tensor() * 0.0).unwrap()).unwrap();
        c.restore(ckpt.path()).unwrap();
        assert_eq!(v(&c.model.named_tensors(false).unwrap()[name]), saved);
        assert!(ckpt.path().join(CRITIC_DIR).join("config.json").is_file());
    }

    #[test]
    fn a_checkpoint_without_a_critic_is_a_clear_error() {
        let (_d, _p, mut c) = critic();
        let empty = tempfile::tempdir().unwrap();
        let err = c.restore(empty.path()).unwrap_err().to_string();
        assert!(err.contains("critic") && err.contains("separate"), "{err}");
    }
}
