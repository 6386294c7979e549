//! Countdown answers: finds the equation in a completion, parses it with a small hand-written
//! parser (`+ - * /`, parentheses, exact rational arithmetic; nothing is `eval`ed), and checks
//! that it uses only the given numbers, each at most (or exactly) once, and reaches the target.

/// Longest equation text parsed, in bytes (a countdown equation is a few dozen characters).
const MAX_LEN: usize = 4096;

/// Deepest parenthesis nesting the parser accepts (deeper is a parse error, not a stack
/// overflow).
const MAX_DEPTH: usize = 64;

/// An exact rational number `num / den`, `den > 0`, in lowest terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rational {
    num: i128,
    den: i128,
}

fn gcd(mut a: i128, mut b: i128) -> i128 {
    // Works on magnitudes; callers never pass i128::MIN (checked_neg guards it).
    a = a.abs();
    b = b.abs();
    while b != 0 {
        let t = a % b;
        a = b;
        b = t;
    }
    a
}

impl Rational {
    /// `num / den` in lowest terms; `None` for a zero denominator or on overflow.
    pub fn new(num: i128, den: i128) -> Option<Self> {
        if den == 0 || num == i128::MIN || den == i128::MIN {
            return None;
        }
        let g = gcd(num, den).max(1);
        let (mut num, mut den) = (num / g, den / g);
        if den < 0 {
            num = num.checked_neg()?;
            den = den.checked_neg()?;
        }
        Some(Self { num, den })
    }

    /// The integer `n`.
    pub fn integer(n: i128) -> Self {
        Self { num: n, den: 1 }
    }

    /// The value as an integer, when it is one.
    pub fn as_integer(&self) -> Option<i128> {
        (self.den == 1).then_some(self.num)
    }

    fn add(self, o: Self) -> Option<Self> {
        let num = self
            .num
            .checked_mul(o.den)?
            .checked_add(o.num.checked_mul(self.den)?)?;
        Self::new(num, self.den.checked_mul(o.den)?)
    }

    fn sub(self, o: Self) -> Option<Self> {
        self.add(Self {
            num: o.num.checked_neg()?,
            den: o.den,
        })
    }

    fn mul(self, o: Self) -> Option<Self> {
        Self::new(self.num.checked_mul(o.num)?, self.den.checked_mul(o.den)?)
    }

    fn div(self, o: Self) -> Option<Self> {
        if o.num == 0 {
            return None;
        }
        Self::new(self.num.checked_mul(o.den)?, self.den.checked_mul(o.num)?)
    }
}

impl std::fmt::Display for Rational {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.den == 1 {
            write!(f, "{}", self.num)
        } else {
            write!(f, "{}/{}", self.num, self.den)
        }
    }
}

/// A token of an equation.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Tok {
    Num(Rational),
    Op(char),
    Open,
    Close,
}

fn tokenize(text: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '0'..='9' => {
                let mut num: i128 = 0;
                let mut den: i128 = 1;
                let mut seen_dot = false;
                while i < chars.len() {
                    let d = chars[i];
                    if let Some(v) = d.to_digit(10).filter(|_| d.is_ascii_digit()) {
                        num = num
                            .checked_mul(10)
                            .and_then(|n| n.checked_add(i128::from(v)))
                            .ok_or("a number is too large")?;
                        if seen_dot {
                            den = den.checked_mul(10).ok_or("a number is too long")?;
                        }
                        i += 1;
                    } else if d == '.'
                        && !seen_dot
                        && chars.get(i + 1).is_some_and(char::is_ascii_digit)
                    {
                        seen_dot = true;
                        i += 1;
                    } else {
                        break;
                    }
                }
                out.push(Tok::Num(
                    Rational::new(num, den).ok_or("a number is too large")?,
                ));
            }
            '+' => {
                out.push(Tok::Op('+'));
                i += 1;
            }
            '-' | '−' | '–' => {
                out.push(Tok::Op('-'));
                i += 1;
            }
            '*' | '×' | '·' | '⋅' | '∗' => {
                out.push(Tok::Op('*'));
                i += 1;
            }
            '/' | '÷' => {
                out.push(Tok::Op('/'));
                i += 1;
            }
            '(' => {
                out.push(Tok::Open);
                i += 1;
            }
            ')' => {
                out.push(Tok::Close);
                i += 1;
            }
            other => return Err(format!("unexpected character `{other}`")),
        }
    }
    Ok(out)
}

/// A parsed equation: its value (`None` after a division by zero or an overflow) and the number
/// literals it uses, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedExpression {
    /// The exact value, when defined.
    pub value: Option<Rational>,
    /// Every number literal, in order of appearance.
    pub literals: Vec<Rational>,
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
    literals: Vec<Rational>,
}

type Value = Option<Rational>;

impl Parser {
    fn peek(&self) -> Option<Tok> {
        self.toks.get(self.pos).copied()
    }

    fn expr(&mut self, depth: usize) -> Result<Value, String> {
        let mut v = self.term(depth)?;
        while let Some(Tok::Op(op @ ('+' | '-'))) = self.peek() {
            self.pos += 1;
            let r = self.term(depth)?;
            v = match (v, r) {
                (Some(a), Some(b)) if op == '+' => a.add(b),
                (Some(a), Some(b)) => a.sub(b),
                _ => None,
            };
        }
        Ok(v)
    }

    fn term(&mut self, depth: usize) -> Result<Value, String> {
        let mut v = self.factor(depth)?;
        while let Some(Tok::Op(op @ ('*' | '/'))) = self.peek() {
            self.pos += 1;
            let r = self.factor(depth)?;
            v = match (v, r) {
                (Some(a), Some(b)) if op == '*' => a.mul(b),
                (Some(a), Some(b)) => a.div(b),
                _ => None,
            };
        }
        Ok(v)
    }

    fn factor(&mut self, depth: usize) -> Result<Value, String> {
        match self.peek() {
            Some(Tok::Num(n)) => {
                self.pos += 1;
                self.literals.push(n);
                Ok(Some(n))
            }
            Some(Tok::Open) => {
                if depth >= MAX_DEPTH {
                    return Err(format!("parentheses nested deeper than {MAX_DEPTH}"));
                }
                self.pos += 1;
                let v = self.expr(depth + 1)?;
                if self.peek() != Some(Tok::Close) {
                    return Err("unbalanced parentheses".into());
                }
                self.pos += 1;
                Ok(v)
            }
            Some(Tok::Op(op)) => Err(format!("unexpected operator `{op}` (no unary signs)")),
            Some(Tok::Close) => Err("unexpected `)`".into()),
            None => Err("the equation ends early".into()),
        }
    }
}

/// Parses an arithmetic expression of non-negative number literals with `+ - * /` (also `×`,
/// `÷`, `·`, `−`) and parentheses; no unary signs, no implicit multiplication.
pub fn parse_expression(text: &str) -> Result<ParsedExpression, String> {
    if text.len() > MAX_LEN {
        return Err(format!("the equation is longer than {MAX_LEN} bytes"));
    }
    let toks = tokenize(text)?;
    if toks.is_empty() {
        return Err("no equation".into());
    }
    let mut p = Parser {
        toks,
        pos: 0,
        literals: Vec::new(),
    };
    let value = p.expr(0)?;
    if p.pos != p.toks.len() {
        return Err("unexpected text after the equation".into());
    }
    Ok(ParsedExpression {
        value,
        literals: p.literals,
    })
}

/// The verdict on one countdown answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Countdown {
    /// An equation was found and parsed.
    pub parsed: bool,
    /// It uses only the given numbers, each at most once (exactly once with `use_all`).
    pub valid_numbers: bool,
    /// Valid numbers and the value equals the target exactly.
    pub correct: bool,
    /// The equation's value, when defined.
    pub value: Option<Rational>,
}

fn is_expr_char(c: char) -> bool {
    c.is_ascii_digit() || c.is_whitespace() || "+-−–*×·⋅∗/÷().=".contains(c)
}

fn is_op_char(c: char) -> bool {
    "+-−–*×·⋅∗/÷".contains(c)
}

/// The equation text of a completion: the last `<answer>` tag when closed (else the last non-empty
/// line), LaTeX operators replaced, the last run of equation characters containing an operator,
/// and of `lhs = rhs` the first side with an operator (`(25-5)*4 = 80` → `(25-5)*4`).
pub fn countdown_equation(completion: &str) -> Option<String> {
    let source = match crate::extract::last_answer_tag(completion) {
        Some(tag) => tag,
        None => completion.lines().rev().find(|l| !l.trim().is_empty())?,
    };
    let mut s = source.to_string();
    for (from, to) in [
        ("\\times", "*"),
        ("\\cdot", "*"),
        ("\\div", "/"),
        ("\\left", ""),
        ("\\right", ""),
        ("\\(", " "),
        ("\\)", " "),
        ("\\[", " "),
        ("\\]", " "),
        ("$", " "),
    ] {
        s = s.replace(from, to);
    }
    let mut runs: Vec<&str> = Vec::new();
    let mut start = None;
    for (i, c) in s.char_indices() {
        match (is_expr_char(c), start) {
            (true, None) => start = Some(i),
            (false, Some(st)) => {
                runs.push(&s[st..i]);
                start = None;
            }
            _ => {}
        }
    }
    if let Some(st) = start {
        runs.push(&s[st..]);
    }
    let has_digit = |r: &str| r.chars().any(|c| c.is_ascii_digit());
    let run = runs
        .iter()
        .rev()
        .find(|r| has_digit(r) && r.chars().any(is_op_char))
        .or_else(|| runs.iter().rev().find(|r| has_digit(r)))?;
    let run = run
        .trim()
        .trim_end_matches(|c: char| c == '.' || c.is_whitespace());
    let parts: Vec<&str> = run
        .split('=')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    let chosen = parts
        .iter()
        .find(|p| p.chars().any(is_op_char))
        .or(parts.first())?;
    Some(chosen.to_string())
}

/// Checks a countdown completion against `numbers` and `target`.
pub fn check_countdown(completion: &str, numbers: &[i64], target: i64, use_all: bool) -> Countdown {
    let none = Countdown {
        parsed: false,
        valid_numbers: false,
        correct: false,
        value: None,
    };
    let Some(eq) = countdown_equation(completion) else {
        return none;
    };
    let Ok(parsed) = parse_expression(&eq) else {
        return none;
    };
    let mut pool: Vec<i128> = numbers.iter().map(|&n| i128::from(n)).collect();
    let mut valid = true;
    for lit in &parsed.literals {
        match lit
            .as_integer()
            .and_then(|v| pool.iter().position(|&n| n == v))
        {
            Some(i) => {
                pool.swap_remove(i);
            }
            None => {
                valid = false;
                break;
            }
        }
    }
    if use_all && !pool.is_empty() {
        valid = false;
    }
    let correct = valid && parsed.value == Some(Rational::integer(i128::from(target)));
    Countdown {
        parsed: true,
        valid_numbers: valid,
        correct,
        value: parsed.value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(s: &str) -> Option<String> {
        parse_expression(s)
            .ok()
            .and_then(|p| p.value)
            .map(|v| v.to_string())
    }

    #[test]
    fn parser_is_exact() {
        for (e, want) in [
            ("1 + 2 * 3", Some("7")),
            ("(1 + 2) * 3", Some("9")),
            ("10 - 4 - 3", Some("3")),
            ("100 / 10 / 5", Some("2")),
            ("7 / 2", Some("7/2")),
            ("7 / 2 * 2", Some("7")),
            ("1 / 3 + 1 / 3 + 1 / 3", Some("1")),
            ("2 - 5", Some("-3")),
            ("((((4))))", Some("4")),
            ("6 × 7", Some("42")),
            ("84 ÷ 2", Some("42")),
            ("50 − 8", Some("42")),
            ("2.5 * 4", Some("10")),
            ("1 / 0", None),
            ("(3 - 3) / (3 - 3)", None),
            ("5 / (2 - 2) + 1", None),
        ] {
            assert_eq!(value(e).as_deref(), want, "{e}");
            assert!(parse_expression(e).is_ok(), "{e}");
        }
        for bad in [
            "",
            "1 +",
            "+ 1",
            "-5 + 10",
            "2(3)",
            "(1 + 2",
            "1 + 2)",
            "1 2",
            "x + 1",
            "1 ** 2",
            "3 = 3",
            "()",
            "1..2",
            "1.",
            "99999999999999999999999999999999999999999",
        ] {
            assert!(parse_expression(bad).is_err(), "{bad:?} should not parse");
        }
        let p = parse_expression("(25 - 5) * 4").unwrap();
        assert_eq!(p.literals, [25, 5, 4].map(Rational::integer));
    }

    #[test]
    fn overflow_and_depth_are_handled() {
        let big = ["99999999999999999"; 10].join(" * ");
        let p = parse_expression(&big).unwrap();
        assert_eq!(p.value, None);
        let deep = format!("{}1{}", "(".repeat(64), ")".repeat(64));
        assert_eq!(value(&deep).as_deref(), Some("1"));
        let too_deep = format!("{}1{}", "(".repeat(65), ")".repeat(65));
        assert!(parse_expression(&too_deep).is_err());
        let very_deep = format!("{}1{}", "(".repeat(1_000_000), ")".repeat(1_000_000));
        assert!(parse_expression(&very_deep).is_err());
        assert_eq!(Rational::new(1, 0), None);
        assert_eq!(Rational::new(i128::MIN, 1), None);
        assert_eq!(Rational::new(2, -4), Some(Rational { num: -1, den: 2 }));
    }

    #[test]
    fn equation_extraction() {
        for (c, want) in [
            ("<answer>(25 - 5) * 4</answer>", Some("(25 - 5) * 4")),
            (
                "think</think>\n<answer> (25-5)*4 = 80 </answer>",
                Some("(25-5)*4"),
            ),
            ("<answer>80 = (25 - 5) * 4</answer>", Some("(25 - 5) * 4")),
            (
                "<answer>$(25 - 5) \\times 4$</answer>",
                Some("(25 - 5) * 4"),
            ),
            ("<answer>The equation is 3 + 4.</answer>", Some("3 + 4")),
            (
                "Lots of thinking\n\n(25 - 5) * 4 = 80",
                Some("(25 - 5) * 4"),
            ),
            ("So: 6 × 7 = 42.\n", Some("6 × 7")),
            ("<answer>a</answer> 1+2", None),
            ("<answer>80</answer>", Some("80")),
            ("", None),
            ("   \n  ", None),
            ("no numbers here", None),
        ] {
            assert_eq!(countdown_equation(c).as_deref(), want, "{c:?}");
        }
    }

    #[test]
    fn countdown_checks() {
        let nums = [25, 5, 4, 3];
        let check = |c: &str, use_all: bool| {
            let r = check_countdown(c, &nums, 83, use_all);
            (r.parsed, r.valid_numbers, r.correct)
        };
        assert_eq!(
            check("<answer>(25 - 5) * 4 + 3</answer>", true),
            (true, true, true)
        );
        assert_eq!(
            check("<answer>3 + 4 * (25 - 5)</answer>", true),
            (true, true, true)
        );
        // Right value, a number missing.
        assert_eq!(
            check("<answer>(25 - 5) * 4 + 3 * 1</answer>", true),
            (true, false, false)
        );
        // A number used twice.
        assert_eq!(
            check("<answer>25 * 3 + 4 + 4</answer>", true),
            (true, false, false)
        );
        // All numbers, wrong value.
        assert_eq!(
            check("<answer>(25 - 5) * 4 - 3</answer>", true),
            (true, true, false)
        );
        // A number used twice, even with use_all off.
        assert_eq!(
            check("<answer>25 * 3 + 5 + 3</answer>", false),
            (true, false, false)
        );
        let r = check_countdown("<answer>25 * 3 + 4 + 4</answer>", &[25, 3, 4, 4], 83, true);
        assert!(r.correct);
        let r = check_countdown("<answer>20 * 4 + 3</answer>", &nums, 83, false);
        assert_eq!((r.parsed, r.valid_numbers, r.correct), (true, false, false));
        let r = check_countdown("<answer>25 * 4 - 5 * 3 - 2</answer>", &nums, 83, false);
        assert!(!r.valid_numbers);
        let r = check_countdown(
            "<answer>(25 * 4 - 3) - 5 * 3</answer>",
            &[25, 4, 3, 5, 3],
            82,
            true,
        );
        assert!(r.correct);
        let r = check_countdown(
            "<answer>25 * 3 + 5 + 3</answer>",
            &[25, 5, 3, 3, 7],
            83,
            false,
        );
        assert!(r.correct);
        assert_eq!(check("<answer>(25 - 5) * 4 + 3", true), (true, true, true));
        assert_eq!(
            check("<answer>banana</answer>", true),
            (false, false, false)
        );
        assert_eq!(check("", true), (false, false, false));
        // Division must be exact arithmetic: 25 / 5 * 4 * 3 = 60, and fractions are kept.
        let r = check_countdown("<answer>(4 + 3 / 5) * 25</answer>", &nums, 115, true);
        assert!(r.correct, "{r:?}");
        let r = check_countdown("<answer>25 / (5 - 5)</answer>", &[25, 5, 5], 1, true);
        assert_eq!(
            (r.parsed, r.valid_numbers, r.correct, r.value),
            (true, true, false, None)
        );
        // Decimal literals are not the given numbers.
        let r = check_countdown("<answer>2.5 * 4</answer>", &[25, 4], 10, false);
        assert!(!r.valid_numbers);
    }
}
