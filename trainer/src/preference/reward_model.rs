//! The Bradley–Terry reward-model loss (TRL's `RewardTrainer`): the probability that the chosen
//! completion wins is σ(r_w − r_l), trained by its negative log-likelihood, with an optional
//! per-pair margin and TRL's `center_rewards_coefficient` term that keeps rewards near zero.

use candle_core::Tensor;

use super::sigmoid::log_sigmoid;
use crate::{MathError, Result};

/// Options of the Bradley–Terry loss (TRL `RewardConfig` names).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RewardLossConfig {
    /// Adds coef · mean((r_w + r_l)²) (Eisenstein et al.); absent: no centring term.
    pub center_rewards_coefficient: Option<f64>,
}

/// mean(−log σ(r_w − r_l − m)) [+ c · mean((r_w + r_l)²)] over `[B]` rewards, `margin` `[B]`
/// optional; differentiable in both reward tensors.
pub fn bradley_terry_loss(
    chosen_rewards: &Tensor,
    rejected_rewards: &Tensor,
    margin: Option<&Tensor>,
    cfg: &RewardLossConfig,
) -> Result<Tensor> {
    if chosen_rewards.dims() != rejected_rewards.dims() || chosen_rewards.rank() != 1 {
        return Err(MathError::Shape(format!(
            "rewards must be two [B] tensors, got {:?} and {:?}",
            chosen_rewards.dims(),
            rejected_rewards.dims()
        )));
    }
    let mut diff = (chosen_rewards - rejected_rewards)?;
    if let Some(m) = margin {
        if m.dims() != diff.dims() {
            return Err(MathError::Shape(format!(
                "margin {:?} vs rewards {:?}",
                m.dims(),
                diff.dims()
            )));
        }
        let m = m.to_dtype(diff.dtype())?;
        diff = (diff - m)?;
    }
    let mut loss = log_sigmoid(&diff)?.neg()?.mean_all()?;
    if let Some(c) = cfg.center_rewards_coefficient {
        if !c.is_finite() {
            return Err(MathError::InvalidInput(format!(
                "center_rewards_coefficient must be finite, got {c}"
            )));
        }
        let centre = (chosen_rewards + rejected_rewards)?.sqr()?.mean_all()?;
        loss = (loss + (centre * c)?)?;
    }
    Ok(loss)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn hand_computed_bradley_terry() {
        // r_w − r_l = (1, −1): loss = ½[log(1 + e^{−1}) + log(1 + e^{1})] = ½(0.313262 + 1.313262).
        let w = Var::new(&[2.0f64, 0.0], &Device::Cpu).unwrap();
        let l = Tensor::new(&[1.0f64, 1.0], &Device::Cpu).unwrap();
        let loss =
            bradley_terry_loss(w.as_tensor(), &l, None, &RewardLossConfig::default()).unwrap();
        let want = 0.5 * ((1.0 + (-1.0f64).exp()).ln() + (1.0 + 1.0f64.exp()).ln());
        assert!((loss.to_scalar::<f64>().unwrap() - want).abs() < 1e-12);
        assert!((want - 0.813_261_687_5).abs() < 1e-9);
        // d/dr_w = −½ σ(−d): (−½·0.268941, −½·0.731059).
        let g = loss
            .backward()
            .unwrap()
            .get(&w)
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        assert!((g[0] + 0.5 * 0.268_941_421_369_995).abs() < 1e-12, "{g:?}");
        assert!((g[1] + 0.5 * 0.731_058_578_630_005).abs() < 1e-12, "{g:?}");
    }

    #[test]
    fn margin_and_centering() {
        // d − m = 0 on both rows: log 2; centring: c · mean((3, 1)²) = 0.01 · 5.
        let w = Tensor::new(&[2.0f64, 0.5], &Device::Cpu).unwrap();
        let l = Tensor::new(&[1.0f64, 0.5], &Device::Cpu).unwrap();
        let m = Tensor::new(&[1.0f64, 0.0], &Device::Cpu).unwrap();
        let cfg = RewardLossConfig {
            center_rewards_coefficient: Some(0.01),
        };
        let loss = bradley_terry_loss(&w, &l, Some(&m), &cfg)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        assert!((loss - (2.0f64.ln() + 0.05)).abs() < 1e-12, "{loss}");
    }
}
