//! A linear score head `hidden → 1` on the trunk's final hidden states
//! ([`oxrl_models::Transformer::last_hidden`]): the reward model's score (read at a sequence's
//! last real token) and PPO's value head on the policy (read at every position).
//!
//! Parameters `score.weight` `[1, hidden]` and `score.bias` `[1]` (HF's
//! `…ForSequenceClassification` name, plus a bias), trainable `Var`s in the model's dtype. Init:
//! weight ~ N(0, 1/√(hidden + 1)) (TRL's value-head `normal` init), drawn from a seeded
//! SplitMix64 stream so a run's head is reproducible; bias 0. Checkpoints store it as
//! [`SCORE_HEAD_FILE`] next to `model.safetensors`.

use crate::train_error::{TrainError, TrainResult};
use candle_core::{DType, Device, Tensor, Var};
use oxrl_datasets::SplitMix64;
use std::collections::HashMap;
use std::path::Path;

/// File of the score head inside a checkpoint or reward-model directory.
pub const SCORE_HEAD_FILE: &str = "score_head.safetensors";
/// Name of the weight tensor `[1, hidden]`.
pub const WEIGHT: &str = "score.weight";
/// Name of the bias tensor `[1]`.
pub const BIAS: &str = "score.bias";

/// The head: `score(h) = h · wᵀ + b`.
#[derive(Debug, Clone)]
pub struct ScoreHead {
    weight: Var,
    bias: Var,
    hidden: usize,
}

/// Standard normal draws (Box–Muller) from a SplitMix64 stream.
fn normals(n: usize, seed: u64) -> Vec<f64> {
    let mut rng = SplitMix64::new(seed);
    let mut uniform = || ((rng.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    (0..n)
        .map(|_| {
            let (u1, u2) = (uniform(), uniform());
            (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
        })
        .collect()
}

impl ScoreHead {
    /// A freshly initialised head for a trunk of width `hidden` (see the module doc).
    pub fn new(hidden: usize, dtype: DType, device: &Device, seed: u64) -> TrainResult<Self> {
        if hidden == 0 {
            return Err(TrainError::Invariant(
                "a score head on a 0-wide trunk".into(),
            ));
        }
        let std = 1.0 / ((hidden + 1) as f64).sqrt();
        let w: Vec<f64> = normals(hidden, seed).into_iter().map(|z| z * std).collect();
        let weight = Tensor::from_vec(w, (1, hidden), device)?.to_dtype(dtype)?;
        let bias = Tensor::zeros(1, dtype, device)?;
        Ok(Self {
            weight: Var::from_tensor(&weight)?,
            bias: Var::from_tensor(&bias)?,
            hidden,
        })
    }

    /// Width of the trunk it reads.
    pub fn hidden_size(&self) -> usize {
        self.hidden
    }

    /// The trainable tensors under their checkpoint names (for the optimizer).
    pub fn vars(&self) -> Vec<(String, Var)> {
        vec![
            (WEIGHT.to_string(), self.weight.clone()),
            (BIAS.to_string(), self.bias.clone()),
        ]
    }

    fn params(&self, track: bool) -> (Tensor, Tensor) {
        if track {
            (
                self.weight.as_tensor().clone(),
                self.bias.as_tensor().clone(),
            )
        } else {
            (
                self.weight.as_detached_tensor(),
                self.bias.as_detached_tensor(),
            )
        }
    }

    /// Scores of every position, `[b, t]`, from hidden states `[b, t, hidden]`; `track` builds the
    /// graph into the head (and, through `hidden`, the trunk).
    pub fn scores(&self, hidden: &Tensor, track: bool) -> TrainResult<Tensor> {
        let (b, t, h) = hidden.dims3()?;
        if h != self.hidden {
            return Err(TrainError::Invariant(format!(
                "score head of width {} on hidden states of width {h}",
                self.hidden
            )));
        }
        let (w, bias) = self.params(track);
        let flat = hidden.reshape((b * t, h))?.matmul(&w.t()?)?;
        Ok(flat.broadcast_add(&bias)?.reshape((b, t))?)
    }

    /// The score at each row's last real token (`lengths[i] − 1`), `[b]` — the reward model's
    /// output.
    pub fn at_last_token(
        &self,
        hidden: &Tensor,
        lengths: &[usize],
        track: bool,
    ) -> TrainResult<Tensor> {
        let (b, t, h) = hidden.dims3()?;
        if lengths.len() != b || lengths.iter().any(|&l| l == 0 || l > t) {
            return Err(TrainError::Invariant(format!(
                "lengths {lengths:?} for hidden states [{b}, {t}, {h}]"
            )));
        }
        let idx: Vec<u32> = lengths
            .iter()
            .enumerate()
            .map(|(i, &l)| (i * t + l - 1) as u32)
            .collect();
        let idx = Tensor::from_vec(idx, b, hidden.device())?;
        let last = hidden.reshape((b * t, h))?.index_select(&idx, 0)?;
        Ok(self.scores(&last.unsqueeze(1)?, track)?.squeeze(1)?)
    }

    /// Per-token values aligned with the batch's token columns: `values[b, t]` is the score of
    /// the hidden state at `t − 1` (the state in which token `t` was chosen, verl's and TRL's
    /// alignment), 0 in column 0. `[b, t]`.
    pub fn token_values(&self, hidden: &Tensor, track: bool) -> TrainResult<Tensor> {
        let (b, t, _) = hidden.dims3()?;
        let s = self.scores(hidden, track)?;
        let zero = Tensor::zeros((b, 1), s.dtype(), s.device())?;
        if t < 2 {
            return Ok(zero.broadcast_as((b, t))?.contiguous()?);
        }
        Ok(Tensor::cat(&[&zero, &s.narrow(1, 0, t - 1)?], 1)?)
    }

    /// Writes the head to `path` (safetensors, two tensors).
    pub fn save(&self, path: &Path) -> TrainResult<()> {
        let map: HashMap<String, Tensor> = self
            .vars()
            .into_iter()
            .map(|(n, v)| (n, v.as_detached_tensor()))
            .collect();
        oxrl_models::weights::save_file(&map, path)?;
        Ok(())
    }

    /// Reads a head for a trunk of width `hidden` from `path`; a missing file, a missing tensor
    /// or a wrong shape is an error naming the file.
    pub fn load(path: &Path, hidden: usize, dtype: DType, device: &Device) -> TrainResult<Self> {
        let head = Self::new(hidden, dtype, device, 0)?;
        head.restore(path)?;
        Ok(head)
    }

    /// Sets this head's tensors from `path` (resume), with [`Self::load`]'s checks.
    pub fn restore(&self, path: &Path) -> TrainResult<()> {
        let bad = |msg: String| TrainError::checkpoint(path, msg);
        if !path.is_file() {
            return Err(bad(format!(
                "no score head (`{SCORE_HEAD_FILE}`): is this a reward-model or PPO checkpoint?"
            )));
        }
        let map = oxrl_models::weights::load_file(path, self.weight.dtype(), self.weight.device())
            .map_err(|e| bad(format!("cannot read the score head: {e}")))?;
        for (name, var) in self.vars() {
            let t = map
                .get(&name)
                .ok_or_else(|| bad(format!("the score head has no tensor `{name}`")))?;
            if t.dims() != var.dims() {
                return Err(bad(format!(
                    "score head `{name}` has shape {:?}, the model needs {:?} (hidden size {})",
                    t.dims(),
                    var.dims(),
                    self.hidden
                )));
            }
            var.set(t)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_is_seeded_with_the_documented_scale() {
        let a = ScoreHead::new(256, DType::F32, &Device::Cpu, 7).unwrap();
        let b = ScoreHead::new(256, DType::F32, &Device::Cpu, 7).unwrap();
        let w = |h: &ScoreHead| {
            h.vars()[0]
                .1
                .as_tensor()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        assert_eq!(w(&a), w(&b));
        let v = w(&a);
        let var = v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>() / v.len() as f64;
        let want = 1.0 / 257.0;
        assert!((var / want - 1.0).abs() < 0.3, "variance {var} vs {want}");
    }

    #[test]
    fn scores_last_token_and_shifted_values() {
        let head = ScoreHead::new(2, DType::F32, &Device::Cpu, 0).unwrap();
        head.weight
            .set(&Tensor::new(&[[1f32, 2.0]], &Device::Cpu).unwrap())
            .unwrap();
        head.bias
            .set(&Tensor::new(&[0.5f32], &Device::Cpu).unwrap())
            .unwrap();
        // Row 0: positions score 1·a + 2·b + 0.5.
        let h = Tensor::new(
            &[
                [[1f32, 0.0], [0.0, 1.0], [1.0, 1.0]],
                [[2.0, 0.0], [0.0, 0.0], [9.0, 9.0]],
            ],
            &Device::Cpu,
        )
        .unwrap();
        let s = head.scores(&h, false).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(s, [[1.5, 2.5, 3.5], [2.5, 0.5, 27.5]]);
        let last = head
            .at_last_token(&h, &[3, 2], true)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(last, [3.5, 0.5]);
        let v = head
            .token_values(&h, false)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        assert_eq!(v, [[0.0, 1.5, 2.5], [0.0, 2.5, 0.5]]);
        assert!(head.at_last_token(&h, &[4, 1], false).is_err());
    }

    #[test]
    fn save_load_round_trip_and_clear_errors() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(SCORE_HEAD_FILE);
        let head = ScoreHead::new(8, DType::F32, &Device::Cpu, 3).unwrap();
        head.save(&p).unwrap();
        let back = ScoreHead::load(&p, 8, DType::F32, &Device::Cpu).unwrap();
        let flat = |h: &ScoreHead| {
            h.vars()[0]
                .1
                .as_tensor()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        assert_eq!(flat(&head), flat(&back));
        let e = ScoreHead::load(&p, 16, DType::F32, &Device::Cpu).unwrap_err();
        assert!(e.to_string().contains("shape"), "{e}");
        let e = ScoreHead::load(&d.path().join("nope"), 8, DType::F32, &Device::Cpu).unwrap_err();
        assert!(e.to_string().contains("no score head"), "{e}");
    }
}
