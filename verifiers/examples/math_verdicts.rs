//! Prints the `math` verifier's verdict for every row of a corpus as JSON lines
//! `{"id": ..., "oxrl": bool}`, for comparison with other graders
//! (`scripts/math_corpus_compare.py`).
//!
//! Usage: `cargo run -p oxrl-verifiers --example math_verdicts [CORPUS.jsonl]`
//! (default: verifiers/tests/data/math_corpus.jsonl).

use oxrl_verifiers::MathVerifier;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let default = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/math_corpus.jsonl");
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| default.to_string());
    let text = std::fs::read_to_string(&path)?;
    let verifier = MathVerifier::default();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let row: serde_json::Value =
            serde_json::from_str(line).map_err(|e| format!("{path}: line {}: {e}", i + 1))?;
        let field = |k: &str| row.get(k).and_then(|v| v.as_str()).unwrap_or("");
        let score = verifier.score_one(field("completion"), field("answer"));
        let out = serde_json::json!({"id": field("id"), "oxrl": score.reward == 1.0});
        println!("{out}");
    }
    Ok(())
}
