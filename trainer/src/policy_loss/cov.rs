//! Clip-Cov and KL-Cov ("The Entropy Mechanism of Reinforcement Learning for Reasoning Language
//! Models", verl `clip_cov` / `kl_cov`): act on the few tokens whose centred log-prob × advantage
//! covariance Cov_t = (A_t − Ā)(log π_t − mean log π) is largest, to slow entropy collapse.
//!
//! - Clip-Cov: among valid tokens not already clipped by PPO with lb < Cov_t < ub (strict),
//!   pick k = max(⌊ratio·N⌋, 1) at random (all when fewer) and drop their loss (× 0). The means
//!   are verl's masked means (Σ / (N + 1e-8)). The pick uses a seeded generator, so a run is
//!   reproducible; it cannot reproduce `torch.randperm` when there are more candidates than k.
//! - KL-Cov: the k = max(⌊ratio·N⌋, 1) valid tokens with the largest Cov_t (plain means) get
//!   −A·r + β·|ℓ|; every other token −A·r; no clipping anywhere.
//!
//! The selection is on detached values, computed on the host; the returned masks are constants.

use candle_core::Tensor;

use crate::{MathError, Result};

/// Clip-Cov / KL-Cov parameters (verl's `policy_loss` fields and defaults).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CovParams {
    /// Clip-Cov: fraction of valid tokens to drop (`clip_cov_ratio`, 2e-4).
    pub clip_cov_ratio: f64,
    /// Clip-Cov: lower covariance bound (`clip_cov_lb`, 1.0).
    pub clip_cov_lb: f64,
    /// Clip-Cov: upper covariance bound (`clip_cov_ub`, 5.0).
    pub clip_cov_ub: f64,
    /// KL-Cov: fraction of valid tokens penalised (`kl_cov_ratio`, 2e-4; a fraction, not a percent).
    pub kl_cov_ratio: f64,
    /// KL-Cov: coefficient of |ℓ| (`ppo_kl_coef`; verl config 0.1, the paper 1.0).
    pub ppo_kl_coef: f64,
    /// Seed of Clip-Cov's random pick.
    pub seed: u64,
}

impl Default for CovParams {
    fn default() -> Self {
        Self {
            clip_cov_ratio: 2e-4,
            clip_cov_lb: 1.0,
            clip_cov_ub: 5.0,
            kl_cov_ratio: 2e-4,
            ppo_kl_coef: 0.1,
            seed: 0,
        }
    }
}

fn host(t: &Tensor) -> Result<Vec<f64>> {
    Ok(t.detach()
        .to_dtype(candle_core::DType::F64)?
        .flatten_all()?
        .to_vec1::<f64>()?)
}

/// Cov_t on the host, with the means over valid tokens divided by (N + `eps`).
fn covariance(adv: &[f64], logp: &[f64], mask: &[f64], eps: f64) -> Vec<f64> {
    let n: f64 = mask.iter().filter(|&&m| m != 0.0).copied().sum();
    let mean = |v: &[f64]| -> f64 {
        v.iter()
            .zip(mask)
            .filter(|(_, &m)| m != 0.0)
            .map(|(x, m)| x * m)
            .sum::<f64>()
            / (n + eps)
    };
    let (ma, ml) = (mean(adv), mean(logp));
    adv.iter()
        .zip(logp)
        .map(|(a, l)| (a - ma) * (l - ml))
        .collect()
}

/// A small deterministic generator (SplitMix64) for Clip-Cov's pick.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Clip-Cov's keep-mask `[B × T]`: 0 on the tokens whose loss is dropped, 1 elsewhere.
/// `ppo_clipped` is 1 where PPO's clip is active (−A·clip(r) > −A·r).
pub fn clip_cov_keep(
    adv: &Tensor,
    logp: &Tensor,
    mask: &Tensor,
    ppo_clipped: &Tensor,
    p: &CovParams,
) -> Result<Tensor> {
    if p.clip_cov_ratio.is_nan() || p.clip_cov_ratio <= 0.0 {
        return Err(MathError::InvalidInput(format!(
            "clip_cov_ratio must be > 0, got {}",
            p.clip_cov_ratio
        )));
    }
    let (a, l, m, c) = (host(adv)?, host(logp)?, host(mask)?, host(ppo_clipped)?);
    let cov = covariance(&a, &l, &m, 1e-8);
    let n: f64 = m.iter().sum();
    let k = ((p.clip_cov_ratio * n).floor() as usize).max(1);
    let mut cand: Vec<usize> = (0..cov.len())
        .filter(|&i| m[i] > 0.0 && c[i] == 0.0 && cov[i] > p.clip_cov_lb && cov[i] < p.clip_cov_ub)
        .collect();
    if cand.len() > k {
        let mut rng = SplitMix(p.seed);
        for i in 0..k {
            let j = i + (rng.next() % (cand.len() - i) as u64) as usize;
            cand.swap(i, j);
        }
        cand.truncate(k);
    }
    let mut keep = vec![1.0f64; cov.len()];
    for i in cand {
        keep[i] = 0.0;
    }
    Ok(Tensor::from_vec(keep, adv.dims(), adv.device())?.to_dtype(adv.dtype())?)
}

/// KL-Cov's selection `[B × T]`: 1 on the top-k covariance tokens, else 0.
pub fn kl_cov_select(adv: &Tensor, logp: &Tensor, mask: &Tensor, p: &CovParams) -> Result<Tensor> {
    if p.kl_cov_ratio.is_nan() || p.kl_cov_ratio <= 0.0 {
        return Err(MathError::InvalidInput(format!(
            "kl_cov_ratio must be > 0, got {}",
            p.kl_cov_ratio
        )));
    }
    let (a, l, m) = (host(adv)?, host(logp)?, host(mask)?);
    let cov = covariance(&a, &l, &m, 0.0);
    let mut valid: Vec<usize> = (0..cov.len()).filter(|&i| m[i] > 0.0).collect();
    let k = ((valid.len() as f64 * p.kl_cov_ratio) as usize).max(1);
    // largest first; ties keep the earlier position
    valid.sort_by(|&i, &j| cov[j].total_cmp(&cov[i]).then(i.cmp(&j)));
    let mut sel = vec![0.0f64; cov.len()];
    for &i in valid.iter().take(k) {
        sel[i] = 1.0;
    }
    Ok(Tensor::from_vec(sel, adv.dims(), adv.device())?.to_dtype(adv.dtype())?)
}

/// KL-Cov per-token loss: −A·r + sel·β·|ℓ|.
pub fn kl_cov_loss(
    ratio: &Tensor,
    log_ratio: &Tensor,
    adv: &Tensor,
    selected: &Tensor,
    coef: f64,
) -> Result<Tensor> {
    let base = (adv * ratio)?.neg()?;
    Ok((base + ((log_ratio.abs()? * coef)? * selected)?)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// SEED-MECHANISMS §3 worked example: (log π, A) = (−0.1, 2), (−2, 2), (−0.2, −1), (−3, −1).
    fn example() -> (Tensor, Tensor, Tensor) {
        let d = &Device::Cpu;
        let lp = Tensor::new(&[[-0.1f64, -2.0, -0.2, -3.0]], d).unwrap();
        let a = Tensor::new(&[[2.0f64, 2.0, -1.0, -1.0]], d).unwrap();
        let m = Tensor::new(&[[1.0f64, 1.0, 1.0, 1.0]], d).unwrap();
        (lp, a, m)
    }

    #[test]
    fn covariances_of_the_worked_example() {
        let cov = covariance(
            &[2.0, 2.0, -1.0, -1.0],
            &[-0.1, -2.0, -0.2, -3.0],
            &[1.0; 4],
            0.0,
        );
        for (c, want) in cov.iter().zip([1.8375, -1.0125, -1.6875, 2.5125]) {
            assert!((c - want).abs() < 1e-12);
        }
    }

    #[test]
    fn clip_cov_drops_both_band_tokens_with_ratio_one_half() {
        let (lp, a, m) = example();
        let p = CovParams {
            clip_cov_ratio: 0.5,
            clip_cov_lb: 1.0,
            clip_cov_ub: 5.0,
            ..Default::default()
        };
        let keep = clip_cov_keep(&a, &lp, &m, &m.zeros_like().unwrap(), &p).unwrap();
        assert_eq!(keep.to_vec2::<f64>().unwrap()[0], vec![0.0, 1.0, 1.0, 0.0]);
        // losses with ratio 1: [0, −2, 1, 0], token-mean −0.25
        let loss = ((a.neg().unwrap() * keep).unwrap().sum_all().unwrap() / 4.0).unwrap();
        assert!((loss.to_scalar::<f64>().unwrap() + 0.25).abs() < 1e-12);
        // with a tiny ratio exactly one of t1, t4 is dropped
        let p = CovParams {
            clip_cov_ratio: 2e-4,
            ..p
        };
        let keep = clip_cov_keep(&a, &lp, &m, &m.zeros_like().unwrap(), &p).unwrap();
        let k = keep.to_vec2::<f64>().unwrap()[0].clone();
        assert_eq!(k.iter().filter(|&&x| x == 0.0).count(), 1);
        assert!(k[0] == 0.0 || k[3] == 0.0);
    }

    #[test]
    fn kl_cov_penalises_the_top_token() {
        let (lp, a, m) = example();
        let p = CovParams {
            kl_cov_ratio: 0.25,
            ppo_kl_coef: 1.0,
            ..Default::default()
        };
        let sel = kl_cov_select(&a, &lp, &m, &p).unwrap();
        assert_eq!(sel.to_vec2::<f64>().unwrap()[0], vec![0.0, 0.0, 0.0, 1.0]);
        // log π_old(t4) = −3.1: r = e^0.1, L = 1.105171 + 0.1
        let old = Tensor::new(&[[-0.1f64, -2.0, -0.2, -3.1]], &Device::Cpu).unwrap();
        let lr = (&lp - &old).unwrap();
        let l = kl_cov_loss(&lr.exp().unwrap(), &lr, &a, &sel, 1.0).unwrap();
        let v = l.to_vec2::<f64>().unwrap()[0][3];
        assert!((v - 1.205171).abs() < 1e-6, "{v}");
    }
}
