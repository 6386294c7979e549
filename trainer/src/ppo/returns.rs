//! PPO's advantages and returns from token rewards and the critic's rollout-time values
//! (REFERENCE-MATH "PPO / GAE"): optional reward whitening (TRL `whiten_rewards`: unit variance
//! over the completion tokens, mean kept), GAE with γ and λ (the math crate's
//! [`crate::advantages::gae`], verl's recursion), returns = A + V from the unwhitened A, and the
//! advantages whitened over the completion tokens when asked (TRL and verl always do).

use crate::advantages::gae;
use crate::config::PpoConfig;
use crate::masked::{masked_whiten, select};
use crate::train_error::TrainResult;
use candle_core::Tensor;

/// `(advantages, returns)`, `[N × L]` each, from token `rewards`, old `values` and the
/// completion `mask` (all `[N × L]`).
pub fn advantages_and_returns(
    rewards: &Tensor,
    values: &Tensor,
    mask: &Tensor,
    p: &PpoConfig,
) -> TrainResult<(Tensor, Tensor)> {
    let rewards = if p.whiten_rewards {
        masked_whiten(rewards, mask, false)?
    } else {
        rewards.clone()
    };
    let (white, returns) = gae(&rewards, values, mask, p.gamma, p.lam)?;
    let adv = if p.whiten_advantages {
        white
    } else {
        select(&(&returns - values)?, mask)?
    };
    Ok((adv, returns))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn cfg(whiten_advantages: bool, whiten_rewards: bool) -> PpoConfig {
        PpoConfig {
            gamma: 0.9,
            lam: 0.8,
            whiten_advantages,
            whiten_rewards,
            ..PpoConfig::default()
        }
    }

    fn v2(t: &Tensor) -> Vec<Vec<f64>> {
        t.to_vec2::<f64>().unwrap()
    }

    /// Row 0 (3 tokens): r = (0, 0, 1), V = (0.5, 0.6, 0.7), γ = 0.9, λ = 0.8 (γλ = 0.72):
    ///   δ₂ = 1 − 0.7 = 0.3                    A₂ = 0.3
    ///   δ₁ = 0.9·0.7 − 0.6 = 0.03             A₁ = 0.03 + 0.72·0.3 = 0.246
    ///   δ₀ = 0.9·0.6 − 0.5 = 0.04             A₀ = 0.04 + 0.72·0.246 = 0.21712
    ///   returns = A + V = (0.71712, 0.846, 1.0)
    /// Row 1 (2 tokens, one padding column whose value 9 must not leak):
    ///   r = (0, 1), V = (0.2, 0.4): A₁ = 1 − 0.4 = 0.6; A₀ = 0.9·0.4 − 0.2 + 0.72·0.6 = 0.592.
    #[test]
    fn gae_by_hand_with_padding() {
        let d = Device::Cpu;
        let r = Tensor::new(&[[0.0f64, 0.0, 1.0], [0.0, 1.0, 0.0]], &d).unwrap();
        let v = Tensor::new(&[[0.5f64, 0.6, 0.7], [0.2, 0.4, 9.0]], &d).unwrap();
        let m = Tensor::new(&[[1.0f64, 1.0, 1.0], [1.0, 1.0, 0.0]], &d).unwrap();
        let (a, g) = advantages_and_returns(&r, &v, &m, &cfg(false, false)).unwrap();
        let (a, g) = (v2(&a), v2(&g));
        let want_a = [[0.21712, 0.246, 0.3], [0.592, 0.6, 0.0]];
        let want_g: [&[f64]; 2] = [&[0.71712, 0.846, 1.0], &[0.792, 1.0]];
        for i in 0..2 {
            for j in 0..want_g[i].len() {
                assert!((a[i][j] - want_a[i][j]).abs() < 1e-12, "A {a:?}");
                assert!((g[i][j] - want_g[i][j]).abs() < 1e-12, "G {g:?}");
            }
        }
        assert_eq!(a[1][2], 0.0, "padding gets no advantage");

        // Whitened: the same order, mean 0 and unbiased std 1 over the 5 real tokens.
        let (w, g2) = advantages_and_returns(&r, &v, &m, &cfg(true, false)).unwrap();
        assert_eq!(
            v2(&g2)[0],
            g[0],
            "returns come from the unwhitened advantages"
        );
        let w = v2(&w);
        let real = [w[0][0], w[0][1], w[0][2], w[1][0], w[1][1]];
        let mean = real.iter().sum::<f64>() / 5.0;
        let var = real.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / 4.0;
        assert!(
            mean.abs() < 1e-6 && (var - 1.0).abs() < 1e-6,
            "{mean} {var}"
        );
        assert!(w[0][0] < w[0][1] && w[0][1] < w[0][2] && w[1][0] < w[1][1]);
    }

    #[test]
    fn reward_whitening_scales_without_shifting() {
        let d = Device::Cpu;
        // Rewards (0, 2) on one row: mean 1, unbiased std √2: whitened (1 − 1/√2, 1 + 1/√2).
        let r = Tensor::new(&[[0.0f64, 2.0]], &d).unwrap();
        let v = Tensor::new(&[[0.0f64, 0.0]], &d).unwrap();
        let m = Tensor::new(&[[1.0f64, 1.0]], &d).unwrap();
        let p = PpoConfig {
            gamma: 1.0,
            lam: 1.0,
            ..cfg(false, true)
        };
        let (a, _) = advantages_and_returns(&r, &v, &m, &p).unwrap();
        let a = v2(&a)[0].clone();
        let s = 2f64.sqrt();
        let (r0, r1) = (1.0 - 1.0 / s, 1.0 + 1.0 / s);
        // γ = λ = 1, V = 0: A_t = Σ_{k ≥ t} r_k.
        assert!(
            (a[1] - r1).abs() < 1e-6 && (a[0] - (r0 + r1)).abs() < 1e-6,
            "{a:?}"
        );
    }
}
