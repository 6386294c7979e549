//! LoRA configuration: which linear layers get low-rank adapters, their rank and scaling.

use crate::error::{ModelError, Result};
use serde::{Deserialize, Serialize};

/// LoRA settings (PEFT-compatible names).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraConfig {
    /// Adapter rank `r`.
    pub rank: usize,
    /// Scaling numerator: the update is multiplied by `alpha / rank`.
    pub alpha: f64,
    /// Module names that get adapters, e.g. `["q_proj", "v_proj"]`.
    pub target_modules: Vec<String>,
}

impl Default for LoraConfig {
    fn default() -> Self {
        Self {
            rank: 16,
            alpha: 32.0,
            target_modules: [
                "q_proj",
                "k_proj",
                "v_proj",
                "o_proj",
                "gate_proj",
                "up_proj",
                "down_proj",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        }
    }
}

impl LoraConfig {
    /// Checks rank and alpha.
    pub fn validate(&self) -> Result<()> {
        if self.rank == 0 {
            return Err(ModelError::Input("LoRA rank must be > 0".into()));
        }
        if !self.alpha.is_finite() || self.alpha <= 0.0 {
            return Err(ModelError::Input(format!(
                "LoRA alpha must be a positive number, got {}",
                self.alpha
            )));
        }
        Ok(())
    }
}
