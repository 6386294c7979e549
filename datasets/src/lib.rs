//! oxrl-datasets: dataset loading (JSONL, JSON, CSV, Parquet, local HF snapshots), field mapping,
//! prompt rendering, seeded shuffling and splits, synthetic task generators, and task definitions
//! (dataset + prompt template + verifiers) read from TOML.
