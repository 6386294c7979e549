//! oxrl-trainer: post-training algorithms (SFT, GRPO family, PPO, DPO family, reward models), their
//! losses, advantage and KL estimators, the optimizer, checkpoints and weight sync.
//!
//! # Design
//! The math is one set of functions on candle tensors, generic over the dtype: the trainer calls
//! them in f32 (bf16 on GPU) under autograd, and `oxrl loss` calls the very same functions in f64
//! on the golden cases of TRL and verl (`cases`). There is no second, "reference" copy of a
//! formula anywhere. Every name a TRL or verl user knows resolves to exactly what that anchor
//! computes; where the two disagree, both are offered under distinct oxrl names
//! (`docs/losses.md`).
//!
//! - [`masked`]: masked sums, means and whitening over `[B × T]` completion tensors.
//! - [`aggregation`]: turning a per-token loss matrix into a scalar (token-mean, seq-mean-…).
//! - [`advantages`]: group-normalised (GRPO, Dr.GRPO, BNPO), leave-one-out, REINFORCE++, GAE, ….
//! - [`policy_loss`]: clipped surrogates (PPO, DAPO, GSPO, dual clip), CISPO, SAPO, …, BAPO.
//! - [`kl`]: KL estimators (k1, abs, k2, k3, low-var), in the loss or in the reward, controllers.
//! - [`value_loss`], [`entropy`]: the PPO critic loss and the entropy term.
//! - [`preference`]: DPO-family losses and the Bradley–Terry reward-model loss.
//! - [`optim`]: AdamW with f32 state and decay groups, gradient clipping, LR schedules.
//! - [`cases`]: reads TRL/verl-style case files and evaluates them (`oxrl loss`).
#![forbid(unsafe_code)]

pub mod advantages;
pub mod aggregation;
pub mod cases;
pub mod entropy;
pub mod error;
pub mod kl;
pub mod masked;
pub mod optim;
pub mod policy_loss;
pub mod preference;
pub mod value_loss;

// The training loop (`oxrl train`).
pub mod batch;
pub mod checkpoint;
pub mod config;
pub mod dpo;
pub mod eval;
pub mod fault;
pub mod grpo;
pub mod metrics;
pub mod model_verifier;
pub mod pipeline;
pub mod plot;
pub mod policy;
pub mod ppo;
pub mod prompts;
pub mod reward;
pub mod reward_model;
pub mod score_head;
pub mod seeds;
pub mod sft;
pub mod task;
#[cfg(test)]
mod test_model;
pub mod train_error;
pub mod train_loop;

pub use error::{MathError, Result};
