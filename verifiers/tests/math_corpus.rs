//! Runs the `math` verifier on the hand-graded corpus (tests/data/math_corpus.jsonl) and checks
//! that it agrees with the human verdicts on at least 97% of the cases, printing every miss.

use oxrl_verifiers::{Group, MathVerifier, Verifier, VerifyExample};

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

fn load() -> Vec<Case> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/math_corpus.jsonl");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("corpus line {}: {e}", i + 1))
        })
        .collect()
}

#[test]
fn corpus_accuracy_at_least_97_percent() {
    let cases = load();
    assert!(cases.len() >= 300, "corpus has only {} cases", cases.len());
    let verifier = MathVerifier::default();
    let groups: Vec<Group> = cases
        .iter()
        .map(|c| Group {
            example: VerifyExample {
                id: c.id.clone(),
                answer: Some(c.answer.clone()),
                ..VerifyExample::default()
            },
            completions: vec![c.completion.clone()],
        })
        .collect();
    let scores = verifier.score(&groups);
    assert_eq!(scores.len(), cases.len());
    let mut correct = 0usize;
    for (case, s) in cases.iter().zip(&scores) {
        assert_eq!(s.len(), 1);
        let oxrl = s[0].reward == 1.0;
        if oxrl == case.human {
            correct += 1;
        } else {
            println!(
                "MISS {} [{}] human={} oxrl={} ({}): answer={:?} completion={:?}",
                case.id, case.kind, case.human, oxrl, case.note, case.answer, case.completion
            );
        }
    }
    let acc = correct as f64 / cases.len() as f64;
    println!(
        "math corpus: {correct}/{} = {:.2}%",
        cases.len(),
        100.0 * acc
    );
    assert!(acc >= 0.97, "accuracy {acc:.4} below 0.97");
}
