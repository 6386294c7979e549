//! A small parser and evaluator for the expressions that appear in final answers: numbers
//! (decimal, scientific), `+ - * / ^ !`, implicit multiplication, `\frac`, `\sqrt[n]{}`,
//! `\binom`, `|x|`, the usual functions, `\pi`, `e`, `\infty`, and single-letter (or Greek,
//! or subscripted) variables. Parsing is bounded in depth and length, so it cannot overflow the
//! stack or take long on hostile input; evaluation is plain `f64` arithmetic. The file runs past
//! 600 lines because the tokenizer, the recursive-descent parser and the evaluator share one
//! expression type and its bounds; the unit tests sit at the end.

use super::normalize::MAX_ANSWER_LEN;

/// Deepest nesting the parser follows before giving up.
const MAX_DEPTH: usize = 64;

/// A parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expr {
    /// A number literal.
    Num(f64),
    /// A free variable.
    Var(String),
    /// `a + b`.
    Add(Box<Expr>, Box<Expr>),
    /// `a - b`.
    Sub(Box<Expr>, Box<Expr>),
    /// `a * b` (also implicit multiplication).
    Mul(Box<Expr>, Box<Expr>),
    /// `a / b`.
    Div(Box<Expr>, Box<Expr>),
    /// `a ^ b`.
    Pow(Box<Expr>, Box<Expr>),
    /// `-a`.
    Neg(Box<Expr>),
    /// A named one-argument function (`sqrt`, `sin`, `ln`, `abs`, `fact`, ...).
    Func(&'static str, Box<Expr>),
    /// `\sqrt[n]{x}`.
    Root(Box<Expr>, Box<Expr>),
    /// `\binom{n}{k}`.
    Binom(Box<Expr>, Box<Expr>),
}

impl Expr {
    /// Evaluates with the given variable values (a variable not listed is NaN).
    pub(crate) fn eval(&self, vars: &[(&str, f64)]) -> f64 {
        match self {
            Expr::Num(v) => *v,
            Expr::Var(name) => vars
                .iter()
                .find(|(n, _)| *n == name.as_str())
                .map_or(f64::NAN, |(_, v)| *v),
            Expr::Add(a, b) => a.eval(vars) + b.eval(vars),
            Expr::Sub(a, b) => {
                let (x, y) = (a.eval(vars), b.eval(vars));
                if x.is_infinite() && x == y {
                    f64::NAN
                } else {
                    x - y
                }
            }
            Expr::Mul(a, b) => a.eval(vars) * b.eval(vars),
            Expr::Div(a, b) => {
                let d = b.eval(vars);
                if d == 0.0 {
                    f64::NAN
                } else {
                    a.eval(vars) / d
                }
            }
            Expr::Pow(a, b) => pow(a.eval(vars), b.eval(vars)),
            Expr::Neg(a) => -a.eval(vars),
            Expr::Root(n, x) => {
                let (n, x) = (n.eval(vars), x.eval(vars));
                if n == 3.0 {
                    x.cbrt()
                } else if n.fract() == 0.0 && n > 0.0 && (n as i64) % 2 == 1 && x < 0.0 {
                    -(-x).powf(1.0 / n)
                } else if n == 0.0 {
                    f64::NAN
                } else {
                    x.powf(1.0 / n)
                }
            }
            Expr::Binom(n, k) => binom(n.eval(vars), k.eval(vars)),
            Expr::Func(name, a) => {
                let x = a.eval(vars);
                match *name {
                    "sqrt" => x.sqrt(),
                    "sin" => x.sin(),
                    "cos" => x.cos(),
                    "tan" => x.tan(),
                    "cot" => 1.0 / x.tan(),
                    "sec" => 1.0 / x.cos(),
                    "csc" => 1.0 / x.sin(),
                    "arcsin" => x.asin(),
                    "arccos" => x.acos(),
                    "arctan" => x.atan(),
                    "ln" => x.ln(),
                    "log" => x.log10(),
                    "lg" => x.log10(),
                    "log2" => x.log2(),
                    "exp" => x.exp(),
                    "abs" => x.abs(),
                    "fact" => factorial(x),
                    "floor" => x.floor(),
                    "ceil" => x.ceil(),
                    _ => f64::NAN,
                }
            }
        }
    }

    /// Adds the names of the free variables to `out` (deduplicated).
    pub(crate) fn vars<'a>(&'a self, out: &mut Vec<&'a str>) {
        match self {
            Expr::Num(_) => {}
            Expr::Var(n) => {
                if !out.contains(&n.as_str()) {
                    out.push(n.as_str());
                }
            }
            Expr::Add(a, b)
            | Expr::Sub(a, b)
            | Expr::Mul(a, b)
            | Expr::Div(a, b)
            | Expr::Pow(a, b)
            | Expr::Root(a, b)
            | Expr::Binom(a, b) => {
                a.vars(out);
                b.vars(out);
            }
            Expr::Neg(a) | Expr::Func(_, a) => a.vars(out),
        }
    }
}

/// `x^y`, NaN where the real power is undefined.
fn pow(x: f64, y: f64) -> f64 {
    if x == 0.0 && y < 0.0 {
        return f64::NAN;
    }
    x.powf(y)
}

/// `n!` for integers 0..=170, NaN otherwise.
fn factorial(x: f64) -> f64 {
    if x < 0.0 || x.fract() != 0.0 || x > 170.0 {
        return f64::NAN;
    }
    let mut acc = 1.0f64;
    let mut k = 2.0;
    while k <= x {
        acc *= k;
        k += 1.0;
    }
    acc
}

/// `n choose k` for non-negative integers up to 10^4, NaN otherwise.
fn binom(n: f64, k: f64) -> f64 {
    if n < 0.0 || k < 0.0 || n.fract() != 0.0 || k.fract() != 0.0 || n > 10_000.0 {
        return f64::NAN;
    }
    if k > n {
        return 0.0;
    }
    let k = k.min(n - k);
    let mut acc = 1.0f64;
    let mut i = 0.0;
    while i < k {
        acc = acc * (n - i) / (i + 1.0);
        i += 1.0;
    }
    acc.round()
}

/// Function names known with and without a leading backslash.
const FUNCS: &[&str] = &[
    "arcsin", "arccos", "arctan", "sqrt", "sin", "cos", "tan", "cot", "sec", "csc", "ln", "log",
    "lg", "exp", "abs", "floor", "ceil",
];

/// Greek letters accepted as variable names.
const GREEK: &[&str] = &[
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "varepsilon",
    "zeta",
    "eta",
    "theta",
    "vartheta",
    "iota",
    "kappa",
    "lambda",
    "mu",
    "nu",
    "xi",
    "rho",
    "sigma",
    "tau",
    "upsilon",
    "phi",
    "varphi",
    "chi",
    "psi",
    "omega",
    "Gamma",
    "Delta",
    "Theta",
    "Lambda",
    "Xi",
    "Sigma",
    "Phi",
    "Psi",
    "Omega",
];

/// Parses a whole string as one expression; `None` when it is not one (trailing input, bad
/// syntax, too deep or too long).
pub(crate) fn parse_expr(s: &str) -> Option<Expr> {
    if s.len() > MAX_ANSWER_LEN || s.trim().is_empty() {
        return None;
    }
    let mut p = Parser {
        c: s.chars().collect(),
        i: 0,
        depth: 0,
    };
    let e = p.expr()?;
    p.ws();
    if p.i == p.c.len() {
        Some(e)
    } else {
        None
    }
}

/// Recursive-descent parser state.
struct Parser {
    c: Vec<char>,
    i: usize,
    depth: usize,
}

impl Parser {
    fn ws(&mut self) {
        while self.i < self.c.len() && self.c[self.i] == ' ' {
            self.i += 1;
        }
    }

    fn peek(&mut self) -> Option<char> {
        self.ws();
        self.c.get(self.i).copied()
    }

    /// The command name at the cursor (`\frac` → "frac") without consuming it.
    fn peek_cmd(&mut self) -> Option<String> {
        self.ws();
        if self.c.get(self.i) != Some(&'\\') {
            return None;
        }
        let mut j = self.i + 1;
        while j < self.c.len() && self.c[j].is_ascii_alphabetic() {
            j += 1;
        }
        if j == self.i + 1 {
            // control symbol: `\{`
            return self.c.get(j).map(|c| c.to_string());
        }
        Some(self.c[self.i + 1..j].iter().collect())
    }

    fn enter(&mut self) -> Option<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            None
        } else {
            Some(())
        }
    }

    fn expr(&mut self) -> Option<Expr> {
        self.enter()?;
        let mut lhs = self.term()?;
        loop {
            match self.peek() {
                Some('+') => {
                    self.i += 1;
                    let rhs = self.term()?;
                    lhs = Expr::Add(Box::new(lhs), Box::new(rhs));
                }
                Some('-') => {
                    self.i += 1;
                    let rhs = self.term()?;
                    lhs = Expr::Sub(Box::new(lhs), Box::new(rhs));
                }
                _ => break,
            }
        }
        self.depth -= 1;
        Some(lhs)
    }

    fn term(&mut self) -> Option<Expr> {
        self.enter()?;
        let mut lhs = self.unary()?;
        loop {
            match self.peek() {
                Some('*') => {
                    self.i += 1;
                    let rhs = self.unary()?;
                    lhs = Expr::Mul(Box::new(lhs), Box::new(rhs));
                }
                Some('/') => {
                    self.i += 1;
                    let rhs = self.unary()?;
                    lhs = Expr::Div(Box::new(lhs), Box::new(rhs));
                }
                Some(c) if self.starts_atom(c) => {
                    let rhs = self.power()?;
                    lhs = Expr::Mul(Box::new(lhs), Box::new(rhs));
                }
                _ => break,
            }
        }
        self.depth -= 1;
        Some(lhs)
    }

    /// Whether `c` (at the cursor) begins an atom, for implicit multiplication.
    fn starts_atom(&mut self, c: char) -> bool {
        // a digit never starts an implicit product: `1 2` is not 2
        if c.is_ascii_alphabetic() || c == '(' || c == '{' {
            return true;
        }
        if c == '\\' {
            return match self.peek_cmd() {
                Some(cmd) => {
                    cmd == "frac"
                        || cmd == "sqrt"
                        || cmd == "pi"
                        || cmd == "infty"
                        || cmd == "binom"
                        || FUNCS.contains(&cmd.as_str())
                        || GREEK.contains(&cmd.as_str())
                }
                None => false,
            };
        }
        false
    }

    fn unary(&mut self) -> Option<Expr> {
        self.enter()?;
        let e = match self.peek() {
            Some('-') => {
                self.i += 1;
                Expr::Neg(Box::new(self.unary()?))
            }
            Some('+') => {
                self.i += 1;
                self.unary()?
            }
            _ => self.power()?,
        };
        self.depth -= 1;
        Some(e)
    }

    fn power(&mut self) -> Option<Expr> {
        self.enter()?;
        let base = self.postfix()?;
        let e = if self.peek() == Some('^') {
            self.i += 1;
            let exp = self.exponent()?;
            Expr::Pow(Box::new(base), Box::new(exp))
        } else {
            base
        };
        self.depth -= 1;
        Some(e)
    }

    /// The exponent after `^`: a braced group, a signed number, or one atom (right-assoc).
    fn exponent(&mut self) -> Option<Expr> {
        match self.peek() {
            Some('{') => {
                let g = self.group('{', '}')?;
                if self.peek() == Some('^') {
                    self.i += 1;
                    let e = self.exponent()?;
                    return Some(Expr::Pow(Box::new(g), Box::new(e)));
                }
                Some(g)
            }
            Some('-') => {
                self.i += 1;
                Some(Expr::Neg(Box::new(self.exponent()?)))
            }
            _ => self.power(),
        }
    }

    fn postfix(&mut self) -> Option<Expr> {
        let mut e = self.atom()?;
        while self.c.get(self.i) == Some(&'!') {
            self.i += 1;
            e = Expr::Func("fact", Box::new(e));
        }
        Some(e)
    }

    /// `open expr close`.
    fn group(&mut self, open: char, close: char) -> Option<Expr> {
        if self.peek() != Some(open) {
            return None;
        }
        self.i += 1;
        let e = self.expr()?;
        if self.peek() != Some(close) {
            return None;
        }
        self.i += 1;
        Some(e)
    }

    /// The argument of `\frac` / `\sqrt` / `\binom`: a braced group or a single character.
    fn tex_arg(&mut self) -> Option<Expr> {
        match self.peek()? {
            '{' => self.group('{', '}'),
            c if c.is_ascii_digit() => {
                self.i += 1;
                Some(Expr::Num(f64::from(c.to_digit(10)?)))
            }
            c if c.is_ascii_alphabetic() => {
                self.i += 1;
                Some(var_or_const(c.to_string()))
            }
            '\\' => self.atom(),
            _ => None,
        }
    }

    fn number(&mut self) -> Option<Expr> {
        let start = self.i;
        let c = &self.c;
        let mut j = self.i;
        while j < c.len() && c[j].is_ascii_digit() {
            j += 1;
        }
        if j < c.len() && c[j] == '.' && c.get(j + 1).is_some_and(|d| d.is_ascii_digit()) {
            j += 1;
            while j < c.len() && c[j].is_ascii_digit() {
                j += 1;
            }
        }
        if j == start {
            return None;
        }
        // scientific notation: 1.5e3, 2E-4
        if j < c.len() && (c[j] == 'e' || c[j] == 'E') {
            let mut k = j + 1;
            if k < c.len() && (c[k] == '+' || c[k] == '-') {
                k += 1;
            }
            if k < c.len() && c[k].is_ascii_digit() {
                while k < c.len() && c[k].is_ascii_digit() {
                    k += 1;
                }
                j = k;
            }
        }
        let text: String = c[start..j].iter().collect();
        self.i = j;
        text.parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .map(Expr::Num)
    }

    fn atom(&mut self) -> Option<Expr> {
        self.enter()?;
        let e = self.atom_inner();
        self.depth -= 1;
        e
    }

    fn atom_inner(&mut self) -> Option<Expr> {
        let c = self.peek()?;
        if c.is_ascii_digit() || c == '.' {
            return self.number();
        }
        match c {
            '(' => return self.group('(', ')'),
            '{' => return self.group('{', '}'),
            '[' => return self.group('[', ']'),
            '|' => {
                self.i += 1;
                let e = self.expr()?;
                if self.peek() != Some('|') {
                    return None;
                }
                self.i += 1;
                return Some(Expr::Func("abs", Box::new(e)));
            }
            '\\' => return self.command(),
            _ => {}
        }
        if c.is_ascii_alphabetic() {
            // a known function word (`sqrt(2)`, `sin x`) or `pi`, else one letter
            let mut j = self.i;
            while j < self.c.len() && self.c[j].is_ascii_alphabetic() {
                j += 1;
            }
            let word: String = self.c[self.i..j].iter().collect();
            for f in FUNCS {
                if word == *f {
                    self.i = j;
                    return self.func_arg(f);
                }
            }
            if word == "pi" {
                self.i = j;
                return Some(Expr::Num(std::f64::consts::PI));
            }
            if word == "inf" || word == "infty" || word == "infinity" {
                self.i = j;
                return Some(Expr::Num(f64::INFINITY));
            }
            self.i += 1;
            let mut name = c.to_string();
            self.subscript(&mut name);
            return Some(var_or_const(name));
        }
        None
    }

    /// Appends a subscript (`x_1`, `a_{n}`) to a variable name.
    fn subscript(&mut self, name: &mut String) {
        if self.c.get(self.i) != Some(&'_') {
            return;
        }
        let mut j = self.i + 1;
        match self.c.get(j) {
            Some('{') => {
                let start = j + 1;
                while j < self.c.len() && self.c[j] != '}' {
                    j += 1;
                }
                if j < self.c.len() {
                    name.push('_');
                    name.extend(self.c[start..j].iter().filter(|c| **c != ' '));
                    self.i = j + 1;
                }
            }
            Some(c) if c.is_ascii_alphanumeric() => {
                name.push('_');
                name.push(*c);
                j += 1;
                self.i = j;
            }
            _ => {}
        }
    }

    fn func_arg(&mut self, f: &'static str) -> Option<Expr> {
        // `\sin^2 x` = (sin x)^2
        let mut power = None;
        if self.peek() == Some('^') {
            self.i += 1;
            power = Some(self.exponent()?);
        }
        let arg = match self.peek()? {
            '(' | '{' | '[' => self.atom()?,
            _ => self.power()?,
        };
        let e = Expr::Func(f, Box::new(arg));
        Some(match power {
            Some(p) => Expr::Pow(Box::new(e), Box::new(p)),
            None => e,
        })
    }

    fn command(&mut self) -> Option<Expr> {
        let cmd = self.peek_cmd()?;
        self.i += 1 + cmd.chars().count();
        match cmd.as_str() {
            "frac" => {
                let a = self.tex_arg()?;
                let b = self.tex_arg()?;
                Some(Expr::Div(Box::new(a), Box::new(b)))
            }
            "binom" => {
                let a = self.tex_arg()?;
                let b = self.tex_arg()?;
                Some(Expr::Binom(Box::new(a), Box::new(b)))
            }
            "sqrt" => {
                if self.peek() == Some('[') {
                    let n = self.group('[', ']')?;
                    let x = self.tex_arg()?;
                    return Some(Expr::Root(Box::new(n), Box::new(x)));
                }
                if self.peek() == Some('(') {
                    let x = self.atom()?;
                    return Some(Expr::Func("sqrt", Box::new(x)));
                }
                let x = self.tex_arg()?;
                Some(Expr::Func("sqrt", Box::new(x)))
            }
            "pi" => Some(Expr::Num(std::f64::consts::PI)),
            "infty" | "infin" => Some(Expr::Num(f64::INFINITY)),
            "{" => {
                let e = self.expr()?;
                if self.peek_cmd().as_deref() != Some("}") {
                    return None;
                }
                self.i += 2;
                Some(e)
            }
            "lfloor" | "lceil" => {
                let e = self.expr()?;
                let close = if cmd == "lfloor" { "rfloor" } else { "rceil" };
                if self.peek_cmd().as_deref() != Some(close) {
                    return None;
                }
                self.i += 1 + close.len();
                let f = if cmd == "lfloor" { "floor" } else { "ceil" };
                Some(Expr::Func(f, Box::new(e)))
            }
            other => {
                if let Some(f) = FUNCS.iter().find(|f| **f == other) {
                    return self.func_arg(f);
                }
                if let Some(g) = GREEK.iter().find(|g| **g == other) {
                    let mut name = (*g).to_string();
                    self.subscript(&mut name);
                    return Some(Expr::Var(name));
                }
                None
            }
        }
    }
}

/// `e` is Euler's number; every other name is a variable.
fn var_or_const(name: String) -> Expr {
    if name == "e" {
        Expr::Num(std::f64::consts::E)
    } else {
        Expr::Var(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(s: &str) -> f64 {
        parse_expr(s).map_or(f64::NAN, |e| e.eval(&[("x", 2.0), ("y", 3.0)]))
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
    }

    #[test]
    fn arithmetic_and_latex() {
        assert!(close(ev("1+2*3"), 7.0));
        assert!(close(ev("\\frac{1}{2}"), 0.5));
        assert!(close(ev("\\frac12"), 0.5));
        assert!(close(ev("\\frac{\\sqrt{3}}{2}"), 3f64.sqrt() / 2.0));
        assert!(close(ev("\\sqrt2"), 2f64.sqrt()));
        assert!(close(ev("2\\sqrt{2}"), 2.0 * 2f64.sqrt()));
        assert!(close(ev("\\sqrt[3]{8}"), 2.0));
        assert!(close(ev("2\\pi"), 2.0 * std::f64::consts::PI));
        assert!(close(ev("1.5e3"), 1500.0));
        assert!(close(ev("1.5*10^3"), 1500.0));
        assert!(close(ev("2^{10}"), 1024.0));
        assert!(close(ev("-x^2"), -4.0));
        assert!(close(ev("2^-1"), 0.5));
        assert!(close(ev("5!"), 120.0));
        assert!(close(ev("\\binom{5}{2}"), 10.0));
        assert!(close(ev("|3-5|"), 2.0));
        assert!(close(ev("(x-1)(x+1)"), 3.0));
        assert!(close(ev("2xy"), 12.0));
        assert!(close(ev("\\sin^2 x + \\cos^2 x"), 1.0));
        assert!(close(ev("e^0"), 1.0));
        assert!(close(ev("sqrt(16)"), 4.0));
        assert!(close(ev("x_1"), f64::NAN).eq(&false));
    }

    #[test]
    fn rejects_garbage_and_bounds_work() {
        for s in [
            "",
            "1+",
            "((1)",
            "\\frac{1}",
            "1 2 )",
            "\\foo",
            "x=",
            "&&",
            "1,2",
        ] {
            assert!(parse_expr(s).is_none(), "{s:?} should not parse");
        }
        let deep = "(".repeat(10_000) + "1" + &")".repeat(10_000);
        assert!(parse_expr(&deep).is_none());
        let deep = "(".repeat(500) + "1" + &")".repeat(500);
        assert!(parse_expr(&deep).is_none());
        assert!(parse_expr("1 2").is_none());
        let big = parse_expr("10^{100000}").map(|e| e.eval(&[]));
        assert_eq!(big, Some(f64::INFINITY));
        assert!(parse_expr("1000000!")
            .map(|e| e.eval(&[]))
            .is_some_and(f64::is_nan));
    }
}
