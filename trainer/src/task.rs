//! The one place the trainer names the task types (dataset + prompt template + weighted
//! verifiers, defined in `oxrl-task`), so a move of those types changes only this file.

pub use oxrl_task::{verify_example, Judge, Task, TaskConfig};
