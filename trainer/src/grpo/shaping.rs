//! Reward shaping and group selection of DAPO (Yu et al. 2025, "DAPO: An Open-Source LLM
//! Reinforcement Learning System at Scale"): the soft overlong punishment (Eq. 13) and the
//! dynamic-sampling rule that a group whose rewards are all equal is uninformative.

/// DAPO's soft overlong punishment of a completion of `len` tokens when at most `max_tokens` are
/// generated and the last `buffer` of them are the punishment interval (L_cache):
/// 0 while `len ≤ max_tokens − buffer`, then `((max_tokens − buffer) − len) / buffer · penalty`
/// (linear from 0 to −`penalty`), −`penalty` beyond `max_tokens`. `buffer = 0` is off.
pub fn overlong_penalty(len: usize, max_tokens: usize, buffer: usize, penalty: f64) -> f64 {
    if buffer == 0 {
        return 0.0;
    }
    let expected = max_tokens.saturating_sub(buffer);
    if len <= expected {
        0.0
    } else if len <= max_tokens {
        (expected as f64 - len as f64) / buffer as f64 * penalty
    } else {
        -penalty
    }
}

/// Whether a group's rewards differ (DAPO keeps groups with 0 < accuracy < 1; with shaped
/// rewards the rule is "not all equal", i.e. a non-zero standard deviation).
pub fn informative(rewards: &[f64]) -> bool {
    rewards.windows(2).any(|w| w[0] != w[1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlong_penalty_is_dapo_eq_13() {
        // L_max = 20, L_cache = 4: free up to 16, then −1/4 per token, −1 at 20, −1 beyond.
        let p = |len| overlong_penalty(len, 20, 4, 1.0);
        assert_eq!(p(3), 0.0);
        assert_eq!(p(16), 0.0);
        assert_eq!(p(17), -0.25);
        assert_eq!(p(18), -0.5);
        assert_eq!(p(20), -1.0);
        assert_eq!(p(25), -1.0);
        assert_eq!(overlong_penalty(18, 20, 4, 0.5), -0.25);
        assert_eq!(overlong_penalty(20, 20, 0, 1.0), 0.0, "buffer 0 is off");
    }

    #[test]
    fn a_group_is_informative_when_its_rewards_differ() {
        assert!(!informative(&[1.0, 1.0, 1.0]));
        assert!(!informative(&[0.0; 4]));
        assert!(!informative(&[0.5]));
        assert!(informative(&[0.0, 1.0, 0.0]));
        assert!(informative(&[1.0, 1.0, 0.999]));
    }
}
