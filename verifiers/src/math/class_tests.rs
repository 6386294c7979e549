//! Unit tests of the answer classes of issue 15 (answers as people and models write them): one
//! test per class, each with accepted and rejected cases, through [`MathVerifier::score_one`].

use super::{MathOptions, MathVerifier};

fn verdict(completion: &str, gold: &str) -> bool {
    MathVerifier::default().score_one(completion, gold).reward == 1.0
}

fn check(cases: &[(&str, &str, bool)]) {
    for (completion, gold, want) in cases {
        assert_eq!(
            verdict(completion, gold),
            *want,
            "{completion:?} vs {gold:?}"
        );
    }
}

#[test]
fn display_math_after_hence_or_thus() {
    check(&[
        ("We simplify.\nHence\n\\[\n24\n\\]", "24", true),
        ("We simplify.\nThus $$ \\frac{3}{4} $$", "0.75", true),
        ("We simplify.\nThus, \\[ x = 24 \\].", "24", true),
        (
            "Thus the value is\n$$\n12\n$$\nwhich completes the proof.",
            "12",
            true,
        ),
        ("We simplify.\nHence\n\\[\n25\n\\]", "24", false),
        (
            "Thus the value is\n$$\n21\n$$\nwhich completes the proof.",
            "12",
            false,
        ),
    ]);
}

#[test]
fn unmarked_final_line() {
    check(&[
        ("Area is length times width.\n24 square metres", "24", true),
        ("The temperature fell.\n-3 degrees", "-3", true),
        ("Doubling eight times.\n2^8", "256", true),
        ("Convert.\n5e-3", "0.005", true),
        ("Area is length times width.\n25 square metres", "24", false),
        ("Doubling seven times.\n2^7", "256", false),
        // a sentence, not a bare line, still goes through the last-number rule
        ("Count them.\nso it is 12.", "12", true),
        // an unfinished clause is no answer
        ("Then 3 * 4 = 12 and", "12", false),
    ]);
    let strict = MathVerifier::new(MathOptions {
        unmarked_last_line: false,
        ..MathOptions::default()
    });
    assert_eq!(strict.score_one("Convert.\n5e-3", "0.005").reward, 0.0);
}

#[test]
fn numbers_in_words() {
    check(&[
        ("So the answer is zero.", "0", true),
        ("**Final answer:** negative four", "-4", true),
        ("Reading it off:\ntwenty-one", "21", true),
        ("So the answer is one hundred and twenty.", "120", true),
        ("So the answer is 2.5 million.", "2500000", true),
        ("So the answer is negative four.", "4", false),
        ("So the answer is 2.5 billion.", "2500000", false),
        ("So the answer is seventy.", "7", false),
    ]);
}

#[test]
fn units_degrees_and_text() {
    check(&[
        ("So the answer is $12\\text{ m}^2$.", "12", true),
        ("So the answer is $45°$.", "45", true),
        ("So the answer is $-4°$.", "-4", true),
        ("So the answer is $-4^\\circ\\text{C}$.", "-4", true),
        ("So the answer is $4^\\circ\\text{C}$.", "-4", false),
        (
            "So the answer is $12\\text{ cm}^2$.",
            "12\\text{ m}^2",
            false,
        ),
        ("So the answer is $135°$.", "45^\\circ", false),
        ("Reading the options:\nA", "(A)", true),
        ("Reading the options:\nOption B", "(A)", false),
    ]);
    let strict = MathVerifier::new(MathOptions {
        require_units: true,
        ..MathOptions::default()
    });
    assert_eq!(strict.score_one("\\boxed{12}", "12\\text{ cm}").reward, 0.0);
    assert_eq!(
        strict.score_one("\\boxed{12 cm}", "12\\text{ cm}").reward,
        1.0
    );
}

#[test]
fn self_correction_scores_the_settled_answer() {
    let text = "Counting all days gives 45, but that counts one day twice: the total is 40.";
    check(&[
        (text, "45", false),
        (text, "40", true),
        (
            "Final answer: 50. Actually, no: the discount applies twice, so 45.",
            "50",
            false,
        ),
        (
            "Final answer: 50. Actually, no: the discount applies twice, so 45.",
            "45",
            true,
        ),
        (
            "The answer is 45. Wait, I double counted, so the answer is actually 44.",
            "44",
            true,
        ),
        (
            "The answer is 9. Let me double-check: 4 + 5 = 9, which confirms it.",
            "9",
            true,
        ),
        ("It could be 3, 4, 5 or 6.", "6", false),
    ]);
    let literal = MathVerifier::new(MathOptions {
        follow_corrections: false,
        ..MathOptions::default()
    });
    let t = "Final answer: 50. Actually, no: the discount applies twice, so 45.";
    assert_eq!(literal.score_one(t, "50").reward, 1.0);
}

#[test]
fn inequalities_joined_by_or_are_a_union() {
    let gold = "(-\\infty,-1)\\cup(4,\\infty)";
    check(&[
        ("So the answer is $x<-1 \\text{ or } x>4$.", gold, true),
        ("So the answer is $x>4 \\text{ or } x<-1$.", gold, true),
        (
            "So the answer is $x \\le -1 \\text{ or } x \\ge 4$.",
            gold,
            false,
        ),
        ("So the answer is $-1<x<4$.", gold, false),
        // points are not intervals
        (
            "So the answer is $\\{(1,2), (3,4)\\}$.",
            "(1,2)\\cup(3,4)",
            false,
        ),
    ]);
}
