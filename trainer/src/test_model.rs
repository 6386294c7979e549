//! The unit tests' tiny model: one layer, hidden 16 (or as asked), vocabulary 300, written in HF
//! layout and loaded through the real loading path.

use oxrl_models::init::{write_random_model, InitSpec};
use oxrl_models::LoadedModel;
use std::path::Path;

/// Writes the tiny model with a trunk of width `hidden` into `dir`.
pub fn write_tiny(dir: &Path, hidden: usize) {
    let spec = InitSpec {
        vocab_size: 300,
        hidden_size: hidden,
        num_layers: 1,
        num_heads: 2,
        num_kv_heads: 1,
        intermediate_size: 32,
        ..InitSpec::default()
    };
    write_random_model(dir, &spec).unwrap();
}

/// The tiny model (hidden 16) loaded from a fresh directory, which the caller keeps alive.
pub fn load_tiny() -> (tempfile::TempDir, LoadedModel) {
    let d = tempfile::tempdir().unwrap();
    write_tiny(d.path(), 16);
    let m = LoadedModel::load(d.path().to_str().unwrap(), &Default::default()).unwrap();
    (d, m)
}
