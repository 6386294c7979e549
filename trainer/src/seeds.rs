//! Every random choice of a run is drawn from a seed derived from `(run seed, purpose, step,
//! index)`, never from a stream that advances: the step number is the whole RNG state, so a
//! resumed run makes exactly the choices the uninterrupted run would have made.

use oxrl_datasets::SplitMix64;

/// What a derived seed is for (keeps the streams of different purposes apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u64)]
pub enum Purpose {
    /// Sampling the completions of one prompt.
    Rollout = 1,
    /// The order of sequences in the mini-batches of one optimisation epoch.
    MiniBatches = 2,
    /// LoRA adapter initialisation.
    Lora = 3,
    /// Score-head (reward model / PPO value head) initialisation.
    ScoreHead = 4,
}

/// A seed for `purpose` at `step`, item `index`.
pub fn derive(seed: u64, purpose: Purpose, step: u64, index: u64) -> u64 {
    let mut r = SplitMix64::new(seed ^ (purpose as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let a = r.next_u64() ^ step.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let mut r = SplitMix64::new(a);
    let b = r.next_u64() ^ index.wrapping_mul(0x94D0_49BB_1331_11EB);
    SplitMix64::new(b).next_u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_differ_by_purpose_step_and_index_and_repeat() {
        let s = derive(1, Purpose::Rollout, 3, 0);
        assert_eq!(s, derive(1, Purpose::Rollout, 3, 0));
        for other in [
            derive(2, Purpose::Rollout, 3, 0),
            derive(1, Purpose::MiniBatches, 3, 0),
            derive(1, Purpose::Rollout, 4, 0),
            derive(1, Purpose::Rollout, 3, 1),
        ] {
            assert_ne!(s, other);
        }
    }
}
