#!/usr/bin/env python3
"""Compare oxrl's `math` verifier with HF Math-Verify on the hand-graded math corpus.

Reads the corpus (verifiers/tests/data/math_corpus.jsonl: id, completion, answer, human, kind,
note), runs Math-Verify (`pip install math-verify`) on every row, reads oxrl's verdicts from a
JSONL file of `{"id", "oxrl": bool}` lines, or runs
`cargo run -p oxrl-verifiers --example math_verdicts` to produce them, and prints: oxrl accuracy
vs the human verdicts, Math-Verify accuracy vs the human verdicts, and every case where the two
graders disagree.

Usage:
    python3 scripts/math_corpus_compare.py [--corpus PATH] [--oxrl VERDICTS.jsonl] [--json OUT]
"""

import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CORPUS = os.path.join(ROOT, "verifiers", "tests", "data", "math_corpus.jsonl")


def load_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def oxrl_verdicts(args):
    if args.oxrl:
        rows = load_jsonl(args.oxrl)
    else:
        env = dict(os.environ)
        env.setdefault("CARGO_TARGET_DIR", os.path.join(ROOT, "target-math"))
        out = subprocess.run(
            ["cargo", "run", "-q", "-p", "oxrl-verifiers", "--example", "math_verdicts", args.corpus],
            cwd=ROOT, env=env, check=True, capture_output=True, text=True,
        ).stdout
        rows = [json.loads(line) for line in out.splitlines() if line.strip()]
    return {r["id"]: bool(r["oxrl"]) for r in rows}


def math_verify_verdict(completion, answer):
    """Math-Verify as documented: parse the gold answer (wrapped in $...$ so that LaTeX is read)
    and the whole completion with the default extraction configs, then verify(gold, pred)."""
    from math_verify import parse, verify

    try:
        gold = parse("$" + answer + "$")
        if not gold:
            gold = parse(answer)
        pred = parse(completion)
        return bool(verify(gold, pred))
    except Exception:  # Math-Verify may raise on odd input: count it as "wrong"
        return False


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default=DEFAULT_CORPUS)
    ap.add_argument("--oxrl", help="JSONL of {id, oxrl} verdicts (default: run the example)")
    ap.add_argument("--json", help="also write per-case verdicts here")
    args = ap.parse_args()

    corpus = load_jsonl(args.corpus)
    ox = oxrl_verdicts(args)
    missing = [c["id"] for c in corpus if c["id"] not in ox]
    if missing:
        sys.exit(f"oxrl verdicts missing for {len(missing)} ids, e.g. {missing[:5]}")

    rows = []
    for c in corpus:
        mv = math_verify_verdict(c["completion"], c["answer"])
        rows.append({**c, "oxrl": ox[c["id"]], "math_verify": mv})

    n = len(rows)
    ox_ok = sum(r["oxrl"] == r["human"] for r in rows)
    mv_ok = sum(r["math_verify"] == r["human"] for r in rows)
    print(f"cases: {n} ({sum(r['human'] for r in rows)} judged correct by the human grader)")
    print(f"oxrl accuracy vs human:        {ox_ok}/{n} = {100 * ox_ok / n:.2f}%")
    print(f"Math-Verify accuracy vs human: {mv_ok}/{n} = {100 * mv_ok / n:.2f}%")
    # Math-Verify does not read `<answer>` tags or bare `#### 42` lines: report it also on the rows
    # whose final answer is in LaTeX delimiters or plain prose only, to separate format from maths.
    sub = [r for r in rows if "<answer>" not in r["completion"] and "####" not in r["completion"]]
    if sub:
        so = sum(r["oxrl"] == r["human"] for r in sub)
        sm = sum(r["math_verify"] == r["human"] for r in sub)
        print(f"  without <answer>/#### rows ({len(sub)}): oxrl {100 * so / len(sub):.2f}%, "
              f"Math-Verify {100 * sm / len(sub):.2f}%")
    dis = [r for r in rows if r["oxrl"] != r["math_verify"]]
    print(f"\ndisagreements: {len(dis)} (oxrl right in {sum(r['oxrl'] == r['human'] for r in dis)}, "
          f"Math-Verify right in {sum(r['math_verify'] == r['human'] for r in dis)})")
    for r in dis:
        right = "oxrl" if r["oxrl"] == r["human"] else "Math-Verify"
        print(f"  {r['id']} [{r['kind']}] human={r['human']} oxrl={r['oxrl']} "
              f"math_verify={r['math_verify']} -> {right} right | {r['note']} | "
              f"answer={r['answer']!r} final={r['completion'][-90:]!r}")
    misses = [r for r in rows if r["oxrl"] != r["human"]]
    if misses:
        print(f"\noxrl misses: {len(misses)}")
        for r in misses:
            print(f"  {r['id']} [{r['kind']}] human={r['human']} oxrl={r['oxrl']} | {r['note']}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps({k: r[k] for k in ("id", "kind", "human", "oxrl", "math_verify")}) + "\n")


if __name__ == "__main__":
    main()
