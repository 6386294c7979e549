//! Checkpoints: the model in HF layout (`config.json`, `model.safetensors` with LoRA merged,
//! tokenizer files), so `oxrl serve`, transformers and vLLM load a checkpoint as is, plus the
//! trainer state needed to continue exactly:
//!
//! - `trainer_state.json`: step, data position, policy version, seed, algorithm, the KL
//!   controller and BAPO's bounds ([`TrainerState`]);
//! - `optimizer.safetensors`: the AdamW moments and step count (the score head's too);
//! - `score_head.safetensors` (reward model, PPO): the linear score / value head on the trunk
//!   ([`crate::score_head`]), written by the loop next to `model.safetensors`;
//! - `trainable.safetensors`: the trained tensors under their training names (LoRA adapters; the
//!   full weights are already in `model.safetensors` otherwise);
//! - `train.toml`: the configuration the run used, for the record.
//!
//! All randomness of a run is derived from `(seed, step, …)`, so the step *is* the RNG state.
//!
//! Writes are atomic: everything goes into a hidden temporary sibling directory, which is renamed
//! to `step-NNNNNN` only when complete; then the `latest` pointer file is replaced (also by
//! rename). A run killed mid-write leaves the previous checkpoint and pointer intact, and the
//! leftover temporary directory is removed by the next run.

use crate::train_error::{TrainError, TrainResult};
use oxrl_models::{Tokenizer, Transformer};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Version of the trainer-state format.
pub const STATE_FORMAT: u32 = 1;
/// Name of the pointer file holding the newest checkpoint's directory name.
pub const LATEST: &str = "latest";
const STATE_FILE: &str = "trainer_state.json";
/// File of the optimizer state inside a checkpoint.
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
const TRAINABLE_FILE: &str = "trainable.safetensors";

/// What the loop needs, besides weights and optimizer, to continue a run exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    /// Format version ([`STATE_FORMAT`]).
    pub format: u32,
    /// `sft`, `grpo`, `ppo`, `reward_model`, `dpo` or `online_dpo`.
    pub algorithm: String,
    /// Steps completed.
    pub step: u64,
    /// Training examples consumed (the dataset sampler's position, across epochs).
    pub data_position: u64,
    /// Policy version the engine serves after this step.
    pub policy_version: u64,
    /// The run's seed.
    pub seed: u64,
    /// Whether the trained tensors are LoRA adapters.
    pub lora: bool,
    /// The KL-in-reward controller (its β moves when adaptive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kl_controller: Option<crate::kl::controller::KlController>,
    /// BAPO's clipping bounds from the last update (carried when `bapo.restart` is false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bapo: Option<crate::policy_loss::bapo::BapoState>,
}

/// Directory name of the checkpoint after `step`.
pub fn step_dir_name(step: u64) -> String {
    format!("step-{step:06}")
}

/// Files the caller writes into the checkpoint before it is published (the optimizer state).
pub type ExtraWriter<'a> = &'a dyn Fn(&Path) -> TrainResult<()>;

/// Writes a checkpoint `root/step-NNNNNN` atomically and points `root/latest` at it; returns its
/// path. `config_toml` is stored as `train.toml`.
pub fn save(
    root: &Path,
    model: &Transformer,
    tokenizer: &Tokenizer,
    state: &TrainerState,
    config_toml: &str,
    extra: ExtraWriter<'_>,
) -> TrainResult<PathBuf> {
    std::fs::create_dir_all(root).map_err(|e| TrainError::io(root, e))?;
    let name = step_dir_name(state.step);
    let dir = root.join(&name);
    let tmp = root.join(format!(".{name}.tmp-{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
    let result = write_contents(&tmp, model, tokenizer, state, config_toml, extra)
        .and_then(|()| publish(&tmp, &dir))
        .and_then(|()| write_latest(root, &name));
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result.map(|()| dir)
}

fn write_contents(
    tmp: &Path,
    model: &Transformer,
    tokenizer: &Tokenizer,
    state: &TrainerState,
    config_toml: &str,
    extra: ExtraWriter<'_>,
) -> TrainResult<()> {
    let mut cfg = model.config().to_hf_json();
    cfg["torch_dtype"] = serde_json::json!(match model.dtype() {
        candle_core::DType::BF16 => "bfloat16",
        candle_core::DType::F16 => "float16",
        candle_core::DType::F64 => "float64",
        _ => "float32",
    });
    write_text(&tmp.join("config.json"), &pretty(&cfg)?)?;
    oxrl_models::weights::save_file(&model.named_tensors(true)?, &tmp.join("model.safetensors"))?;
    crate::fault::pause_at("checkpoint-write", state.step, None);
    tokenizer.save(tmp)?;
    if state.lora {
        let map = model
            .trainable_vars()
            .into_iter()
            .map(|(n, v)| (n, v.as_detached_tensor()))
            .collect();
        oxrl_models::weights::save_file(&map, &tmp.join(TRAINABLE_FILE))?;
    }
    extra(tmp)?;
    write_text(&tmp.join("train.toml"), config_toml)?;
    // The state file last: a directory with a state file is complete.
    let state_json = serde_json::to_value(state)
        .map_err(|e| TrainError::Invariant(format!("trainer state: {e}")))?;
    write_text(&tmp.join(STATE_FILE), &pretty(&state_json)?)
}

fn pretty(v: &serde_json::Value) -> TrainResult<String> {
    serde_json::to_string_pretty(v).map_err(|e| TrainError::Invariant(format!("json: {e}")))
}

fn write_text(path: &Path, text: &str) -> TrainResult<()> {
    std::fs::write(path, text).map_err(|e| TrainError::io(path, e))
}

/// Renames `tmp` to `dir`, replacing an older checkpoint of the same step.
fn publish(tmp: &Path, dir: &Path) -> TrainResult<()> {
    if dir.exists() {
        let old = dir.with_extension(format!("old-{}", std::process::id()));
        std::fs::rename(dir, &old).map_err(|e| TrainError::io(dir, e))?;
        std::fs::rename(tmp, dir).map_err(|e| TrainError::io(dir, e))?;
        std::fs::remove_dir_all(&old).map_err(|e| TrainError::io(&old, e))
    } else {
        std::fs::rename(tmp, dir).map_err(|e| TrainError::io(dir, e))
    }
}

fn write_latest(root: &Path, name: &str) -> TrainResult<()> {
    let tmp = root.join(format!(".{LATEST}.tmp-{}", std::process::id()));
    write_text(&tmp, &format!("{name}\n"))?;
    let dst = root.join(LATEST);
    std::fs::rename(&tmp, &dst).map_err(|e| TrainError::io(&dst, e))
}

/// The newest checkpoint under `root` (the `latest` pointer), if any.
pub fn latest(root: &Path) -> Option<PathBuf> {
    let name = std::fs::read_to_string(root.join(LATEST)).ok()?;
    let dir = root.join(name.trim());
    dir.join(STATE_FILE).is_file().then_some(dir)
}

/// Removes leftover temporary directories of interrupted writes.
pub fn clean_temporaries(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && name.contains(".tmp-") {
            let _ = if e.path().is_dir() {
                std::fs::remove_dir_all(e.path())
            } else {
                std::fs::remove_file(e.path())
            };
        }
    }
}

/// Keeps the newest `keep` checkpoints under `root` (0 = keep all).
pub fn prune(root: &Path, keep: usize) -> TrainResult<()> {
    if keep == 0 {
        return Ok(());
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .map_err(|e| TrainError::io(root, e))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("step-"))
                && p.join(STATE_FILE).is_file()
        })
        .collect();
    dirs.sort();
    let drop = dirs.len().saturating_sub(keep);
    for d in &dirs[..drop] {
        std::fs::remove_dir_all(d).map_err(|e| TrainError::io(d, e))?;
    }
    Ok(())
}

/// Reads a checkpoint's trainer state.
pub fn load_state(dir: &Path) -> TrainResult<TrainerState> {
    let path = dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| TrainError::checkpoint(dir, format!("cannot read {STATE_FILE}: {e}")))?;
    let state: TrainerState = serde_json::from_str(&text)
        .map_err(|e| TrainError::checkpoint(dir, format!("{STATE_FILE}: {e}")))?;
    if state.format != STATE_FORMAT {
        return Err(TrainError::checkpoint(
            dir,
            format!(
                "state format {} (this oxrl reads {STATE_FORMAT})",
                state.format
            ),
        ));
    }
    Ok(state)
}

/// Sets every trainable tensor of `model` from the checkpoint (`trainable.safetensors` for LoRA,
/// `model.safetensors` otherwise). Every trainable name must be present with its shape.
pub fn restore_trainable(dir: &Path, model: &Transformer, lora: bool) -> TrainResult<()> {
    let file = dir.join(if lora {
        TRAINABLE_FILE
    } else {
        "model.safetensors"
    });
    let map = oxrl_models::weights::load_file(&file, model.dtype(), model.device())?;
    // Packed projections (q/k/v, gate/up) are packed from their HF tensors here.
    model.load_trainable(&map).map_err(|e| match e {
        oxrl_models::ModelError::MissingTensor { name, .. } => {
            TrainError::checkpoint(dir, format!("{} has no tensor `{name}`", file.display()))
        }
        other => TrainError::checkpoint(dir, format!("{}: {other}", file.display())),
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> (tempfile::TempDir, Transformer, Tokenizer) {
        let (d, m) = crate::test_model::load_tiny();
        (d, m.model, m.tokenizer)
    }

    fn state(step: u64) -> TrainerState {
        TrainerState {
            format: STATE_FORMAT,
            algorithm: "sft".into(),
            step,
            data_position: 8 * step,
            policy_version: step,
            seed: 3,
            lora: false,
            kl_controller: None,
            bapo: None,
        }
    }

    #[test]
    fn a_failed_write_leaves_the_previous_checkpoint_and_pointer() {
        let (_d, model, tok) = tiny();
        let root = tempfile::tempdir().unwrap();
        let ok: ExtraWriter<'_> = &|p: &Path| {
            std::fs::write(p.join(OPTIMIZER_FILE), b"x").map_err(|e| TrainError::io(p, e))
        };
        let first = save(root.path(), &model, &tok, &state(1), "seed = 3\n", ok).unwrap();
        assert_eq!(latest(root.path()).unwrap(), first);
        assert_eq!(load_state(&first).unwrap(), state(1));
        // The HF layout loads as a model.
        oxrl_models::LoadedModel::load(first.to_str().unwrap(), &Default::default()).unwrap();
        let failing: ExtraWriter<'_> =
            &|_: &Path| Err(TrainError::Invariant("disk full (simulated)".into()));
        let err = save(root.path(), &model, &tok, &state(2), "", failing).unwrap_err();
        assert!(err.to_string().contains("disk full"), "{err}");
        assert!(!root.path().join(step_dir_name(2)).exists());
        assert_eq!(latest(root.path()).unwrap(), first);
        let names: Vec<String> = std::fs::read_dir(root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.contains(".tmp-")), "{names:?}");
    }

    #[test]
    fn restore_sets_the_weights_and_prune_keeps_the_newest() {
        let (_d, model, tok) = tiny();
        let root = tempfile::tempdir().unwrap();
        let none: ExtraWriter<'_> = &|_: &Path| Ok(());
        let dir = save(root.path(), &model, &tok, &state(1), "", none).unwrap();
        let (name, var) = model.trainable_vars().remove(0);
        let before = var
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        var.set(&var.as_tensor().zeros_like().unwrap()).unwrap();
        restore_trainable(&dir, &model, false).unwrap();
        let after = var
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(before, after, "{name}");
        for s in 2..=4 {
            save(root.path(), &model, &tok, &state(s), "", none).unwrap();
        }
        std::fs::create_dir_all(root.path().join(".step-000009.tmp-1")).unwrap();
        clean_temporaries(root.path());
        prune(root.path(), 2).unwrap();
        let mut names: Vec<String> = std::fs::read_dir(root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["latest", "step-000003", "step-000004"]);
    }
}
