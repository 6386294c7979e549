"""Reference logits from HF transformers for oxrl's decoder parity test (issue #2).

What it does
------------
For each tiny model below (f32, 2 layers, vocab 64-80, hidden 64) it builds the HF config,
fills every weight with a deterministic recipe (no RNG, so no weights are committed), runs the
HF model class on each fixed token sequence *alone* (no padding on this side), and writes
``models/tests/fixtures/hf_reference/<name>.json`` with the HF config dict, the tensor names and
shapes, the input ids and the logits at every position (7 significant digits), plus the
transformers / torch versions. ``models/tests/hf_parity.rs`` rebuilds the same weights in Rust,
saves them in HF layout, loads them through ``Transformer::load`` and compares a padded batch.

Weight recipe (implemented identically in ``models/tests/hf_parity.rs``)
-----------------------------------------------------------------------
Tensors are sorted by HF name (byte order); ``t`` is a tensor's ordinal in that order and ``k``
the flat row-major index of an element. Tied models have no ``lm_head.weight`` entry. In float64::

    phase = 0.1 + 0.731*k + 1.37*t + 0.001*k*k        (evaluated left to right)
    value = base + scale * sin(phase)                  then cast to float32

* name contains "norm":   base 1.0, scale 0.1
* name ends with ".bias": base 0.0, scale 0.1
* 2-D matrices:           base 0.0, scale 1/sqrt(shape[1])   (fan-in; embedding: hidden)

The quadratic term 0.001*k*k is there because a phase linear in ``k`` would make every row of a
matrix the same sinusoid shifted in phase, i.e. rank-2 weight matrices, which would hide bugs such
as mixed-up heads. ``math.sin`` (libm, as Rust's ``f64::sin``) is used rather than numpy's SIMD sin.

Environment (how this was run)
------------------------------
A venv outside the repo: ``python3 -m venv /work/venv-hf && /work/venv-hf/bin/pip install torch
transformers safetensors numpy gguf`` (PyPI's default Linux torch wheel, which pulls the CUDA
libraries, about 5 GB; it runs fine on CPU). Then, from the repo root::

    /work/venv-hf/bin/python scripts/hf_reference.py
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import torch
import transformers
from transformers import AutoConfig, AutoModelForCausalLM

REPO = Path(__file__).resolve().parent.parent
OUT_DIR = REPO / "models" / "tests" / "fixtures" / "hf_reference"

SHORT_SEQS = [
    [1, 5, 9, 2, 33],
    [3, 17, 44, 8, 60, 2, 11, 29, 50],
    [7, 7, 40, 13, 21, 63, 0, 35, 18, 4, 52, 26, 9, 44],
]


def long_seq(n: int, vocab: int, salt: int) -> list[int]:
    """A fixed token sequence of length n (a simple deterministic walk over the vocabulary)."""
    return [(salt + 7 * i + (i * i) % 13) % vocab for i in range(n)]


def base_config(model_type: str, **kw) -> dict:
    cfg = {
        "model_type": model_type,
        "vocab_size": 80,
        "hidden_size": 64,
        "intermediate_size": 112,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "max_position_embeddings": 256,
        "tie_word_embeddings": False,
        "hidden_act": "silu",
        "bos_token_id": 1,
        "eos_token_id": 2,
        "torch_dtype": "float32",
    }
    cfg.update(kw)
    return cfg


LLAMA3_SCALING = {
    "rope_type": "llama3",
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    # head_dim 16, theta 1e4: wavelengths 6.3 (< 32/4, kept), 19.9 (between, smoothed) and
    # >= 62.8 (> 32, divided by 8): all three llama3 regimes are exercised.
    "original_max_position_embeddings": 32,
}

ROPE_SEQS = [long_seq(80, 64, 3), long_seq(33, 64, 10), long_seq(9, 64, 21)]

MODELS = {
    "llama_tied": (base_config("llama", tie_word_embeddings=True), SHORT_SEQS),
    "llama_gqa_untied": (
        base_config("llama", num_attention_heads=8, num_key_value_heads=2),
        SHORT_SEQS,
    ),
    "llama_rope_llama3": (
        base_config(
            "llama",
            vocab_size=64,
            num_key_value_heads=2,
            rope_scaling=LLAMA3_SCALING,
        ),
        ROPE_SEQS,
    ),
    "llama_rope_linear": (
        base_config(
            "llama",
            vocab_size=64,
            tie_word_embeddings=True,
            rope_scaling={"rope_type": "linear", "factor": 4.0},
        ),
        ROPE_SEQS,
    ),
    "mistral": (
        base_config("mistral", num_key_value_heads=2, sliding_window=None),
        SHORT_SEQS,
    ),
    "qwen2": (
        base_config("qwen2", num_key_value_heads=2, rope_theta=1000000.0),
        SHORT_SEQS,
    ),
    "qwen3": (
        base_config(
            "qwen3",
            num_key_value_heads=2,
            head_dim=24,
            tie_word_embeddings=True,
            rope_theta=1000000.0,
            attention_bias=False,
        ),
        SHORT_SEQS,
    ),
}


def recipe_tensor(name: str, shape: tuple[int, ...], ordinal: int) -> np.ndarray:
    """The deterministic value of one tensor (see the module docstring)."""
    if "norm" in name:
        base, scale = 1.0, 0.1
    elif name.endswith(".bias"):
        base, scale = 0.0, 0.1
    elif len(shape) == 2:
        base, scale = 0.0, 1.0 / math.sqrt(shape[1])
    else:
        raise ValueError(f"no recipe for {name} {shape}")
    n = int(np.prod(shape))
    t = float(ordinal)
    vals = [
        base + scale * math.sin(0.1 + 0.731 * float(k) + 1.37 * t + 0.001 * float(k) * float(k))
        for k in range(n)
    ]
    return np.asarray(vals, dtype=np.float64).astype(np.float32).reshape(shape)


def fill_weights(model: torch.nn.Module) -> list[tuple[str, list[int]]]:
    """Overwrites every parameter (tied ones once) with the recipe; returns sorted names/shapes."""
    params = dict(model.named_parameters())  # tied lm_head is deduplicated away
    names = sorted(params)
    with torch.no_grad():
        for t, name in enumerate(names):
            p = params[name]
            p.copy_(torch.from_numpy(recipe_tensor(name, tuple(p.shape), t)))
    return [(n, list(params[n].shape)) for n in names]


def build(cfg_dict: dict):
    cfg_dict = dict(cfg_dict)
    model_type = cfg_dict.pop("model_type")
    config = AutoConfig.for_model(model_type, **cfg_dict)
    config._attn_implementation = "eager"
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.eval()
    return model


def run_seqs(model, seqs: list[list[int]]) -> list[np.ndarray]:
    out = []
    with torch.no_grad():
        for s in seqs:
            ids = torch.tensor([s], dtype=torch.long)
            out.append(model(input_ids=ids).logits[0].float().numpy())
    return out


def sig7(x: np.ndarray) -> list:
    return [float(f"{v:.7g}") for v in x.tolist()] if x.ndim == 1 else [sig7(r) for r in x]


def main() -> int:
    torch.manual_seed(0)
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    total = 0
    for name, (cfg_dict, seqs) in MODELS.items():
        model = build(cfg_dict)
        tensors = fill_weights(model)
        logits = run_seqs(model, seqs)
        if "rope_scaling" in cfg_dict:
            # The scaled model must differ from the same weights without scaling, else the
            # fixture proves nothing about rope scaling.
            plain_cfg = {k: v for k, v in cfg_dict.items() if k != "rope_scaling"}
            plain = build(plain_cfg)
            plain.load_state_dict(model.state_dict())
            plain_logits = run_seqs(plain, seqs)
            diff = max(float(np.abs(a - b).max()) for a, b in zip(logits, plain_logits))
            assert diff > 1e-2, f"{name}: rope scaling changes logits by only {diff}"
            print(f"{name}: max |logits(scaled) - logits(unscaled)| = {diff:.4f}")
        hf_config = model.config.to_dict()
        # Keep the file readable: drop generation / bookkeeping keys transformers adds.
        for k in ["_name_or_path", "transformers_version", "output_attentions", "_attn_implementation_autoset"]:
            hf_config.pop(k, None)
        fixture = {
            "name": name,
            "description": "HF transformers logits for a tiny model with recipe weights "
            "(see scripts/hf_reference.py); each sequence run alone",
            "transformers_version": transformers.__version__,
            "torch_version": torch.__version__,
            "hf_class": type(model).__name__,
            # What transformers serialises (v5: rope settings inside `rope_parameters`) ...
            "config": json.loads(json.dumps(hf_config, default=str)),
            # ... and the v4-style dict it was built from (top-level rope_theta, rope_scaling).
            "config_input": cfg_dict,
            "tensors": [{"name": n, "shape": s} for n, s in tensors],
            "input_ids": seqs,
            "logits": [sig7(l) for l in logits],
        }
        path = OUT_DIR / f"{name}.json"
        text = json.dumps(fixture, separators=(",", ":"))
        path.write_text(text + "\n")
        total += len(text)
        ranges = [f"{float(l.min()):.3f}..{float(l.max()):.3f}" for l in logits]
        print(f"{name}: {type(model).__name__}, {len(tensors)} tensors, lengths "
              f"{[len(s) for s in seqs]}, logits {ranges}, {len(text)/1024:.1f} KiB")
    print(f"total {total/1024:.1f} KiB, transformers {transformers.__version__}, torch {torch.__version__}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
