//! oxrl-task: where datasets and verifiers meet. A task is a dataset (with its field mapping and
//! split), a prompt template and weighted verifiers, read from a `[task]` TOML table
//! ([`TaskConfig`]); [`eval`] joins completions with the task's examples and aggregates rewards
//! and accuracy (used by `oxrl verify` and the trainer's evaluation).
#![forbid(unsafe_code)]

pub mod config;
pub mod error;
pub mod eval;

pub use config::{Task, TaskConfig};
pub use error::{Result, TaskError};
pub use eval::{verify_example, JoinError, Joiner, Judge, Summary};
