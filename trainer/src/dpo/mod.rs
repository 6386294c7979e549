//! The DPO family in the loop: offline DPO on preference pairs ([`offline`]) and online DPO on
//! pairs built each step from sampled completions ranked by the verifiers ([`online`]), both on
//! the golden-tested losses of [`crate::preference`] (TRL's `loss_type`, `beta`,
//! `label_smoothing`, … under `[algorithm.preference_loss]`).
//!
//! The reference policy ([`reference`], `[algorithm.dpo] reference`) is a frozen copy of the
//! initial weights, or — with LoRA — the trained model itself with its adapters off, so no copy
//! is kept. Reference log-probs are always computed without an autograd graph.
//!
//! Resume: the `copy` reference is rebuilt at set-up from the base model before a checkpoint's
//! trainable tensors are restored, so it is the initial weights again and checkpoints carry no
//! second model; `adapters_off` needs nothing. Every other input of a step is the data position
//! and seeds derived from the step, so a resumed run repeats the uninterrupted one bit for bit.

pub mod config;
pub mod loss;
pub mod offline;
pub mod online;
pub mod pairs;

pub use config::{is_dpo, DpoConfig, ReferenceKind};

use crate::policy::Reference;
use crate::train_error::{TrainError, TrainResult};
use oxrl_models::Transformer;

/// The reference policy of kind `kind` for `model` (before any training step).
pub fn reference(kind: ReferenceKind, model: &Transformer) -> TrainResult<Reference> {
    match kind {
        ReferenceKind::Copy => Reference::frozen_copy(model),
        ReferenceKind::AdaptersOff if model.has_lora() => Ok(Reference::AdaptersOff),
        ReferenceKind::AdaptersOff => Err(TrainError::Invariant(
            "reference = \"adapters_off\" on a model without LoRA adapters".into(),
        )),
    }
}
