//! Throughput benchmark of the `math` verifier on one core: extraction + equivalence of typical
//! completions (a few hundred characters of reasoning, then a final answer in one of the usual
//! formats), against references of mixed kinds. Prints completions per second.
//!
//! Run: `cargo bench -p oxrl-verifiers --bench math_throughput`

use std::hint::black_box;
use std::time::Instant;

use oxrl_verifiers::{Group, MathVerifier, Verifier, VerifyExample};

/// Reference answer and the final-answer part of a completion.
const CASES: &[(&str, &str)] = &[
    ("72", "#### 72"),
    (
        "\\frac{1}{2}",
        "Therefore, the final answer is $\\boxed{0.5}$.",
    ),
    ("1,000", "So the answer is $1000$."),
    ("x^2-1", "**Answer:** $(x-1)(x+1)$"),
    ("[1, 3)", "The answer is $\\boxed{1 \\le x < 3}$."),
    ("B", "The final answer is $\\boxed{\\text{(B)}}$"),
    (
        "2\\sqrt{2}",
        "Final Answer: The final answer is $\\sqrt{8}$. I hope it is correct.",
    ),
    ("\\{1, 2\\}", "<answer>\\{2, 1\\}</answer>"),
    ("18", "So she has 3 * 6 = 18 apples."),
    ("\\frac{3}{4}", "Therefore $\\boxed{\\dfrac{3}{5}}$."),
];

/// Reasoning text placed before every final answer (about 600 characters, with numbers).
const REASONING: &str = "Let's think step by step. The store sells pencils in packs of 12, and \
each pack costs $3. Maria buys 4 packs, so she has 4 * 12 = 48 pencils and pays 4 * 3 = 12 \
dollars. She gives 1/4 of the pencils to her brother, which is 48 / 4 = 12 pencils, leaving 36. \
Then she splits the rest equally among 2 friends and herself: 36 / 3 = 12 each. We can double \
check: 12 + 12 + 12 + 12 = 48, which matches the total. Now we express the requested quantity \
in the form the problem asks for, simplifying fractions and radicals where possible, and we \
make sure the units are consistent with the question.\n\n";

fn main() {
    let verifier = MathVerifier::default();
    let groups: Vec<Group> = CASES
        .iter()
        .map(|(gold, fin)| Group {
            example: VerifyExample {
                answer: Some((*gold).to_string()),
                ..VerifyExample::default()
            },
            completions: (0..8).map(|_| format!("{REASONING}{fin}")).collect(),
        })
        .collect();
    let per_round: usize = groups.iter().map(|g| g.completions.len()).sum();
    // warm-up (static regexes, caches)
    let warm = verifier.score(&groups);
    let correct: f32 = warm.iter().flatten().map(|s| s.reward).sum();
    let mut best = 0.0f64;
    for _ in 0..5 {
        let start = Instant::now();
        let mut rounds = 0usize;
        while start.elapsed().as_secs_f64() < 1.0 {
            black_box(verifier.score(black_box(&groups)));
            rounds += 1;
        }
        let rate = (rounds * per_round) as f64 / start.elapsed().as_secs_f64();
        best = best.max(rate);
    }
    println!(
        "math_throughput: {:.0} completions/s on one core (best of 5 x 1 s; {} completions of ~{} chars per round, {} rewarded 1)",
        best,
        per_round,
        REASONING.len() + 40,
        correct
    );
}
