//! The `choice` verifier: multiple-choice answers. It reads which letter the completion chose
//! (`The answer is (B)`, `**B**`, `Answer: B`, `\boxed{B}`, `B) text`, a final standalone
//! letter) and rewards 1 iff exactly one letter was chosen and it is the reference letter.
//! Hedges (`A or B`) choose two letters and are wrong.
//!
//! The file runs past 600 lines because of its tests, one per answer form and hedge; the
//! verifier itself is under 470 lines.

use super::options::{config_error, non_empty, typed_options};
use super::{bin, score_each, score_with};
use crate::extract::{last_answer_tag, last_box, tail, BoxBody};
use crate::{BuildContext, Group, Score, Verifier, VerifierError, VerifyExample};
use regex::Regex;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::sync::OnceLock;

/// At most this many bytes at the end of a completion are read (the answer is at the end).
const SCAN_BYTES: usize = 64 * 1024;

/// The options table of `choice`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChoiceOptions {
    /// The allowed letters: a string of letters or a list (see [`letters_of`]); default A-D.
    choices: Option<Value>,
    /// Metadata field holding the reference (default: the answer).
    field: Option<String>,
}

/// `choice`: reward 1 iff the completion chooses exactly the reference letter.
#[derive(Debug, Clone)]
pub struct ChoiceVerifier {
    letters: Vec<char>,
    field: Option<String>,
}

impl ChoiceVerifier {
    /// Builds the verifier from its options (`choices`, `field`).
    pub fn from_options(
        options: &Map<String, Value>,
        _ctx: &BuildContext,
    ) -> Result<Self, VerifierError> {
        let o: ChoiceOptions = typed_options("choice", options)?;
        let letters = match &o.choices {
            None => vec!['A', 'B', 'C', 'D'],
            Some(v) => {
                letters_of(v).map_err(|e| config_error("choice", format!("`choices`: {e}")))?
            }
        };
        Ok(Self {
            letters,
            field: non_empty("choice", "field", o.field)?,
        })
    }

    /// The allowed letters and the reference letter of an example.
    fn key(&self, example: &VerifyExample) -> Result<(Vec<char>, char), String> {
        let (letters, texts) = match example.metadata.get("choices") {
            None | Some(Value::Null) => (self.letters.clone(), Vec::new()),
            Some(v) => {
                let texts: Vec<String> = v
                    .as_array()
                    .map(|a| a.iter().filter_map(super::scalar_text).collect())
                    .unwrap_or_default();
                let letters = letters_of(v).map_err(|e| format!("metadata `choices`: {e}"))?;
                (letters, texts)
            }
        };
        let gold = super::reference(example, self.field.as_deref())?;
        let letter = answer_letter(&gold, &letters, &texts)
            .ok_or_else(|| format!("the reference `{gold}` is not one of the choices"))?;
        Ok((letters, letter))
    }

    /// Scores one completion against an example.
    pub fn score_one(&self, example: &VerifyExample, completion: &str) -> Score {
        let (letters, gold) = match self.key(example) {
            Ok(k) => k,
            Err(e) => return Score::failed(format!("choice: {e}")),
        };
        let chosen = extract_choice(completion, &letters);
        let one = chosen.len() == 1;
        let correct = one && chosen[0] == gold;
        score_with(
            bin(correct),
            &[("correct", bin(correct)), ("extracted", bin(one))],
        )
    }
}

impl Verifier for ChoiceVerifier {
    fn name(&self) -> &str {
        "choice"
    }

    fn score(&self, groups: &[Group]) -> Vec<Vec<Score>> {
        score_each(groups, |e, c| self.score_one(e, c))
    }
}

/// The allowed letters named by a `choices` value: a string of letters (`"ABCDE"`), a list of
/// single letters, or a list of option texts (then the first n letters, A, B, ...).
fn letters_of(v: &Value) -> Result<Vec<char>, String> {
    let letters: Vec<char> = match v {
        Value::String(s) => s
            .chars()
            .filter(|c| !c.is_whitespace() && *c != ',')
            .collect(),
        Value::Array(items) => {
            let single: Option<Vec<char>> = items
                .iter()
                .map(|i| {
                    let s = i.as_str()?.trim();
                    let mut cs = s.chars();
                    match (cs.next(), cs.next()) {
                        (Some(c), None) if c.is_ascii_alphabetic() => Some(c),
                        _ => None,
                    }
                })
                .collect();
            match single {
                Some(ls) if !ls.is_empty() => ls,
                _ => {
                    if items.len() > 26 {
                        return Err(format!("{} options; at most 26", items.len()));
                    }
                    ('A'..='Z').take(items.len()).collect()
                }
            }
        }
        other => {
            return Err(format!(
                "expected letters or a list of options, got {other}"
            ))
        }
    };
    let letters: Vec<char> = letters.iter().map(char::to_ascii_uppercase).collect();
    if letters.is_empty() || letters.iter().any(|c| !c.is_ascii_uppercase()) {
        return Err(format!("expected one or more letters A-Z, got {v}"));
    }
    let mut dedup = letters.clone();
    dedup.sort_unstable();
    dedup.dedup();
    if dedup.len() != letters.len() {
        return Err(format!("letters repeat in {v}"));
    }
    Ok(letters)
}

/// The reference letter: `B`, `(B)`, `B)`, `B. Paris`, or the text of one of the options.
fn answer_letter(gold: &str, letters: &[char], texts: &[String]) -> Option<char> {
    let g = gold.trim();
    let bare = g.trim_matches(|c: char| "()[]*.:$ ".contains(c));
    let mut cs = bare.chars();
    if let (Some(c), None) = (cs.next(), cs.next()) {
        let c = c.to_ascii_uppercase();
        return letters.contains(&c).then_some(c);
    }
    if let Some(c) = leading_label(g).filter(|c| letters.contains(c)) {
        return Some(c);
    }
    let folded = g.to_lowercase();
    texts
        .iter()
        .position(|t| t.trim().to_lowercase() == folded)
        .and_then(|i| letters.get(i).copied())
}

/// The letter of a leading label `B)`, `(B)`, `B.`, `B:` followed by a space or the end.
fn leading_label(line: &str) -> Option<char> {
    static RE: OnceLock<Option<Regex>> = OnceLock::new();
    let re = RE
        .get_or_init(|| Regex::new(r"^\s*(?:\*\*)?\(?([A-Z])(?:\)|\.|:)(?:\*\*)?(?:\s|$)").ok())
        .as_ref()?;
    re.captures(line)
        .and_then(|c| c.get(1))
        .and_then(|m| m.as_str().chars().next())
}

/// A letter that stands alone in a segment, with its byte span.
#[derive(Debug, Clone, Copy)]
struct Token {
    letter: char,
    start: usize,
    end: usize,
}

/// Standalone letters of `seg`: an allowed upper-case letter not glued to a letter or digit, or
/// an allowed lower-case one in parentheses / brackets.
fn tokens(seg: &str, letters: &[char]) -> Vec<Token> {
    let chars: Vec<(usize, char)> = seg.char_indices().collect();
    let mut out = Vec::new();
    for (k, &(i, c)) in chars.iter().enumerate() {
        if !c.is_ascii_alphabetic() {
            continue;
        }
        let prev = k.checked_sub(1).map(|j| chars[j].1);
        let next = chars.get(k + 1).map(|x| x.1);
        let glued = |x: Option<char>| x.is_some_and(|x| x.is_alphanumeric() || x == '_');
        if glued(prev) || glued(next) {
            continue;
        }
        // `don't`, `I'm`: an apostrophe glues too.
        if next == Some('\'') || next == Some('’') {
            continue;
        }
        let upper = c.to_ascii_uppercase();
        if !letters.contains(&upper) {
            continue;
        }
        let wrapped =
            matches!(prev, Some('(') | Some('[')) && matches!(next, Some(')') | Some(']'));
        if c.is_ascii_uppercase() || wrapped {
            out.push(Token {
                letter: upper,
                start: i,
                end: i + c.len_utf8(),
            });
        }
    }
    out
}

/// Whether the text between two letters joins them as alternatives (`A or B`, `A, B`, `A/B`).
fn is_connector(between: &str) -> bool {
    let cleaned: String = between
        .chars()
        .filter(|c| !"()[]*$\\{}".contains(*c))
        .collect::<String>()
        .to_lowercase();
    let words: Vec<&str> = cleaned.split_whitespace().collect();
    let joined = words.join(" ");
    matches!(
        joined.as_str(),
        "," | "or"
            | "and"
            | "/"
            | "&"
            | ", or"
            | ", and"
            | "and/or"
            | "or maybe"
            | "or possibly"
            | "or perhaps"
            | "vs"
            | "vs."
            | "versus"
            | "-"
    )
}

/// Removes LaTeX text wrappers and markdown emphasis so `\textbf{(B)}` reads as `(B)`.
fn clean(seg: &str) -> String {
    let mut s = seg.to_string();
    for w in [
        "\\text{",
        "\\textbf{",
        "\\mathrm{",
        "\\mathbf{",
        "\\textit{",
    ] {
        s = s.replace(w, " ");
    }
    s.replace(['*', '$', '{', '}'], " ")
}

/// The letters named at the start of a segment: the first standalone letter (after at most
/// `max_words_before` words, when given), plus the letters chained to it by connectors (a
/// hedge). Reading stops at the end of the first sentence.
fn segment_letters(seg: &str, letters: &[char], max_words_before: Option<usize>) -> Vec<char> {
    let seg = clean(seg);
    let toks = tokens(&seg, letters);
    let Some(first) = toks.first().copied() else {
        return Vec::new();
    };
    if max_words_before.is_some_and(|m| {
        seg[..first.start]
            .split_whitespace()
            .filter(|w| w.chars().any(char::is_alphanumeric))
            .count()
            > m
    }) {
        return Vec::new();
    }
    // The end of the sentence that names the first letter (`B. Paris`: right after B).
    let end = [". ", ".\n", "; ", "\n"]
        .iter()
        .filter_map(|p| seg[first.end..].find(p).map(|i| i + first.end))
        .min()
        .unwrap_or(seg.len());
    let mut chosen = vec![first.letter];
    let mut prev = first;
    for t in toks.iter().skip(1) {
        if t.start >= end || !is_connector(&seg[prev.end..t.start]) {
            break;
        }
        if !chosen.contains(&t.letter) {
            chosen.push(t.letter);
        }
        prev = *t;
    }
    chosen
}

/// A segment that is only a letter (any case) with wrappers, e.g. `b`, `(c)`, `**D**`.
fn lone_letter(seg: &str, letters: &[char]) -> Option<char> {
    let s = clean(seg);
    let s = s.trim_matches(|c: char| c.is_whitespace() || "()[].,!?:;\"'_".contains(c));
    let mut cs = s.chars();
    match (cs.next(), cs.next()) {
        (Some(c), None) => {
            let u = c.to_ascii_uppercase();
            letters.contains(&u).then_some(u)
        }
        _ => None,
    }
}

/// Letters of a segment that is the whole final answer (a box, an answer tag) or follows an
/// answer marker (then the letter must come within three words).
fn answer_letters(seg: &str, letters: &[char], max_words_before: Option<usize>) -> Vec<char> {
    if let Some(c) = lone_letter(seg, letters) {
        return vec![c];
    }
    segment_letters(seg, letters, max_words_before)
}

fn marker_regex() -> Option<&'static Regex> {
    static RE: OnceLock<Option<Regex>> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(
            r"(?i)(?:\banswers?\b(?:\s+[a-z]+){0,3}?\s*(?:\bis\b|:|=|\bwould be\b|\bwill be\b|\bshould be\b|\bmust be\b)|\b(?:correct|right|best)\s+(?:option|choice|letter)\s*(?:\bis\b|:|=)|\b(?:option|choice)\s*(?:\bis\b|:)|\bI\s+(?:choose|pick|select|go with|would choose|would pick)\b|\bgo(?:ing)?\s+with\b)",
        )
        .ok()
    })
    .as_ref()
}

fn bold_regex() -> Option<&'static Regex> {
    static RE: OnceLock<Option<Regex>> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"\*\*\s*\(?([A-Z])\)?[.:)]?\s*\*\*").ok())
        .as_ref()
}

/// The letters a completion chooses among `letters` (upper-case A-Z): empty when it names
/// none, one letter for a clear choice, several for a hedge. Sources, first found wins: the
/// last `\boxed{}`, the last `<answer>` tag, the last `answer is` / `Answer:` / `I choose`
/// style marker, the last bold letter (`**B**`), line labels (`B) text`) when they all name
/// one letter, the final standalone letter of the last line.
pub fn extract_choice(completion: &str, letters: &[char]) -> Vec<char> {
    let text = tail(completion, SCAN_BYTES);
    match last_box(text).map(|b| b.body) {
        Some(BoxBody::Braced(b) | BoxBody::Bare(b)) => return answer_letters(b, letters, None),
        // Cut off inside the box: the completion states no answer.
        Some(BoxBody::Unclosed) => return Vec::new(),
        Some(BoxBody::Missing) | None => {}
    }
    if let Some(a) = last_answer_tag(text) {
        return answer_letters(a, letters, None);
    }
    if let Some(re) = marker_regex() {
        // The last marker that is followed by a letter (`Answer: B ... the answer is right`).
        let ends: Vec<usize> = re.find_iter(text).map(|m| m.end()).collect();
        for &end in ends.iter().rev() {
            let rest = &text[end..];
            let line_end = rest.find('\n').unwrap_or(rest.len());
            let found = answer_letters(tail_cut(&rest[..line_end], 400), letters, Some(3));
            if !found.is_empty() {
                return found;
            }
        }
    }
    if let Some(re) = bold_regex() {
        let bold: Vec<(usize, usize, char)> = re
            .captures_iter(text)
            .filter_map(|c| {
                let all = c.get(0)?;
                let letter = c.get(1)?.as_str().chars().next()?;
                Some((all.start(), all.end(), letter))
            })
            .filter(|b| letters.contains(&b.2))
            .collect();
        if let Some(&(start, _, letter)) = bold.last() {
            let mut chosen = vec![letter];
            // `**A** or **B**` is a hedge.
            if let Some(&(_, prev_end, prev)) = bold.len().checked_sub(2).map(|i| &bold[i]) {
                if prev != letter && is_connector(&text[prev_end..start]) {
                    chosen.insert(0, prev);
                }
            }
            return chosen;
        }
    }
    let mut labels: Vec<char> = text
        .lines()
        .filter_map(leading_label)
        .filter(|c| letters.contains(c))
        .collect();
    labels.sort_unstable();
    labels.dedup();
    if labels.len() == 1 {
        return labels;
    }
    if !labels.is_empty() {
        // A listing of the options is not an answer; only a final letter below can be.
        return final_letter(text, letters, true);
    }
    final_letter(text, letters, false)
}

/// The first `bytes` bytes of `s`, cut at a character boundary.
fn tail_cut(s: &str, bytes: usize) -> &str {
    if s.len() <= bytes {
        return s;
    }
    let mut end = bytes;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The letter that ends the last non-empty line (`... so I pick C.`), with any letters chained
/// to it by connectors before it; a whole completion that is just a letter (any case) counts.
/// With `not_a_label`, a last line that is an option label (`D) text`) does not count.
fn final_letter(text: &str, letters: &[char], not_a_label: bool) -> Vec<char> {
    if let Some(c) = lone_letter(text, letters) {
        return vec![c];
    }
    let Some(line) = text.lines().rev().find(|l| !l.trim().is_empty()) else {
        return Vec::new();
    };
    if not_a_label && leading_label(line).is_some() {
        return Vec::new();
    }
    let cleaned = clean(line);
    let toks = tokens(&cleaned, letters);
    let Some(last) = toks.last().copied() else {
        return Vec::new();
    };
    let after = &cleaned[last.end..];
    if !after
        .chars()
        .all(|c| c.is_whitespace() || ".!?)]:;,'\"_".contains(c))
    {
        return Vec::new();
    }
    let mut chosen = vec![last.letter];
    let mut next = last;
    for t in toks.iter().rev().skip(1) {
        if !is_connector(&cleaned[t.end..next.start]) {
            break;
        }
        if !chosen.contains(&t.letter) {
            chosen.push(t.letter);
        }
        next = *t;
    }
    chosen.reverse();
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ABCD: [char; 4] = ['A', 'B', 'C', 'D'];

    fn ex(answer: &str) -> VerifyExample {
        VerifyExample {
            answer: Some(answer.into()),
            ..VerifyExample::default()
        }
    }

    fn build(v: Value) -> Result<ChoiceVerifier, VerifierError> {
        ChoiceVerifier::from_options(
            &v.as_object().cloned().unwrap_or_default(),
            &BuildContext::default(),
        )
    }

    #[test]
    fn extraction_styles() {
        for (text, want) in [
            ("The answer is (B).", "B"),
            ("The answer is B", "B"),
            ("the answer is b", "B"),
            ("the answer is a bit unclear", ""),
            ("Answer: A\n\nThe answer is right because it is prime.", "A"),
            (
                "Answer: B\n\nThe answer is right, as explained, because A is prime.",
                "B",
            ),
            ("The answer is most likely option (C).", "C"),
            ("<answer>The answer is option B</answer>", "B"),
            ("**A** or **B**", "AB"),
            ("**A** is wrong, **C** is right", "C"),
            ("The answer is (b).", "B"),
            ("So the correct answer is: C", "C"),
            ("**Answer:** D", "D"),
            ("Answer: A\n\nExplanation: A is the only prime.", "A"),
            ("Final answer: $\\boxed{C}$", "C"),
            ("\\boxed{\\text{(B)}}", "B"),
            ("\\boxed{b}", "B"),
            ("<answer>D</answer>", "D"),
            ("<answer> (a) </answer>", "A"),
            ("I think the best choice is **C**.", "C"),
            ("Let me think... **B**", "B"),
            ("B) Paris", "B"),
            ("B. Paris\n\nParis is the capital of France.", "B"),
            ("(C) 42", "C"),
            ("After checking everything, it must be D.", "D"),
            ("D", "D"),
            ("  c  ", "C"),
            ("(A)", "A"),
            ("The answer is (B) because option A is wrong.", "B"),
            ("The answer is B, not A.", "B"),
            ("The answer is B. A is a distractor.", "B"),
            ("I choose C", "C"),
            ("Option A is tempting, but the answer is D", "D"),
            ("The answer is C) A and B", "C"),
            ("A) 1\nB) 2\nC) 3\nD) 4\nThe answer is B", "B"),
            // Hedges name several letters.
            ("The answer is A or B", "AB"),
            ("The answer is either (A) or (C).", "AC"),
            ("Answer: A, C", "AC"),
            ("\\boxed{A, B}", "AB"),
            ("\\boxed{B \\text{ or } D}", "BD"),
            ("It is A or B", "AB"),
            ("Answer: A/B", "AB"),
            // Nothing chosen.
            ("", ""),
            ("I am not sure.", ""),
            ("A) 1\nB) 2\nC) 3\nD) 4", ""),
            ("The answer is 42", ""),
            ("\\boxed{42}", ""),
            ("\\boxed{B", ""),
            ("The answer is E", ""),
            ("I don't know", ""),
            ("Vitamins: A lot of them.", ""),
        ] {
            let got: String = extract_choice(text, &ABCD).into_iter().collect();
            assert_eq!(got, want, "{text:?}");
        }
    }

    #[test]
    fn scoring_and_references() {
        let v = build(json!({})).unwrap();
        for (gold, c, want) in [
            ("B", "The answer is (B).", 1.0),
            ("(B)", "The answer is B", 1.0),
            ("b", "**B**", 1.0),
            ("B) Paris", "B", 1.0),
            ("B", "The answer is (C).", 0.0),
            ("B", "The answer is A or B", 0.0),
            ("B", "B or C", 0.0),
            ("B", "", 0.0),
        ] {
            let s = v.score_one(&ex(gold), c);
            assert_eq!(s.reward, want, "{gold} / {c}");
            assert!(s.error.is_none(), "{gold} / {c}");
        }
        let s = v.score_one(&ex("B"), "A or B");
        assert_eq!(s.components["extracted"], 0.0);
        let s = v.score_one(&ex("B"), "A");
        assert_eq!(s.components["extracted"], 1.0);
        assert_eq!(s.components["correct"], 0.0);
        // A reference outside the choices, or none, is an error.
        assert!(v.score_one(&ex("E"), "E").error.is_some());
        assert!(v.score_one(&ex("Paris"), "A").error.is_some());
        let none = v.score_one(&VerifyExample::default(), "A");
        assert!(none.error.is_some());
        assert_eq!(none.reward, 0.0);
    }

    #[test]
    fn choices_from_options_and_metadata() {
        let v = build(json!({"choices": "ABCDE"})).unwrap();
        assert_eq!(v.score_one(&ex("E"), "The answer is E").reward, 1.0);
        let v = build(json!({"choices": ["a", "b"]})).unwrap();
        assert_eq!(v.letters, ['A', 'B']);
        assert_eq!(v.score_one(&ex("C"), "C").reward, 0.0);
        assert!(v.score_one(&ex("C"), "C").error.is_some());
        let v = build(json!({})).unwrap();
        let mut e = ex("London");
        e.metadata.insert(
            "choices".into(),
            json!(["Paris", "London", "Rome", "Berlin", "Madrid"]),
        );
        assert_eq!(v.score_one(&e, "The answer is (B)").reward, 1.0);
        assert_eq!(v.score_one(&e, "The answer is E").reward, 0.0);
        assert!(v.score_one(&e, "The answer is E").error.is_none());
        let mut e = ex("E");
        e.metadata.insert("choices".into(), json!("A B C D E"));
        assert_eq!(v.score_one(&e, "E").reward, 1.0);
        let mut e = ex("B");
        e.metadata.insert("choices".into(), json!(42));
        assert!(v.score_one(&e, "B").error.is_some());
        let v = build(json!({"field": "key"})).unwrap();
        let mut e = ex("A");
        e.metadata.insert("key".into(), json!("C"));
        assert_eq!(v.score_one(&e, "C").reward, 1.0);
        for (bad, want) in [
            (
                json!({"choices": ""}),
                "`choices`: expected one or more letters A-Z",
            ),
            (json!({"choices": "AA"}), "`choices`: letters repeat"),
            (
                json!({"choices": "A1"}),
                "`choices`: expected one or more letters A-Z",
            ),
            (
                json!({"choices": 4}),
                "`choices`: expected letters or a list of options, got 4",
            ),
            (
                json!({"choices": []}),
                "`choices`: expected one or more letters A-Z",
            ),
            (
                json!({"letters": "AB"}),
                "unknown field `letters`, expected `choices` or `field`",
            ),
            (
                json!({"field": 1}),
                "`field`: invalid type: integer `1`, expected a string",
            ),
            (json!({"field": ""}), "`field` must not be empty"),
        ] {
            let e = build(bad.clone());
            assert!(matches!(e, Err(VerifierError::Config { .. })), "{bad}");
            let e = e.unwrap_err().to_string();
            assert!(
                e.contains("verifier `choice`") && e.contains(want),
                "{bad}: {e}"
            );
        }
        // A null option is absent.
        let v = build(json!({"choices": null, "field": null})).unwrap();
        assert_eq!(v.letters, ABCD);
        assert_eq!(v.field, None);
    }

    #[test]
    fn garbage_never_panics() {
        let v = build(json!({"choices": "ABCDEFGHIJ"})).unwrap();
        let long = format!("é{}", "x".repeat(SCAN_BYTES + 3));
        let many = "A or ".repeat(100_000);
        let braces = "\\boxed{".repeat(10_000);
        for s in [
            "",
            "\u{0}",
            "\u{fffd}\u{10ffff}",
            long.as_str(),
            many.as_str(),
            braces.as_str(),
            "((((((((((",
            "**",
            "<answer></answer>",
            "</answer><answer>",
            "\\boxed{}",
            "ǅ ǈ Ⅻ",
        ] {
            let sc = v.score_one(&ex("A"), s);
            assert!(sc.reward == 0.0 || sc.reward == 1.0, "{s:?}");
        }
    }
}
