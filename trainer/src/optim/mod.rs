//! The optimizer side of training: oxrl's AdamW, gradient clipping and learning-rate schedules.
//!
//! candle's own AdamW keeps its moments in the parameter dtype, has one setting for every
//! parameter and cannot save its state; this one keeps f32 state (and f32 master weights for
//! bf16/f16 parameters), decides weight decay per parameter by name, and saves/loads its state
//! bit-exactly. It follows `torch.optim.AdamW` step for step, checked on a recorded trajectory
//! (`scripts/adamw_reference.py`, `trainer/tests/adamw.rs`).
//!
//! A training step is:
//! ```ignore
//! let mut grads = loss.backward()?;
//! let norm = clip_grad_norm(opt.vars(), &mut grads, max_norm)?; // NonFiniteGradNorm → skip
//! opt.step(&grads, schedule.lr_at(opt.step_count()))?;
//! ```
//!
//! - [`adamw`] — [`AdamW`], [`AdamWConfig`].
//! - [`param_groups`] — the no-decay patterns and group rules.
//! - [`grad_clip`] — [`clip_grad_norm`], [`grad_norm`].
//! - [`schedule`] — [`LrSchedule`], [`ScheduleConfig`], [`ScheduleKind`].
//! - [`state`] — the state-file format.
//! - [`error`] — [`OptimError`].

pub mod adamw;
pub mod error;
pub mod grad_clip;
pub mod param_groups;
pub mod schedule;
pub mod state;

pub use adamw::{AdamW, AdamWConfig, ParamInfo};
pub use error::{OptimError, Result};
pub use grad_clip::{clip_grad_norm, grad_norm};
pub use param_groups::{GroupRule, DEFAULT_NO_DECAY};
pub use schedule::{LrSchedule, ScheduleConfig, ScheduleKind};
