//! Seeded synthetic preference pairs (`synthetic:arith_pairs`): the arithmetic problems of
//! [`crate::synthetic::arith`] with the correct integer as `chosen` and a wrong one as `rejected`,
//! so reward-model and DPO examples run without any file. Kept apart from the prompt generators
//! on purpose: it only reuses [`arith`] and adds the pair fields.

use crate::error::Result;
use crate::example::Example;
use crate::shuffle::SplitMix64;
use crate::synthetic::{arith, ArithParams};

/// Seed offset of the wrong-answer stream, so the problems are exactly `arith`'s for the same
/// parameters.
const WRONG_STREAM: u64 = 0x5752_4f4e_4750_4149; // "WRONGPAI"

/// The arithmetic problems of `p` as preference pairs: `chosen` is the exact result, `rejected`
/// the result plus a non-zero offset in `-9..=9` (so a wrong answer may be negative or longer);
/// `answer` keeps the correct result. The same parameters always give the same pairs.
pub fn arith_pairs(p: &ArithParams) -> Result<Vec<Example>> {
    let mut rng = SplitMix64::new(p.seed ^ WRONG_STREAM);
    let mut out = arith(p)?;
    for (i, e) in out.iter_mut().enumerate() {
        let right: i64 = e
            .answer
            .as_deref()
            .and_then(|a| a.parse().ok())
            .unwrap_or(0);
        let mut offset = rng.range_inclusive(-9, 8);
        if offset >= 0 {
            offset += 1;
        }
        e.id = format!("arith-pair-{i}");
        e.chosen = Some(right.to_string());
        e.rejected = Some((right + offset).to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_right_versus_wrong_and_seeded() {
        let p = ArithParams {
            n: 50,
            seed: 3,
            ..ArithParams::default()
        };
        let a = arith_pairs(&p).unwrap();
        assert_eq!(a, arith_pairs(&p).unwrap());
        let plain = arith(&p).unwrap();
        for (e, q) in a.iter().zip(&plain) {
            assert_eq!(e.prompt, q.prompt, "same problems as `arith`");
            assert_eq!(e.chosen, e.answer);
            assert_ne!(e.chosen, e.rejected);
            let d: i64 = e.rejected.as_deref().unwrap().parse::<i64>().unwrap()
                - e.chosen.as_deref().unwrap().parse::<i64>().unwrap();
            assert!((1..=9).contains(&d.abs()), "{d}");
            assert_eq!(e.kind(), crate::RecordKind::Preference);
        }
    }
}
