//! Runs the `math` verifier on the second hand-graded corpus (tests/data/math_corpus_v2.jsonl,
//! written by scripts/gen_math_corpus_v2.py: answers as people and models write them, issue 15)
//! and checks agreement with the human verdicts: at least 97% overall, printed per class with
//! every miss.

use oxrl_verifiers::MathVerifier;
use std::collections::BTreeMap;

/// One corpus row.
#[derive(serde::Deserialize)]
struct Case {
    id: String,
    completion: String,
    answer: String,
    human: bool,
    kind: String,
    note: String,
}

#[test]
fn corpus_v2_agreement_at_least_97_percent() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/math_corpus_v2.jsonl"
    );
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    let cases: Vec<Case> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| serde_json::from_str(l).unwrap_or_else(|e| panic!("line {}: {e}", i + 1)))
        .collect();
    assert!(cases.len() >= 600, "corpus has only {} cases", cases.len());
    let verifier = MathVerifier::default();
    // class -> (agreed, total, human-correct cases, human-wrong cases)
    let mut by_kind: BTreeMap<&str, (usize, usize, usize, usize)> = BTreeMap::new();
    let mut agreed = 0usize;
    for case in &cases {
        let oxrl = verifier.score_one(&case.completion, &case.answer).reward == 1.0;
        let entry = by_kind.entry(case.kind.as_str()).or_default();
        entry.1 += 1;
        if case.human {
            entry.2 += 1;
        } else {
            entry.3 += 1;
        }
        if oxrl == case.human {
            agreed += 1;
            entry.0 += 1;
        } else {
            println!(
                "MISS {} [{}] human={} oxrl={} ({}): answer={:?} completion={:?}",
                case.id, case.kind, case.human, oxrl, case.note, case.answer, case.completion
            );
        }
    }
    for (kind, (ok, n, pos, neg)) in &by_kind {
        println!(
            "  {kind}: {ok}/{n} = {:.1}% ({pos} correct, {neg} wrong cases)",
            100.0 * *ok as f64 / *n as f64
        );
        assert!(
            *pos >= 1 && *neg >= 1 && pos + neg >= 15,
            "class {kind} too small"
        );
    }
    let acc = agreed as f64 / cases.len() as f64;
    println!(
        "math corpus v2: {agreed}/{} = {:.2}%",
        cases.len(),
        100.0 * acc
    );
    assert!(acc >= 0.97, "agreement {acc:.4} below 0.97");
}
