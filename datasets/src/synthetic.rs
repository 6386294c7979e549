//! Seeded synthetic task generators: multi-digit arithmetic, arithmetic preference pairs (the
//! correct result chosen, a wrong one rejected) and countdown-style number puzzles.
//! The same parameters and seed always give the same examples (the PRNG is the crate's own
//! [`SplitMix64`]). The metadata field names are a contract with the `arith` verifier:
//! arithmetic rows carry `{"kind": "arith", ...}`, countdown rows carry
//! `{"kind": "countdown", "numbers": [ints], "target": int}`.

use crate::error::{DatasetError, Result};
use crate::example::{Example, Prompt};
use crate::shuffle::{shuffle_with, SplitMix64};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// Parameters of the arithmetic generator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ArithParams {
    /// Number of examples.
    pub n: usize,
    /// Seed.
    pub seed: u64,
    /// Fewest digits of an operand (1..=9).
    pub min_digits: u32,
    /// Most digits of an operand (1..=9).
    pub max_digits: u32,
    /// Operators to draw from: any of `+`, `-`, `*`.
    pub ops: Vec<String>,
    /// Whether a subtraction may have a negative result (else operands are ordered).
    pub allow_negative: bool,
    /// Imperfect demonstrations: with this probability, an addition whose exact result needs a
    /// carry gets as its `completion` (the SFT target of `target = "completion"`) the sum
    /// written digit by digit without carrying (`47 + 38` → `75`); every other example's
    /// `completion` is the exact result. The reference `answer` the verifiers check stays
    /// exact. `0` (the default) writes no `completion`. Drawn from a stream of its own, so the
    /// problems are the same for every value.
    pub teacher_carry_slip: f64,
}

impl Default for ArithParams {
    fn default() -> Self {
        Self {
            n: 1000,
            seed: 0,
            min_digits: 1,
            max_digits: 3,
            ops: vec!["+".into(), "-".into(), "*".into()],
            allow_negative: false,
            teacher_carry_slip: 0.0,
        }
    }
}

/// Parameters of the countdown generator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CountdownParams {
    /// Number of examples.
    pub n: usize,
    /// Seed.
    pub seed: u64,
    /// How many numbers each puzzle gives (2..=6); the generated solution uses all of them.
    pub count: usize,
    /// Smallest number.
    pub min_number: i64,
    /// Largest number.
    pub max_number: i64,
    /// Largest target (targets are in `1..=max_target`).
    pub max_target: i64,
}

impl Default for CountdownParams {
    fn default() -> Self {
        Self {
            n: 1000,
            seed: 0,
            count: 4,
            min_number: 1,
            max_number: 100,
            max_target: 1000,
        }
    }
}

fn random_operand(rng: &mut SplitMix64, min_digits: u32, max_digits: u32) -> i64 {
    let d = rng.range_inclusive(i64::from(min_digits), i64::from(max_digits)) as u32;
    let lo = if d == 1 { 0 } else { 10i64.pow(d - 1) };
    rng.range_inclusive(lo, 10i64.pow(d) - 1)
}

/// Generates arithmetic problems `a op b`; the answer is the exact integer result.
pub fn arith(p: &ArithParams) -> Result<Vec<Example>> {
    if !(1..=9).contains(&p.min_digits) || !(p.min_digits..=9).contains(&p.max_digits) {
        return Err(DatasetError::Config(format!(
            "arith: need 1 <= min_digits <= max_digits <= 9, got {}..{}",
            p.min_digits, p.max_digits
        )));
    }
    if p.ops.is_empty() || p.ops.iter().any(|o| !matches!(o.as_str(), "+" | "-" | "*")) {
        return Err(DatasetError::Config(format!(
            "arith: ops must be a non-empty list of \"+\", \"-\", \"*\"; got {:?}",
            p.ops
        )));
    }
    if !(0.0..=1.0).contains(&p.teacher_carry_slip) {
        return Err(DatasetError::Config(format!(
            "arith: teacher_carry_slip must be in [0, 1], got {}",
            p.teacher_carry_slip
        )));
    }
    let mut rng = SplitMix64::new(p.seed);
    let mut teacher = SplitMix64::new(p.seed ^ TEACHER_STREAM);
    let mut out = Vec::with_capacity(p.n);
    for i in 0..p.n {
        let op = p.ops[rng.below(p.ops.len() as u64) as usize].as_str();
        let mut a = random_operand(&mut rng, p.min_digits, p.max_digits);
        let mut b = random_operand(&mut rng, p.min_digits, p.max_digits);
        if op == "-" && !p.allow_negative && a < b {
            std::mem::swap(&mut a, &mut b);
        }
        // Operands have at most 9 digits, so no result overflows an i64.
        let result = match op {
            "+" => a + b,
            "-" => a - b,
            _ => a * b,
        };
        let expression = format!("{a} {op} {b}");
        let mut metadata = Map::new();
        metadata.insert("kind".into(), json!("arith"));
        metadata.insert("expression".into(), json!(expression));
        metadata.insert("a".into(), json!(a));
        metadata.insert("b".into(), json!(b));
        metadata.insert("op".into(), json!(op));
        let completion = (p.teacher_carry_slip > 0.0).then(|| {
            // One draw per example, so the slips of later examples do not depend on which
            // earlier ones needed a carry.
            let slip = teacher.unit() < p.teacher_carry_slip;
            let shown = if slip && op == "+" {
                sum_without_carry(a, b)
            } else {
                result
            };
            shown.to_string()
        });
        out.push(Example {
            id: format!("arith-{i}"),
            prompt: Prompt::Text(format!("What is {expression}?")),
            answer: Some(result.to_string()),
            completion,
            metadata,
            ..Example::default()
        });
    }
    Ok(out)
}

/// Seed offset of the imperfect teacher's stream (see [`ArithParams::teacher_carry_slip`]).
const TEACHER_STREAM: u64 = 0x7EAC_4E55_11D5_CA77;

/// `a + b` (both >= 0) written digit by digit with every carry dropped: `47 + 38` → `75`,
/// `95 + 17` → `2`. Equal to `a + b` exactly when the sum needs no carry.
pub fn sum_without_carry(mut a: i64, mut b: i64) -> i64 {
    let (mut out, mut place) = (0, 1);
    while a > 0 || b > 0 {
        out += (a % 10 + b % 10) % 10 * place;
        a /= 10;
        b /= 10;
        place *= 10;
    }
    out
}

/// Seed offset of the wrong-answer stream, so the problems are exactly `arith`'s for the same
/// parameters.
const WRONG_STREAM: u64 = 0x5752_4f4e_4750_4149; // "WRONGPAI"

/// Generates arithmetic preference pairs: the problems of [`arith`] with the same parameters,
/// `chosen` = the exact result, `rejected` = the result plus a non-zero offset in `-9..=9`
/// (drawn from a stream seeded by `seed` apart from the problems', so a wrong answer may be
/// negative or longer). The reference `answer` stays, so the `arith` verifier and greedy
/// accuracy work on the same rows. The same parameters always give the same pairs.
pub fn arith_pairs(p: &ArithParams) -> Result<Vec<Example>> {
    let mut out = arith(p)?;
    let mut rng = SplitMix64::new(p.seed ^ WRONG_STREAM);
    for (i, e) in out.iter_mut().enumerate() {
        let result: i64 = e
            .answer
            .as_deref()
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| DatasetError::Config("arith_pairs: a non-integer answer".into()))?;
        let mut offset = rng.range_inclusive(-9, 8);
        if offset >= 0 {
            offset += 1;
        }
        e.id = format!("arith-pair-{i}");
        e.chosen = Some(result.to_string());
        e.rejected = Some((result + offset).to_string());
    }
    Ok(out)
}

/// One countdown puzzle: the numbers (shuffled), the target and one solution expression.
fn countdown_one(rng: &mut SplitMix64, p: &CountdownParams) -> Option<(Vec<i64>, i64, String)> {
    let numbers: Vec<i64> = (0..p.count)
        .map(|_| rng.range_inclusive(p.min_number, p.max_number))
        .collect();
    // Combine random pairs until one value is left; every intermediate value is a
    // non-negative integer and every division is exact.
    let mut pool: Vec<(i64, String)> = numbers.iter().map(|&v| (v, v.to_string())).collect();
    while pool.len() > 1 {
        let i = rng.below(pool.len() as u64) as usize;
        let (mut a, mut ea) = pool.swap_remove(i);
        let j = rng.below(pool.len() as u64) as usize;
        let (mut b, mut eb) = pool.swap_remove(j);
        if a < b {
            std::mem::swap(&mut a, &mut b);
            std::mem::swap(&mut ea, &mut eb);
        }
        let mut ops = vec!['+', '-', '*'];
        if b > 1 && a % b == 0 {
            ops.push('/');
        }
        let op = *rng.choose(&ops)?;
        let v = match op {
            '+' => a.checked_add(b)?,
            '-' => a - b,
            '*' => a.checked_mul(b)?,
            _ => a / b,
        };
        pool.push((v, format!("({ea} {op} {eb})")));
    }
    let (target, expr) = pool.pop()?;
    if !(1..=p.max_target).contains(&target) {
        return None;
    }
    let expr = expr
        .strip_prefix('(')
        .and_then(|e| e.strip_suffix(')'))
        .map(str::to_owned)
        .unwrap_or(expr);
    let mut shown = numbers;
    shuffle_with(&mut shown, rng);
    Some((shown, target, expr))
}

/// Generates countdown puzzles: reach `target` from `numbers` with `+ - * /`, each number used
/// once. The answer is the target as a string; a solution is in metadata `solution`.
pub fn countdown(p: &CountdownParams) -> Result<Vec<Example>> {
    if !(2..=6).contains(&p.count) {
        return Err(DatasetError::Config(format!(
            "countdown: count must be in 2..=6, got {}",
            p.count
        )));
    }
    if p.min_number < 1
        || p.max_number < p.min_number
        || p.max_number > 1_000_000
        || p.max_target < 1
    {
        return Err(DatasetError::Config(format!(
            "countdown: need 1 <= min_number <= max_number <= 1000000 and max_target >= 1; got \
             {}..{}, max_target {}",
            p.min_number, p.max_number, p.max_target
        )));
    }
    let mut rng = SplitMix64::new(p.seed);
    let mut out = Vec::with_capacity(p.n);
    let mut attempts = 0usize;
    while out.len() < p.n {
        attempts += 1;
        if attempts > 1000 * (p.n + 1) {
            return Err(DatasetError::Config(format!(
                "countdown: could not generate puzzles with targets in 1..={} from numbers in \
                 {}..={}; widen the ranges",
                p.max_target, p.min_number, p.max_number
            )));
        }
        let Some((numbers, target, solution)) = countdown_one(&mut rng, p) else {
            continue;
        };
        let list = numbers
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let mut metadata = Map::new();
        metadata.insert("kind".into(), json!("countdown"));
        metadata.insert("numbers".into(), Value::from(numbers.clone()));
        metadata.insert("target".into(), json!(target));
        metadata.insert("solution".into(), json!(solution));
        out.push(Example {
            id: format!("countdown-{}", out.len()),
            prompt: Prompt::Text(format!(
                "Using the numbers [{list}], create an equation that equals {target}. You can use \
                 + - * / and each number exactly once."
            )),
            answer: Some(target.to_string()),
            metadata,
            ..Example::default()
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arith_pairs_prefer_the_exact_result_and_repeat() {
        let p = ArithParams {
            n: 50,
            seed: 7,
            ..ArithParams::default()
        };
        let a = arith_pairs(&p).unwrap();
        assert_eq!(a, arith_pairs(&p).unwrap());
        let plain = arith(&p).unwrap();
        for (e, q) in a.iter().zip(&plain) {
            assert_eq!(e.prompt, q.prompt);
            assert_eq!(e.chosen, q.answer);
            let (c, r): (i64, i64) = (
                e.chosen.as_deref().unwrap().parse().unwrap(),
                e.rejected.as_deref().unwrap().parse().unwrap(),
            );
            assert!(c != r && (c - r).abs() <= 9, "{c} vs {r}");
            assert_eq!(e.kind(), crate::example::RecordKind::Preference);
        }
    }

    /// A tiny exact evaluator of `+ - * /` expressions with parentheses over integers; returns
    /// the value and the literals used.
    fn eval(s: &str) -> (i64, Vec<i64>) {
        fn expr(t: &[u8], i: &mut usize, lits: &mut Vec<i64>) -> i64 {
            let mut v = term(t, i, lits);
            while *i < t.len() && (t[*i] == b'+' || t[*i] == b'-') {
                let op = t[*i];
                *i += 1;
                let r = term(t, i, lits);
                v = if op == b'+' { v + r } else { v - r };
            }
            v
        }
        fn term(t: &[u8], i: &mut usize, lits: &mut Vec<i64>) -> i64 {
            let mut v = atom(t, i, lits);
            while *i < t.len() && (t[*i] == b'*' || t[*i] == b'/') {
                let op = t[*i];
                *i += 1;
                let r = atom(t, i, lits);
                if op == b'*' {
                    v *= r;
                } else {
                    assert_eq!(v % r, 0, "inexact division");
                    v /= r;
                }
            }
            v
        }
        fn atom(t: &[u8], i: &mut usize, lits: &mut Vec<i64>) -> i64 {
            if t[*i] == b'(' {
                *i += 1;
                let v = expr(t, i, lits);
                assert_eq!(t[*i], b')');
                *i += 1;
                v
            } else {
                let start = *i;
                while *i < t.len() && t[*i].is_ascii_digit() {
                    *i += 1;
                }
                let v: i64 = std::str::from_utf8(&t[start..*i]).unwrap().parse().unwrap();
                lits.push(v);
                v
            }
        }
        let t: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        let mut i = 0;
        let mut lits = Vec::new();
        let v = expr(&t, &mut i, &mut lits);
        assert_eq!(i, t.len(), "trailing input in {s}");
        (v, lits)
    }

    #[test]
    fn arith_answers_are_correct_and_deterministic() {
        let p = ArithParams {
            n: 300,
            seed: 5,
            min_digits: 1,
            max_digits: 4,
            ..Default::default()
        };
        let xs = arith(&p).unwrap();
        assert_eq!(xs, arith(&p).unwrap());
        assert_ne!(
            xs,
            arith(&ArithParams {
                seed: 6,
                ..p.clone()
            })
            .unwrap()
        );
        let mut ops_seen = std::collections::BTreeSet::new();
        for e in &xs {
            assert_eq!(e.metadata["kind"], "arith");
            let expr = e.metadata["expression"].as_str().unwrap();
            assert_eq!(e.prompt.text(), format!("What is {expr}?"));
            let (v, _) = eval(expr);
            assert_eq!(e.answer.as_deref(), Some(v.to_string().as_str()));
            assert!(v >= 0, "no negative results by default: {expr}");
            for k in ["a", "b"] {
                let x = e.metadata[k].as_i64().unwrap();
                assert!((0..10_000).contains(&x));
            }
            ops_seen.insert(e.metadata["op"].as_str().unwrap().to_owned());
        }
        assert_eq!(ops_seen.len(), 3);
    }

    #[test]
    fn sum_without_carry_drops_every_carry() {
        assert_eq!(sum_without_carry(47, 38), 75);
        assert_eq!(sum_without_carry(95, 17), 2);
        assert_eq!(sum_without_carry(12, 34), 46);
        assert_eq!(sum_without_carry(5, 5), 0);
        assert_eq!(sum_without_carry(0, 0), 0);
        assert_eq!(sum_without_carry(999, 1), 990);
    }

    #[test]
    fn teacher_slips_only_on_carries_and_keeps_the_problems() {
        let base = ArithParams {
            n: 4000,
            seed: 3,
            min_digits: 1,
            max_digits: 2,
            ops: vec!["+".into()],
            ..ArithParams::default()
        };
        let exact = arith(&base).unwrap();
        assert!(exact.iter().all(|e| e.completion.is_none()));
        let taught = arith(&ArithParams {
            teacher_carry_slip: 0.6,
            ..base
        })
        .unwrap();
        let (mut carries, mut slips) = (0usize, 0usize);
        for (e, t) in exact.iter().zip(&taught) {
            assert_eq!((&e.prompt, &e.answer), (&t.prompt, &t.answer));
            let a = e.metadata["a"].as_i64().unwrap();
            let b = e.metadata["b"].as_i64().unwrap();
            let shown: i64 = t.completion.as_deref().unwrap().parse().unwrap();
            if sum_without_carry(a, b) == a + b {
                assert_eq!(shown, a + b, "no carry, no slip: {a} + {b}");
            } else {
                carries += 1;
                if shown != a + b {
                    assert_eq!(shown, sum_without_carry(a, b));
                    slips += 1;
                }
            }
        }
        let rate = slips as f64 / carries as f64;
        assert!(
            carries > 1000 && (0.55..0.65).contains(&rate),
            "{slips}/{carries}"
        );
    }

    #[test]
    fn arith_pinned_first_example() {
        // Pinned so a change in the generator is noticed.
        let xs = arith(&ArithParams {
            n: 1,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(xs[0].prompt.text(), PINNED_ARITH);
    }
    const PINNED_ARITH: &str = "What is 77 - 9?";

    #[test]
    fn arith_rejects_bad_params() {
        let bad = ArithParams {
            max_digits: 10,
            ..Default::default()
        };
        assert!(arith(&bad).is_err());
        let bad = ArithParams {
            ops: vec!["/".into()],
            ..Default::default()
        };
        assert!(arith(&bad).unwrap_err().to_string().contains("ops"));
    }

    #[test]
    fn countdown_solutions_reach_target_with_all_numbers() {
        let p = CountdownParams {
            n: 200,
            seed: 11,
            ..Default::default()
        };
        let xs = countdown(&p).unwrap();
        assert_eq!(xs.len(), 200);
        assert_eq!(xs, countdown(&p).unwrap());
        for e in &xs {
            assert_eq!(e.metadata["kind"], "countdown");
            let target = e.metadata["target"].as_i64().unwrap();
            assert!((1..=1000).contains(&target));
            assert_eq!(e.answer.as_deref(), Some(target.to_string().as_str()));
            let mut numbers: Vec<i64> = e.metadata["numbers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_i64().unwrap())
                .collect();
            assert_eq!(numbers.len(), 4);
            let (v, mut lits) = eval(e.metadata["solution"].as_str().unwrap());
            assert_eq!(v, target);
            numbers.sort_unstable();
            lits.sort_unstable();
            assert_eq!(lits, numbers);
        }
    }

    #[test]
    fn countdown_rejects_bad_params() {
        let err = countdown(&CountdownParams {
            count: 1,
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("count"));
    }
}
