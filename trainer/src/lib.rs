//! oxrl-trainer: post-training algorithms (SFT, GRPO family, PPO, DPO family, reward models), their
//! losses, advantage and KL estimators, the optimizer, checkpoints and weight sync.
//!
//! Not built yet: the trainer is its own issue. This crate exists so the workspace has its final shape.
