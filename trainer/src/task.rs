//! The one place the trainer names the task types (dataset + prompt template + weighted
//! verifiers). When the task definition moves to its own crate, only this file changes.

pub use oxrl_datasets::{Task, TaskConfig};
