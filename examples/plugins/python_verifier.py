#!/usr/bin/env python3
"""A verifier plugin for oxrl in plain Python 3 (standard library only).

Task: "write a short text that uses these words". Each dataset row carries `keywords` (a list of
required words) and optionally `max_words`; both arrive in `example.metadata`. For every
completion the plugin reports

    keywords = share of the required words that appear as whole words (case-insensitive by default)
    length   = 1.0 if the completion has at most `max_words` words (or no limit is set), else 0.0
    reward   = keyword_weight * keywords + length_weight * length

It speaks oxrl's verifier protocol, version 1 (docs/verifier-protocol.md): one JSON object per
line on stdin/stdout; oxrl sends a hello, the plugin answers it, then every `score` request gets
exactly one answer line with the same `id`. Logs go to stderr (stdout is the protocol). The
plugin exits when stdin closes.

Options (the `options` table of the verifier in the task file, sent in the hello):
    keyword_weight (default 0.8), length_weight (default 0.2), case_sensitive (default false).

Try it by hand:
    printf '%s\n' '{"type":"hello","protocol":"oxrl-verifier","version":1,"options":{}}' \
      '{"type":"score","id":1,"groups":[{"example":{"id":"k","prompt":"","answer":null,
        "metadata":{"keywords":["sea"],"max_words":5}},"completions":["The sea."]}]}' \
      | python3 examples/plugins/python_verifier.py
"""

import json
import re
import sys

PROTOCOL = "oxrl-verifier"
VERSION = 1
DEFAULTS = {"keyword_weight": 0.8, "length_weight": 0.2, "case_sensitive": False}


def log(*args):
    """Diagnostics for humans: stderr, never stdout."""
    print("python_verifier:", *args, file=sys.stderr, flush=True)


def send(obj):
    """Writes one protocol line and flushes it (oxrl waits for the newline)."""
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def words(text):
    return re.findall(r"[\w'-]+", text)


def score_completion(completion, metadata, options):
    """One score object for one completion."""
    keywords = metadata.get("keywords")
    if not isinstance(keywords, list) or not keywords:
        return {"reward": 0.0, "error": "the example has no `keywords` list in its metadata"}
    flags = 0 if options["case_sensitive"] else re.IGNORECASE
    found = sum(
        1
        for k in keywords
        if re.search(r"(?<![\w'-])" + re.escape(str(k)) + r"(?![\w'-])", completion, flags)
    )
    coverage = found / len(keywords)
    count = len(words(completion))
    limit = metadata.get("max_words")
    short_enough = 1.0 if limit is None or count <= int(limit) else 0.0
    reward = options["keyword_weight"] * coverage + options["length_weight"] * short_enough
    return {
        "reward": reward,
        "components": {"keywords": coverage, "length": short_enough, "words": float(count)},
        "error": None,
    }


def handle_score(request, options):
    scores = []
    for group in request["groups"]:
        metadata = group["example"].get("metadata") or {}
        scores.append([score_completion(c, metadata, options) for c in group["completions"]])
    return {"id": request["id"], "scores": scores}


def main():
    hello = json.loads(sys.stdin.readline() or "{}")
    if hello.get("protocol") != PROTOCOL or hello.get("version") != VERSION:
        send({"type": "hello", "error": f"unsupported hello: {hello}"})
        return 1
    options = dict(DEFAULTS)
    given = hello.get("options") or {}
    unknown = sorted(set(given) - set(DEFAULTS))
    if unknown:
        send({"type": "hello", "error": f"unknown options {unknown}; known: {sorted(DEFAULTS)}"})
        return 1
    options.update(given)
    send({"type": "hello", "protocol": PROTOCOL, "version": VERSION, "name": "keywords"})
    log("ready with options", options)

    for line in sys.stdin:
        if not line.strip():
            continue
        request = {}
        try:
            request = json.loads(line)
            if request.get("type") != "score":
                raise ValueError(f"unknown message type {request.get('type')!r}")
            send(handle_score(request, options))
        except Exception as e:  # one bad request must not end the worker
            log("request", request.get("id"), "failed:", repr(e))
            send({"id": request.get("id"), "error": f"{type(e).__name__}: {e}"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
