//! The `math` verifier: extracts the final answer of a completion and checks it against the
//! reference answer for mathematical equivalence (numbers, fractions, LaTeX, expressions,
//! tuples, sets, intervals, multiple choice). Reward 1 for an equivalent answer, 0 otherwise.
//!
//! [`extract_answer`] and [`answers_equivalent`] are public so other verifiers can reuse them.

mod equivalence;
mod extract;
mod normalize;
mod parse;
mod words;

#[cfg(test)]
mod class_tests;

pub use equivalence::answers_equivalent;
pub use extract::extract_answer;

use crate::builtin::options::{config_error, typed_options};
use crate::{Group, Score, Verifier, VerifierError};
use serde::Deserialize;

/// One source of final answers in a completion (see [`extract_answer`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtractMode {
    /// `<answer>...</answer>`.
    AnswerTag,
    /// The last `\boxed{...}` or `\fbox{...}`.
    Boxed,
    /// GSM8K style `#### 42`.
    Hash,
    /// `Final answer: ...` / `The final answer is ...`.
    FinalAnswer,
    /// `Answer: ...` / `**Answer:** ...`.
    AnswerColon,
    /// `... the answer is ...`.
    AnswerIs,
    /// The last `$...$` / `\[...\]` that ends the last line (`Hence the area is $4\pi$.`).
    LastMath,
    /// The last number in the text (same as `allow_last_number`).
    LastNumber,
}

impl ExtractMode {
    /// Every mode with its configuration name.
    pub const ALL: [(&'static str, ExtractMode); 8] = [
        ("answer_tag", ExtractMode::AnswerTag),
        ("boxed", ExtractMode::Boxed),
        ("hash", ExtractMode::Hash),
        ("final_answer", ExtractMode::FinalAnswer),
        ("answer_colon", ExtractMode::AnswerColon),
        ("answer_is", ExtractMode::AnswerIs),
        ("last_math", ExtractMode::LastMath),
        ("last_number", ExtractMode::LastNumber),
    ];

    /// The configuration names of [`Self::ALL`], in order.
    const NAMES: [&'static str; 8] = {
        let mut names = [""; 8];
        let mut i = 0;
        while i < names.len() {
            names[i] = Self::ALL[i].0;
            i += 1;
        }
        names
    };

    /// The mode named `name` in a configuration.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, m)| *m)
    }
}

/// A mode is read from its configuration name, a string only (like the other string choices of
/// verifier options); another name is an unknown variant, and the error lists the known ones.
impl<'de> Deserialize<'de> for ExtractMode {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Self::from_name(&name).ok_or_else(|| serde::de::Error::unknown_variant(&name, &Self::NAMES))
    }
}

/// Options of extraction and equivalence.
#[derive(Debug, Clone, PartialEq)]
pub struct MathOptions {
    /// Enabled answer sources (default: all but `last_number`).
    pub extract: Vec<ExtractMode>,
    /// Fall back to the last number of the completion when no marker is found (default true).
    pub allow_last_number: bool,
    /// Relative tolerance for numeric comparison (default 1e-6).
    pub rel_tol: f64,
    /// Read a short bare last line (`24 square metres`, `2^8`, `twelve`) as the answer when
    /// nothing marks one (default true).
    pub unmarked_last_line: bool,
    /// When text after a marked answer takes it back (`Wait`, `Actually`, `Correction`), use
    /// the answer stated after that instead (default true).
    pub follow_corrections: bool,
    /// When the reference has a unit, the prediction must state the same unit (default false:
    /// a unit on one side only is ignored; two different units are always a mismatch).
    pub require_units: bool,
}

impl Default for MathOptions {
    fn default() -> Self {
        Self {
            extract: vec![
                ExtractMode::AnswerTag,
                ExtractMode::Boxed,
                ExtractMode::Hash,
                ExtractMode::FinalAnswer,
                ExtractMode::AnswerColon,
                ExtractMode::AnswerIs,
                ExtractMode::LastMath,
            ],
            allow_last_number: true,
            rel_tol: 1e-6,
            unmarked_last_line: true,
            follow_corrections: true,
            require_units: false,
        }
    }
}

/// The options table as written in the task file (see [`MathOptions`] for the meanings).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOptions {
    extract: Option<Vec<ExtractMode>>,
    rel_tol: Option<f64>,
    allow_last_number: Option<bool>,
    unmarked_last_line: Option<bool>,
    follow_corrections: Option<bool>,
    require_units: Option<bool>,
}

impl MathOptions {
    /// Reads options from JSON: `{"extract": [..names..], "rel_tol": 1e-6,
    /// "allow_last_number": true}`; every key is optional (a JSON `null` counts as absent, and
    /// so does a `null` table), unknown keys and wrong types are an error.
    pub fn from_json(options: &serde_json::Value) -> Result<Self, VerifierError> {
        let map = match options {
            serde_json::Value::Null => return Ok(Self::default()),
            serde_json::Value::Object(map) => map,
            other => {
                return Err(config_error(
                    "math",
                    format!("options must be a JSON object, got {other}"),
                ))
            }
        };
        let raw: RawOptions = typed_options("math", map)?;
        let d = Self::default();
        let rel_tol = raw.rel_tol.unwrap_or(d.rel_tol);
        if !(rel_tol.is_finite() && (0.0..1.0).contains(&rel_tol)) {
            return Err(config_error(
                "math",
                format!("`rel_tol` must be in [0, 1), got {rel_tol}"),
            ));
        }
        Ok(Self {
            extract: raw.extract.unwrap_or(d.extract),
            allow_last_number: raw.allow_last_number.unwrap_or(d.allow_last_number),
            rel_tol,
            unmarked_last_line: raw.unmarked_last_line.unwrap_or(d.unmarked_last_line),
            follow_corrections: raw.follow_corrections.unwrap_or(d.follow_corrections),
            require_units: raw.require_units.unwrap_or(d.require_units),
        })
    }
}

/// The reference answer as a final answer: a full solution with `\boxed{}` or `#### x` is
/// reduced to that answer; anything else is used as is.
fn reference_answer(gold: &str) -> String {
    if gold.contains("\\boxed") || gold.contains("\\fbox") {
        if let Some(b) = extract::last_boxed(gold) {
            return b;
        }
    }
    if let Some(pos) = gold.rfind("####") {
        let rest = gold[pos + 4..].trim();
        if !rest.is_empty() {
            return rest.lines().next().unwrap_or(rest).trim().to_string();
        }
    }
    gold.to_string()
}

/// The `math` verifier (see the module doc).
#[derive(Debug, Clone, Default)]
pub struct MathVerifier {
    /// Extraction and equivalence options.
    pub options: MathOptions,
}

impl MathVerifier {
    /// A verifier with the given options.
    pub fn new(options: MathOptions) -> Self {
        Self { options }
    }

    /// Builds the verifier from its JSON options (see [`MathOptions::from_json`]).
    pub fn from_config(options: &serde_json::Value) -> Result<Self, VerifierError> {
        Ok(Self::new(MathOptions::from_json(options)?))
    }

    /// Scores one completion against a reference answer.
    pub fn score_one(&self, completion: &str, gold: &str) -> Score {
        let gold = reference_answer(gold);
        let extracted = extract_answer(completion, &self.options);
        let correct = extracted
            .as_deref()
            .is_some_and(|p| answers_equivalent(p, &gold, &self.options));
        let mut score = Score::reward(if correct { 1.0 } else { 0.0 });
        score
            .components
            .insert("correct".into(), if correct { 1.0 } else { 0.0 });
        score.components.insert(
            "extracted".into(),
            if extracted.is_some() { 1.0 } else { 0.0 },
        );
        score
    }
}

impl Verifier for MathVerifier {
    fn name(&self) -> &str {
        "math"
    }

    fn score(&self, groups: &[Group]) -> Vec<Vec<Score>> {
        groups
            .iter()
            .map(|g| match g.example.answer.as_deref().map(str::trim) {
                Some(gold) if !gold.is_empty() => g
                    .completions
                    .iter()
                    .map(|c| self.score_one(c, gold))
                    .collect(),
                _ => g
                    .completions
                    .iter()
                    .map(|_| Score::failed("math verifier: the example has no reference answer"))
                    .collect(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::VerifyExample;

    fn group(answer: Option<&str>, completions: &[&str]) -> Group {
        Group {
            example: VerifyExample {
                id: "1".into(),
                answer: answer.map(String::from),
                ..VerifyExample::default()
            },
            completions: completions.iter().map(|c| c.to_string()).collect(),
        }
    }

    #[test]
    fn scores_groups() {
        let v = MathVerifier::default();
        assert_eq!(v.name(), "math");
        let out = v.score(&[
            group(
                Some("\\frac{1}{2}"),
                &["so \\boxed{0.5}", "\\boxed{0.6}", "I don't know"],
            ),
            group(None, &["\\boxed{1}"]),
        ]);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].len(), 3);
        assert_eq!(out[0][0].reward, 1.0);
        assert_eq!(out[0][0].components["correct"], 1.0);
        assert_eq!(out[0][0].components["extracted"], 1.0);
        assert_eq!(out[0][1].reward, 0.0);
        assert_eq!(out[0][1].components["extracted"], 1.0);
        assert_eq!(out[0][2].reward, 0.0);
        assert_eq!(out[0][2].components["extracted"], 0.0);
        assert_eq!(out[1].len(), 1);
        assert!(out[1][0].error.is_some());
        assert_eq!(out[1][0].reward, 0.0);
    }

    #[test]
    fn reference_solutions_are_reduced() {
        let v = MathVerifier::default();
        assert_eq!(
            v.score_one("#### 72", "She sold 48/2 = 24 ...\n#### 72")
                .reward,
            1.0
        );
        assert_eq!(
            v.score_one("\\boxed{3}", "Thus the answer is $\\boxed{3}$.")
                .reward,
            1.0
        );
    }

    #[test]
    fn config() {
        let v = MathVerifier::from_config(&serde_json::json!({
            "extract": ["boxed"], "rel_tol": 0.01, "allow_last_number": false
        }));
        let v = match v {
            Ok(v) => v,
            Err(e) => panic!("valid config rejected: {e}"),
        };
        assert_eq!(v.options.extract, vec![ExtractMode::Boxed]);
        assert_eq!(v.options.rel_tol, 0.01);
        assert!(!v.options.allow_last_number);
        assert_eq!(v.score_one("\\boxed{3.14}", "\\pi").reward, 1.0);
        assert_eq!(v.score_one("The answer is 3", "3").reward, 0.0);
        assert!(MathVerifier::from_config(&serde_json::Value::Null).is_ok());
        let modes = "`extract[0]`: unknown variant `nope`, expected one of `answer_tag`, `boxed`, \
                     `hash`, `final_answer`, `answer_colon`, `answer_is`, `last_math`, \
                     `last_number`";
        for (bad, want) in [
            (
                serde_json::json!({"tolerance": 1}),
                "unknown field `tolerance`, expected one of `extract`, `rel_tol`, \
                 `allow_last_number`, `unmarked_last_line`, `follow_corrections`, \
                 `require_units`",
            ),
            (
                serde_json::json!({"bogus": null}),
                "unknown field `bogus`, expected one of",
            ),
            (serde_json::json!({"extract": ["nope"]}), modes),
            (
                serde_json::json!({"extract": ["boxed", 1]}),
                "`extract[1]`: invalid type: integer `1`, expected a string",
            ),
            (
                serde_json::json!({"extract": [{"boxed": null}]}),
                "`extract[0]`: invalid type: map, expected a string",
            ),
            (
                serde_json::json!({"extract": "boxed"}),
                "`extract`: invalid type: string \"boxed\", expected a sequence",
            ),
            (
                serde_json::json!({"rel_tol": -1}),
                "`rel_tol` must be in [0, 1), got -1",
            ),
            (
                serde_json::json!({"rel_tol": 1}),
                "`rel_tol` must be in [0, 1), got 1",
            ),
            (
                serde_json::json!({"rel_tol": "small"}),
                "`rel_tol`: invalid type: string \"small\", expected f64",
            ),
            (
                serde_json::json!({"allow_last_number": "yes"}),
                "`allow_last_number`: invalid type: string \"yes\", expected a boolean",
            ),
            (
                serde_json::json!({"require_units": 1}),
                "`require_units`: invalid type: integer `1`, expected a boolean",
            ),
            (
                serde_json::json!([1]),
                "options must be a JSON object, got [1]",
            ),
        ] {
            let e = MathVerifier::from_config(&bad);
            assert!(matches!(e, Err(VerifierError::Config { .. })), "{bad}");
            let e = e.err().map(|e| e.to_string()).unwrap_or_default();
            assert!(
                e.contains("verifier `math`") && e.contains(want),
                "{bad}: {e}"
            );
        }
        // A null option is absent: the defaults.
        let v = MathVerifier::from_config(&serde_json::json!({
            "extract": null, "rel_tol": null, "allow_last_number": null,
            "unmarked_last_line": null, "follow_corrections": null, "require_units": null
        }));
        assert_eq!(v.ok().map(|v| v.options), Some(MathOptions::default()));
        // Every mode name reads as its mode (`last_number` included), and the flags as given.
        let names: Vec<&str> = ExtractMode::ALL.iter().map(|(n, _)| *n).collect();
        let v = MathVerifier::from_config(&serde_json::json!({
            "extract": names, "rel_tol": 0, "unmarked_last_line": false,
            "follow_corrections": false, "require_units": true
        }));
        let o = match v {
            Ok(v) => v.options,
            Err(e) => panic!("valid config rejected: {e}"),
        };
        let all: Vec<ExtractMode> = ExtractMode::ALL.iter().map(|(_, m)| *m).collect();
        assert_eq!(o.extract, all);
        assert_eq!(o.rel_tol, 0.0);
        assert!(o.allow_last_number && !o.unmarked_last_line && !o.follow_corrections);
        assert!(o.require_units);
        let v = MathVerifier::from_config(&serde_json::json!({"extract": []}));
        assert_eq!(v.ok().map(|v| v.options.extract), Some(Vec::new()));
    }

    #[test]
    fn never_panics_on_hostile_input() {
        let v = MathVerifier::default();
        let mut seed: u64 = 12345;
        let alphabet: Vec<char> =
            "0123456789{}()[]\\^_$.,-+*/=<>|!%#abcxyz boxedfrac sqrt\u{2212}\u{00e9}\n"
                .chars()
                .collect();
        for n in 0..3000 {
            let mut s = String::new();
            for _ in 0..(n % 97) {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                s.push(alphabet[(seed >> 33) as usize % alphabet.len()]);
            }
            let c = format!("\\boxed{{{s}}}");
            let score = v.score_one(&c, &s);
            assert!(score.reward == 0.0 || score.reward == 1.0);
            let _ = v.score_one(&s, "5");
        }
        let hostile = [
            "\\boxed{10^{100000}}".to_string(),
            "\\boxed{".repeat(5000),
            "}".repeat(5000),
            format!("\\boxed{{{}1{}}}", "(".repeat(5000), ")".repeat(5000)),
            format!("\\boxed{{{}1{}}}", "(".repeat(300), ")".repeat(300)),
            format!("\\boxed{{{}}}", "\\frac{".repeat(2000)),
            "\\boxed{99999999999999999999999!}".to_string(),
            "\\boxed{0.\\overline{99999999999999999999}}".to_string(),
            "\\boxed{\\sqrt[0]{2}}".to_string(),
            String::from_utf8_lossy(&[0xff, 0xfe, 0x00, 0x5c, 0x62]).into_owned(),
        ];
        for h in &hostile {
            assert_eq!(v.score_one(h, "10^{100001}").reward, 0.0);
            let s = v.score_one(h, h);
            assert!(s.reward == 0.0 || s.reward == 1.0);
        }
        assert_eq!(
            v.score_one("\\boxed{10^{100000}}", "10^{100000}").reward,
            1.0
        );
    }
}
