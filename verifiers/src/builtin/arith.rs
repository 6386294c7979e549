//! The `arith` verifier: checks answers of the built-in synthetic tasks (`synthetic:arith`,
//! `synthetic:countdown`). The metadata field `kind` says which: `arith` compares the final
//! integer of the completion with the answer; `countdown` checks the equation (see
//! [`crate::builtin::check_countdown`]). The field names are a contract with `oxrl-datasets`'
//! generators.

use super::countdown::check_countdown;
use super::options::typed_options;
use super::{bin, score_each, score_with};
use crate::extract::{last_answer_tag, last_box, tail, BoxBody};
use crate::{BuildContext, Group, Score, Verifier, VerifierError, VerifyExample};
use regex::Regex;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::sync::OnceLock;

/// At most this many bytes at the end of a completion are searched for the final integer.
const SCAN_BYTES: usize = 64 * 1024;

/// The options table of `arith`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ArithOptions {
    /// Countdown: every number must be used exactly once (default true).
    use_all: Option<bool>,
}

/// `arith`: reward 1 for the exact integer (kind `arith`) or a correct equation (kind
/// `countdown`).
#[derive(Debug, Clone)]
pub struct ArithVerifier {
    use_all: bool,
}

impl ArithVerifier {
    /// Builds the verifier from its options (`use_all`).
    pub fn from_options(
        options: &Map<String, Value>,
        _ctx: &BuildContext,
    ) -> Result<Self, VerifierError> {
        let o: ArithOptions = typed_options("arith", options)?;
        Ok(Self {
            use_all: o.use_all.unwrap_or(true),
        })
    }

    /// Scores one completion against an example.
    pub fn score_one(&self, example: &VerifyExample, completion: &str) -> Score {
        let md = &example.metadata;
        let kind = match md.get("kind") {
            Some(Value::String(k)) => k.as_str(),
            None | Some(Value::Null) if md.contains_key("numbers") && md.contains_key("target") => {
                "countdown"
            }
            None | Some(Value::Null) => "arith",
            Some(other) => {
                return Score::failed(format!(
                    "arith: metadata `kind` must be a string, got {other}"
                ))
            }
        };
        match kind {
            "arith" => self.score_arith(example, completion),
            "countdown" => self.score_countdown(example, completion),
            other => Score::failed(format!(
                "arith: unknown metadata kind `{other}` (expected `arith` or `countdown`)"
            )),
        }
    }

    fn score_arith(&self, example: &VerifyExample, completion: &str) -> Score {
        let gold = example.answer.as_deref().map(canonical_integer);
        let Some(Some(gold)) = gold else {
            return Score::failed(format!(
                "arith: the reference answer {:?} is not an integer",
                example.answer.as_deref().unwrap_or("(none)")
            ));
        };
        let got = final_integer(completion);
        let correct = got.as_deref() == Some(gold.as_str());
        score_with(
            bin(correct),
            &[("correct", bin(correct)), ("parsed", bin(got.is_some()))],
        )
    }

    fn score_countdown(&self, example: &VerifyExample, completion: &str) -> Score {
        let md = &example.metadata;
        let numbers: Option<Vec<i64>> = md
            .get("numbers")
            .and_then(Value::as_array)
            .and_then(|a| a.iter().map(json_integer).collect());
        let Some(numbers) = numbers else {
            return Score::failed("arith: countdown metadata needs `numbers`, a list of integers");
        };
        let target = md.get("target").and_then(json_integer).or_else(|| {
            example
                .answer
                .as_deref()
                .and_then(|a| a.trim().parse::<i64>().ok())
        });
        let Some(target) = target else {
            return Score::failed("arith: countdown metadata needs an integer `target`");
        };
        let r = check_countdown(completion, &numbers, target, self.use_all);
        score_with(
            bin(r.correct),
            &[
                ("correct", bin(r.correct)),
                ("parsed", bin(r.parsed)),
                ("valid_numbers", bin(r.valid_numbers)),
            ],
        )
    }
}

/// An integer from JSON: a number without fraction, or a string holding one.
fn json_integer(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| f as i64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn number_regex() -> Option<&'static Regex> {
    static RE: OnceLock<Option<Regex>> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"[-−]?[0-9]+(?:,[0-9]{3})*(?:\.[0-9]+)?").ok())
        .as_ref()
}

/// A number written as text in canonical form: sign, digits without separators or leading
/// zeros, and a fraction only when it is not zero (`1,234.50` → `1234.5`, `−0` → `0`).
fn canonical(text: &str) -> String {
    let (neg, digits) = match text.strip_prefix('-').or_else(|| text.strip_prefix('−')) {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let digits: String = digits.chars().filter(|c| *c != ',').collect();
    let (int, frac) = match digits.split_once('.') {
        Some((i, f)) => (i, f.trim_end_matches('0')),
        None => (digits.as_str(), ""),
    };
    let int = int.trim_start_matches('0');
    let int = if int.is_empty() { "0" } else { int };
    let zero = int == "0" && frac.is_empty();
    let mut out = String::new();
    if neg && !zero {
        out.push('-');
    }
    out.push_str(int);
    if !frac.is_empty() {
        out.push('.');
        out.push_str(frac);
    }
    out
}

/// The canonical form of a text that is one integer (reference answers), else `None`.
fn canonical_integer(text: &str) -> Option<String> {
    let t = text.trim();
    let m = number_regex()?.find(t)?;
    if m.start() != 0 || m.end() != t.len() {
        return None;
    }
    let c = canonical(t);
    (!c.contains('.')).then_some(c)
}

/// The last number of `text` in canonical form. A `-` is a sign only where it cannot be a
/// binary minus (not after a letter, digit or `)`).
fn last_number(text: &str) -> Option<String> {
    let m = number_regex()?.find_iter(text).last()?;
    let mut s = m.as_str();
    if s.starts_with(['-', '−']) {
        let before = text[..m.start()].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == ')' || c == ']') {
            s = s.trim_start_matches(['-', '−']);
        }
    }
    Some(canonical(s))
}

/// The final integer of a completion, canonical: the last number inside the last `<answer>` tag
/// if there is one, else inside the last `\boxed{}`, else the last number of the text. A
/// decimal with a non-zero fraction is returned as is (and never equals an integer).
pub fn final_integer(completion: &str) -> Option<String> {
    let text = tail(completion, SCAN_BYTES);
    if let Some(tag) = last_answer_tag(text) {
        return last_number(tag);
    }
    if let Some(BoxBody::Braced(b) | BoxBody::Bare(b)) = last_box(text).map(|b| b.body) {
        return last_number(b);
    }
    last_number(text)
}

impl Verifier for ArithVerifier {
    fn name(&self) -> &str {
        "arith"
    }

    fn score(&self, groups: &[Group]) -> Vec<Vec<Score>> {
        score_each(groups, |e, c| self.score_one(e, c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn verifier(v: Value) -> ArithVerifier {
        ArithVerifier::from_options(
            &v.as_object().cloned().unwrap_or_default(),
            &BuildContext::default(),
        )
        .unwrap()
    }

    fn arith_ex(answer: &str) -> VerifyExample {
        VerifyExample {
            answer: Some(answer.into()),
            metadata: json!({"kind": "arith", "expression": "x", "a": 1, "b": 2, "op": "+"})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            ..VerifyExample::default()
        }
    }

    fn countdown_ex(numbers: &[i64], target: i64) -> VerifyExample {
        VerifyExample {
            answer: Some(target.to_string()),
            metadata: json!({"kind": "countdown", "numbers": numbers, "target": target})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            ..VerifyExample::default()
        }
    }

    #[test]
    fn final_integers() {
        for (c, want) in [
            ("68", Some("68")),
            ("77 - 9 = 68", Some("68")),
            ("The answer is 68.", Some("68")),
            ("1,234", Some("1234")),
            ("so 12,345,678 total", Some("12345678")),
            ("x = -5", Some("-5")),
            ("x = −5", Some("-5")),
            ("10-5", Some("5")),
            ("(3)-5", Some("5")),
            ("0068", Some("68")),
            ("-0", Some("0")),
            ("12.0", Some("12")),
            ("12.50", Some("12.5")),
            ("1,2,3", Some("3")),
            ("<answer>42</answer> but maybe 43", Some("42")),
            ("<answer>the result is -7</answer>", Some("-7")),
            ("<answer>none</answer> 5", None),
            ("\\boxed{1,000} and then 7", Some("1000")),
            ("\\boxed{\\frac{3}{4}} 9", Some("4")),
            ("\\boxed{12", Some("12")),
            ("no digits", None),
            ("", None),
            ("٣ Arabic-Indic digits", None),
        ] {
            assert_eq!(final_integer(c).as_deref(), want, "{c:?}");
        }
    }

    #[test]
    fn arith_kind() {
        let v = verifier(json!({}));
        for (gold, c, want, parsed) in [
            ("68", "68", 1.0, 1.0),
            ("68", "The answer is 68", 1.0, 1.0),
            ("68", "77 - 9 = 68.", 1.0, 1.0),
            ("68", "68 is not right, it is 69", 0.0, 1.0),
            ("68", "69", 0.0, 1.0),
            ("68", "68.5", 0.0, 1.0),
            ("68", "six hundred", 0.0, 0.0),
            ("-12", "the difference is −12", 1.0, 1.0),
            ("-12", "the difference is 12", 0.0, 1.0),
            ("123456", "123,456", 1.0, 1.0),
            (
                "123456",
                "<answer>123456</answer>\n(check: 0 errors)",
                1.0,
                1.0,
            ),
            ("0", "-0", 1.0, 1.0),
            (" 7 ", "7", 1.0, 1.0),
        ] {
            let s = v.score_one(&arith_ex(gold), c);
            assert_eq!(s.reward, want, "{gold} / {c}");
            assert_eq!(s.components["correct"], want);
            assert_eq!(s.components["parsed"], parsed, "{c}");
            assert!(!s.components.contains_key("valid_numbers"));
            assert!(s.error.is_none());
        }
        let bad = v.score_one(&arith_ex("x"), "5");
        assert!(bad.error.unwrap().contains("not an integer"));
        let none = v.score_one(&VerifyExample::default(), "5");
        assert!(none.error.is_some());
    }

    #[test]
    fn countdown_kind() {
        let v = verifier(json!({}));
        let e = countdown_ex(&[44, 19, 35], 98);
        for (c, want) in [
            (
                "thinking</think>\n<answer>44 + 19 + 35</answer>",
                [1.0, 1.0, 1.0],
            ),
            ("<answer>(44 + 35) + 19 = 98</answer>", [1.0, 1.0, 1.0]),
            ("<answer>44 + 19 + 34</answer>", [0.0, 1.0, 0.0]),
            ("<answer>44 + 54</answer>", [0.0, 1.0, 0.0]),
            ("<answer>44 + 19</answer>", [0.0, 1.0, 0.0]),
            ("<answer>44 + 19 + 35 - 35 + 35</answer>", [0.0, 1.0, 0.0]),
            ("<answer>44 + 19 + 36</answer>", [0.0, 1.0, 0.0]),
            ("<answer>44 + 19 + 35 * 1</answer>", [0.0, 1.0, 0.0]),
            ("44 + 19 + 35", [1.0, 1.0, 1.0]),
            ("<answer>98</answer>", [0.0, 1.0, 0.0]),
            ("<answer>forty-four plus nineteen</answer>", [0.0, 0.0, 0.0]),
            ("", [0.0, 0.0, 0.0]),
        ] {
            let s = v.score_one(&e, c);
            let got = [
                s.components["correct"],
                s.components["parsed"],
                s.components["valid_numbers"],
            ];
            assert_eq!(got[0], want[0], "{c:?}: {got:?}");
            assert_eq!(got[1], want[1], "{c:?}: {got:?}");
            assert_eq!(s.reward, want[0], "{c:?}");
        }
        let s = v.score_one(&e, "<answer>44 + 19 + 34</answer>");
        assert_eq!(s.components["valid_numbers"], 0.0);
        let s = v.score_one(&e, "<answer>44 + 19 + 35 - 35 + 35</answer>");
        assert_eq!(s.components["valid_numbers"], 0.0);
        let s = v.score_one(&e, "<answer>44 + 19 - 35</answer>");
        assert_eq!(s.components["valid_numbers"], 1.0);
        assert_eq!(s.reward, 0.0);
        let partial = verifier(json!({"use_all": false}));
        let e = countdown_ex(&[50, 48, 7, 2], 98);
        assert_eq!(
            partial.score_one(&e, "<answer>50 + 48</answer>").reward,
            1.0
        );
        assert_eq!(v.score_one(&e, "<answer>50 + 48</answer>").reward, 0.0);
        // 2 used twice.
        assert_eq!(
            v.score_one(&e, "<answer>50 + 48 + 7 * (2 - 2)</answer>")
                .reward,
            0.0
        );
        assert_eq!(
            v.score_one(&e, "<answer>(50 + 48) * (7 - 2) / 5</answer>")
                .reward,
            0.0
        );
        assert_eq!(
            v.score_one(&e, "<answer>50 + 48 * (7 - 2) / (7 - 2)</answer>")
                .reward,
            0.0
        );
        assert_eq!(
            v.score_one(&e, "<answer>(50 + 48) / 2 * 2 + 7 - 7</answer>")
                .reward,
            0.0
        );
        let e = countdown_ex(&[6, 4, 3, 2], 9);
        // Exact arithmetic: 6 / 4 * 3 * 2 = 9.
        assert_eq!(
            v.score_one(&e, "<answer>6 / 4 * 3 * 2</answer>").reward,
            1.0
        );
        assert_eq!(
            v.score_one(&e, "<answer>6 / 4 * 2 * 3 + 0</answer>").reward,
            0.0
        );
    }

    #[test]
    fn metadata_variants_and_errors() {
        let v = verifier(json!({}));
        // No kind: numbers + target means countdown, otherwise arith.
        let mut e = countdown_ex(&[1, 2], 3);
        e.metadata.remove("kind");
        assert_eq!(v.score_one(&e, "<answer>1 + 2</answer>").reward, 1.0);
        let e = VerifyExample {
            answer: Some("4".into()),
            ..VerifyExample::default()
        };
        assert_eq!(v.score_one(&e, "4").reward, 1.0);
        // Target from the answer; numbers as strings or integral floats.
        let mut e = countdown_ex(&[], 0);
        e.metadata.insert("numbers".into(), json!(["1", 2.0]));
        e.metadata.remove("target");
        e.answer = Some("3".into());
        assert_eq!(v.score_one(&e, "<answer>1 + 2</answer>").reward, 1.0);
        for (md, want) in [
            (json!({"kind": "countdown", "target": 3}), "`numbers`"),
            (
                json!({"kind": "countdown", "numbers": [1, "x"], "target": 3}),
                "`numbers`",
            ),
            (
                json!({"kind": "countdown", "numbers": [1, 2.5], "target": 3}),
                "`numbers`",
            ),
            (json!({"kind": "countdown", "numbers": [1, 2]}), "`target`"),
            (json!({"kind": "sudoku"}), "unknown metadata kind `sudoku`"),
            (json!({"kind": 3}), "must be a string"),
        ] {
            let e = VerifyExample {
                metadata: md.as_object().cloned().unwrap_or_default(),
                ..VerifyExample::default()
            };
            let s = v.score_one(&e, "<answer>1 + 2</answer>");
            assert_eq!(s.reward, 0.0);
            assert!(
                s.error.as_deref().unwrap_or("").contains(want),
                "{md}: {s:?}"
            );
        }
        for (bad, want) in [
            (
                json!({"use_all": "yes"}),
                "`use_all`: invalid type: string \"yes\", expected a boolean",
            ),
            (
                json!({"strict": true}),
                "unknown field `strict`, expected `use_all`",
            ),
        ] {
            let e = ArithVerifier::from_options(
                &bad.as_object().cloned().unwrap_or_default(),
                &BuildContext::default(),
            );
            assert!(matches!(e, Err(VerifierError::Config { .. })), "{bad}");
            let e = e.unwrap_err().to_string();
            assert!(
                e.contains("verifier `arith`") && e.contains(want),
                "{bad}: {e}"
            );
        }
        // A null option is absent: the default (`true`).
        assert!(verifier(json!({"use_all": null})).use_all);
    }

    #[test]
    fn garbage_never_panics() {
        let v = verifier(json!({}));
        let a = arith_ex("5");
        let c = countdown_ex(&[1, 2, 3, 4], 10);
        let deep = format!(
            "<answer>{}1{}</answer>",
            "(".repeat(100_000),
            ")".repeat(100_000)
        );
        let deep_ok = format!(
            "<answer>{}1+2+3+4{}</answer>",
            "(".repeat(60),
            ")".repeat(60)
        );
        let long_num = "9".repeat(100_000);
        let many = "1+".repeat(100_000);
        let mut seed: u64 = 7;
        let alphabet: Vec<char> = "0123456789+-*/()=. <>answer/\u{2212}×÷\n".chars().collect();
        let mut random = Vec::new();
        for n in 0..2000 {
            let mut s = String::new();
            for _ in 0..(n % 61) {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                s.push(alphabet[(seed >> 33) as usize % alphabet.len()]);
            }
            random.push(s);
        }
        let fixed = [
            String::new(),
            "\u{0}\u{fffd}".into(),
            deep,
            deep_ok.clone(),
            long_num.clone(),
            format!("<answer>{long_num}</answer>"),
            format!("<answer>{many}1</answer>"),
            "<answer></answer>".into(),
            "</answer><answer>".into(),
            "\\boxed{".repeat(10_000),
            "-".repeat(10_000),
            ",".repeat(10_000),
        ];
        for s in fixed.iter().chain(&random) {
            for e in [&a, &c] {
                let sc = v.score_one(e, s);
                assert!(sc.reward == 0.0 || sc.reward == 1.0, "{s:?}");
                assert!(sc.error.is_none());
            }
        }
        assert_eq!(v.score_one(&c, &deep_ok).reward, 1.0);
        let long = "9".repeat(10_000);
        assert_eq!(
            v.score_one(&arith_ex(&long), &long).reward,
            1.0,
            "long integers compare as text"
        );
    }
}
