//! AdamW with f32 state whatever the parameter dtype, per-parameter decay groups and a
//! learning rate passed at each step (from [`super::schedule::LrSchedule`]).
//!
//! # The update (as `torch.optim.AdamW`, `amsgrad=False`, single-tensor path)
//! For each parameter with a gradient `g`, its own step count `t ← t + 1`, and
//! `lr_p = lr · lr_scale`, `λ = weight_decay` of its group:
//! ```text
//! p ← p · (1 − lr_p·λ)                       decoupled weight decay, before the Adam step
//! m ← m + (1 − β₁)(g − m)                    (torch's lerp)
//! v ← β₂ v + (1 − β₂) g²
//! p ← p − (lr_p / (1 − β₁ᵗ)) · m / (sqrt(v) / sqrt(1 − β₂ᵗ) + ε)
//! ```
//! so ε is added after the square root of the bias-corrected `v̂ = v / (1 − β₂ᵗ)`. Parameters
//! with no gradient in the store are skipped entirely (no decay, no moment update, no count),
//! as torch skips `grad is None`; this is why the step count is per parameter.
//!
//! # Dtypes
//! State (`m`, `v` and the master weights) is f32 for bf16, f16 and f32 parameters and f64 for
//! f64 parameters (never less precise than the parameter; the f64 path exists for reference
//! checks). An f32 (or f64) parameter is its own master: it is updated with `Var::set`. A bf16 or
//! f16 parameter gets an f32 master copy, taken from the parameter's value at its first step;
//! the update runs on the master and the parameter is set to the master rounded to its dtype.
//! If something outside the optimizer overwrites such a parameter later (loading weights), call
//! [`AdamW::resync_masters`]. Gradients of any float dtype are widened to the state dtype.
//!
//! # State
//! [`AdamW::save`] / [`AdamW::load`] write and read the step counts, moments and masters, keyed
//! by parameter name (`super::state`); the parameters themselves belong to the checkpoint.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{backprop::GradStore, DType, Tensor, TensorId, Var};
use serde::{Deserialize, Serialize};

use super::error::{OptimError, Result};
use super::param_groups::{default_no_decay, resolve, GroupRule, GroupSettings};

fn default_lr() -> f64 {
    1e-3
}
fn default_betas() -> (f64, f64) {
    (0.9, 0.999)
}
fn default_eps() -> f64 {
    1e-8
}
fn default_wd() -> f64 {
    1e-2
}

/// AdamW hyperparameters (serde; defaults are `torch.optim.AdamW`'s, plus oxrl's no-decay list).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdamWConfig {
    /// Peak learning rate (what the schedule scales; `step` takes the lr to use).
    #[serde(default = "default_lr")]
    pub lr: f64,
    /// `(β₁, β₂)`, each in `[0, 1)`.
    #[serde(default = "default_betas")]
    pub betas: (f64, f64),
    /// Added to `sqrt(v̂)` in the denominator.
    #[serde(default = "default_eps")]
    pub eps: f64,
    /// Decoupled weight decay for parameters that decay.
    #[serde(default = "default_wd")]
    pub weight_decay: f64,
    /// Glob patterns of parameter names that get no weight decay
    /// ([`super::param_groups::DEFAULT_NO_DECAY`] by default).
    #[serde(default = "default_no_decay")]
    pub no_decay: Vec<String>,
    /// Ordered group rules (lr multiplier, weight decay override); first match wins.
    #[serde(default)]
    pub groups: Vec<GroupRule>,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            lr: default_lr(),
            betas: default_betas(),
            eps: default_eps(),
            weight_decay: default_wd(),
            no_decay: default_no_decay(),
            groups: Vec::new(),
        }
    }
}

impl AdamWConfig {
    /// Checks the ranges of the hyperparameters.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str, v: f64| Err(OptimError::Config(format!("{what} out of range: {v}")));
        if !(self.lr.is_finite() && self.lr >= 0.0) {
            return bad("lr", self.lr);
        }
        let (b1, b2) = self.betas;
        if !(0.0..1.0).contains(&b1) {
            return bad("beta1", b1);
        }
        if !(0.0..1.0).contains(&b2) {
            return bad("beta2", b2);
        }
        if !(self.eps.is_finite() && self.eps >= 0.0) {
            return bad("eps", self.eps);
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad("weight_decay", self.weight_decay);
        }
        for r in &self.groups {
            if r.patterns.is_empty() {
                return Err(OptimError::Config("a group rule has no patterns".into()));
            }
            if !(r.lr_scale.is_finite() && r.lr_scale >= 0.0) {
                return bad("lr_scale", r.lr_scale);
            }
            if let Some(wd) = r.weight_decay {
                if !(wd.is_finite() && wd >= 0.0) {
                    return bad("group weight_decay", wd);
                }
            }
        }
        Ok(())
    }
}

/// The moments and master weights of one parameter.
#[derive(Debug, Clone)]
pub(crate) struct ParamState {
    /// Number of updates this parameter has had (torch's `state["step"]`).
    pub(crate) step: u64,
    /// `(m, v)` in the state dtype; `None` before the first update.
    pub(crate) moments: Option<(Tensor, Tensor)>,
    /// The f32 master copy of a bf16/f16 parameter; `None` for f32/f64 or before its first update.
    pub(crate) master: Option<Tensor>,
}

/// One parameter under the optimizer.
#[derive(Debug)]
pub(crate) struct Param {
    pub(crate) name: String,
    pub(crate) aliases: Vec<String>,
    pub(crate) var: Var,
    pub(crate) settings: GroupSettings,
    pub(crate) state: ParamState,
}

impl Param {
    /// The dtype of this parameter's moments and master.
    pub(crate) fn state_dtype(&self) -> DType {
        state_dtype(self.var.dtype())
    }
    /// Whether this parameter keeps a separate f32 master copy.
    pub(crate) fn needs_master(&self) -> bool {
        self.var.dtype() != self.state_dtype()
    }
}

fn state_dtype(param: DType) -> DType {
    if param == DType::F64 {
        DType::F64
    } else {
        DType::F32
    }
}

/// What one parameter ended up with: its name, group settings and how many updates it has had.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamInfo {
    /// The name the parameter is stepped and saved under.
    pub name: String,
    /// Other names passed for the same `Var` (tied weights).
    pub aliases: Vec<String>,
    /// Weight decay applied to it.
    pub weight_decay: f64,
    /// Multiplier on the step's lr.
    pub lr_scale: f64,
    /// Its update count.
    pub step: u64,
}

/// oxrl's AdamW (see the module docs).
#[derive(Debug)]
pub struct AdamW {
    pub(crate) cfg: AdamWConfig,
    pub(crate) params: Vec<Param>,
    pub(crate) steps: u64,
}

impl AdamW {
    /// Builds the optimizer over named parameters; the group of each is decided by name.
    ///
    /// The same `Var` passed under several names (tied weights) is stepped once, under its
    /// first name. Names must be unique; parameters must be bf16, f16, f32 or f64.
    pub fn new(params: Vec<(String, Var)>, cfg: AdamWConfig) -> Result<Self> {
        cfg.validate()?;
        let mut by_id: HashMap<TensorId, usize> = HashMap::new();
        let mut seen_names: HashMap<String, ()> = HashMap::new();
        let mut grouped: Vec<(Vec<String>, Var)> = Vec::new();
        for (name, var) in params {
            if seen_names.insert(name.clone(), ()).is_some() {
                return Err(OptimError::Param(format!(
                    "duplicate parameter name `{name}`"
                )));
            }
            match var.dtype() {
                DType::BF16 | DType::F16 | DType::F32 | DType::F64 => {}
                other => {
                    return Err(OptimError::Param(format!(
                        "parameter `{name}` has dtype {other:?}; AdamW needs bf16, f16, f32 or f64"
                    )))
                }
            }
            match by_id.get(&var.as_tensor().id()) {
                Some(&i) => grouped[i].0.push(name),
                None => {
                    by_id.insert(var.as_tensor().id(), grouped.len());
                    grouped.push((vec![name], var));
                }
            }
        }
        let mut hits = vec![false; cfg.groups.len()];
        let params = grouped
            .into_iter()
            .map(|(names, var)| {
                let refs: Vec<&str> = names.iter().map(String::as_str).collect();
                let settings = resolve(
                    &refs,
                    cfg.weight_decay,
                    &cfg.no_decay,
                    &cfg.groups,
                    &mut hits,
                );
                let mut names = names.into_iter();
                let name = names.next().unwrap_or_default();
                Param {
                    name,
                    aliases: names.collect(),
                    var,
                    settings,
                    state: ParamState {
                        step: 0,
                        moments: None,
                        master: None,
                    },
                }
            })
            .collect();
        if let Some(i) = hits.iter().position(|h| !h) {
            return Err(OptimError::Config(format!(
                "group rule {i} (patterns {:?}) matches no parameter",
                cfg.groups[i].patterns
            )));
        }
        Ok(Self {
            cfg,
            params,
            steps: 0,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &AdamWConfig {
        &self.cfg
    }

    /// Number of `step` calls so far (restored by `load`).
    pub fn step_count(&self) -> u64 {
        self.steps
    }

    /// The parameters' `Var`s, in order (e.g. for [`super::grad_clip::clip_grad_norm`]).
    pub fn vars(&self) -> impl Iterator<Item = &Var> {
        self.params.iter().map(|p| &p.var)
    }

    /// The named parameters, in order.
    pub fn named_vars(&self) -> impl Iterator<Item = (&str, &Var)> {
        self.params.iter().map(|p| (p.name.as_str(), &p.var))
    }

    /// Each parameter's name, group settings and update count (for logging).
    pub fn param_info(&self) -> Vec<ParamInfo> {
        self.params
            .iter()
            .map(|p| ParamInfo {
                name: p.name.clone(),
                aliases: p.aliases.clone(),
                weight_decay: p.settings.weight_decay,
                lr_scale: p.settings.lr_scale,
                step: p.state.step,
            })
            .collect()
    }

    /// Clips the gradients of this optimizer's parameters to `max_norm`; returns the pre-clip norm.
    pub fn clip_grad_norm(&self, grads: &mut GradStore, max_norm: f64) -> Result<f64> {
        super::grad_clip::clip_grad_norm(self.vars(), grads, max_norm)
    }

    /// Re-takes the f32 master copies of bf16/f16 parameters from their current values (after
    /// the parameters were overwritten from outside).
    pub fn resync_masters(&mut self) -> Result<()> {
        for p in &mut self.params {
            if p.state.master.is_some() {
                p.state.master = Some(p.var.as_detached_tensor().to_dtype(DType::F32)?);
            }
        }
        Ok(())
    }

    /// One AdamW update of every parameter that has a gradient in `grads`, at learning rate `lr`
    /// (times each group's `lr_scale`).
    pub fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        if !(lr.is_finite() && lr >= 0.0) {
            return Err(OptimError::Config(format!(
                "lr must be finite and >= 0, got {lr}"
            )));
        }
        let (b1, b2) = self.cfg.betas;
        let eps = self.cfg.eps;
        for p in &mut self.params {
            let Some(g) = grads.get(p.var.as_tensor()) else {
                continue;
            };
            if g.shape() != p.var.shape() {
                return Err(OptimError::Param(format!(
                    "gradient of `{}` has shape {:?}, parameter {:?}",
                    p.name,
                    g.shape(),
                    p.var.shape()
                )));
            }
            let sd = p.state_dtype();
            let g = g.detach().to_dtype(sd)?;
            let needs_master = p.needs_master();
            let value = match (&p.state.master, needs_master) {
                (Some(m), _) => m.clone(),
                (None, true) => p.var.as_detached_tensor().to_dtype(sd)?,
                (None, false) => p.var.as_detached_tensor(),
            };
            let (m, v) = match &p.state.moments {
                Some((m, v)) => (m.clone(), v.clone()),
                None => (g.zeros_like()?, g.zeros_like()?),
            };
            p.state.step += 1;
            let t = p.state.step as i32;
            let lr_p = lr * p.settings.lr_scale;
            let wd = p.settings.weight_decay;

            let decayed = if wd != 0.0 {
                value.affine(1.0 - lr_p * wd, 0.0)?
            } else {
                value
            };
            let m = (&m + (&g - &m)?.affine(1.0 - b1, 0.0)?)?;
            let v = (v.affine(b2, 0.0)? + g.sqr()?.affine(1.0 - b2, 0.0)?)?;
            let bias1 = 1.0 - b1.powi(t);
            let bias2_sqrt = (1.0 - b2.powi(t)).sqrt();
            let step_size = lr_p / bias1;
            let denom = v.sqrt()?.affine(1.0 / bias2_sqrt, eps)?;
            let new = (&decayed + (&m / &denom)?.affine(-step_size, 0.0)?)?;

            if needs_master {
                p.var.set(&new.to_dtype(p.var.dtype())?)?;
                p.state.master = Some(new);
            } else {
                p.var.set(&new)?;
            }
            p.state.moments = Some((m, v));
        }
        self.steps += 1;
        Ok(())
    }

    /// Writes the optimizer state (step counts, moments, masters, by name) to `path`.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        super::state::save(self, path.as_ref())
    }

    /// Restores the state written by [`AdamW::save`]; its parameter names must be exactly this
    /// optimizer's. The current config (lr, betas, groups) is kept.
    pub fn load(&mut self, path: impl AsRef<Path>) -> Result<()> {
        super::state::load(self, path.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn grads(pairs: &[(&Var, &[f64])]) -> GradStore {
        let mut s = GradStore::default();
        for (v, g) in pairs {
            let t = Tensor::new(*g, &Device::Cpu)
                .unwrap()
                .to_dtype(v.dtype())
                .unwrap();
            s.insert(v.as_tensor(), t);
        }
        s
    }

    /// One step by hand: m = 0.1 g, v = 0.001 g², m̂ = g, v̂ = g², so
    /// p₁ = p₀(1 − lr·wd) − lr · g / (|g| + eps).
    #[test]
    fn one_step_by_hand() {
        let w = Var::new(&[1.0f64, -2.0], &Device::Cpu).unwrap();
        let b = Var::new(&[0.5f64], &Device::Cpu).unwrap();
        let cfg = AdamWConfig {
            lr: 0.1,
            eps: 1e-8,
            weight_decay: 0.5,
            ..Default::default()
        };
        let mut opt = AdamW::new(
            vec![
                ("layer.weight".into(), w.clone()),
                ("layer.bias".into(), b.clone()),
            ],
            cfg,
        )
        .unwrap();
        let g = grads(&[(&w, &[0.2, -4.0]), (&b, &[3.0])]);
        opt.step(&g, 0.1).unwrap();
        let got: Vec<f64> = w.as_tensor().to_vec1().unwrap();
        let want = [
            1.0 * (1.0 - 0.05) - 0.1 * 0.2 / (0.2 + 1e-8),
            -2.0 * (1.0 - 0.05) - 0.1 * -4.0 / (4.0 + 1e-8),
        ];
        for (a, b) in got.iter().zip(want) {
            assert!((a - b).abs() < 1e-15, "{a} vs {b}");
        }
        // The bias gets no decay by default.
        let got: Vec<f64> = b.as_tensor().to_vec1().unwrap();
        assert!((got[0] - (0.5 - 0.1 * 3.0 / (3.0 + 1e-8))).abs() < 1e-15);

        // Second step with g = 0 on the weight: m = 0.09 g₁, v = 0.999·0.001 g₁²,
        // m̂ = 0.09 g₁ / 0.19, v̂ = 0.000999 g₁² / 0.001999.
        let p1: Vec<f64> = w.as_tensor().to_vec1().unwrap();
        let g = grads(&[(&w, &[0.0, 0.0])]);
        opt.step(&g, 0.1).unwrap();
        let got: Vec<f64> = w.as_tensor().to_vec1().unwrap();
        for (i, g1) in [0.2f64, -4.0].iter().enumerate() {
            let m = 0.1 * 0.9 * g1;
            let v = 0.001 * 0.999 * g1 * g1;
            let bc1 = 1.0 - 0.9f64.powi(2);
            let bc2 = 1.0 - 0.999f64.powi(2);
            let want = p1[i] * 0.95 - (0.1 / bc1) * m / (v.sqrt() / bc2.sqrt() + 1e-8);
            assert!((got[i] - want).abs() < 1e-14, "{} vs {want}", got[i]);
        }
        let info = opt.param_info();
        assert_eq!(info[0].step, 2);
        assert_eq!(info[1].step, 1, "bias had no gradient at step 2");
        assert_eq!(opt.step_count(), 2);
    }

    #[test]
    fn eps_is_added_after_the_bias_corrected_sqrt() {
        // g tiny next to eps: p₁ = p₀ − lr · g / (|g| + eps) exactly (m̂ = g, sqrt(v̂) = |g|).
        let w = Var::new(&[0.0f64], &Device::Cpu).unwrap();
        let cfg = AdamWConfig {
            eps: 1e-3,
            weight_decay: 0.0,
            ..Default::default()
        };
        let mut opt = AdamW::new(vec![("w".into(), w.clone())], cfg).unwrap();
        opt.step(&grads(&[(&w, &[1e-3])]), 1.0).unwrap();
        let got: Vec<f64> = w.as_tensor().to_vec1().unwrap();
        assert!((got[0] + 0.5).abs() < 1e-12, "{}", got[0]);
    }

    #[test]
    fn bf16_param_keeps_f32_master_and_state() {
        let w16 = Var::new(&[1.0f32, 2.0], &Device::Cpu)
            .unwrap()
            .as_tensor()
            .to_dtype(DType::BF16)
            .and_then(|t| Var::from_tensor(&t))
            .unwrap();
        let w32 = Var::new(&[1.0f32, 2.0], &Device::Cpu).unwrap();
        let cfg = AdamWConfig {
            lr: 1e-4,
            ..Default::default()
        };
        let mut o16 = AdamW::new(vec![("w".into(), w16.clone())], cfg.clone()).unwrap();
        let mut o32 = AdamW::new(vec![("w".into(), w32.clone())], cfg).unwrap();
        for _ in 0..3 {
            o16.step(&grads(&[(&w16, &[0.5, -0.25])]), 1e-4).unwrap();
            o32.step(&grads(&[(&w32, &[0.5, -0.25])]), 1e-4).unwrap();
        }
        let p = &o16.params[0];
        let master = p.state.master.as_ref().unwrap();
        assert_eq!(master.dtype(), DType::F32);
        assert_eq!(p.state.moments.as_ref().unwrap().0.dtype(), DType::F32);
        // The master moves like the f32 parameter (bf16 alone could not resolve 3e-4 at 2.0).
        let a: Vec<f32> = master.to_vec1().unwrap();
        let b: Vec<f32> = w32.as_tensor().to_vec1().unwrap();
        assert_eq!(a, b);
        let r: Vec<f32> = w16
            .as_tensor()
            .to_dtype(DType::F32)
            .unwrap()
            .to_vec1()
            .unwrap();
        let want: Vec<f32> = master
            .to_dtype(DType::BF16)
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(r, want);
        assert_eq!(w16.dtype(), DType::BF16);
    }

    #[test]
    fn config_errors() {
        let w = Var::new(&[0.0f32], &Device::Cpu).unwrap();
        let bad = AdamWConfig {
            betas: (1.0, 0.9),
            ..Default::default()
        };
        assert!(AdamW::new(vec![("w".into(), w.clone())], bad).is_err());
        let typo = AdamWConfig {
            groups: vec![GroupRule {
                patterns: vec!["*nrom*".into()],
                lr_scale: 0.5,
                weight_decay: None,
            }],
            ..Default::default()
        };
        let err = AdamW::new(vec![("w".into(), w.clone())], typo).unwrap_err();
        assert!(err.to_string().contains("matches no parameter"), "{err}");
        let dup = vec![("w".into(), w.clone()), ("w".into(), w.clone())];
        assert!(AdamW::new(dup, AdamWConfig::default()).is_err());
        let int = Var::new(&[1u32], &Device::Cpu).unwrap();
        assert!(AdamW::new(vec![("i".into(), int)], AdamWConfig::default()).is_err());
        let cfg: AdamWConfig =
            serde_json::from_str(r#"{"lr": 1e-6, "betas": [0.9, 0.95], "weight_decay": 0.1}"#)
                .unwrap();
        assert_eq!(cfg.betas, (0.9, 0.95));
        assert_eq!(cfg.no_decay, default_no_decay());
        assert!(serde_json::from_str::<AdamWConfig>(r#"{"beta1": 0.9}"#).is_err());
    }

    #[test]
    fn tied_weights_are_stepped_once_without_decay() {
        let e = Var::new(&[1.0f64, 1.0], &Device::Cpu).unwrap();
        let opt = AdamW::new(
            vec![
                ("model.embed_tokens.weight".into(), e.clone()),
                ("lm_head.weight".into(), e.clone()),
            ],
            AdamWConfig::default(),
        )
        .unwrap();
        let info = opt.param_info();
        assert_eq!(info.len(), 1);
        assert_eq!(info[0].aliases, vec!["lm_head.weight".to_string()]);
        assert_eq!(info[0].weight_decay, 0.0);
    }
}
