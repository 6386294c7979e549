#!/usr/bin/env python3
"""Records a torch.optim.AdamW trajectory for oxrl's AdamW test (trainer/tests/adamw.rs).

Five small parameters with Hugging Face names (a decayed projection weight and lm_head, a norm
weight in its own lr-scaled group, a bias and an embedding without decay), fixed gradients from a
seeded generator, 20 steps of: global grad-norm clipping (torch.nn.utils.clip_grad_norm_,
max_norm 1), AdamW (single-tensor path, weight decay 0.1 on the decay group), then LambdaLR with
transformers' cosine-with-warmup multiplier (written out below: transformers is not needed).

The embedding has no gradient at two steps (grad None: torch skips it, so its step count lags),
and the bias gradients are ~1e-6, the size of eps, so where eps enters the denominator matters.

Initial values and gradients are rounded to float32 first, so the float32 and float64 runs start
from identical numbers. Both runs are written: the Rust test replays f32 params (f32 state, as
the trainer runs) against torch float32 and f64 params against torch float64, each to 1e-6.

    python3 scripts/adamw_reference.py trainer/tests/fixtures/adamw_torch.json
"""

import json
import math
import sys

import torch

STEPS = 20
PEAK_LR = 1e-2
BETAS = (0.9, 0.95)
EPS = 1e-6
WEIGHT_DECAY = 0.1
NORM_LR_SCALE = 0.5
MAX_NORM = 1.0
WARMUP = 3
NUM_CYCLES = 0.5
NO_GRAD = {"model.embed_tokens.weight": [4, 11]}

PARAMS = [
    # name, shape, group ("decay", "no_decay", "norm"), init scale, init offset
    ("model.embed_tokens.weight", (5, 3), "no_decay", 0.5, 0.0),
    ("model.layers.0.input_layernorm.weight", (3,), "norm", 0.1, 1.0),
    ("model.layers.0.mlp.up_proj.weight", (4, 3), "decay", 0.5, 0.0),
    ("model.layers.0.mlp.up_proj.bias", (4,), "no_decay", 0.1, 0.0),
    ("lm_head.weight", (5, 3), "decay", 0.5, 0.0),
]


def cosine_multiplier(step, warmup, total, num_cycles=NUM_CYCLES):
    """transformers.get_cosine_schedule_with_warmup's lr_lambda."""
    if step < warmup:
        return float(step) / float(max(1, warmup))
    progress = float(step - warmup) / float(max(1, total - warmup))
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * float(num_cycles) * 2.0 * progress)))


def f32_exact(t):
    return t.to(torch.float32).to(torch.float64)


def make_data():
    gen = torch.Generator().manual_seed(20240610)
    init = {}
    for name, shape, _, scale, offset in PARAMS:
        init[name] = f32_exact(torch.randn(shape, generator=gen, dtype=torch.float64) * scale + offset)
    grads = []
    for s in range(STEPS):
        # Total norms range over ~0.3..3, so clipping is active on some steps only.
        scale = 0.05 + 0.35 * ((s * 7) % 10) / 9.0
        step = {}
        for name, shape, _, _, _ in PARAMS:
            g = torch.randn(shape, generator=gen, dtype=torch.float64) * scale
            if name.endswith(".bias"):
                g = g * 1e-5
            step[name] = None if s in NO_GRAD.get(name, []) else f32_exact(g)
        grads.append(step)
    return init, grads


def run(init, grads, dtype):
    params = {n: torch.nn.Parameter(init[n].clone().to(dtype)) for n in init}
    groups = {"decay": [], "no_decay": [], "norm": []}
    for name, _, group, _, _ in PARAMS:
        groups[group].append(params[name])
    opt = torch.optim.AdamW(
        [
            {"params": groups["decay"], "weight_decay": WEIGHT_DECAY, "lr": PEAK_LR},
            {"params": groups["no_decay"], "weight_decay": 0.0, "lr": PEAK_LR},
            {"params": groups["norm"], "weight_decay": 0.0, "lr": PEAK_LR * NORM_LR_SCALE},
        ],
        lr=PEAK_LR,
        betas=BETAS,
        eps=EPS,
        foreach=False,
        fused=False,
    )
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: cosine_multiplier(s, WARMUP, STEPS)
    )
    traj, norms, lrs = [], [], []
    for s in range(STEPS):
        lrs.append(opt.param_groups[0]["lr"])
        for name, p in params.items():
            g = grads[s][name]
            p.grad = None if g is None else g.clone().to(dtype)
        with_grad = [p for p in params.values() if p.grad is not None]
        norm = torch.nn.utils.clip_grad_norm_(with_grad, MAX_NORM)
        norms.append(float(norm))
        opt.step()
        sched.step()
        traj.append({n: p.detach().to(torch.float64).flatten().tolist() for n, p in params.items()})
    return traj, norms, lrs


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "trainer/tests/fixtures/adamw_torch.json"
    init, grads = make_data()
    traj64, norms64, lrs = run(init, grads, torch.float64)
    traj32, norms32, _ = run(init, grads, torch.float32)
    doc = {
        "about": "torch.optim.AdamW trajectory recorded by scripts/adamw_reference.py",
        "torch": torch.__version__,
        "config": {
            "steps": STEPS,
            "peak_lr": PEAK_LR,
            "betas": list(BETAS),
            "eps": EPS,
            "weight_decay": WEIGHT_DECAY,
            "norm_lr_scale": NORM_LR_SCALE,
            "max_norm": MAX_NORM,
            "schedule": {"kind": "cosine", "warmup_steps": WARMUP, "num_cycles": NUM_CYCLES},
        },
        "params": [
            {"name": n, "shape": list(shape), "group": group, "init": init[n].flatten().tolist()}
            for n, shape, group, _, _ in PARAMS
        ],
        "grads": [
            {n: (None if g is None else g.flatten().tolist()) for n, g in step.items()}
            for step in grads
        ],
        "lr": lrs,
        "f64": {"grad_norm": norms64, "params": traj64},
        "f32": {"grad_norm": norms32, "params": traj32},
    }
    with open(out, "w") as f:
        json.dump(doc, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {out}: {STEPS} steps, norms {min(norms64):.3f}..{max(norms64):.3f}")


if __name__ == "__main__":
    main()
