"""PyTorch reference throughput for SmolLM2-135M on CPU, to put next to oxrl's own numbers.

Runs HF transformers (default attention implementation) in f32 with ``torch.set_num_threads``
(2 by default: the project's machines have 2 vCPUs) on the checkpoint that
``scripts/smollm2_reference.py`` writes to ``/tmp/smol/hf``, and prints one JSON line per figure:

(a) ``train``: forward + backward of a batch of 8 x 256 tokens, loss = mean token NLL;
    tokens/s = 2048 / seconds, median of 3 timed iterations after 1 warm-up.
(b) ``decode_b1``: batch-1 greedy decoding with the KV cache, 128-token prompt, exactly 128 new
    tokens (``generate(do_sample=False, min_new_tokens=max_new_tokens=128)``); tokens/s = 128 /
    seconds of the whole ``generate`` call (prefill included), median of 3 after 1 warm-up.
(c) ``decode_grouped``: 16 prompts of 128 tokens x 8 samples each (``num_return_sequences=8``;
    transformers' greedy search refuses several return sequences, so this uses sampling at
    temperature 1 with top_k=0, top_p=1) x exactly 128 new tokens = 16,384 generated tokens;
    aggregate tokens/s = 16,384 / seconds of the whole call (prefill of 128 x 128 prompt tokens
    included: transformers expands each prompt 8 times, no prefix sharing). One timed run.

The first line describes the machine (CPU model from /proc/cpuinfo, logical CPUs, threads, torch
and transformers versions, load average before the run: other processes on a shared machine
slow every figure down).

Run (after scripts/smollm2_reference.py)::

    PYTHON scripts/bench_torch.py --model HF_DIR [--threads 2] [--only train,decode_b1,decode_grouped]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time

import torch
import transformers
from transformers import AutoModelForCausalLM


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags() -> list[str]:
    """The SIMD flags that decide matmul speed (AVX2 / AVX-512 / AMX)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    have = set(line.split(":", 1)[1].split())
                    want = ["avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16"]
                    return [x for x in want if x in have]
    except OSError:
        pass
    return []


def loadavg() -> list[float]:
    try:
        return [float(x) for x in open("/proc/loadavg").read().split()[:3]]
    except OSError:
        return []


def emit(obj: dict) -> None:
    print(json.dumps(obj), flush=True)


def fixed_ids(gen: torch.Generator, shape: tuple[int, ...], vocab: int) -> torch.Tensor:
    # Avoid the first 32 ids (special tokens in SmolLM2's vocabulary).
    return torch.randint(32, vocab, shape, generator=gen)


def bench_train(model, vocab: int, gen: torch.Generator) -> dict:
    b, t = 8, 256
    ids = fixed_ids(gen, (b, t), vocab)
    model.train()
    times = []
    for i in range(4):
        model.zero_grad(set_to_none=True)
        start = time.perf_counter()
        out = model(input_ids=ids, labels=ids)  # mean NLL of next-token targets
        out.loss.backward()
        el = time.perf_counter() - start
        if i > 0:
            times.append(el)
    model.zero_grad(set_to_none=True)
    model.eval()
    med = statistics.median(times)
    return {"bench": "train", "batch": b, "seq": t, "seconds": [round(x, 3) for x in times],
            "median_s": round(med, 3), "tokens_per_s": round(b * t / med, 1),
            "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)}


def bench_decode_b1(model, vocab: int, gen: torch.Generator) -> dict:
    prompt = fixed_ids(gen, (1, 128), vocab)
    n = 128
    times = []
    with torch.no_grad():
        for i in range(4):
            start = time.perf_counter()
            out = model.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
                                 min_new_tokens=n, max_new_tokens=n, pad_token_id=2)
            el = time.perf_counter() - start
            assert out.shape[1] == 128 + n, out.shape
            if i > 0:
                times.append(el)
    med = statistics.median(times)
    return {"bench": "decode_b1", "prompt": 128, "new_tokens": n, "seconds": [round(x, 3) for x in times],
            "median_s": round(med, 3), "tokens_per_s": round(n / med, 2)}


def bench_decode_grouped(model, vocab: int, gen: torch.Generator) -> dict:
    prompts, samples, n = 16, 8, 128
    ids = fixed_ids(gen, (prompts, 128), vocab)
    torch.manual_seed(0)
    with torch.no_grad():
        start = time.perf_counter()
        out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=True, temperature=1.0,
                             top_k=0, top_p=1.0, num_return_sequences=samples,
                             min_new_tokens=n, max_new_tokens=n, pad_token_id=2)
        el = time.perf_counter() - start
    assert out.shape == (prompts * samples, 128 + n), out.shape
    total = prompts * samples * n
    return {"bench": "decode_grouped", "prompts": prompts, "samples_per_prompt": samples, "prompt": 128,
            "new_tokens": n, "generated_tokens": total, "seconds": round(el, 3),
            "tokens_per_s": round(total / el, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="HF checkpoint directory (scripts/smollm2_reference.py writes one)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", default="train,decode_b1,decode_grouped")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    model.eval()
    vocab = model.config.vocab_size
    emit({
        "machine": {
            "cpu": cpu_model(),
            "cpu_flags": cpu_flags(),
            "logical_cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "attn_implementation": getattr(model.config, "_attn_implementation", None),
            "mkldnn": torch.backends.mkldnn.is_available(),
            "loadavg_before": loadavg(),
        },
        "model": args.model,
        "params": sum(p.numel() for p in model.parameters()),
        "dtype": "float32",
    })
    gen = torch.Generator().manual_seed(1234)
    benches = {"train": bench_train, "decode_b1": bench_decode_b1, "decode_grouped": bench_decode_grouped}
    for name in args.only.split(","):
        res = benches[name](model, vocab, gen)
        res["loadavg_after"] = loadavg()
        emit(res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
