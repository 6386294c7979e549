"""One GRPO step in TRL (GRPOTrainer, PyTorch eager, transformers generate) on CPU, timed the way
`oxrl train` reports its steps: the same model directory, the same prompts (one-digit additions in
the model's chat template), P prompts x N samples x exactly T new tokens, f32, beta = 0 (no
reference model), one optimisation pass over the batch. Prints one JSON line with the wall time
of generation+scoring ("rollout") and of the optimisation ("train") per step, and peak RSS.

    python scripts/bench_grpo_trl.py --model DIR [--prompts 8] [--samples 8] [--tokens 128]
                                      [--steps 2] [--threads 2]

Needs torch, transformers and trl (the side-by-side script installs trl==1.16.0 into a venv).
"""

import argparse
import json
import os
import resource
import tempfile
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--lr", type=float, default=1e-5)
    a = ap.parse_args()

    import torch

    torch.set_num_threads(a.threads)
    import trl
    import transformers
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    rows = []
    for i in range(a.prompts * a.steps):
        x, y = (i * 7) % 10, (i * 3 + 1) % 10
        rows.append({"prompt": [{"role": "user", "content": f"{x} + {y} ="}], "answer": str(x + y)})
    ds = Dataset.from_list(rows)

    def exact(completions, answer, **_):
        out = []
        for c, ans in zip(completions, answer):
            text = c[0]["content"] if isinstance(c, list) else c
            nums = [t for t in text.replace(".", " ").split() if t.lstrip("-").isdigit()]
            out.append(1.0 if nums and nums[-1] == ans else 0.0)
        return out

    total = a.prompts * a.samples
    with tempfile.TemporaryDirectory() as out:
        cfg = GRPOConfig(
            output_dir=out,
            per_device_train_batch_size=total,
            gradient_accumulation_steps=1,
            num_generations=a.samples,
            max_completion_length=a.tokens,
            generation_kwargs={"min_new_tokens": a.tokens},
            temperature=1.0,
            beta=0.0,
            num_iterations=1,
            learning_rate=a.lr,
            max_steps=a.steps,
            logging_steps=1,
            report_to=[],
            save_strategy="no",
            use_cpu=True,
            bf16=False,
            fp16=False,
            seed=0,
            dataloader_num_workers=0,
        )
        trainer = GRPOTrainer(model=a.model, reward_funcs=exact, args=cfg, train_dataset=ds)

        timings = {"rollout": [], "step": []}
        gen = trainer._generate_and_score_completions

        def timed_gen(*args, **kw):
            t = time.perf_counter()
            r = gen(*args, **kw)
            timings["rollout"].append(time.perf_counter() - t)
            return r

        trainer._generate_and_score_completions = timed_gen

        class StepTimer(transformers.TrainerCallback):
            def on_step_begin(self, args, state, control, **kw):
                self.t = time.perf_counter()

            def on_step_end(self, args, state, control, **kw):
                timings["step"].append(time.perf_counter() - self.t)

        trainer.add_callback(StepTimer())
        trainer.train()

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    steps = timings["step"]
    rollout = timings["rollout"][: len(steps)]
    print(
        json.dumps(
            {
                "tool": f"trl {trl.__version__} (torch {torch.__version__}, transformers {transformers.__version__})",
                "threads": a.threads,
                "shape": f"{a.prompts}x{a.samples}x{a.tokens}",
                "step_s": steps,
                "rollout_s": rollout,
                "train_s": [s - r for s, r in zip(steps, rollout)],
                "peak_rss_mib": round(rss),
            }
        )
    )


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
