//! String normalisation of an extracted answer: strips LaTeX layout noise (`$`, `\left`, `\,`,
//! `\text{}` wrappers, `^\circ`, ...), maps Unicode math symbols to their ASCII/LaTeX spelling,
//! and splits off the parts that are not the value itself (a trailing unit, a percent sign), so
//! that the parser in [`super::parse`] only sees an expression.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::Regex;

/// Longest answer (in bytes) that is normalised and parsed; longer strings are only compared
/// verbatim. Real final answers are far shorter; this bounds the work on garbage.
pub(crate) const MAX_ANSWER_LEN: usize = 2000;

/// An answer after normalisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Normalized {
    /// The value part, with single spaces and LaTeX noise removed.
    pub text: String,
    /// The canonical unit that followed the value (`cm`, `deg`, `dollar`, ...), if any.
    pub unit: Option<String>,
    /// Whether the value ended with a percent sign (removed from `text`).
    pub percent: bool,
}

/// Maps one Unicode character to its ASCII / LaTeX spelling, if it has one.
fn unicode_replacement(c: char) -> Option<&'static str> {
    Some(match c {
        '\u{2212}' | '\u{2013}' | '\u{2014}' | '\u{2012}' | '\u{FE63}' | '\u{FF0D}' => "-",
        '\u{00D7}' | '\u{22C5}' | '\u{00B7}' | '\u{2219}' => "*",
        '\u{00F7}' | '\u{2215}' => "/",
        '\u{03C0}' => "\\pi ",
        '\u{221A}' => "\\sqrt",
        '\u{221E}' => "\\infty ",
        '\u{2264}' | '\u{2A7D}' => "\\le ",
        '\u{2265}' | '\u{2A7E}' => "\\ge ",
        '\u{2260}' => "\\ne ",
        '\u{222A}' => "\\cup ",
        '\u{2229}' => "\\cap ",
        '\u{00B0}' => "^\\circ ",
        '\u{00B2}' => "^2",
        '\u{00B3}' => "^3",
        '\u{00B9}' => "^1",
        '\u{2070}' => "^0",
        '\u{2074}' => "^4",
        '\u{2075}' => "^5",
        '\u{2076}' => "^6",
        '\u{2077}' => "^7",
        '\u{2078}' => "^8",
        '\u{2079}' => "^9",
        '\u{00BD}' => "(1/2)",
        '\u{00BC}' => "(1/4)",
        '\u{00BE}' => "(3/4)",
        '\u{2153}' => "(1/3)",
        '\u{2154}' => "(2/3)",
        '\u{00A0}' | '\u{2009}' | '\u{202F}' | '\u{2002}' | '\u{2003}' | '\u{200A}' => " ",
        '\u{200B}' | '\u{FEFF}' => "",
        '\u{FF08}' => "(",
        '\u{FF09}' => ")",
        '\u{FF0C}' => ",",
        _ => return None,
    })
}

/// LaTeX wrappers whose argument is kept as plain text.
const TEXT_WRAPPERS: &[&str] = &[
    "text",
    "textbf",
    "textit",
    "textrm",
    "textnormal",
    "textsf",
    "texttt",
    "mathrm",
    "mathbf",
    "mathit",
    "mathsf",
    "mathtt",
    "mbox",
    "hbox",
    "boldsymbol",
    "bm",
    "operatorname",
    "emph",
];

/// LaTeX commands that only change layout and are dropped.
const DROPPED: &[&str] = &[
    "left",
    "right",
    "big",
    "Big",
    "bigg",
    "Bigg",
    "bigl",
    "bigr",
    "Bigl",
    "Bigr",
    "biggl",
    "biggr",
    "Biggl",
    "Biggr",
    "displaystyle",
    "textstyle",
    "scriptstyle",
    "limits",
    "nolimits",
    "mathstrut",
    "phantom",
    "hfill",
    "noindent",
];

/// Rewrites LaTeX commands and Unicode symbols in one pass (see the module doc).
fn rewrite(input: &str, deg: &mut bool) -> String {
    let chars: Vec<char> = input.chars().collect();
    let mut out = String::with_capacity(input.len() + 8);
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\\' {
            let start = i + 1;
            let mut j = start;
            while j < chars.len() && chars[j].is_ascii_alphabetic() {
                j += 1;
            }
            if j == start {
                // Control symbol: `\,` `\!` `\{` `\%` `\$` `\\` ...
                match chars.get(start) {
                    Some(',') | Some('!') | Some(';') | Some(':') | Some('>') => {}
                    Some(' ') => out.push(' '),
                    Some('%') => out.push('%'),
                    Some('$') => {}
                    Some('(') | Some(')') | Some('[') | Some(']') => {}
                    Some(&other) => {
                        out.push('\\');
                        out.push(other);
                    }
                    None => {}
                }
                i = start + 1;
                continue;
            }
            let name: String = chars[start..j].iter().collect();
            i = j;
            let n = name.as_str();
            if DROPPED.contains(&n) {
                if (n == "left" || n == "right") && chars.get(i) == Some(&'.') {
                    i += 1;
                }
                if n == "phantom" {
                    i = skip_group(&chars, i);
                }
                continue;
            }
            if TEXT_WRAPPERS.contains(&n) {
                out.push(' ');
                continue; // the braces of the argument stay, and are removed below
            }
            match n {
                "dfrac" | "tfrac" | "cfrac" => out.push_str("\\frac"),
                "leq" | "leqslant" | "le" => out.push_str("\\le "),
                "geq" | "geqslant" | "ge" => out.push_str("\\ge "),
                "lt" => out.push('<'),
                "gt" => out.push('>'),
                "neq" | "ne" => out.push_str("\\ne "),
                "quad" | "qquad" | "space" | "hspace" => {
                    out.push(' ');
                    if n == "hspace" {
                        i = skip_group(&chars, i);
                    }
                }
                "circ" | "degree" | "degrees" => {
                    *deg = true;
                    // drop a preceding `^` / `^{`
                    trim_degree_caret(&mut out);
                }
                "cdot" | "times" | "ast" => out.push('*'),
                "div" => out.push('/'),
                "dots" | "ldots" | "cdots" => out.push_str("..."),
                "lbrace" => out.push_str("\\{"),
                "rbrace" => out.push_str("\\}"),
                "lvert" | "rvert" | "vert" | "mid" => out.push('|'),
                "land" | "wedge" => out.push_str(" and "),
                "lor" | "vee" => out.push_str(" or "),
                _ => {
                    out.push('\\');
                    out.push_str(n);
                    // keep the command separated from following letters: `\pi r` vs `\pir`
                    if chars.get(i).is_some_and(|c| c.is_ascii_alphabetic()) {
                        out.push(' ');
                    }
                }
            }
            continue;
        }
        if let Some(rep) = unicode_replacement(c) {
            if rep == "^\\circ " {
                *deg = true;
            } else {
                out.push_str(rep);
            }
        } else if c == '$' {
            // math delimiters and dollar signs carry no value
        } else if c == '~' || c.is_whitespace() {
            out.push(' ');
        } else {
            out.push(c);
        }
        i += 1;
    }
    out
}

/// Skips one braced group starting at `i` (after optional spaces); returns the index after it.
fn skip_group(chars: &[char], mut i: usize) -> usize {
    while chars.get(i) == Some(&' ') {
        i += 1;
    }
    if chars.get(i) != Some(&'{') {
        return i;
    }
    let mut depth = 0usize;
    while i < chars.len() {
        match chars[i] {
            '{' => depth += 1,
            '}' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    i
}

/// Removes a trailing `^`, `^{` (and the matching `}` is removed later as an empty group).
fn trim_degree_caret(out: &mut String) {
    let trimmed = out.trim_end().len();
    out.truncate(trimmed);
    if out.ends_with("^{") {
        out.truncate(out.len() - 2);
        out.push('{'); // leaves `{}` after the closing brace, removed as an empty group
    } else if out.ends_with('^') {
        out.truncate(out.len() - 1);
    }
}

/// Removes braces that wrap plain text (`{cm}` left over from `\text{cm}`) and empty groups.
fn unwrap_text_groups(s: &str) -> String {
    static EMPTY: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\{\s*\}").expect("static regex"));
    static WORD_GROUP: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"(^|[^\\A-Za-z}_^])\{([^{}\\]*)\}").expect("static regex"));
    let mut cur = EMPTY.replace_all(s, "").into_owned();
    // `{...}` preceded by something that is not a command or a sub/superscript: a text group.
    for _ in 0..4 {
        let next = WORD_GROUP.replace_all(&cur, "$1 $2 ").into_owned();
        if next == cur {
            break;
        }
        cur = next;
    }
    cur
}

/// Canonical spelling of a unit word, so that `cm`, `centimeters` and `centimetre` agree.
fn canonical_unit(u: &str) -> String {
    let lower = u.trim().to_ascii_lowercase();
    let mut words: Vec<String> = Vec::new();
    for w in lower.split_whitespace() {
        let w = w.trim_matches(|c: char| !c.is_ascii_alphanumeric() && c != '^');
        let base = match w {
            "centimeter" | "centimeters" | "centimetre" | "centimetres" => "cm",
            "millimeter" | "millimeters" | "millimetre" | "millimetres" => "mm",
            "kilometer" | "kilometers" | "kilometre" | "kilometres" => "km",
            "meter" | "meters" | "metre" | "metres" => "m",
            "inch" | "inches" => "in",
            "foot" | "feet" => "ft",
            "yard" | "yards" => "yd",
            "mile" | "miles" => "mi",
            "second" | "seconds" | "sec" | "secs" => "s",
            "minute" | "minutes" | "min" | "mins" => "min",
            "hour" | "hours" | "hr" | "hrs" => "h",
            "day" | "days" => "day",
            "gram" | "grams" => "g",
            "kilogram" | "kilograms" => "kg",
            "liter" | "liters" | "litre" | "litres" => "l",
            "dollar" | "dollars" | "usd" => "dollar",
            "cent" | "cents" => "cent",
            "degree" | "degrees" | "deg" => "deg",
            "unit" | "units" => "",
            "square" | "sq" => "sq",
            "cubic" | "cu" => "cu",
            other => {
                // generic plural: apples -> apple
                let t = other
                    .strip_suffix('s')
                    .filter(|t| t.len() >= 3)
                    .unwrap_or(other);
                words.push(t.to_string());
                continue;
            }
        };
        if !base.is_empty() {
            words.push(base.to_string());
        }
    }
    words.join(" ")
}

/// Splits a trailing unit (`5 cm`, `12 \text{ apples}`, `3 m^2`) off the value.
fn split_unit(s: &str) -> (String, Option<String>) {
    static UNIT: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(
            r"^(.*?[0-9}).\s])\s*((?:[A-Za-z]{2,}|[mgshlLJNWV]\b)(?:/[A-Za-z]+)?(?:\s+[A-Za-z]{2,})*(?:\s*\^\s*\{?[23]\}?)?)\s*$",
        )
        .expect("static regex")
    });
    const NOT_UNITS: &[&str] = &[
        "or", "and", "pi", "sqrt", "frac", "infty", "sin", "cos", "tan", "log", "ln", "exp", "cot",
        "sec", "csc", "to", "is", "i", "e",
    ];
    let Some(caps) = UNIT.captures(s) else {
        return (s.to_string(), None);
    };
    let (Some(value), Some(unit)) = (caps.get(1), caps.get(2)) else {
        return (s.to_string(), None);
    };
    let value_str = value.as_str();
    // the unit must not be the tail of a command (`\pi`) and the value must hold a digit
    if value_str.ends_with('\\') || !value_str.chars().any(|c| c.is_ascii_digit()) {
        return (s.to_string(), None);
    }
    let first_word = unit.as_str().split_whitespace().next().unwrap_or("");
    if NOT_UNITS.contains(&first_word.to_ascii_lowercase().as_str()) {
        return (s.to_string(), None);
    }
    // A unit word directly glued to a digit and short (`2x`, `3ab`) is algebra, not a unit.
    let glued = !value_str.ends_with(' ') && !s[..unit.start()].ends_with(' ');
    if glued && unit.as_str().len() <= 2 && !matches!(unit.as_str(), "cm" | "mm" | "km" | "kg") {
        return (s.to_string(), None);
    }
    (
        value_str.trim().to_string(),
        Some(canonical_unit(unit.as_str())),
    )
}

/// Parses `0.1\overline{6}`, `0.\overline{3}`, `0.\bar{3}` and `0.333...` into a fraction string.
fn repeating_decimals(s: &str) -> Cow<'_, str> {
    static OVERLINE: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(\d*)\.(\d*)\s*\\(?:overline|bar|dot)\s*\{?\s*(\d{1,9})\s*\}?")
            .expect("static regex")
    });
    static DOTS: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^(-?)(\d*)\.(\d*?)((\d)(?:\d{0,2}))\.\.\.$").expect("static regex")
    });
    if let Some(c) = DOTS.captures(s) {
        // only `0.333...` / `0.1666...`: the last digit repeated at least 3 times
        let rep = c.get(4).map_or("", |m| m.as_str());
        let digit = c.get(5).map_or("", |m| m.as_str());
        let frac_part = c.get(3).map_or("", |m| m.as_str());
        let all: String = format!("{frac_part}{rep}");
        let tail_len = all.len() - all.trim_end_matches(digit).len();
        if tail_len >= 3 {
            let head = &all[..all.len() - tail_len];
            let int = c.get(2).map_or("", |m| m.as_str());
            if let Some(v) = repeating_value(int, head, digit) {
                let sign = c.get(1).map_or("", |m| m.as_str());
                return Cow::Owned(format!("{sign}({v})"));
            }
        }
    }
    if !s.contains("\\overline") && !s.contains("\\bar") && !s.contains("\\dot") {
        return Cow::Borrowed(s);
    }
    OVERLINE.replace_all(s, |c: &regex::Captures| {
        let int = c.get(1).map_or("", |m| m.as_str());
        let head = c.get(2).map_or("", |m| m.as_str());
        let rep = c.get(3).map_or("", |m| m.as_str());
        match repeating_value(int, head, rep) {
            Some(v) => format!("({v})"),
            None => c.get(0).map_or(String::new(), |m| m.as_str().to_string()),
        }
    })
}

/// `int.head(rep)(rep)...` as an exact fraction string `p/q` (integers fit in i128).
fn repeating_value(int: &str, head: &str, rep: &str) -> Option<String> {
    if head.len() > 9 || rep.is_empty() || rep.len() > 9 || int.len() > 12 {
        return None;
    }
    let int_v: i128 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let head_v: i128 = if head.is_empty() {
        0
    } else {
        head.parse().ok()?
    };
    let both: i128 = format!("{head}{rep}").parse().ok()?;
    let den = (10i128.pow(rep.len() as u32) - 1) * 10i128.pow(head.len() as u32);
    let num = both - head_v + int_v * den;
    Some(format!("{num}/{den}"))
}

/// Normalises one answer string (see the module doc).
pub(crate) fn normalize(raw: &str) -> Normalized {
    if raw.len() > MAX_ANSWER_LEN {
        return Normalized {
            text: raw.trim().to_string(),
            unit: None,
            percent: false,
        };
    }
    let mut deg = false;
    let s = raw.replace("{,}", "").replace("\\!", "");
    let s = rewrite(&s, &mut deg);
    let s = unwrap_text_groups(&s);
    let s = collapse_spaces(&s);
    // `0.333...` is a repeating decimal; other trailing dots are punctuation
    let mut s = repeating_decimals(&s).into_owned();
    // trailing sentence punctuation and a leading "=" (`= 5`)
    loop {
        let t = s.trim_end_matches(['.', ',', ';', ':', ' ']);
        let t = t.trim_start_matches(['=', ':', ' ']);
        if t.len() == s.len() {
            break;
        }
        s = t.to_string();
    }
    let mut percent = false;
    if let Some(t) = s.strip_suffix('%') {
        percent = true;
        s = t.trim_end().to_string();
    } else if let Some(t) = s.strip_suffix("percent") {
        if t.ends_with(' ') || t.ends_with(|c: char| c.is_ascii_digit()) {
            percent = true;
            s = t.trim_end().to_string();
        }
    }
    if let Some(n) = super::words::words_to_number(&s) {
        s = n;
    }
    // `-4^\circ\text{C}`: the temperature scale after a degree sign is part of the unit
    if deg {
        let t = s.trim_end();
        if let Some(value) = t.strip_suffix(['C', 'F', 'K']) {
            let value = value.trim_end();
            if value.ends_with(|c: char| c.is_ascii_digit() || c == '}') {
                s = value.to_string();
            }
        }
    }
    // `1.6 x 10^-19`: a letter x between a number and a power of ten means times
    static TIMES_TEN: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"(\d)\s*[xX]\s*10\s*\^\s*(-?\d+)\b").expect("static regex"));
    if s.contains("10") {
        s = TIMES_TEN.replace_all(&s, "${1}*10^{${2}}").into_owned();
    }
    let (mut s, mut unit) = split_unit(&s);
    if unit.is_none() {
        if let Some(t) = s.strip_suffix('%') {
            percent = true;
            s = t.trim_end().to_string();
        }
    }
    if deg {
        unit = Some("deg".to_string());
    }
    if unit.as_deref() == Some("") {
        unit = None;
    }
    let s = thousands(&s);
    let s = mixed_number(&s);
    Normalized {
        text: s.trim().to_string(),
        unit,
        percent,
    }
}

/// Collapses whitespace runs to one space and trims.
fn collapse_spaces(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut space = false;
    for c in s.chars() {
        if c.is_whitespace() {
            space = true;
        } else {
            if space && !out.is_empty() {
                out.push(' ');
            }
            space = false;
            out.push(c);
        }
    }
    out
}

/// Removes thousands separators from a number written as `1,000` or `-12,345.5` (the whole
/// answer, or every such number in it when no bare list could be meant).
fn thousands(s: &str) -> String {
    static WHOLE: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"^[-+]?\d{1,3}(,\d{3})+(\.\d+)?$").expect("static regex"));
    if WHOLE.is_match(s) {
        return s.replace(',', "");
    }
    s.to_string()
}

/// Rewrites a mixed number `1\frac{1}{2}`, `1\frac12`, `1 1/2`, `-2 3/4` as `(1+1/2)`.
fn mixed_number(s: &str) -> String {
    static MIXED: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(
            r"^([-+]?)\s*(\d+)\s*(?:\\frac\s*\{\s*(\d+)\s*\}\s*\{\s*(\d+)\s*\}|\\frac\s*(\d)(\d)|\s(\d+)\s*/\s*(\d+))$",
        )
        .expect("static regex")
    });
    let Some(c) = MIXED.captures(s) else {
        return s.to_string();
    };
    let get = |i: usize| c.get(i).map(|m| m.as_str());
    let (Some(num), Some(den)) = (get(3).or(get(5)).or(get(7)), get(4).or(get(6)).or(get(8)))
    else {
        return s.to_string();
    };
    let (Ok(n), Ok(d)) = (num.parse::<u64>(), den.parse::<u64>()) else {
        return s.to_string();
    };
    if n >= d || d == 0 {
        return s.to_string();
    }
    let sign = get(1).unwrap_or("");
    let whole = get(2).unwrap_or("0");
    format!("{sign}({whole}+{n}/{d})")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> String {
        normalize(s).text
    }

    #[test]
    fn strips_latex_noise() {
        assert_eq!(t("$\\left( 1, 2 \\right)$"), "( 1, 2 )");
        assert_eq!(t("\\dfrac{1}{2}"), "\\frac{1}{2}");
        assert_eq!(t("3\\,000"), "3000");
        assert_eq!(t("\\text{(B)}"), "(B)");
        assert_eq!(t("  5.  "), "5");
        assert_eq!(t("\u{2212}3"), "-3");
        assert_eq!(t("1{,}000"), "1000");
    }

    #[test]
    fn units_percent_degrees() {
        let n = normalize("12 \\text{ cm}");
        assert_eq!((n.text.as_str(), n.unit.as_deref()), ("12", Some("cm")));
        let n = normalize("12 centimeters");
        assert_eq!(n.unit.as_deref(), Some("cm"));
        let n = normalize("45^\\circ");
        assert_eq!((n.text.as_str(), n.unit.as_deref()), ("45", Some("deg")));
        let n = normalize("50\\%");
        assert_eq!((n.text.as_str(), n.percent), ("50", true));
        let n = normalize("2x");
        assert_eq!((n.text.as_str(), n.unit), ("2x", None));
        let n = normalize("3\\pi");
        assert_eq!(n.unit, None);
        let n = normalize("18 dollars");
        assert_eq!((n.text.as_str(), n.unit.as_deref()), ("18", Some("dollar")));
        let n = normalize("yes");
        assert_eq!((n.text.as_str(), n.unit), ("yes", None));
    }

    #[test]
    fn numbers() {
        assert_eq!(t("1,000"), "1000");
        assert_eq!(t("-12,345.5"), "-12345.5");
        assert_eq!(t("1,2"), "1,2");
        assert_eq!(t("1\\frac{1}{2}"), "(1+1/2)");
        assert_eq!(t("1 1/2"), "(1+1/2)");
        assert_eq!(t("1\\frac12"), "(1+1/2)");
        assert_eq!(t("0.\\overline{3}"), "(3/9)");
        assert_eq!(t("0.1\\overline{6}"), "(15/90)");
        assert_eq!(t("0.333..."), "(3/9)");
        assert_eq!(t("0.5..."), "0.5");
    }
}
