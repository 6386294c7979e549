"""Checks that HF transformers loads a checkpoint directory (e.g. one that oxrl saved) and prints a
logits summary as JSON, to compare with ``oxrl logprobs`` on the same text.

The directory must hold config.json, model.safetensors (or shards) and tokenizer files. The
script loads it with ``AutoModelForCausalLM`` + ``AutoTokenizer`` (f32, CPU), tokenizes a fixed
text (or ``--text`` / ``--ids``; ``--chat`` renders the text as one user message with the chat
template), runs one forward pass and prints a single JSON object:

* ``token_ids``: the scored ids; ``token_logprobs``: log p(token_i | tokens_<i) for i >= 1
  (``null`` for the first token), with their ``sum`` and ``mean``;
* ``argmax``: the most likely next token at every position;
* ``last_top5``: top-5 (ids, logits) at the last position;
* ``logits_stats``: mean, std and max |x| over all positions and the vocabulary;
* ``weights_max_abs``: max |w| over all parameters (catches a load that silently left weights at
  their random init or zero: transformers only warns about missing keys, this script fails on
  any missing / unexpected key).

Run::

    /work/venv-hf/bin/python scripts/check_transformers_load.py DIR [--text "..."] [--ids 1,2,3] [--chat]
"""

from __future__ import annotations

import argparse
import json
import sys

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

DEFAULT_TEXT = "The capital of France is Paris. The capital of Germany is"


def r7(x: float) -> float:
    return float(f"{x:.7g}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir")
    ap.add_argument("--text", default=DEFAULT_TEXT)
    ap.add_argument("--ids", default=None, help="comma-separated token ids (skip the tokenizer)")
    ap.add_argument("--chat", action="store_true", help="render --text as a user message with the chat template")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    model, info = AutoModelForCausalLM.from_pretrained(args.dir, dtype=torch.float32, output_loading_info=True)
    problems = {k: v for k, v in info.items() if v and k in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs")}
    if problems:
        print(json.dumps({"error": "checkpoint does not match the model class", **{k: sorted(map(str, v)) for k, v in problems.items()}}))
        return 1
    model.eval()
    tok = AutoTokenizer.from_pretrained(args.dir)

    if args.ids:
        ids = [int(x) for x in args.ids.split(",") if x.strip()]
        text = None
    else:
        text = args.text
        if args.chat:
            text = tok.apply_chat_template([{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True)
        ids = tok(text, add_special_tokens=not args.chat)["input_ids"]
    if not ids:
        print(json.dumps({"error": "no tokens to score"}))
        return 1

    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0].float()
    logp = torch.log_softmax(logits, dim=-1)
    token_lp = [None] + [r7(float(logp[i - 1, ids[i]])) for i in range(1, len(ids))]
    scored = [x for x in token_lp if x is not None]
    top_v, top_i = torch.topk(logits[-1], 5)
    with torch.no_grad():
        w_max = max(float(p.abs().max()) for p in model.parameters())
    out = {
        "dir": args.dir,
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "class": type(model).__name__,
        "model_type": model.config.model_type,
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "tie_word_embeddings": bool(getattr(model.config, "tie_word_embeddings", False)),
        "weights_max_abs": r7(w_max),
        "text": text,
        "token_ids": ids,
        "token_logprobs": token_lp,
        "sum_logprob": r7(sum(scored)) if scored else None,
        "mean_logprob": r7(sum(scored) / len(scored)) if scored else None,
        "argmax": logits.argmax(-1).tolist(),
        "last_top5": {"ids": top_i.tolist(), "logits": [r7(v) for v in top_v.tolist()]},
        "logits_stats": {
            "mean": r7(float(logits.mean())),
            "std": r7(float(logits.std())),
            "max_abs": r7(float(logits.abs().max())),
        },
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
