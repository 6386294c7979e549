//! oxrl-datasets: dataset loading (JSONL, JSON, CSV, Parquet, local HF snapshots), field mapping,
//! prompt rendering, seeded shuffling and splits, and synthetic task generators. It knows nothing
//! of verifiers: the task definition (dataset + template + verifiers) is in `oxrl-task`.
#![forbid(unsafe_code)]

pub mod dataset;
pub mod error;
pub mod example;
pub mod formats;
pub mod mapping;
pub mod shuffle;
pub mod source;
pub mod synthetic;
pub mod template;

pub use dataset::{load, load_split, Dataset, DatasetConfig, SplitDataset};
pub use error::{DatasetError, Result};
pub use example::{ChatMessage, Example, Prompt, RecordKind};
pub use formats::{Format, RawRow, ReadOptions, RowLocation};
pub use mapping::FieldMapping;
pub use shuffle::{EpochSampler, EvalSize, SplitMix64};
pub use template::{PromptConfig, PromptFormat, PromptTemplate};
