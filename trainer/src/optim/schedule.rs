//! Learning-rate schedules: constant, linear decay and cosine decay, each after a linear warmup,
//! with the semantics of `transformers`' `get_{constant,linear,cosine}_schedule_with_warmup`.
//!
//! The multiplier at optimizer step `s` (0 for the first step, as `LambdaLR`'s counter is when
//! `scheduler.step()` follows `optimizer.step()`), with warmup `W` and `T` training steps:
//! - warmup, `s < W`: `s / max(1, W)` — so with `W > 0` the very first step runs at lr 0, exactly
//!   as in `transformers`;
//! - `constant`: 1;
//! - `linear`: `max(0, (T − s) / max(1, T − W))`;
//! - `cosine`: with `p = (s − W) / max(1, T − W)`,
//!   `max(0, r + (1 − r) · ½(1 + cos(π · 2c · p)))`, `c = num_cycles` (default ½), `r =
//!   min_lr_ratio` (default 0; `transformers`' `cosine_with_min_lr`'s `min_lr_rate`).
//!   Past `T` the cosine is not clamped (it rises again), as in `transformers`.
//!
//! `warmup_ratio` gives `W = ceil(ratio · T)` (as `TrainingArguments` does); set at most one of
//! `warmup_steps` and `warmup_ratio`.

use serde::{Deserialize, Serialize};

use super::error::{OptimError, Result};

/// The shape of the schedule after warmup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleKind {
    /// Constant after warmup (`transformers`' `constant` / `constant_with_warmup`).
    #[default]
    #[serde(alias = "constant_with_warmup")]
    Constant,
    /// Linear decay to 0 at `total_steps`.
    Linear,
    /// Half-cosine decay (by default) to `min_lr_ratio · lr` at `total_steps`.
    #[serde(alias = "cosine_with_min_lr")]
    Cosine,
}

impl ScheduleKind {
    /// The accepted names.
    pub const NAMES: &'static [&'static str] = &[
        "constant",
        "constant_with_warmup",
        "linear",
        "cosine",
        "cosine_with_min_lr",
    ];

    /// Parses a schedule name (oxrl's or `transformers`' `lr_scheduler_type`).
    pub fn from_name(name: &str) -> Result<Self> {
        match name {
            "constant" | "constant_with_warmup" => Ok(Self::Constant),
            "linear" => Ok(Self::Linear),
            "cosine" | "cosine_with_min_lr" => Ok(Self::Cosine),
            other => Err(OptimError::Config(format!(
                "unknown lr schedule `{other}`; accepted: {}",
                Self::NAMES.join(", ")
            ))),
        }
    }
}

fn half() -> f64 {
    0.5
}

/// The serde form of a schedule (`[optim.schedule]` in a config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// `constant`, `linear` or `cosine`.
    #[serde(default)]
    pub kind: ScheduleKind,
    /// Number of linear-warmup steps.
    #[serde(default)]
    pub warmup_steps: Option<u64>,
    /// Warmup as a fraction of the total steps (`ceil(ratio · T)`).
    #[serde(default)]
    pub warmup_ratio: Option<f64>,
    /// Cosine only: number of cosine cycles over the decay (½ = decay once to the minimum).
    #[serde(default = "half")]
    pub num_cycles: f64,
    /// Cosine only: the floor, as a fraction of the peak lr.
    #[serde(default)]
    pub min_lr_ratio: f64,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            kind: ScheduleKind::Constant,
            warmup_steps: None,
            warmup_ratio: None,
            num_cycles: 0.5,
            min_lr_ratio: 0.0,
        }
    }
}

/// A learning-rate schedule resolved for one run: peak lr, warmup and total steps.
#[derive(Debug, Clone, PartialEq)]
pub struct LrSchedule {
    kind: ScheduleKind,
    peak_lr: f64,
    warmup_steps: u64,
    total_steps: u64,
    num_cycles: f64,
    min_lr_ratio: f64,
}

impl LrSchedule {
    /// Resolves `cfg` for a run of `total_steps` optimizer steps peaking at `peak_lr`.
    pub fn new(cfg: &ScheduleConfig, peak_lr: f64, total_steps: u64) -> Result<Self> {
        if !(peak_lr.is_finite() && peak_lr >= 0.0) {
            return Err(OptimError::Config(format!(
                "peak lr must be finite and >= 0, got {peak_lr}"
            )));
        }
        let warmup_steps = match (cfg.warmup_steps, cfg.warmup_ratio) {
            (Some(_), Some(_)) => {
                return Err(OptimError::Config(
                    "set at most one of warmup_steps and warmup_ratio".into(),
                ))
            }
            (Some(w), None) => w,
            (None, Some(r)) => {
                if !(r.is_finite() && (0.0..=1.0).contains(&r)) {
                    return Err(OptimError::Config(format!(
                        "warmup_ratio must be in [0, 1], got {r}"
                    )));
                }
                (r * total_steps as f64).ceil() as u64
            }
            (None, None) => 0,
        };
        if cfg.kind != ScheduleKind::Constant && total_steps == 0 {
            return Err(OptimError::Config(format!(
                "a {:?} schedule needs total_steps > 0",
                cfg.kind
            )));
        }
        if !cfg.num_cycles.is_finite() || cfg.num_cycles <= 0.0 {
            return Err(OptimError::Config(format!(
                "num_cycles must be finite and > 0, got {}",
                cfg.num_cycles
            )));
        }
        if !(cfg.min_lr_ratio.is_finite() && (0.0..=1.0).contains(&cfg.min_lr_ratio)) {
            return Err(OptimError::Config(format!(
                "min_lr_ratio must be in [0, 1], got {}",
                cfg.min_lr_ratio
            )));
        }
        Ok(Self {
            kind: cfg.kind,
            peak_lr,
            warmup_steps,
            total_steps,
            num_cycles: cfg.num_cycles,
            min_lr_ratio: cfg.min_lr_ratio,
        })
    }

    /// The resolved number of warmup steps.
    pub fn warmup_steps(&self) -> u64 {
        self.warmup_steps
    }

    /// The peak learning rate.
    pub fn peak_lr(&self) -> f64 {
        self.peak_lr
    }

    /// The lr multiplier (`LambdaLR`'s lambda) at optimizer step `step` (0-based).
    pub fn multiplier(&self, step: u64) -> f64 {
        let (s, w, t) = (
            step as f64,
            self.warmup_steps as f64,
            self.total_steps as f64,
        );
        if step < self.warmup_steps {
            return s / w.max(1.0);
        }
        match self.kind {
            ScheduleKind::Constant => 1.0,
            ScheduleKind::Linear => ((t - s) / (t - w).max(1.0)).max(0.0),
            ScheduleKind::Cosine => {
                let progress = (s - w) / (t - w).max(1.0);
                let cos =
                    0.5 * (1.0 + (std::f64::consts::PI * self.num_cycles * 2.0 * progress).cos());
                let r = self.min_lr_ratio;
                (cos * (1.0 - r) + r).max(0.0)
            }
        }
    }

    /// The learning rate at optimizer step `step` (0-based): `peak_lr · multiplier(step)`.
    pub fn lr_at(&self, step: u64) -> f64 {
        self.peak_lr * self.multiplier(step)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sched(kind: ScheduleKind, warmup: u64, total: u64) -> LrSchedule {
        let cfg = ScheduleConfig {
            kind,
            warmup_steps: Some(warmup),
            ..Default::default()
        };
        LrSchedule::new(&cfg, 2.0, total).unwrap()
    }

    #[test]
    fn constant_with_warmup() {
        let s = sched(ScheduleKind::Constant, 4, 0);
        let got: Vec<f64> = (0..6).map(|i| s.lr_at(i)).collect();
        assert_eq!(got, vec![0.0, 0.5, 1.0, 1.5, 2.0, 2.0]);
        let s = sched(ScheduleKind::Constant, 0, 0);
        assert_eq!(s.lr_at(0), 2.0);
    }

    #[test]
    fn linear_with_warmup() {
        // W = 2, T = 6: 0, 1/2, then (6 - s) / 4.
        let s = sched(ScheduleKind::Linear, 2, 6);
        let got: Vec<f64> = (0..8).map(|i| s.multiplier(i)).collect();
        assert_eq!(got, vec![0.0, 0.5, 1.0, 0.75, 0.5, 0.25, 0.0, 0.0]);
    }

    #[test]
    fn cosine_with_warmup() {
        // W = 1, T = 5: 0, then ½(1 + cos(π (s − 1)/4)).
        let s = sched(ScheduleKind::Cosine, 1, 5);
        let half_sqrt2 = std::f64::consts::FRAC_1_SQRT_2;
        let want = [
            0.0,
            1.0,
            0.5 * (1.0 + half_sqrt2),
            0.5,
            0.5 * (1.0 - half_sqrt2),
            0.0,
        ];
        for (i, w) in want.iter().enumerate() {
            assert!((s.multiplier(i as u64) - w).abs() < 1e-15, "step {i}");
        }
        // With a floor of 0.1: 0.1 + 0.9 · 0.5 at the midpoint.
        let cfg = ScheduleConfig {
            kind: ScheduleKind::Cosine,
            warmup_steps: Some(1),
            min_lr_ratio: 0.1,
            ..Default::default()
        };
        let s = LrSchedule::new(&cfg, 1.0, 5).unwrap();
        assert!((s.lr_at(3) - 0.55).abs() < 1e-15);
        assert!((s.lr_at(5) - 0.1).abs() < 1e-15);
    }

    #[test]
    fn warmup_ratio_and_serde() {
        let cfg: ScheduleConfig =
            serde_json::from_str(r#"{"kind": "cosine", "warmup_ratio": 0.1}"#).unwrap();
        let s = LrSchedule::new(&cfg, 1.0, 25).unwrap();
        assert_eq!(s.warmup_steps(), 3); // ceil(2.5)
        let cfg: ScheduleConfig =
            serde_json::from_str(r#"{"kind": "constant_with_warmup"}"#).unwrap();
        assert_eq!(cfg.kind, ScheduleKind::Constant);
        let err = serde_json::from_str::<ScheduleConfig>(r#"{"kind": "poly"}"#).unwrap_err();
        assert!(err.to_string().contains("unknown variant"), "{err}");
        assert!(serde_json::from_str::<ScheduleConfig>(r#"{"warmup": 3}"#).is_err());
        assert!(ScheduleKind::from_name("poly").is_err());
        assert_eq!(
            ScheduleKind::from_name("linear").unwrap(),
            ScheduleKind::Linear
        );
        let both = ScheduleConfig {
            warmup_steps: Some(1),
            warmup_ratio: Some(0.1),
            ..Default::default()
        };
        assert!(LrSchedule::new(&both, 1.0, 10).is_err());
        let lin = ScheduleConfig {
            kind: ScheduleKind::Linear,
            ..Default::default()
        };
        assert!(LrSchedule::new(&lin, 1.0, 0).is_err());
    }
}
