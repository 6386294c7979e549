//! Serving the policy being trained (`oxrl serve --watch DIR`): find the newest complete checkpoint
//! of a training run and load each new one through the same atomic, versioned path as
//! `POST /v1/weights` ([`super::routes_weights::load_path`], then
//! [`EngineHandle::update_weights`](crate::engine::EngineHandle::update_weights)).
//!
//! The trainer writes `checkpoints/step-NNNNNN/` (HF layout plus `trainer_state.json`, written
//! last) into a temporary sibling directory, renames it into place, then replaces the
//! `checkpoints/latest` pointer file (see `oxrl_trainer::checkpoint`). A watcher therefore reads
//! the pointer; without one it takes the highest `step-*` directory that holds
//! `trainer_state.json`. A checkpoint that cannot be loaded (unreadable or truncated safetensors,
//! a missing tensor, another architecture, a non-finite value) is skipped with a warning and the
//! old weights keep serving; it is not retried unless it is written again. Each loaded checkpoint
//! bumps the policy version by one, exactly like one `POST /v1/weights`.
//!
//! This crate does not depend on the trainer, so the layout is restated here; the end-to-end
//! test `tests/serve_watch.rs` writes its checkpoints with the trainer's own writer.

use super::routes_weights::load_path;
use super::state::AppState;
use oxrl_models::weights::TensorMap;
use oxrl_models::{ModelConfig, Transformer};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Name of the pointer file holding the newest checkpoint's directory name.
pub const LATEST: &str = "latest";
/// The file a checkpoint directory gets last; its presence marks the checkpoint complete.
pub const STATE_FILE: &str = "trainer_state.json";
/// Prefix of checkpoint directory names (`step-000010`).
pub const STEP_PREFIX: &str = "step-";

/// A checkpoint directory found under a watched folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The checkpoint directory.
    pub dir: PathBuf,
    /// The step in its name (`step-000010` → 10), when it has one.
    pub step: Option<u64>,
    /// Modification times of the directory and its weights: a checkpoint written again under
    /// the same name is a new checkpoint.
    stamp: (Option<SystemTime>, Option<SystemTime>),
}

impl Checkpoint {
    fn at(dir: PathBuf) -> Self {
        let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        let stamp = (mtime(&dir), mtime(&dir.join("model.safetensors")));
        let step = dir
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix(STEP_PREFIX))
            .and_then(|s| s.parse().ok());
        Self { dir, step, stamp }
    }
}

impl std::fmt::Display for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.dir.display())
    }
}

/// The newest checkpoint under `dir`: a run's output folder (its `checkpoints/` is searched) or a
/// checkpoints folder. The `latest` pointer wins when it names a directory with a `config.json`;
/// otherwise the highest `step-*` directory holding `trainer_state.json`. A multi-stage run's
/// folder (`[[stages]]`: each stage writes `dir/NAME/checkpoints/`) gives the newest checkpoint
/// of the stage that wrote last, so one watcher follows the whole run (SFT, then GRPO).
pub fn newest_checkpoint(dir: &Path) -> Option<Checkpoint> {
    if let Some(c) = [dir.to_path_buf(), dir.join("checkpoints")]
        .into_iter()
        .find_map(|root| newest_in(&root))
    {
        return Some(c);
    }
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter_map(|e| newest_in(&e.path().join("checkpoints")))
        .max_by_key(|c| c.stamp.0)
}

fn newest_in(root: &Path) -> Option<Checkpoint> {
    if let Ok(name) = std::fs::read_to_string(root.join(LATEST)) {
        let name = name.trim();
        let d = root.join(name);
        if !name.is_empty() && d.join("config.json").is_file() {
            return Some(Checkpoint::at(d));
        }
    }
    std::fs::read_dir(root)
        .ok()?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let step: u64 = name.strip_prefix(STEP_PREFIX)?.parse().ok()?;
            e.path()
                .join(STATE_FILE)
                .is_file()
                .then(|| (step, e.path()))
        })
        .max_by_key(|(step, _)| *step)
        .map(|(_, p)| Checkpoint::at(p))
}

/// Fields of two model configs that must agree for one's weights to replace the other's.
fn same_architecture(served: &ModelConfig, ckpt: &ModelConfig) -> Result<(), String> {
    macro_rules! check {
        ($($f:ident),*) => {$(
            if served.$f != ckpt.$f {
                return Err(format!(
                    "config.json has {} = {:?}, the served model {:?}",
                    stringify!($f), ckpt.$f, served.$f
                ));
            }
        )*};
    }
    check!(
        arch,
        vocab_size,
        hidden_size,
        intermediate_size,
        num_hidden_layers,
        num_attention_heads,
        num_key_value_heads,
        head_dim,
        rms_norm_eps,
        rope_theta,
        rope_scaling,
        tie_word_embeddings,
        attention_bias,
        qk_norm
    );
    Ok(())
}

/// Reads a checkpoint's weights for `model`: its `config.json` must describe the same
/// architecture and its weights must hold every tensor the model has (extra tensors are
/// ignored). Returns the tensors and the bytes read; the values themselves (shapes, dtypes,
/// finiteness) are checked by the engine when they are applied. Blocking.
pub fn load_checkpoint(ckpt: &Checkpoint, model: &Transformer) -> Result<(TensorMap, u64), String> {
    let cfg_path = ckpt.dir.join("config.json");
    let text = std::fs::read_to_string(&cfg_path)
        .map_err(|e| format!("cannot read {}: {e}", cfg_path.display()))?;
    let cfg = ModelConfig::from_hf_json(&text).map_err(|e| e.to_string())?;
    same_architecture(model.config(), &cfg)?;
    let (mut tensors, bytes) =
        load_path(&ckpt.dir, model.dtype(), model.device()).map_err(|e| e.message)?;
    let expected = model.config().expected_tensors();
    if let Some((name, _)) = expected.iter().find(|(n, _)| !tensors.contains_key(n)) {
        return Err(format!(
            "the weights have no tensor `{name}` (an incomplete checkpoint)"
        ));
    }
    tensors.retain(|name, _| expected.iter().any(|(n, _)| n == name));
    Ok((tensors, bytes))
}

/// Decides which checkpoint is new: remembers the last one tried (loaded or refused).
#[derive(Debug, Clone)]
pub struct Watcher {
    dir: PathBuf,
    last: Option<Checkpoint>,
}

impl Watcher {
    /// A watcher of `dir`; `current` is the checkpoint already serving, if any.
    pub fn new(dir: impl Into<PathBuf>, current: Option<Checkpoint>) -> Self {
        Self {
            dir: dir.into(),
            last: current,
        }
    }

    /// The watched folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The newest checkpoint when it differs from the last one returned (or the one serving at
    /// the start), and remembers it.
    pub fn poll(&mut self) -> Option<Checkpoint> {
        let newest = newest_checkpoint(&self.dir)?;
        if self.last.as_ref() == Some(&newest) {
            return None;
        }
        self.last = Some(newest.clone());
        Some(newest)
    }
}

/// What [`apply`] did with a checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchOutcome {
    /// Loaded; the new policy version.
    Loaded(u64),
    /// Refused (the old weights keep serving), and why.
    Refused(String),
}

/// Loads `ckpt` into the engine of `state` as one atomic weight update; on success
/// `/v1/models` names the checkpoint as its `root`. Blocking.
pub fn apply(state: &AppState, ckpt: &Checkpoint) -> WatchOutcome {
    let model = state.engine().model();
    let loaded = load_checkpoint(ckpt, &model);
    drop(model);
    let result = loaded.and_then(|(tensors, _)| {
        state
            .engine()
            .update_weights(tensors)
            .map_err(|e| e.to_string())
    });
    match result {
        Ok(version) => {
            state.set_weights_source(ckpt.dir.display().to_string());
            WatchOutcome::Loaded(version)
        }
        Err(e) => WatchOutcome::Refused(e),
    }
}

/// Polls `watcher` every `interval` and applies each new checkpoint, logging what happened on
/// stderr, until the server shuts down.
pub async fn run(state: AppState, mut watcher: Watcher, interval: Duration) {
    loop {
        tokio::time::sleep(interval).await;
        if state.is_shutting_down() {
            return;
        }
        let st = state.clone();
        let step = tokio::task::spawn_blocking(move || {
            let ckpt = watcher.poll();
            let outcome = ckpt.as_ref().map(|c| apply(&st, c));
            (watcher, ckpt, outcome)
        })
        .await;
        let Ok((w, ckpt, outcome)) = step else {
            tracing::error!("the checkpoint watcher's task failed; no longer watching");
            return;
        };
        watcher = w;
        match (ckpt, outcome) {
            (Some(c), Some(WatchOutcome::Loaded(v))) => {
                tracing::info!(checkpoint = %c, policy_version = v, "checkpoint loaded");
                eprintln!("oxrl serve: loaded checkpoint {c} (policy version {v})");
            }
            (Some(c), Some(WatchOutcome::Refused(why))) => {
                let v = state.engine().policy_version();
                tracing::debug!(checkpoint = %c, reason = %why, "checkpoint skipped");
                eprintln!(
                    "oxrl serve: warning: skipping checkpoint {c}: {why}; still serving policy \
                     version {v} from {}",
                    state.weights_source()
                );
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch_checkpoint(root: &Path, step: u64, state: bool) -> PathBuf {
        let d = root.join(format!("step-{step:06}"));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("config.json"), "{}").unwrap();
        if state {
            std::fs::write(d.join(STATE_FILE), "{}").unwrap();
        }
        d
    }

    #[test]
    fn the_pointer_wins_then_the_highest_complete_step() {
        let run = tempfile::tempdir().unwrap();
        let root = run.path().join("checkpoints");
        std::fs::create_dir_all(&root).unwrap();
        assert_eq!(newest_checkpoint(run.path()), None);
        touch_checkpoint(&root, 2, true);
        let ten = touch_checkpoint(&root, 10, true);
        touch_checkpoint(&root, 11, false); // incomplete: no trainer state
        let c = newest_checkpoint(run.path()).unwrap();
        assert_eq!((c.dir.clone(), c.step), (ten.clone(), Some(10)));
        // The checkpoints folder itself works too.
        assert_eq!(newest_checkpoint(&root).unwrap().dir, ten);
        std::fs::write(root.join(LATEST), "step-000002\n").unwrap();
        assert_eq!(newest_checkpoint(run.path()).unwrap().step, Some(2));
        // A pointer to a missing directory falls back to the scan.
        std::fs::write(root.join(LATEST), "step-000099\n").unwrap();
        assert_eq!(newest_checkpoint(run.path()).unwrap().step, Some(10));
    }

    #[test]
    fn a_multi_stage_run_gives_the_stage_written_last() {
        let run = tempfile::tempdir().unwrap();
        let sft = run.path().join("sft/checkpoints");
        let grpo = run.path().join("grpo/checkpoints");
        std::fs::create_dir_all(&sft).unwrap();
        std::fs::create_dir_all(run.path().join("sft/base-model")).unwrap();
        let s = touch_checkpoint(&sft, 600, true);
        assert_eq!(newest_checkpoint(run.path()).unwrap().dir, s);
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::create_dir_all(&grpo).unwrap();
        let g = touch_checkpoint(&grpo, 10, true);
        assert_eq!(newest_checkpoint(run.path()).unwrap().dir, g);
    }

    #[test]
    fn the_watcher_reports_each_checkpoint_once() {
        let root = tempfile::tempdir().unwrap();
        let mut w = Watcher::new(root.path(), None);
        assert_eq!(w.poll(), None);
        touch_checkpoint(root.path(), 1, true);
        assert_eq!(w.poll().unwrap().step, Some(1));
        assert_eq!(w.poll(), None);
        touch_checkpoint(root.path(), 2, true);
        assert_eq!(w.poll().unwrap().step, Some(2));
        assert_eq!(w.poll(), None);
        let start = newest_checkpoint(root.path());
        let mut w = Watcher::new(root.path(), start);
        assert_eq!(
            w.poll(),
            None,
            "the checkpoint serving at the start is not reloaded"
        );
    }
}
