#!/usr/bin/env python3
"""Writes verifiers/tests/data/math_corpus_v2.jsonl: the second math corpus (issue 15).

Every row is one (reference, prediction, verdict) triple written and graded by hand below, placed
in one or more completion frames (where the answer sits: a sentence, display math after
"Hence"/"Thus", an unmarked last line, a box). The verdict is the human one: whether a careful
grader would accept the final answer as equal to the reference. Frames never change a verdict.
Deterministic: run `python3 scripts/gen_math_corpus_v2.py` to regenerate.
"""
import json
import os

PRE = [
    "We set up the problem and simplify step by step.",
    "Let me work through the computation carefully.",
    "First collect the given quantities, then combine them.",
    "Reading the problem again, we need one final value.",
]

def sentence(p):
    return f"So the answer is {p}."

def sentence_math(p):
    return f"So the answer is ${p}$."

def display_inline(p):
    return f"Thus, \\[ {p} \\]."

def marked(p):
    return f"**Final answer:** {p}"

def display_hence(p):
    return f"Hence\n\\[\n{p}\n\\]"

def display_thus(p):
    return f"Thus $$ {p} $$"

def last_line(p):
    return p

def period(p):
    return f"{p}."

def total_line(p):
    return f"In total:\n{p}"

def boxed(p):
    return f"The result is $\\boxed{{{p}}}$."

rows = []

def add(kind, gold, pred, human, note, frames):
    for f in frames:
        pre = PRE[len(rows) % len(PRE)]
        rows.append({
            "completion": f"{pre}\n{f(pred)}",
            "answer": gold,
            "human": human,
            "kind": kind,
            "note": f"{note} [{f.__name__}]",
        })

def add_raw(kind, gold, completion, human, note):
    rows.append({"completion": completion, "answer": gold, "human": human, "kind": kind, "note": note})

# 1. Display math after "Hence"/"Thus", no box.
for gold, pred, ok, note in [
    ("24", "24", True, "plain number"),
    ("24", "x = 24", True, "unknown named"),
    ("\\frac{3}{4}", "\\frac{3}{4}", True, "fraction"),
    ("\\frac{3}{4}", "0.75", True, "decimal form"),
    ("2\\sqrt{2}", "\\sqrt{8}", True, "radical form"),
    ("4\\pi", "4\\pi", True, "pi"),
    ("-7", "-7", True, "negative"),
    ("(1,2)", "(1, 2)", True, "point"),
    ("24", "25", False, "off by one"),
    ("\\frac{3}{4}", "\\frac{4}{3}", False, "inverted"),
    ("-7", "7", False, "sign"),
    ("4\\pi", "4", False, "pi dropped"),
    ("2\\sqrt{2}", "2.83", False, "rounded"),
    ("(1,2)", "(2,1)", False, "swapped point"),
    ("x^2+1", "x^2 + 1", True, "expression"),
    ("x^2+1", "x^2 - 1", False, "wrong sign in expression"),
]:
    add("display_math", gold, pred, ok, note, [display_hence, display_thus, display_inline])
# display math followed by a closing sentence without a number
for gold, pred, ok in [("12", "12", True), ("12", "21", False), ("\\frac{1}{2}", "\\frac12", True), ("5", "6", False)]:
    add_raw("display_math", gold, f"{PRE[0]}\nThus the value is\n$$\n{pred}\n$$\nwhich completes the proof.", ok, "display then a closing clause")

# 2. Unmarked final line.
for gold, pred, ok, note in [
    ("24", "24 square metres", True, "unit words"),
    ("24", "24 m^2", True, "unit symbol"),
    ("24", "25 square metres", False, "wrong with unit"),
    ("-3", "-3 degrees", True, "degrees"),
    ("-3", "3 degrees", False, "sign with degrees"),
    ("256", "2^8", True, "power"),
    ("256", "2^7", False, "wrong power"),
    ("0.005", "5e-3", True, "e notation"),
    ("0.005", "5e-2", False, "wrong exponent"),
    ("12", "12 apples", True, "count noun"),
    ("12", "13 apples", False, "wrong count"),
    ("\\frac{1}{3}", "1/3", True, "slash fraction"),
    ("\\frac{1}{3}", "0.33", False, "rounded fraction"),
    ("150", "150 km", True, "km"),
    ("150", "$150$ km", True, "math then unit"),
    ("7", "x = 7", True, "assignment"),
    ("7", "x = -7", False, "assignment sign"),
    ("3.5", "3.5 hours", True, "hours"),
    ("3.5", "3.25 hours", False, "wrong decimal"),
    ("1000", "1,000 dollars", True, "separator with unit"),
]:
    add("last_line", gold, pred, ok, note, [last_line, period, total_line])

# 3. Number words and scale words.
for gold, pred, ok, note in [
    ("0", "zero", True, "zero"),
    ("0", "one", False, "one for zero"),
    ("-4", "negative four", True, "negative word"),
    ("4", "negative four", False, "negative word against positive"),
    ("-4", "minus four", True, "minus word"),
    ("12", "twelve", True, "twelve"),
    ("12", "twenty", False, "twenty for twelve"),
    ("21", "twenty-one", True, "hyphenated"),
    ("21", "twenty one", True, "spaced"),
    ("120", "one hundred twenty", True, "hundreds"),
    ("120", "one hundred and twenty", True, "hundreds with and"),
    ("102", "one hundred twenty", False, "transposed"),
    ("2500000", "2.5 million", True, "scale word"),
    ("2500000", "2.5 billion", False, "wrong scale"),
    ("3000", "three thousand", True, "thousand"),
    ("3000", "three hundred", False, "wrong scale word"),
    ("1000000", "one million", True, "million"),
    ("7", "seven", True, "seven"),
    ("7", "seventy", False, "seventy for seven"),
    ("15", "fifteen", True, "fifteen"),
]:
    add("number_words", gold, pred, ok, note, [sentence, marked, last_line])

# 4. Units, degrees and \text after the number.
for gold, pred, ok, note in [
    ("12", "12\\text{ m}^2", True, "text unit squared"),
    ("12\\text{ m}^2", "12", True, "unit only in reference"),
    ("12\\text{ m}^2", "12\\text{ cm}^2", False, "different unit"),
    ("45", "45°", True, "degree sign"),
    ("45^\\circ", "45", True, "circ in reference"),
    ("45^\\circ", "45°", True, "circ vs degree sign"),
    ("45^\\circ", "135°", False, "supplement"),
    ("-4", "-4^\\circ\\text{C}", True, "celsius"),
    ("-4", "4^\\circ\\text{C}", False, "celsius sign"),
    ("30", "30\\,\\text{cm}", True, "thin space unit"),
    ("30", "30 \\mathrm{cm}", True, "mathrm unit"),
    ("30\\text{ cm}", "30\\text{ m}", False, "cm vs m"),
    ("5", "5\\text{ hours}", True, "hours"),
    ("5", "6\\text{ hours}", False, "wrong hours"),
    ("90", "90^{\\circ}", True, "braced circ"),
    ("90", "180^{\\circ}", False, "wrong angle"),
    ("18", "\\$18", True, "dollar"),
    ("18", "\\$18.00", True, "dollar cents"),
    ("18", "\\$1.80", False, "decimal shift"),
    ("60", "60 \\text{ km/h}", True, "speed unit"),
]:
    add("units", gold, pred, ok, note, [sentence_math, boxed, display_hence, marked])

# 5. Equivalent forms.
for gold, pred, ok, note in [
    ("3x+5", "5+3x", True, "reordered sum"),
    ("3x+5", "5-3x", False, "sign flipped"),
    ("y=4x+1", "y = 1 + 4x", True, "reordered line"),
    ("y=4x+1", "y = 4x - 1", False, "intercept sign"),
    ("\\frac{2\\pi}{3}", "\\frac{2}{3}\\pi", True, "pi factored"),
    ("\\frac{2\\pi}{3}", "\\frac{3}{2}\\pi", False, "pi inverted"),
    ("\\frac{x-2}{4}", "0.25x-0.5", True, "decimal coefficients"),
    ("\\frac{x-2}{4}", "0.25x-2", False, "decimal coefficients wrong"),
    ("\\frac{2}{3}", "\\frac{4}{6}", True, "unreduced"),
    ("\\frac{2}{3}", "\\frac{4}{5}", False, "wrong fraction"),
    ("\\frac{7}{3}", "2\\frac{1}{3}", True, "mixed number"),
    ("2\\frac{1}{3}", "\\frac{7}{3}", True, "mixed number reference"),
    ("\\frac{7}{3}", "2\\frac{2}{3}", False, "wrong mixed"),
    ("3\\sqrt{2}", "3 \\sqrt 2", True, "sqrt without braces"),
    ("3\\sqrt{2}", "2 \\sqrt 3", False, "radical swapped"),
    ("\\frac{5}{2}", "\\dfrac{5}{2}", True, "dfrac"),
    ("2048", "2,048", True, "thousands separator"),
    ("2048", "2,084", False, "digits swapped"),
    ("\\frac{\\sqrt{3}}{2}", "\\frac{1}{2}\\sqrt{3}", True, "sqrt factored"),
    ("x^2-4", "(x-2)(x+2)", True, "factored"),
    ("x^2-4", "(x-2)^2", False, "wrong factoring"),
]:
    add("equivalent", gold, pred, ok, note, [sentence_math, boxed, display_thus, marked])

# 6. Sets, tuples, intervals, unions, vectors.
for gold, pred, ok, note in [
    ("\\{1,2,3\\}", "\\{3, 2, 1\\}", True, "set order"),
    ("\\{1,2,3\\}", "\\{1, 2\\}", False, "missing element"),
    ("(1,2)", "\\left( 1, 2 \\right)", True, "left right"),
    ("(1,2)", "\\left( 2, 1 \\right)", False, "tuple order"),
    ("[2,5)", "[2, 5)", True, "half-open"),
    ("[2,5)", "(2, 5]", False, "wrong ends"),
    ("(-\\infty,-1)\\cup(4,\\infty)", "x<-1 \\text{ or } x>4", True, "inequalities for union"),
    ("(-\\infty,-1)\\cup(4,\\infty)", "(4,\\infty)\\cup(-\\infty,-1)", True, "union order"),
    ("(-\\infty,-1)\\cup(4,\\infty)", "-1<x<4", False, "complement"),
    ("(-\\infty,-1)\\cup(4,\\infty)", "x \\le -1 \\text{ or } x \\ge 4", False, "closed ends"),
    ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", True, "pmatrix"),
    ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "(1, 2)", True, "pmatrix as tuple"),
    ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "\\begin{pmatrix} 2 \\\\ 1 \\end{pmatrix}", False, "pmatrix swapped"),
    ("x=2 \\text{ or } x=3", "x = 3, x = 2", True, "roots reordered"),
    ("x=2 \\text{ or } x=3", "x = 2", False, "one root"),
    ("\\{-1, 1\\}", "\\pm 1", True, "plus minus"),
    ("[0,\\infty)", "x \\ge 0", True, "inequality interval"),
    ("[0,\\infty)", "x > 0", False, "open end"),
    ("(1,2,3)", "(1, 2, 3)", True, "triple spacing"),
    ("(1,2,3)", "(1, 3, 2)", False, "triple order"),
]:
    add("sets", gold, pred, ok, note, [sentence_math, boxed, display_hence, marked])

# 7. Multiple-choice letters.
for gold, pred, ok, note in [
    ("D", "(D)", True, "parenthesised"),
    ("D", "D", True, "bare"),
    ("D", "\\text{(D)}", True, "text wrapped"),
    ("D", "Option D", True, "option word"),
    ("D", "option D", True, "lower option word"),
    ("D", "(C)", False, "other letter"),
    ("D", "Option C", False, "other option"),
    ("(A)", "A", True, "reference parenthesised"),
    ("(A)", "\\textbf{(A)}", True, "bold"),
    ("(A)", "(A) or (B)", False, "hedge"),
    ("B", "(B) 42", True, "letter and value"),
    ("B", "42", False, "value only"),
    ("B", "B and D", False, "two letters"),
    ("C", "choice C", True, "choice word"),
    ("C", "\\text{C}", True, "text letter"),
    ("C", "E", False, "wrong letter"),
]:
    add("choice", gold, pred, ok, note, [sentence, boxed, marked, last_line])

# 8. Complex numbers and scientific notation.
for gold, pred, ok, note in [
    ("1.6\\times10^{-19}", "1.6 x 10^-19", True, "x for times"),
    ("1.6\\times10^{-19}", "1.6 x 10^19", False, "exponent sign"),
    ("1.6\\times10^{-19}", "1.6e-19", True, "e notation"),
    ("0.007", "7\\times10^{-3}", True, "times ten"),
    ("0.007", "7\\times10^{-2}", False, "wrong power"),
    ("3.2\\times10^{5}", "320000", True, "expanded"),
    ("3.2\\times10^{5}", "32000", False, "one zero short"),
    ("6.02\\times10^{23}", "6.02 \\cdot 10^{23}", True, "cdot"),
    ("3+4i", "4i+3", True, "complex reordered"),
    ("3+4i", "3-4i", False, "conjugate"),
    ("2-i", "2 - i", True, "complex spacing"),
    ("2-i", "-i+2", True, "complex reordered negative"),
    ("2-i", "2+i", False, "complex conjugate"),
    ("i", "i", True, "imaginary unit"),
    ("-1+\\sqrt{3}i", "-1+i\\sqrt{3}", True, "i before radical"),
    ("5i", "5", False, "dropped i"),
]:
    add("complex_sci", gold, pred, ok, note, [sentence_math, boxed, display_thus, marked])

# 9. Self-correction and hedging: the final answer is the one the completion settles on.
SC = [
    ("45", "Counting all days gives 45, but that counts one day twice: the total is 40.", False, "corrected away from gold"),
    ("40", "Counting all days gives 45, but that counts one day twice: the total is 40.", True, "corrected to gold"),
    ("45", "The answer is 45. Wait, I double counted the first day, so the answer is actually 44.", False, "marker then correction"),
    ("44", "The answer is 45. Wait, I double counted the first day, so the answer is actually 44.", True, "corrected to gold with marker"),
    ("12", "So $x = 12$. Hmm, let me recheck: $3 \\cdot 4 = 12$ but we need $3 \\cdot 5$, so $x = 15$.", False, "recheck changes value"),
    ("15", "So $x = 12$. Hmm, let me recheck: $3 \\cdot 4 = 12$ but we need $3 \\cdot 5$, so $x = 15$.", True, "recheck to gold"),
    ("8", "I first got \\boxed{8}. Actually that is wrong, the correct value is \\boxed{9}.", False, "two boxes, correction"),
    ("9", "I first got \\boxed{8}. Actually that is wrong, the correct value is \\boxed{9}.", True, "last box is gold"),
    ("6", "It could be 3, 4, 5 or 6.", False, "hedge over candidates"),
    ("6", "The answer is 4 or 6.", False, "two candidates"),
    ("6", "The candidates are 2, 4 and 6; checking each, only 6 works, so the answer is 6.", True, "candidates then a choice"),
    ("20", "That gives 20 apples. No wait, she gave away 5, so 15 apples remain.", False, "no wait correction"),
    ("15", "That gives 20 apples. No wait, she gave away 5, so 15 apples remain.", True, "no wait to gold"),
    ("100", "The total is 100. Correction: the tax was not included, so the total is 110.", False, "correction keyword"),
    ("110", "The total is 100. Correction: the tax was not included, so the total is 110.", True, "correction keyword to gold"),
    ("7", "**Answer:** 7\n\nOn second thought, the last step divides by 2, so the answer is 3.5.", False, "second thought after marker"),
    ("3.5", "**Answer:** 7\n\nOn second thought, the last step divides by 2, so the answer is 3.5.", True, "second thought to gold"),
    ("30", "Therefore 30 minutes. But I made a mistake: the trip is one way, so it takes 15 minutes.", False, "made a mistake"),
    ("15", "Therefore 30 minutes. But I made a mistake: the trip is one way, so it takes 15 minutes.", True, "made a mistake to gold"),
    ("9", "$\\boxed{9}$\n\nLet me verify: $3^2 = 9$. Yes, 9 is correct.", True, "verification keeps gold"),
    ("9", "The answer is 9. Let me double-check: 4 + 5 = 9, which confirms it.", True, "double-check confirms"),
    ("2", "The answer is 2, or maybe 3, or 4.", False, "trailing hedge"),
    ("50", "Final answer: 50. Actually, no: the discount applies twice, so 45.", False, "actually no"),
    ("45", "Final answer: 50. Actually, no: the discount applies twice, so 45.", True, "actually no to gold"),
]
for gold, text, ok, note in SC:
    for pre in PRE[:3]:
        add_raw("self_correction", gold, f"{pre}\n{text}", ok, note)

for i, r in enumerate(rows):
    r["id"] = f"v{i + 1:04d}"
out = os.path.join(os.path.dirname(__file__), "..", "verifiers", "tests", "data", "math_corpus_v2.jsonl")
with open(out, "w") as f:
    for r in rows:
        f.write(json.dumps({k: r[k] for k in ["id", "completion", "answer", "human", "kind", "note"]}) + "\n")
from collections import Counter
c = Counter((r["kind"], r["human"]) for r in rows)
print(len(rows), "rows")
for k in sorted({r["kind"] for r in rows}):
    print(f"  {k}: {c[(k, True)]} correct, {c[(k, False)]} wrong")
