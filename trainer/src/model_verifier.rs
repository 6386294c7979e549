//! The `model` verifier: a learned reward. A task lists it like any verifier,
//!
//! ```toml
//! [[task.verifiers]]
//! name = "model"
//! path = "runs/rm-arith/checkpoints/latest"   # a reward-model directory (or a run / checkpoints folder)
//! normalize = "sigmoid"                        # optional: none (raw score, default) | sigmoid
//! ```
//!
//! and it loads the reward model (trunk + `score_head.safetensors`, as `algorithm.name =
//! "reward_model"` writes it) once, when the task's verifiers are built, then scores each
//! completion as the reward model was trained: prompt + completion through the trunk's last
//! hidden state and the score head at the last token ([`crate::reward_model::inputs`]).
//!
//! It lives in the trainer because the verifiers crate depends on no model; [`register`] adds it
//! to a registry, and [`registry`] is the built-ins plus it — what the trainer's reward and
//! `oxrl verify` both build from.

use crate::reward_model::{inputs::scoring_ids, score_rows};
use crate::score_head::{ScoreHead, SCORE_HEAD_FILE};
use candle_core::{DType, Device};
use oxrl_models::{LoadOptions, LoadedModel, Tokenizer, Transformer};
use oxrl_verifiers::{BuildContext, Group, Registry, Score, Verifier, VerifierError};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// The registered name.
pub const NAME: &str = "model";

/// How the raw score becomes the reward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Normalize {
    /// The raw score (a Bradley–Terry logit, unbounded).
    #[default]
    None,
    /// σ(score), in (0, 1): the modelled probability of beating a score-0 completion.
    Sigmoid,
}

/// Options of the `model` verifier.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelVerifierOptions {
    /// The reward-model directory (relative to the task file's folder). A run's output folder or
    /// its `checkpoints` folder resolves to the newest checkpoint (`latest`).
    pub path: String,
    /// `none` or `sigmoid`.
    #[serde(default)]
    pub normalize: Normalize,
    /// Completions per forward pass.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Longest scored sequence (prompt + completion); longer ones keep their last tokens.
    #[serde(default = "default_max_seq_len")]
    pub max_seq_len: usize,
}

fn default_batch_size() -> usize {
    16
}
fn default_max_seq_len() -> usize {
    1024
}

/// A loaded reward model scoring completions.
pub struct ModelVerifier {
    model: Transformer,
    tokenizer: Tokenizer,
    head: ScoreHead,
    opts: ModelVerifierOptions,
}

impl std::fmt::Debug for ModelVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelVerifier")
            .field("opts", &self.opts)
            .finish()
    }
}

fn config_err(message: impl Into<String>) -> VerifierError {
    VerifierError::Config {
        verifier: NAME.into(),
        message: message.into(),
    }
}

/// The checkpoint a `path` option names: the directory itself when it holds a model, else the
/// `latest` checkpoint of a checkpoints folder or of a run's output folder.
fn resolve_dir(dir: &Path) -> Result<PathBuf, VerifierError> {
    if !dir.is_dir() {
        return Err(config_err(format!(
            "`path`: {} is not a directory (train one with algorithm.name = \"reward_model\")",
            dir.display()
        )));
    }
    if dir.join("config.json").is_file() {
        return Ok(dir.to_path_buf());
    }
    for root in [dir.to_path_buf(), dir.join("checkpoints")] {
        if let Some(c) = crate::checkpoint::latest(&root) {
            return Ok(c);
        }
    }
    Err(config_err(format!(
        "`path`: {} holds no model (no config.json, no `latest` checkpoint)",
        dir.display()
    )))
}

impl ModelVerifier {
    /// Builds the verifier from its options (the task table without `name` / `weight`).
    pub fn from_options(
        options: &Map<String, Value>,
        ctx: &BuildContext,
    ) -> Result<Self, VerifierError> {
        let opts: ModelVerifierOptions = serde_json::from_value(Value::Object(options.clone()))
            .map_err(|e| config_err(e.to_string()))?;
        if opts.batch_size == 0 {
            return Err(config_err("`batch_size` must be at least 1"));
        }
        if opts.max_seq_len < 2 {
            return Err(config_err("`max_seq_len` must be at least 2"));
        }
        let dir = resolve_dir(&ctx.resolve(&opts.path))?;
        let head_file = dir.join(SCORE_HEAD_FILE);
        if !head_file.is_file() {
            return Err(config_err(format!(
                "`path`: {} has no {SCORE_HEAD_FILE}: not a reward model (a policy checkpoint?)",
                dir.display()
            )));
        }
        let loaded = LoadedModel::load(
            &dir.to_string_lossy(),
            &LoadOptions {
                dtype: DType::F32,
                device: Device::Cpu,
            },
        )
        .map_err(|e| config_err(format!("`path`: {e}")))?;
        let hidden = loaded.model.config().hidden_size;
        let head = ScoreHead::load(&head_file, hidden, DType::F32, &Device::Cpu)
            .map_err(|e| config_err(e.to_string()))?;
        Ok(Self {
            model: loaded.model,
            tokenizer: loaded.tokenizer,
            head,
            opts,
        })
    }

    /// Raw scores of `(prompt, completion)` pairs, in order.
    pub fn raw_scores(&self, items: &[(&str, &str)]) -> Result<Vec<f32>, String> {
        let mut out = Vec::with_capacity(items.len());
        for chunk in items.chunks(self.opts.batch_size) {
            let rows = chunk
                .iter()
                .map(|(p, c)| scoring_ids(&self.tokenizer, p, c, self.opts.max_seq_len))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| e.to_string())?;
            let s = score_rows(&self.model, &self.head, &rows, false)
                .and_then(|t| Ok(t.to_dtype(DType::F32)?.to_vec1::<f32>()?))
                .map_err(|e| e.to_string())?;
            out.extend(s);
        }
        Ok(out)
    }

    fn reward(&self, raw: f32) -> f32 {
        match self.opts.normalize {
            Normalize::None => raw,
            Normalize::Sigmoid => 1.0 / (1.0 + (-raw).exp()),
        }
    }
}

impl Verifier for ModelVerifier {
    fn name(&self) -> &str {
        NAME
    }

    fn score(&self, groups: &[Group]) -> Vec<Vec<Score>> {
        let items: Vec<(&str, &str)> = groups
            .iter()
            .flat_map(|g| {
                g.completions
                    .iter()
                    .map(|c| (g.example.prompt.as_str(), c.as_str()))
            })
            .collect();
        let scores = self.raw_scores(&items);
        let mut it = match &scores {
            Ok(s) => s.iter().copied().map(Ok).collect::<Vec<_>>().into_iter(),
            Err(e) => vec![Err(e.clone()); items.len()].into_iter(),
        };
        groups
            .iter()
            .map(|g| {
                g.completions
                    .iter()
                    .map(|_| match it.next() {
                        Some(Ok(raw)) if raw.is_finite() => {
                            let mut s = Score::reward(self.reward(raw));
                            s.components.insert("score".into(), raw);
                            s
                        }
                        Some(Ok(raw)) => Score::failed(format!("non-finite score {raw}")),
                        Some(Err(e)) => Score::failed(format!("reward model: {e}")),
                        None => Score::failed("reward model: missing score"),
                    })
                    .collect()
            })
            .collect()
    }
}

/// Adds the `model` verifier to `registry`.
pub fn register(registry: &mut Registry) {
    registry.register(NAME, |o, ctx| {
        Ok(Box::new(ModelVerifier::from_options(o, ctx)?))
    });
}

/// Every built-in verifier and plugin kind, plus `model`.
pub fn registry() -> Registry {
    let mut r = Registry::builtin();
    register(&mut r);
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_model::write_tiny as tiny;
    use oxrl_verifiers::VerifyExample;

    fn build(opts: Value, base: &Path) -> Result<ModelVerifier, VerifierError> {
        let Value::Object(m) = opts else {
            unreachable!()
        };
        ModelVerifier::from_options(&m, &BuildContext::new(base))
    }

    #[test]
    fn clear_errors_for_missing_dir_missing_or_bad_head_and_unknown_options() {
        let d = tempfile::tempdir().unwrap();
        let e = build(serde_json::json!({"path": "nope"}), d.path()).unwrap_err();
        assert!(e.to_string().contains("not a directory"), "{e}");
        let m = d.path().join("m");
        tiny(&m, 16);
        let e = build(serde_json::json!({"path": "m"}), d.path()).unwrap_err();
        assert!(e.to_string().contains(SCORE_HEAD_FILE), "{e}");
        ScoreHead::new(8, DType::F32, &Device::Cpu, 0)
            .unwrap()
            .save(&m.join(SCORE_HEAD_FILE))
            .unwrap();
        let e = build(serde_json::json!({"path": "m"}), d.path()).unwrap_err();
        assert!(e.to_string().contains("shape"), "{e}");
        let e = build(serde_json::json!({"path": "m", "temperature": 1}), d.path()).unwrap_err();
        assert!(e.to_string().contains("temperature"), "{e}");
        let e = build(
            serde_json::json!({"path": "m", "normalize": "tanh"}),
            d.path(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("tanh"), "{e}");
    }

    #[test]
    fn scores_every_completion_and_sigmoid_normalises() {
        let d = tempfile::tempdir().unwrap();
        let m = d.path().join("m");
        tiny(&m, 16);
        ScoreHead::new(16, DType::F32, &Device::Cpu, 1)
            .unwrap()
            .save(&m.join(SCORE_HEAD_FILE))
            .unwrap();
        let raw = build(serde_json::json!({"path": "m", "batch_size": 2}), d.path()).unwrap();
        let sig = build(
            serde_json::json!({"path": m, "normalize": "sigmoid"}),
            d.path(),
        )
        .unwrap();
        let groups = vec![
            Group {
                example: VerifyExample {
                    prompt: "What is 2 + 3?".into(),
                    ..VerifyExample::default()
                },
                completions: vec!["5".into(), "7".into(), "".into()],
            },
            Group {
                example: VerifyExample::default(),
                completions: vec!["x".into()],
            },
        ];
        let a = raw.score(&groups);
        let b = sig.score(&groups);
        assert_eq!(a.iter().map(Vec::len).collect::<Vec<_>>(), [3, 1]);
        for (ga, gb) in a.iter().zip(&b) {
            for (sa, sb) in ga.iter().zip(gb) {
                assert!(sa.error.is_none(), "{sa:?}");
                assert_eq!(sa.components["score"], sa.reward);
                let want = 1.0 / (1.0 + (-sa.reward).exp());
                assert!((sb.reward - want).abs() < 1e-6, "{sb:?} vs {want}");
            }
        }
        assert_ne!(
            a[0][0].reward, a[0][1].reward,
            "different completions score differently"
        );
        // Batched scoring equals one-at-a-time scoring.
        let one = raw.raw_scores(&[("What is 2 + 3?", "7")]).unwrap();
        assert!((one[0] - a[0][1].reward).abs() < 1e-5);
    }
}
