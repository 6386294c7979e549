//! KL coefficient controllers: the β that multiplies the KL term (in the loss or in the reward),
//! either fixed or adapted towards a target KL (Ziegler et al. 2019, "Fine-Tuning Language Models
//! from Human Preferences", §2.2), with their state serialisable for checkpoints.
//!
//! Adaptive rule, per update with the measured KL `kl` over `n_steps` samples:
//! e = clip(kl / target − 1, −0.2, 0.2), β ← β · (1 + e · n_steps / horizon) — the same
//! arithmetic, in the same order, as verl's `AdaptiveKLController` (defaults there: β₀ = 0.001,
//! target 0.1, horizon 10000; `type = "fixed"` is verl's default).

use crate::{MathError, Result};

/// A KL coefficient and how it moves. Serialises as `{"type": "fixed" | "adaptive", …}`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum KlController {
    /// β never changes (verl `FixedKLController`).
    Fixed {
        /// The coefficient β.
        value: f64,
    },
    /// β follows the measured KL towards `target` (verl `AdaptiveKLController`).
    Adaptive {
        /// The current coefficient β.
        value: f64,
        /// The KL the controller steers towards.
        target: f64,
        /// Samples over which a full ±20 % correction is applied.
        horizon: f64,
    },
}

impl KlController {
    /// The accepted `type` names.
    pub const TYPES: [&'static str; 2] = ["fixed", "adaptive"];

    /// A fixed coefficient.
    pub fn fixed(kl_coef: f64) -> Result<Self> {
        check_finite("kl_coef", kl_coef)?;
        Ok(Self::Fixed { value: kl_coef })
    }

    /// An adaptive controller starting at `init_kl_coef`; `target_kl` and `horizon` must be > 0.
    pub fn adaptive(init_kl_coef: f64, target_kl: f64, horizon: f64) -> Result<Self> {
        check_finite("kl_coef", init_kl_coef)?;
        if !(target_kl.is_finite() && target_kl > 0.0) {
            return Err(MathError::InvalidInput(format!(
                "an adaptive KL controller needs target_kl > 0, got {target_kl}"
            )));
        }
        if !(horizon.is_finite() && horizon > 0.0) {
            return Err(MathError::InvalidInput(format!(
                "an adaptive KL controller needs horizon > 0, got {horizon}"
            )));
        }
        Ok(Self::Adaptive {
            value: init_kl_coef,
            target: target_kl,
            horizon,
        })
    }

    /// verl's `get_kl_controller`: `kl_type` is `"fixed"` (ignores target and horizon) or
    /// `"adaptive"`; anything else is an error listing both.
    pub fn from_verl(kl_type: &str, kl_coef: f64, target_kl: f64, horizon: f64) -> Result<Self> {
        match kl_type {
            "fixed" => Self::fixed(kl_coef),
            "adaptive" => Self::adaptive(kl_coef, target_kl, horizon),
            other => Err(MathError::unknown("kl_ctrl.type", other, &Self::TYPES)),
        }
    }

    /// The current coefficient β.
    pub fn value(&self) -> f64 {
        match self {
            Self::Fixed { value } | Self::Adaptive { value, .. } => *value,
        }
    }

    /// Feeds one measurement: `current_kl` averaged over a batch of `n_steps` samples. A fixed
    /// controller ignores it; a non-finite KL is an error and leaves the state unchanged.
    pub fn update(&mut self, current_kl: f64, n_steps: usize) -> Result<()> {
        match self {
            Self::Fixed { .. } => Ok(()),
            Self::Adaptive {
                value,
                target,
                horizon,
            } => {
                if !current_kl.is_finite() {
                    return Err(MathError::InvalidInput(format!(
                        "the KL fed to the adaptive controller is not finite: {current_kl}"
                    )));
                }
                let error = (current_kl / *target - 1.0).clamp(-0.2, 0.2);
                let mult = 1.0 + error * n_steps as f64 / *horizon;
                *value *= mult;
                Ok(())
            }
        }
    }
}

fn check_finite(name: &str, x: f64) -> Result<()> {
    if x.is_finite() {
        Ok(())
    } else {
        Err(MathError::InvalidInput(format!(
            "{name} must be finite, got {x}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adaptive_by_hand() {
        let mut c = KlController::adaptive(0.1, 0.5, 100.0).unwrap();
        // e = 1.0/0.5 − 1 = 1 → clipped to 0.2; β = 0.1 · (1 + 0.2 · 10 / 100) = 0.102
        c.update(1.0, 10).unwrap();
        assert!((c.value() - 0.102).abs() < 1e-15);
        // e = 0.45/0.5 − 1 = −0.1; β = 0.102 · (1 − 0.1 · 50 / 100) = 0.0969
        c.update(0.45, 50).unwrap();
        assert!((c.value() - 0.0969).abs() < 1e-15);
        // at the target nothing moves
        c.update(0.5, 1000).unwrap();
        assert!((c.value() - 0.0969).abs() < 1e-15);
        assert!(c.update(f64::NAN, 1).is_err());
    }

    #[test]
    fn fixed_ignores_updates_and_state_round_trips() {
        let mut f = KlController::from_verl("fixed", 0.05, 0.1, 10000.0).unwrap();
        f.update(3.0, 64).unwrap();
        assert_eq!(f.value(), 0.05);
        let mut a = KlController::from_verl("adaptive", 0.2, 6.0, 10000.0).unwrap();
        a.update(11.0, 64).unwrap();
        let json = serde_json::to_string(&a).unwrap();
        assert!(json.contains("\"type\":\"adaptive\""), "{json}");
        let back: KlController = serde_json::from_str(&json).unwrap();
        assert_eq!(back, a);
        let err = KlController::from_verl("pid", 0.1, 0.1, 1.0)
            .unwrap_err()
            .to_string();
        assert!(err.contains("pid") && err.contains("adaptive"));
        assert!(KlController::adaptive(0.1, 0.0, 1.0).is_err());
        assert!(KlController::adaptive(0.1, 0.1, 0.0).is_err());
    }
}
