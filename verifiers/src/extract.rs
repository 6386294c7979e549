//! Where a completion states its answer: the rules every verifier shares for finding it (the
//! tail of a long completion, the last `<answer>` tag, the last `\boxed{}` / `\fbox{}`, fenced
//! code blocks). Each verifier decides what to read from what these find (`math` its answer
//! expression, `choice` a letter, `arith` an integer, `code` a program, `json_schema` a
//! document).

/// The last `max` bytes of `text`, cut at a character boundary (answers come last: long
/// completions are scanned from their tail).
pub fn tail(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// The content of the last `<answer>` tag (ASCII case-insensitive), when a `</answer>` closes
/// it. A last tag left open (the completion was cut off in it) is no answer, even when an
/// earlier tag was closed.
pub fn last_answer_tag(text: &str) -> Option<&str> {
    const OPEN: &str = "<answer>";
    let open = rfind_ci(text, OPEN)?;
    let inner = &text[open + OPEN.len()..];
    let close = find_ci(inner, "</answer>")?;
    Some(&inner[..close])
}

/// What follows a `\boxed` / `\fbox` command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoxBody<'a> {
    /// `\boxed{...}` (spaces allowed before the brace), closed with nested braces balanced:
    /// the text between the braces, as written.
    Braced(&'a str),
    /// `\boxed 5`: the token after the space, up to white space or `$`, as written.
    Bare(&'a str),
    /// `\boxed{...` never closed: the completion was cut off in it.
    Unclosed,
    /// Neither a brace nor a space follows (`\boxed` at the end, `\boxedx`).
    Missing,
}

/// One `\boxed` / `\fbox` command of a text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoxCmd<'a> {
    /// Byte index of its backslash.
    pub start: usize,
    /// Byte index just after it (after the closing brace or the bare token; `start` + the
    /// command's length when unclosed or missing).
    pub end: usize,
    /// What it holds.
    pub body: BoxBody<'a>,
}

/// The last `\boxed` / `\fbox` command of `text`.
pub fn last_box(text: &str) -> Option<BoxCmd<'_>> {
    let start = match (text.rfind("\\boxed"), text.rfind("\\fbox")) {
        (Some(a), Some(b)) => a.max(b),
        (a, b) => a.or(b)?,
    };
    Some(box_at(text, start))
}

/// The box command starting at `start` (which must hold `\boxed` or `\fbox`).
pub fn box_at(text: &str, start: usize) -> BoxCmd<'_> {
    let cmd_len = if text[start..].starts_with("\\boxed") {
        "\\boxed".len()
    } else {
        "\\fbox".len()
    };
    let after = start + cmd_len;
    let rest = &text[after..];
    let trimmed = rest.trim_start();
    let body_start = after + (rest.len() - trimmed.len());
    let cmd = |end, body| BoxCmd { start, end, body };
    if let Some(body) = trimmed.strip_prefix('{') {
        let mut depth = 1usize;
        for (i, c) in body.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        return cmd(body_start + 1 + i + 1, BoxBody::Braced(&body[..i]));
                    }
                }
                _ => {}
            }
        }
        return cmd(after, BoxBody::Unclosed);
    }
    if rest.starts_with(' ') {
        let len = trimmed
            .find(|c: char| c.is_whitespace() || c == '$')
            .unwrap_or(trimmed.len());
        return cmd(body_start + len, BoxBody::Bare(&trimmed[..len]));
    }
    cmd(after, BoxBody::Missing)
}

/// One fenced code block (```` ``` ```` on a line of its own, indented or not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FencedBlock<'a> {
    /// The first word after the opening fence (`python`, `json`; braces of `{python}` dropped);
    /// empty when untagged.
    pub tag: &'a str,
    /// Its lines, each ended by `\n`, as written (indentation kept).
    pub body: String,
    /// A closing fence ends it (false: the text ends inside it).
    pub closed: bool,
}

/// The fenced code blocks of `text`, in order; only the last can be unclosed. A fence opens at
/// a line starting (after indentation) with ```` ``` ````, and closes at a line that is only
/// ```` ``` ````.
pub fn fenced_blocks(text: &str) -> Vec<FencedBlock<'_>> {
    let mut blocks = Vec::new();
    let mut open: Option<FencedBlock> = None;
    for line in text.lines() {
        let t = line.trim_start();
        match open.as_mut() {
            None => {
                if let Some(rest) = t.strip_prefix("```") {
                    let tag = rest.split_whitespace().next().unwrap_or("");
                    open = Some(FencedBlock {
                        tag: tag.trim_start_matches('{').trim_end_matches('}'),
                        body: String::new(),
                        closed: false,
                    });
                }
            }
            Some(b) => {
                if t.trim_end() == "```" {
                    b.closed = true;
                    blocks.extend(open.take());
                } else {
                    b.body.push_str(line);
                    b.body.push('\n');
                }
            }
        }
    }
    blocks.extend(open);
    blocks
}

/// ASCII-case-insensitive `find`.
pub fn find_ci(hay: &str, needle: &str) -> Option<usize> {
    let (h, n) = (hay.as_bytes(), needle.as_bytes());
    if n.len() > h.len() {
        return None;
    }
    (0..=h.len() - n.len()).find(|&i| h[i..i + n.len()].eq_ignore_ascii_case(n))
}

/// ASCII-case-insensitive `rfind`.
pub fn rfind_ci(hay: &str, needle: &str) -> Option<usize> {
    let (h, n) = (hay.as_bytes(), needle.as_bytes());
    if n.len() > h.len() {
        return None;
    }
    (0..=h.len() - n.len())
        .rev()
        .find(|&i| h[i..i + n.len()].eq_ignore_ascii_case(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tails_cut_at_char_boundaries() {
        assert_eq!(tail("abc", 5), "abc");
        assert_eq!(tail("abcdef", 3), "def");
        assert_eq!(tail("aé", 1), "");
        assert_eq!(tail("aéb", 2), "b");
    }

    #[test]
    fn answer_tags() {
        assert_eq!(
            last_answer_tag("<answer>1</answer> <answer>2</answer>"),
            Some("2")
        );
        assert_eq!(last_answer_tag("x <ANSWER> 3 </Answer>"), Some(" 3 "));
        assert_eq!(last_answer_tag("<answer>1</answer> <answer>2"), None);
        assert_eq!(last_answer_tag("</answer><answer>"), None);
        assert_eq!(last_answer_tag("<answer></answer>"), Some(""));
        assert_eq!(last_answer_tag("no tags"), None);
    }

    #[test]
    fn boxes() {
        fn body(t: &str) -> Option<BoxBody<'_>> {
            last_box(t).map(|b| b.body)
        }
        assert_eq!(body("a \\boxed{x^{2}} b"), Some(BoxBody::Braced("x^{2}")));
        assert_eq!(body("\\boxed{1} \\fbox {2}"), Some(BoxBody::Braced("2")));
        assert_eq!(body("\\boxed 5$."), Some(BoxBody::Bare("5")));
        assert_eq!(body("\\boxed{\\frac{1}{2}"), Some(BoxBody::Unclosed));
        assert_eq!(body("\\boxed"), Some(BoxBody::Missing));
        assert_eq!(body("none"), None);
        let t = "so \\boxed{7} and";
        let b = last_box(t).unwrap();
        assert_eq!((&t[b.start..b.end], &t[b.end..]), ("\\boxed{7}", " and"));
    }

    #[test]
    fn fenced() {
        let t = "Try:\n```python\nprint(1)\n```\n  ```{py}\n  x\n  ```\n```\nopen";
        let b = fenced_blocks(t);
        assert_eq!(b.len(), 3);
        assert_eq!(
            (b[0].tag, b[0].body.as_str(), b[0].closed),
            ("python", "print(1)\n", true)
        );
        assert_eq!((b[1].tag, b[1].body.as_str()), ("py", "  x\n"));
        assert_eq!(
            (b[2].tag, b[2].body.as_str(), b[2].closed),
            ("", "open\n", false)
        );
        assert!(fenced_blocks("no code").is_empty());
    }
}
