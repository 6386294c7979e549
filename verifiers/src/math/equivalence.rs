//! Deciding whether a predicted answer is equivalent to the reference answer.
//!
//! Both strings are normalised ([`super::normalize`]), then read into a small answer structure:
//! an expression, an ordered tuple or interval (`(1,2)`, `[1,3)`; inequalities in one variable
//! become intervals), an unordered set (`\{1,2\}`, a bare list `2, 3`, `x = 2 or x = 3`,
//! `1 \pm \sqrt 2`), a union of intervals, an equation, a multiple-choice letter, or plain text.
//! Expressions without variables are compared numerically with a relative tolerance;
//! expressions with variables are evaluated at several pseudo-random points (fixed seed).
//!
//! The file runs past 600 lines because the answer structure, its reader and the pairwise
//! comparison rules are one decision and read best together; the unit tests sit at the end.
//!
//! Decisions (documented in VERIFIERS.md): a trailing `%` may be read as the bare number or as
//! the number divided by 100 (`50%` matches `50` and `0.5`), but a bare `50` never matches
//! `0.5`; a unit on only one side is ignored, two different units are a mismatch; `x = 5`
//! matches `5`; an equation with no variables (`2+3=5`), or whose right-hand side is a constant
//! while the reference is a value (`-\frac{b}{a} = -\frac52`), is read as its right-hand side.

use std::sync::LazyLock;

use regex::Regex;

use super::normalize::{normalize, Normalized};
use super::parse::{parse_expr, Expr};
use super::MathOptions;

/// Deepest nesting of structures (sets of tuples of ...) followed.
const MAX_STRUCT_DEPTH: usize = 6;
/// Number of random points at which expressions with variables are compared.
const SAMPLE_POINTS: usize = 8;
/// Minimum number of points where both sides are defined for a symbolic match.
const MIN_VALID_POINTS: usize = 3;

/// A structured answer.
#[derive(Debug, Clone)]
enum Ans {
    /// One expression.
    Expr(Expr),
    /// An ordered sequence with its brackets: tuple, point, interval, vector.
    Seq(char, char, Vec<Ans>),
    /// An unordered collection.
    Set(Vec<Ans>),
    /// A union of intervals.
    Union(Vec<Ans>),
    /// An equation `lhs = rhs`.
    Eq(Expr, Expr),
    /// Anything else, as a compact lower-case key.
    Text(String),
}

/// Whether `pred` is equivalent to `gold` under `opts` (see the module doc).
pub fn answers_equivalent(pred: &str, gold: &str, opts: &MathOptions) -> bool {
    let p = normalize(pred);
    let g = normalize(gold);
    if g.text.is_empty() || p.text.is_empty() {
        return false;
    }
    if let Some(letter) = gold_choice(&g.text) {
        return pred_choice(&p.text) == Some(letter);
    }
    match (&p.unit, &g.unit) {
        (Some(a), Some(b)) if a != b => return false,
        (None, Some(_)) if opts.require_units => return false,
        _ => {}
    }
    if p.percent == g.percent && compact(&p.text) == compact(&g.text) {
        return true;
    }
    for (pt, gt) in percent_candidates(&p, &g) {
        let (Some(pa), Some(ga)) = (parse_answer(&pt, 0), parse_answer(&gt, 0)) else {
            continue;
        };
        if same(&pa, &ga, opts.rel_tol, 0) {
            return true;
        }
    }
    false
}

/// The value strings to compare, reading a one-sided `%` as either the number or a fraction.
fn percent_candidates(p: &Normalized, g: &Normalized) -> Vec<(String, String)> {
    let scaled = |t: &str| format!("({t})/100");
    match (p.percent, g.percent) {
        (true, false) => vec![
            (p.text.clone(), g.text.clone()),
            (scaled(&p.text), g.text.clone()),
        ],
        (false, true) => vec![
            (p.text.clone(), g.text.clone()),
            (p.text.clone(), scaled(&g.text)),
        ],
        _ => vec![(p.text.clone(), g.text.clone())],
    }
}

/// Lower-case text without spaces, for verbatim comparison.
fn compact(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect()
}

/// The letter of a multiple-choice reference answer (`B`, `(B)`, `(b)`).
fn gold_choice(s: &str) -> Option<char> {
    static GOLD: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^(?:\(\s*([A-Ja-j])\s*\)|([A-J])[.)]?)$").expect("static regex")
    });
    let c = GOLD.captures(s.trim())?;
    let m = c.get(1).or(c.get(2))?;
    m.as_str().chars().next().map(|c| c.to_ascii_uppercase())
}

/// The letter a prediction names when the reference is a choice: exactly one distinct
/// standalone capital letter A–J (`(B)`, `B)`, `B. 42`, `Option B`); otherwise none.
fn pred_choice(s: &str) -> Option<char> {
    let chars: Vec<char> = s.chars().collect();
    let mut found: Option<char> = None;
    for (i, &c) in chars.iter().enumerate() {
        let standalone = |j: Option<usize>| {
            j.and_then(|j| chars.get(j))
                .is_none_or(|n| !n.is_alphanumeric() && *n != '\\' && *n != '_' && *n != '^')
        };
        let lower_paren = c.is_ascii_lowercase()
            && i > 0
            && chars.get(i - 1) == Some(&'(')
            && chars.get(i + 1) == Some(&')');
        let candidate = (('A'..='J').contains(&c) || lower_paren)
            && standalone(i.checked_sub(1))
            && standalone(Some(i + 1));
        if candidate {
            let u = c.to_ascii_uppercase();
            match found {
                Some(f) if f != u => return None,
                _ => found = Some(u),
            }
        }
    }
    found
}

/// Splits `s` at top-level occurrences of any separator (brackets and braces nest).
fn split_top<'a>(s: &'a str, seps: &[&str]) -> Vec<&'a str> {
    let bytes = s.as_bytes();
    let mut parts = Vec::new();
    let mut depth: i32 = 0;
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth -= 1,
            _ => {}
        }
        if depth == 0 {
            // separators are ASCII, so a byte match is always at a character boundary
            if let Some(sep) = seps
                .iter()
                .find(|sep| bytes[i..].starts_with(sep.as_bytes()))
            {
                parts.push(&s[start..i]);
                i += sep.len();
                start = i;
                continue;
            }
        }
        i += 1;
    }
    parts.push(&s[start..]);
    parts
}

/// Whether `s` is wrapped by one bracket pair opened at byte 0 and closed at the last byte.
fn wrapped(s: &str, open_len: usize, close_len: usize) -> bool {
    let bytes = s.as_bytes();
    let mut depth: i32 = 0;
    let end = bytes.len().saturating_sub(close_len);
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth -= 1,
            _ => {}
        }
        if depth <= 0 && i + 1 >= open_len && i < end {
            return false;
        }
    }
    true
}

/// The left-hand side of `x = ...` that names the unknown (a letter, Greek letter, subscripted
/// letter or `f(x)`), rather than being part of the answer.
fn is_unknown_name(lhs: &str) -> bool {
    static NAME: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^(?:[A-Za-z](?:_\{?[A-Za-z0-9]+\}?)?|\\[A-Za-z]+|[A-Za-z]\s*\(\s*[A-Za-z]\s*\)|[A-Za-z]\s*'+\s*(?:\(\s*[A-Za-z]\s*\))?)$")
            .expect("static regex")
    });
    let t = lhs.trim();
    NAME.is_match(t) && t != "\\pi" && t != "\\infty"
}

/// Reads a normalised value string into an [`Ans`].
fn parse_answer(s: &str, depth: usize) -> Option<Ans> {
    if depth > MAX_STRUCT_DEPTH {
        return None;
    }
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    // bare lists: `2, 3`, `x = 2 or x = 3`, `1 and 2`
    let parts = split_top(s, &[",", " or ", " and ", ";"]);
    if parts.len() > 1 {
        return parse_list(&parts, depth);
    }
    let unions = split_top(s, &["\\cup", " U "]);
    if unions.len() > 1 {
        let items = unions
            .iter()
            .map(|u| parse_answer(u, depth + 1))
            .collect::<Option<Vec<_>>>()?;
        return Some(Ans::Union(items));
    }
    if let Some(rest) = s.strip_prefix("\\pm") {
        let plus = parse_answer(rest, depth + 1)?;
        let minus = parse_answer(&format!("-({rest})"), depth + 1)?;
        return Some(Ans::Set(vec![plus, minus]));
    }
    if let Some(pos) = s.find("\\pm").or_else(|| s.find("\\mp")) {
        let (a, b) = (&s[..pos], &s[pos + 3..]);
        let plus = parse_answer(&format!("{a}+({b})"), depth + 1)?;
        let minus = parse_answer(&format!("{a}-({b})"), depth + 1)?;
        return Some(Ans::Set(vec![plus, minus]));
    }
    // `x \in [1, 3)`
    if let Some(pos) = s
        .find("\\in ")
        .or_else(|| s.find("\\in["))
        .or_else(|| s.find("\\in("))
    {
        if is_unknown_name(&s[..pos]) {
            return parse_answer(&s[pos + 3..], depth + 1);
        }
    }
    if s.starts_with("\\{") && s.ends_with("\\}") && s.len() >= 4 {
        let inner = &s[2..s.len() - 2];
        let items = split_top(inner, &[","])
            .iter()
            .map(|p| parse_answer(p, depth + 1))
            .collect::<Option<Vec<_>>>()?;
        return Some(Ans::Set(items));
    }
    if let Some(inner) = s
        .strip_prefix("\\langle")
        .and_then(|r| r.strip_suffix("\\rangle"))
    {
        return parse_seq('(', ')', inner, depth);
    }
    if let Some(inner) = matrix_inner(s) {
        return parse_seq('(', ')', &inner, depth);
    }
    let first = s.chars().next()?;
    let last = s.chars().last()?;
    if matches!(first, '(' | '[') && matches!(last, ')' | ']') && wrapped(s, 1, 1) {
        let inner = &s[1..s.len() - 1];
        if split_top(inner, &[","]).len() > 1 {
            return parse_seq(first, last, inner, depth);
        }
    }
    if let Some(a) = parse_inequality(s) {
        return Some(a);
    }
    let sides = split_top(s, &["="]);
    if sides.len() == 2 {
        let (l, r) = (sides[0].trim(), sides[1].trim());
        if is_unknown_name(l) {
            return parse_answer(r, depth + 1);
        }
        let (Some(le), Some(re)) = (parse_expr(l), parse_expr(r)) else {
            return Some(Ans::Text(compact(s)));
        };
        let mut vars = Vec::new();
        le.vars(&mut vars);
        re.vars(&mut vars);
        if vars.is_empty() {
            return Some(Ans::Expr(re));
        }
        return Some(Ans::Eq(le, re));
    }
    if sides.len() > 2 {
        return Some(Ans::Text(compact(s)));
    }
    match parse_expr(s) {
        Some(e) => Some(Ans::Expr(e)),
        None => Some(Ans::Text(compact(s))),
    }
}

/// `\begin{pmatrix} a & b \\ c & d \end{pmatrix}` flattened to `a, b, c, d`.
fn matrix_inner(s: &str) -> Option<String> {
    for env in ["pmatrix", "bmatrix", "matrix", "vmatrix"] {
        let open = format!("\\begin{{{env}}}");
        let close = format!("\\end{{{env}}}");
        if let Some(inner) = s.strip_prefix(&open).and_then(|r| r.strip_suffix(&close)) {
            return Some(inner.replace("\\\\", ",").replace('&', ","));
        }
    }
    None
}

/// An ordered sequence `open inner close`.
fn parse_seq(open: char, close: char, inner: &str, depth: usize) -> Option<Ans> {
    let items = split_top(inner, &[","])
        .iter()
        .map(|p| parse_answer(p, depth + 1))
        .collect::<Option<Vec<_>>>()?;
    Some(Ans::Seq(open, close, items))
}

/// A bare list: `x = 1, y = 2` (distinct unknowns) is an ordered assignment; otherwise a set.
fn parse_list(parts: &[&str], depth: usize) -> Option<Ans> {
    let mut named: Vec<(String, &str)> = Vec::new();
    for p in parts {
        let sides = split_top(p, &["="]);
        if sides.len() == 2 && is_unknown_name(sides[0]) {
            named.push((compact(sides[0]), sides[1]));
        }
    }
    let distinct = {
        let mut names: Vec<&String> = named.iter().map(|(n, _)| n).collect();
        names.sort();
        names.dedup();
        names.len()
    };
    if named.len() == parts.len() && distinct == parts.len() {
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let items = named
            .iter()
            .map(|(_, v)| parse_answer(v, depth + 1))
            .collect::<Option<Vec<_>>>()?;
        return Some(Ans::Seq('<', '>', items));
    }
    let items = parts
        .iter()
        .filter(|p| !p.trim().is_empty())
        .map(|p| parse_answer(p, depth + 1))
        .collect::<Option<Vec<_>>>()?;
    Some(Ans::Set(items))
}

/// A relation operator in an inequality chain.
#[derive(Clone, Copy, PartialEq)]
enum Rel {
    Lt,
    Le,
    Gt,
    Ge,
}

/// `1 \le x < 3` → `[1, 3)`, `x > 2` → `(2, \infty)`; `None` if `s` is not such an inequality.
fn parse_inequality(s: &str) -> Option<Ans> {
    if !(s.contains('<') || s.contains('>') || s.contains("\\le") || s.contains("\\ge")) {
        return None;
    }
    let mut pieces: Vec<&str> = Vec::new();
    let mut rels: Vec<Rel> = Vec::new();
    let mut rest = s;
    loop {
        let found = [
            ("\\le", Rel::Le),
            ("\\ge", Rel::Ge),
            ("<=", Rel::Le),
            (">=", Rel::Ge),
            ("<", Rel::Lt),
            (">", Rel::Gt),
        ]
        .iter()
        .filter_map(|(tok, r)| rest.find(tok).map(|p| (p, *tok, *r)))
        .min_by_key(|(p, tok, _)| (*p, usize::MAX - tok.len()));
        match found {
            Some((p, tok, r)) => {
                pieces.push(&rest[..p]);
                rels.push(r);
                rest = &rest[p + tok.len()..];
            }
            None => {
                pieces.push(rest);
                break;
            }
        }
        if pieces.len() > 3 {
            return None;
        }
    }
    let exprs: Vec<Expr> = pieces
        .iter()
        .map(|p| parse_expr(p.trim()))
        .collect::<Option<Vec<_>>>()?;
    let is_var = |e: &Expr| matches!(e, Expr::Var(_));
    let inf = Expr::Num(f64::INFINITY);
    let ninf = Expr::Num(f64::NEG_INFINITY);
    let interval = |lo: Expr, lo_closed: bool, hi: Expr, hi_closed: bool| {
        Ans::Seq(
            if lo_closed { '[' } else { '(' },
            if hi_closed { ']' } else { ')' },
            vec![Ans::Expr(lo), Ans::Expr(hi)],
        )
    };
    let closed = |r: Rel| matches!(r, Rel::Le | Rel::Ge);
    let upward = |r: Rel| matches!(r, Rel::Lt | Rel::Le);
    match (exprs.as_slice(), rels.as_slice()) {
        ([x, a], [r]) if is_var(x) && !is_var(a) => Some(if upward(*r) {
            interval(ninf, false, a.clone(), closed(*r))
        } else {
            interval(a.clone(), closed(*r), inf, false)
        }),
        ([a, x], [r]) if is_var(x) && !is_var(a) => Some(if upward(*r) {
            interval(a.clone(), closed(*r), inf, false)
        } else {
            interval(ninf, false, a.clone(), closed(*r))
        }),
        ([a, x, b], [r1, r2]) if is_var(x) && upward(*r1) == upward(*r2) => Some(if upward(*r1) {
            interval(a.clone(), closed(*r1), b.clone(), closed(*r2))
        } else {
            interval(b.clone(), closed(*r2), a.clone(), closed(*r1))
        }),
        _ => None,
    }
}

/// Structural equivalence of two answers.
fn same(a: &Ans, b: &Ans, tol: f64, depth: usize) -> bool {
    if depth > MAX_STRUCT_DEPTH {
        return false;
    }
    match (a, b) {
        (Ans::Expr(x), Ans::Expr(y)) => exprs_equal(x, y, tol),
        (Ans::Seq(o1, c1, xs), Ans::Seq(o2, c2, ys)) => {
            o1 == o2
                && c1 == c2
                && xs.len() == ys.len()
                && xs.iter().zip(ys).all(|(x, y)| same(x, y, tol, depth + 1))
        }
        (Ans::Set(xs), Ans::Set(ys)) | (Ans::Union(xs), Ans::Union(ys)) => {
            multiset_equal(xs, ys, tol, depth)
        }
        // `x<-1 \text{ or } x>4` (a set of intervals) against `(-\infty,-1)\cup(4,\infty)`:
        // only when some interval is unbounded, so a set of points is never read as a union
        (Ans::Set(xs), Ans::Union(ys)) | (Ans::Union(ys), Ans::Set(xs))
            if xs.iter().all(is_interval) && xs.iter().any(unbounded) =>
        {
            multiset_equal(xs, ys, tol, depth)
        }
        (Ans::Set(xs), other) | (other, Ans::Set(xs)) if xs.len() == 1 => {
            same(&xs[0], other, tol, depth + 1)
        }
        (Ans::Eq(l1, r1), Ans::Eq(l2, r2)) => equations_equal(l1, r1, l2, r2, tol),
        // `-\frac{b}{a} = -\frac52` against `-5/2`: a worked equation ending in a constant
        (Ans::Eq(_, r), Ans::Expr(e)) | (Ans::Expr(e), Ans::Eq(_, r)) => {
            let mut vars = Vec::new();
            r.vars(&mut vars);
            e.vars(&mut vars);
            vars.is_empty() && exprs_equal(r, e, tol)
        }
        (Ans::Text(x), Ans::Text(y)) => x == y,
        _ => false,
    }
}

/// Whether `a` is an interval: two bounds in `(`/`[` … `)`/`]`.
fn is_interval(a: &Ans) -> bool {
    matches!(a, Ans::Seq('(' | '[', ')' | ']', xs) if xs.len() == 2)
}

/// Whether the interval `a` has an infinite bound.
fn unbounded(a: &Ans) -> bool {
    match a {
        Ans::Seq(_, _, xs) => xs
            .iter()
            .any(|x| matches!(x, Ans::Expr(e) if has_inf_literal(e))),
        _ => false,
    }
}

/// Every element of `xs` matches a distinct element of `ys` (same length).
fn multiset_equal(xs: &[Ans], ys: &[Ans], tol: f64, depth: usize) -> bool {
    if xs.len() != ys.len() || xs.len() > 64 {
        return false;
    }
    let mut used = vec![false; ys.len()];
    'outer: for x in xs {
        for (j, y) in ys.iter().enumerate() {
            if !used[j] && same(x, y, tol, depth + 1) {
                used[j] = true;
                continue 'outer;
            }
        }
        return false;
    }
    true
}

/// Numeric closeness with relative tolerance (infinities equal only to themselves).
pub(crate) fn close(x: f64, y: f64, tol: f64) -> bool {
    if x == y {
        return true;
    }
    if !x.is_finite() || !y.is_finite() {
        return false;
    }
    let d = (x - y).abs();
    d <= tol * x.abs().max(y.abs()) || d <= 1e-12
}

/// A small deterministic generator (SplitMix64) for the sample points.
struct SplitMix(u64);

impl SplitMix {
    fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Sample points: one assignment of every variable per point, values in (0.3, 2.8).
fn sample_points<'a>(vars: &[&'a str]) -> Vec<Vec<(&'a str, f64)>> {
    let mut rng = SplitMix(0x5EED_0F0A_4E11);
    (0..SAMPLE_POINTS)
        .map(|_| {
            vars.iter()
                .map(|v| (*v, 0.3 + 2.5 * rng.next_f64()))
                .collect()
        })
        .collect()
}

/// Two expressions are equal as numbers, or as functions at every sample point.
fn exprs_equal(x: &Expr, y: &Expr, tol: f64) -> bool {
    let mut vars = Vec::new();
    x.vars(&mut vars);
    y.vars(&mut vars);
    if vars.is_empty() {
        let (a, b) = (x.eval(&[]), y.eval(&[]));
        // an overflow (`10^{100000}`) is not the number infinity: only `\infty` is
        if a.is_infinite() && !(has_inf_literal(x) && has_inf_literal(y)) {
            return false;
        }
        return close(a, b, tol);
    }
    let mut valid = 0;
    for point in sample_points(&vars) {
        let (a, b) = (x.eval(&point), y.eval(&point));
        match (a.is_finite(), b.is_finite()) {
            (true, true) => {
                if !close(a, b, tol) {
                    return false;
                }
                valid += 1;
            }
            (false, false) => {}
            _ => return false,
        }
    }
    valid >= MIN_VALID_POINTS
}

/// Whether the expression spells infinity (`\infty`) rather than overflowing to it.
fn has_inf_literal(e: &Expr) -> bool {
    match e {
        Expr::Num(v) => v.is_infinite(),
        Expr::Var(_) => false,
        Expr::Add(a, b)
        | Expr::Sub(a, b)
        | Expr::Mul(a, b)
        | Expr::Div(a, b)
        | Expr::Pow(a, b)
        | Expr::Root(a, b)
        | Expr::Binom(a, b) => has_inf_literal(a) || has_inf_literal(b),
        Expr::Neg(a) | Expr::Func(_, a) => has_inf_literal(a),
    }
}

/// `l1 = r1` and `l2 = r2` describe the same relation: `l1 - r1` is a constant non-zero
/// multiple of `l2 - r2` (`x + y = 1` ≡ `2x + 2y = 2`).
fn equations_equal(l1: &Expr, r1: &Expr, l2: &Expr, r2: &Expr, tol: f64) -> bool {
    let d1 = Expr::Sub(Box::new(l1.clone()), Box::new(r1.clone()));
    let d2 = Expr::Sub(Box::new(l2.clone()), Box::new(r2.clone()));
    let mut vars = Vec::new();
    d1.vars(&mut vars);
    d2.vars(&mut vars);
    let mut ratio: Option<f64> = None;
    let mut valid = 0;
    for point in sample_points(&vars) {
        let (a, b) = (d1.eval(&point), d2.eval(&point));
        if !a.is_finite() || !b.is_finite() {
            if a.is_finite() != b.is_finite() {
                return false;
            }
            continue;
        }
        if a.abs() < 1e-12 || b.abs() < 1e-12 {
            if close(a, b, tol) {
                valid += 1;
                continue;
            }
            return false;
        }
        let r = a / b;
        match ratio {
            None => ratio = Some(r),
            Some(q) if close(q, r, tol.max(1e-9)) => {}
            Some(_) => return false,
        }
        valid += 1;
    }
    valid >= MIN_VALID_POINTS && ratio.is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eq(p: &str, g: &str) -> bool {
        answers_equivalent(p, g, &MathOptions::default())
    }

    #[track_caller]
    fn yes(p: &str, g: &str) {
        assert!(eq(p, g), "{p:?} should match {g:?}");
    }

    #[track_caller]
    fn no(p: &str, g: &str) {
        assert!(!eq(p, g), "{p:?} should NOT match {g:?}");
    }

    #[test]
    fn integers_and_separators() {
        yes("1,000", "1000");
        yes("1000", "1,000");
        yes("1{,}000", "1000");
        yes("18.0", "18");
        yes("$18", "18");
        yes("\\$18.00", "18");
        no("1,001", "1000");
        no("17", "18");
        no("-18", "18");
        no("1,2", "12");
    }

    #[test]
    fn fractions_and_decimals() {
        for p in [
            "0.5",
            "1/2",
            "\\frac12",
            "\\frac{1}{2}",
            "\\dfrac{1}{2}",
            "\\tfrac{1}{2}",
            ".5",
        ] {
            yes(p, "\\frac{1}{2}");
            yes(p, "0.5");
        }
        yes("1\\frac{1}{2}", "1.5");
        yes("1 1/2", "\\frac{3}{2}");
        yes("-\\frac{3}{4}", "-0.75");
        yes("\\frac{-3}{4}", "-0.75");
        no("0.33", "\\frac{1}{3}");
        no("0.333", "1/3");
        no("\\frac{2}{3}", "\\frac{3}{2}");
        no("1/2", "2");
    }

    #[test]
    fn percentages() {
        yes("50\\%", "50");
        yes("50%", "0.5");
        yes("50", "50\\%");
        yes("0.5", "50\\%");
        no("50", "0.5");
        no("5%", "50");
    }

    #[test]
    fn scientific_negative_units() {
        yes("1.5e3", "1500");
        yes("1.5\\times10^3", "1500");
        yes("1.5 \\cdot 10^{3}", "1.5e3");
        yes("\u{2212}3", "-3");
        yes("12 \\text{ cm}", "12");
        yes("12 cm", "12\\text{ cm}");
        yes("30^\\circ", "30");
        yes("30", "30^{\\circ}");
        no("12 m", "12 \\text{cm}");
        no("3", "-3");
    }

    #[test]
    fn radicals_pi_powers() {
        yes("\\sqrt{2}", "\\sqrt2");
        yes("2\\sqrt{2}", "\\sqrt{8}");
        yes("\\frac{\\sqrt{2}}{2}", "\\frac{1}{\\sqrt{2}}");
        yes("2\\pi", "2 \\pi");
        yes("\\pi \\cdot 2", "2\\pi");
        yes("2^{10}", "1024");
        no("\\sqrt{3}", "\\sqrt{2}");
        no("3.14", "\\pi");
        no("\\pi", "2\\pi");
    }

    #[test]
    fn symbolic() {
        yes("2x+1", "1+2x");
        yes("(x-1)(x+1)", "x^2-1");
        yes("\\frac{x^2-1}{x-1}", "x+1");
        yes("y = 2x + 1", "2x+1");
        yes("x+y=1", "2x+2y=2");
        yes("-\\frac{b}{a} = -\\frac{5}{2}", "-2.5");
        no("-\\frac{b}{a} = -\\frac{5}{2}", "2.5");
        no("2x-1", "2x+1");
        no("x^2+1", "x^2-1");
        no("x+y=1", "x-y=1");
    }

    #[test]
    fn structures() {
        yes("(1, 2)", "(1,2)");
        no("(2, 1)", "(1,2)");
        yes("\\{2, 1\\}", "\\{1,2\\}");
        yes("2, 3", "3, 2");
        yes("x = 2 \\text{ or } x = 3", "2, 3");
        no("2", "2, 3");
        no("2, 3, 4", "2, 3");
        yes("[1, 3)", "1 \\le x < 3");
        no("[1, 3]", "1 \\le x < 3");
        yes("(2, \\infty)", "x > 2");
        yes("x \\ge -1", "[-1, \\infty)");
        yes(
            "(-\\infty, 0) \\cup (1, \\infty)",
            "(-\\infty,0)\\cup(1,\\infty)",
        );
        yes("1 \\pm \\sqrt{2}", "1+\\sqrt2, 1-\\sqrt2");
        yes("x = 1, y = 2", "y=2, x=1");
        no("x = 2, y = 1", "x=1, y=2");
        yes("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "(1,2)");
    }

    #[test]
    fn choices_and_text() {
        yes("(B)", "B");
        yes("B)", "B");
        yes("\\text{(B)}", "B");
        yes("B", "(B)");
        yes("(B) 42", "B");
        no("C", "B");
        no("B and C", "B");
        no("42", "B");
        yes("Yes", "\\text{yes}");
        no("no", "yes");
    }

    #[test]
    fn repeating_decimals() {
        yes("0.\\overline{3}", "\\frac13");
        yes("0.1\\overline{6}", "1/6");
        yes("1/3", "0.\\overline{3}");
        no("0.3", "0.\\overline{3}");
    }

    #[test]
    fn garbage_is_wrong() {
        no("", "5");
        no("5", "");
        no("}}}{{{", "5");
        no("\\frac{", "\\frac{1}{2}");
        no("x", "5");
        no("10^{100000}", "10^{100001}");
        no("NaN", "5");
    }
}
