//! oxrl-verifiers: the [`Verifier`] trait, its registry, the built-in verifiers, external-process and
//! HTTP plugins; the `code` verifier runs model-written programs in `oxrl-sandbox` (re-exported
//! as [`sandbox`] on Linux).
//!
//! Design: a verifier is a pure function from `(example, completions of one prompt)` to one
//! [`Score`] per completion. It never panics and never fails the batch: every problem (a crash, a
//! timeout, malformed output) becomes a `Score` with reward 0 and `error` set, so a bad completion
//! or a broken plugin cannot end a training run.
#![forbid(unsafe_code)]

pub mod builtin;
#[cfg(target_os = "linux")]
pub mod code;
pub mod efficiency;
pub mod error;
pub mod extract;
pub mod math;
pub mod plugin;
pub mod registry;
#[cfg(target_os = "linux")]
pub use oxrl_sandbox as sandbox;
pub mod tool;
pub mod verifier;

pub use error::VerifierError;
pub use math::{answers_equivalent, extract_answer, MathOptions, MathVerifier};
pub use plugin::{CommandConfig, CommandVerifier, HttpConfig, HttpVerifier};
pub use registry::{
    check_specs, BuildContext, Factory, Registry, VerifierSpec, WeightedMember, WeightedVerifiers,
};
pub use tool::ToolCallVerifier;
pub use verifier::{Group, Score, Verifier, VerifyExample};
