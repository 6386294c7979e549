//! Final-answer extraction from a completion.
//!
//! Order of precedence: an `<answer>...</answer>` tag, then the last `\boxed{}` / `\fbox{}`
//! (nested braces balanced; an unclosed last box means no boxed answer), then whichever textual
//! marker comes *last* in the text (`#### 42`, `Final answer: ...`, `**Answer:** ...`,
//! `the answer is ...`), then a math segment that ends the last line (`... is $4\pi$.`), and
//! finally, when allowed, the last number of the final sentence. Each source
//! can be switched off through [`super::MathOptions::extract`].

use std::sync::LazyLock;

use regex::Regex;

use super::{ExtractMode, MathOptions};
use crate::extract::{box_at, find_ci, last_answer_tag, last_box, tail, BoxBody, BoxCmd};

/// Longest completion scanned (bytes); the tail is kept, since answers come last.
const MAX_SCAN: usize = 64 * 1024;

/// Extracts the final answer of `text` (see the module doc); `None` when there is none.
pub fn extract_answer(text: &str, opts: &MathOptions) -> Option<String> {
    let text = tail(text, MAX_SCAN);
    let on = |m: ExtractMode| opts.extract.contains(&m);
    if on(ExtractMode::AnswerTag) {
        if let Some(inner) = last_answer_tag(text) {
            if on(ExtractMode::Boxed) {
                if let Some(b) = last_boxed(inner) {
                    return Some(b);
                }
            }
            let t = clean(inner);
            if !t.is_empty() {
                return Some(t);
            }
        }
    }
    if on(ExtractMode::Boxed) {
        if let Some(b) = last_boxed(text) {
            return Some(b);
        }
        if truncated_box(text) {
            // the completion stopped while writing its final answer: there is none
            return None;
        }
    }
    if let Some((t, end)) = last_marker(text, opts) {
        // `Final answer: 50. Actually, no: ... so 45.`: the completion corrected itself
        if opts.follow_corrections && correction_cue(&text[end..]) {
            if let Some(later) = last_line_math(&text[end..]).or_else(|| last_number(&text[end..]))
            {
                return Some(later);
            }
        }
        return Some(t);
    }
    if on(ExtractMode::LastMath) {
        if let Some(t) = last_line_math(text) {
            return Some(t);
        }
    }
    let fallback = opts.allow_last_number || on(ExtractMode::LastNumber);
    if fallback && opts.unmarked_last_line {
        if let Some(t) = unmarked_last_line(text) {
            return Some(t);
        }
    }
    if fallback {
        return last_number(text);
    }
    None
}

/// Whether `text` (what follows an answer) takes the answer back: `Wait`, `Actually`,
/// `Correction`, `On second thought`, `I made a mistake`, `No,`.
fn correction_cue(text: &str) -> bool {
    static CUE: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(
            r"(?i)\b(?:wait|actually|correction|on second thought|made a mistake|that is wrong|that's wrong|recheck|re-check)\b|\bno,",
        )
        .expect("static regex")
    });
    CUE.is_match(text)
}

/// The whole last line when it is a short bare answer (`24 square metres`, `-3 degrees`,
/// `2^8`, `5e-3`, `twelve`): at most 48 bytes and 6 words, holding a digit, a number word or
/// math, and not ending like an unfinished clause (`... and`, `... =`).
fn unmarked_last_line(text: &str) -> Option<String> {
    const OPEN_ENDS: &[&str] = &[
        "and", "then", "the", "of", "to", "so", "is", "are", "a", "an", "we", "which", "that",
        "with", "by", "for", "plus", "minus", "times", "or", "but", "get", "gives", "be",
    ];
    let line = text.lines().rev().find(|l| !l.trim().is_empty())?.trim();
    let line = line.trim_end_matches(['.', '!']).trim();
    if line.is_empty() || line.len() > 48 || line.split_whitespace().count() > 6 {
        return None;
    }
    // a bare choice letter (`A`, `(D)`, `Option B`)
    static CHOICE_LINE: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"^(?i:option|choice)?\s*\(?[A-J]\)?$").expect("static regex"));
    if CHOICE_LINE.is_match(line) {
        return Some(line.to_string());
    }
    if line.ends_with(['=', '+', '-', '*', '/', '^', ':', ',', '\\', '(', '{']) {
        return None;
    }
    let last = line
        .rsplit(|c: char| c.is_whitespace())
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    if OPEN_ENDS.contains(&last.as_str()) {
        return None;
    }
    // the line must *be* the answer: it starts with it (a number, a sign, math, `x =`) or is
    // a number in words; `so it is 12` is a sentence, read by the last-number rule instead
    let bytes = line.as_bytes();
    let assignment = bytes.len() > 2
        && bytes[0].is_ascii_alphabetic()
        && line[1..].trim_start().starts_with('=');
    let starts_as_answer = line.starts_with(|c: char| c.is_ascii_digit())
        || line.starts_with(['-', '$', '\\', '(', '['])
        || assignment;
    let numeric = line.chars().any(|c| c.is_ascii_digit()) || line.contains('\\');
    if !((starts_as_answer && numeric) || super::words::words_to_number(line).is_some()) {
        return None;
    }
    Some(clean(line))
}

/// Whether the text between two boxes only joins them (`$ or $`, `, `, `\text{ and }`).
fn only_connectors(gap: &str) -> bool {
    if gap.len() > 40 {
        return false;
    }
    let mut rest = gap.to_string();
    for tok in [
        "\\text", "\\quad", "\\(", "\\)", "and", "or", "{", "}", "$", ",", ";",
    ] {
        rest = rest.replace(tok, "");
    }
    rest.trim().is_empty()
}

/// The contents of the last `\boxed{...}` / `\fbox{...}` / `\boxed 5`. Boxes written one after
/// the other with only connectors between them (`\boxed{2}` and `\boxed{3}`, or a hedge
/// `\boxed{5}` or `\boxed{6}`) are read together as a list.
pub(crate) fn last_boxed(text: &str) -> Option<String> {
    let last = last_box(text)?;
    let mut items = vec![box_content(last)?];
    let mut cur = last.start;
    while items.len() < 16 {
        let Some(prev) = last_box(&text[..cur]) else {
            break;
        };
        let prev = box_at(text, prev.start);
        match box_content(prev) {
            Some(b) if prev.end <= cur && only_connectors(&text[prev.end..cur]) => {
                items.push(b);
                cur = prev.start;
            }
            _ => break,
        }
    }
    items.reverse();
    Some(items.join(", "))
}

/// A box's answer: the trimmed braced contents, or a bare token without trailing `.` / `,`;
/// `None` when empty, unclosed or missing.
fn box_content(b: BoxCmd<'_>) -> Option<String> {
    let t = match b.body {
        BoxBody::Braced(t) => t.trim(),
        BoxBody::Bare(t) => t.trim_end_matches(['.', ',']),
        BoxBody::Unclosed | BoxBody::Missing => return None,
    };
    (!t.is_empty()).then(|| t.to_string())
}

/// Whether the last `\boxed{` / `\fbox{` is never closed (the completion was cut off in it) or
/// empty.
fn truncated_box(text: &str) -> bool {
    matches!(
        last_box(text).map(|b| b.body),
        Some(BoxBody::Unclosed | BoxBody::Braced(_))
    )
}

/// The textual marker that occurs last in the text, with the answer after it and the byte
/// index where the answer's line ends.
fn last_marker(text: &str, opts: &MathOptions) -> Option<(String, usize)> {
    static HASH: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"####").expect("static regex"));
    static FINAL: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?i)final\s+answer(?:\s+is)?\s*(?:\*\*)?\s*[:=]?").expect("static regex")
    });
    static COLON: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"(?i)\banswer\s*(?:\*\*|__)?\s*[:=]").expect("static regex"));
    static IS: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?i)\banswer\s+(?:is|would\s+be|should\s+be|will\s+be|=)\s*:?")
            .expect("static regex")
    });
    let mut best: Option<(usize, usize)> = None; // (match start, answer start)
    let mut consider = |re: &Regex, mode: ExtractMode| {
        if !opts.extract.contains(&mode) {
            return;
        }
        if let Some(m) = re.find_iter(text).last() {
            if best.is_none_or(|(s, _)| m.start() >= s) {
                best = Some((m.start(), m.end()));
            }
        }
    };
    consider(&HASH, ExtractMode::Hash);
    consider(&FINAL, ExtractMode::FinalAnswer);
    consider(&COLON, ExtractMode::AnswerColon);
    consider(&IS, ExtractMode::AnswerIs);
    let (_, start) = best?;
    let after = &text[start..];
    // the answer is on the marker's line, or on the next non-empty line
    let mut lines = after.lines();
    let mut line = lines.next().unwrap_or("");
    let stripped = line.trim().trim_matches(['*', '_', ':', ' ']);
    if stripped.is_empty() {
        line = lines.find(|l| !l.trim().is_empty()).unwrap_or("");
        if line.trim() == "$$" || line.trim() == "\\[" {
            line = lines.next().unwrap_or("");
        }
    }
    let t = clean(line);
    if t.is_empty() {
        return None;
    }
    // where the answer's line sits in `text` (it is a slice of it), and where its sentence
    // ends on that line (`50. Actually, ...`)
    let base = (line.as_ptr() as usize)
        .checked_sub(text.as_ptr() as usize)
        .filter(|b| b + line.len() <= text.len());
    let line_end = match base {
        Some(b) => match line.find(". ") {
            Some(p) => b + p + 1,
            None => b + line.len(),
        },
        None => text.len(),
    };
    Some((t, line_end))
}

/// Cleans a captured answer: markdown, the first math segment when there is one, the end of
/// the sentence, and trailing explanations (`, which ...`, ` because ...`).
fn clean(s: &str) -> String {
    let s = s.trim();
    if let Some(b) = last_boxed(s) {
        return b;
    }
    let s = s.replace("**", "").replace('`', "");
    let s = s.trim().trim_start_matches([':', '=']).trim();
    let s = ["actually ", "indeed ", "just "]
        .iter()
        .find_map(|w| {
            s.get(..w.len())
                .filter(|h| h.eq_ignore_ascii_case(w))
                .map(|_| &s[w.len()..])
        })
        .unwrap_or(s);
    if let Some(m) = first_math(s) {
        return m.trim().to_string();
    }
    let mut end = s.len();
    let bytes = s.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'.' {
            let next = bytes.get(i + 1);
            let prev_digit = i > 0 && bytes[i - 1].is_ascii_digit();
            let next_digit = next.is_some_and(|n| n.is_ascii_digit());
            let dots = next == Some(&b'.') || (i > 0 && bytes[i - 1] == b'.');
            if (next.is_none() || next.is_some_and(|n| n.is_ascii_whitespace()))
                && !(prev_digit && next_digit)
                && !dots
            {
                end = i;
                break;
            }
        }
    }
    let mut s = &s[..end];
    for stop in [
        ", which",
        ", so ",
        " because",
        " since",
        ", since",
        ", as ",
        " as the ",
        " (since",
        " (because",
        " for the ",
        " in total",
        ", and the",
        " given",
    ] {
        if let Some(p) = find_ci(s, stop) {
            if p > 0 {
                s = &s[..p];
            }
        }
    }
    s.trim()
        .trim_matches(|c: char| c == '"' || c == '\'' || c == '*' || c == '_')
        .trim()
        .to_string()
}

/// Finds `needle` in `hay` at a position not preceded by a backslash (`\$` is a dollar sign).
fn find_unescaped(hay: &str, needle: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(p) = hay[from..].find(needle) {
        let at = from + p;
        if at == 0 || hay.as_bytes()[at - 1] != b'\\' || needle.starts_with('\\') {
            return Some(at);
        }
        from = at + needle.len();
    }
    None
}

/// The first complete `$...$`, `$$...$$`, `\(...\)` or `\[...\]` segment; segments that follow
/// it joined only by connectors (`$x = 3$ or $x = -3$`) are appended as a list.
fn first_math(s: &str) -> Option<String> {
    for (open, close) in [("$$", "$$"), ("\\[", "\\]"), ("\\(", "\\)"), ("$", "$")] {
        let mut segments: Vec<&str> = Vec::new();
        let mut rest = s;
        while let Some(a) = find_unescaped(rest, open) {
            if !segments.is_empty() && !only_connectors(&rest[..a]) {
                break;
            }
            let body = &rest[a + open.len()..];
            let Some(b) = find_unescaped(body, close) else {
                break;
            };
            let inner = &body[..b];
            if inner.trim().is_empty() {
                break;
            }
            segments.push(inner);
            rest = &body[b + close.len()..];
            if segments.len() >= 16 {
                break;
            }
        }
        if !segments.is_empty() {
            return Some(segments.join(", "));
        }
    }
    None
}

/// The last math segment (`$...$`, `\\[...\\]`) of the last non-empty line, when that line ends
/// with it (up to closing punctuation): `Hence the area is $4\\sqrt{2}$.`
fn last_line_math(text: &str) -> Option<String> {
    let t = text.trim_end().trim_end_matches(['.', '!', ' ']).trim_end();
    // a display block over several lines: `Hence\n\\[\n24\n\\]` or `$$\n24\n$$`
    for (open, close) in [("\\[", "\\]"), ("$$", "$$")] {
        if let Some(body) = t.strip_suffix(close) {
            if let Some(start) = body.rfind(open) {
                let inner = body[start + open.len()..].trim();
                // one-line blocks are read by the last-line rule below
                if !inner.is_empty() && body[start..].contains('\n') {
                    return Some(inner.to_string());
                }
            }
        }
    }
    // a display block followed by a closing clause without math or numbers
    // (`$$ 12 $$ which completes the proof.`)
    if let Some(last) = t.lines().last() {
        let clause = last.trim();
        let bare = !clause.is_empty()
            && clause.len() <= 60
            && !clause.contains(['$', '\\'])
            && !clause.chars().any(|c| c.is_ascii_digit());
        if bare && t.len() > last.len() {
            let before = t[..t.len() - last.len()].trim_end();
            if before.ends_with("$$") || before.ends_with("\\]") {
                return last_line_math(before);
            }
        }
    }
    let line = text.lines().rev().find(|l| !l.trim().is_empty())?.trim();
    let line = line.trim_end_matches(['.', '!', ' ']);
    for (open, close) in [("$$", "$$"), ("\\]", "\\["), ("\\)", "\\("), ("$", "$")] {
        // `open`/`close` are swapped here: we search backwards from the end
        let Some(body) = line.strip_suffix(open) else {
            continue;
        };
        let start = if close == "$" {
            let mut from = body.len();
            loop {
                let p = body[..from].rfind('$')?;
                if p == 0 || body.as_bytes()[p - 1] != b'\\' {
                    break p;
                }
                from = p;
            }
        } else {
            body.rfind(close)?
        };
        let inner = body[start + close.len()..].trim();
        if !inner.is_empty() {
            return Some(inner.to_string());
        }
    }
    None
}

/// The last number of the final sentence (`-3`, `1,000`, `2.5`, `3/4`), when the text ends like
/// a finished sentence or with the number itself; a text that stops mid-sentence (truncated) or
/// whose last sentence holds no number states no answer.
fn last_number(text: &str) -> Option<String> {
    static NUM: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"-?\d(?:[\d,]*\d)?(?:\.\d+)?(?:/\d+)?").expect("static regex")
    });
    let t = text.trim_end();
    let finished = t.ends_with(['.', '!', '$', ')', '}', ']', '*'])
        || t.ends_with(|c: char| c.is_ascii_digit());
    if !finished {
        return None;
    }
    let body = t.trim_end_matches(['.', '!', '*', ' ']);
    // the final sentence: after the last newline or sentence-ending ". "
    let start = body
        .rfind('\n')
        .into_iter()
        .chain(body.rfind(". ").map(|p| p + 1))
        .max()
        .unwrap_or(0);
    let sentence = &body[start..];
    // `It could be 3, 4, 5 or 6.`: candidates, not an answer
    if NUM.find_iter(sentence).count() >= 2 && find_ci(sentence, " or ").is_some() {
        return None;
    }
    NUM.find_iter(sentence)
        .last()
        .map(|m| m.as_str().trim_end_matches(',').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(s: &str) -> Option<String> {
        extract_answer(s, &MathOptions::default())
    }

    #[test]
    fn boxed() {
        assert_eq!(ex("so \\boxed{\\frac{1}{2}}."), Some("\\frac{1}{2}".into()));
        assert_eq!(ex("\\boxed{1} then \\boxed{2}"), Some("2".into()));
        assert_eq!(ex("\\fbox{7}"), Some("7".into()));
        assert_eq!(ex("$\\boxed{2}$ and $\\boxed{3}$"), Some("2, 3".into()));
        assert_eq!(
            ex("\\boxed{2}. Next, we check that \\boxed{3}"),
            Some("3".into())
        );
        assert_eq!(ex("$\\boxed 5$"), Some("5".into()));
        assert_eq!(ex("\\boxed{\\{1,2\\}}"), Some("\\{1,2\\}".into()));
        // unclosed last box: not the earlier one
        let opts = MathOptions {
            allow_last_number: false,
            ..MathOptions::default()
        };
        assert_eq!(
            extract_answer("\\boxed{1} ... \\boxed{\\frac{2}{3}", &opts),
            None
        );
    }

    #[test]
    fn markers() {
        assert_eq!(ex("blah\n#### 1,234"), Some("1,234".into()));
        assert_eq!(ex("So the answer is 42."), Some("42".into()));
        assert_eq!(
            ex("The answer is $\\frac{3}{4}$ since ..."),
            Some("\\frac{3}{4}".into())
        );
        assert_eq!(ex("Final Answer: 3.5."), Some("3.5".into()));
        assert_eq!(ex("**Answer:** (B)"), Some("(B)".into()));
        assert_eq!(ex("**Final Answer**\n\n$$x = 2$$"), Some("x = 2".into()));
        assert_eq!(ex("<answer>12</answer>"), Some("12".into()));
        assert_eq!(ex("<answer>so \\boxed{12}</answer>"), Some("12".into()));
        assert_eq!(
            ex("Answer: 5. Wait, that is wrong. The answer is 7."),
            Some("7".into())
        );
        assert_eq!(
            ex("The answer is 18, which is the total."),
            Some("18".into())
        );
    }

    #[test]
    fn fallback_and_modes() {
        assert_eq!(ex("She has 3 apples and buys 4, so 7"), Some("7".into()));
        assert_eq!(
            ex("She has 3 apples. So she has 7 apples."),
            Some("7".into())
        );
        assert_eq!(ex("Then 3 * 4 = 12 and we add"), None);
        assert_eq!(ex("So x = 12. We are done."), None);
        assert_eq!(ex("so the total is \\boxed{12"), None);
        let opts = MathOptions {
            allow_last_number: false,
            ..MathOptions::default()
        };
        assert_eq!(extract_answer("She has 7 apples", &opts), None);
        let only_hash = MathOptions {
            extract: vec![ExtractMode::Hash],
            allow_last_number: false,
            ..MathOptions::default()
        };
        assert_eq!(extract_answer("\\boxed{3}", &only_hash), None);
        assert_eq!(extract_answer("#### 3", &only_hash), Some("3".into()));
        assert_eq!(ex(""), None);
        assert_eq!(ex("no digits here"), None);
    }
}
