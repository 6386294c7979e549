//! oxrl-datasets: dataset loading (JSONL, JSON, CSV, Parquet, local HF snapshots), field mapping,
//! prompt rendering, seeded shuffling and splits, synthetic task generators, and task definitions
//! (dataset + prompt template + verifiers) read from TOML.

pub mod dataset;
pub mod error;
pub mod example;
pub mod formats;
pub mod mapping;
pub mod shuffle;
pub mod source;
pub mod synthetic;
pub mod task;
pub mod template;

pub use dataset::{load, load_split, Dataset, DatasetConfig, SplitDataset};
pub use error::{DatasetError, Result};
pub use example::{ChatMessage, Example, Prompt, RecordKind};
pub use formats::{Format, RawRow, ReadOptions, RowLocation};
pub use mapping::FieldMapping;
pub use shuffle::{EpochSampler, EvalSize, SplitMix64};
pub use task::{Task, TaskConfig};
pub use template::{PromptConfig, PromptFormat, PromptTemplate};
