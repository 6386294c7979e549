#!/usr/bin/env bash
# Side-by-side CPU benchmark of SmolLM2-135M-Instruct (f32): oxrl vs llama.cpp vs PyTorch
# (transformers), one after the other in one run, same machine, same thread count. It ends with
# one summary table of ratios (oxrl / peer) and of each figure as a fraction of the machine's
# measured f32 peak: the figures issue 14 is judged by.
#
# Figures:
#   f32 peak           2048^3 matmul, GFLOP/s      oxrl bench gemm       | torch.matmul
#   train fwd+bwd      batch 8 x 256 tokens        oxrl bench train      | bench_torch.py train (+ peak RSS)
#   batch-1 decode     128-token prompt, 128 new   oxrl bench rollout    | llama-bench tg128 | bench_torch.py decode_b1
#   grouped rollout    16 prompts x 8 x 128 new    oxrl bench rollout    | llama-batched-bench (128 prompts; -pps) | bench_torch.py decode_grouped
#
# Inputs: flags, or the environment variable in brackets. Nothing has a machine-specific default
# and nothing is downloaded; a peer whose input is missing is skipped with a note.
#   --oxrl PATH        [OXRL]       the release binary (default: target/release/oxrl of this checkout)
#   --gguf PATH        [GGUF]       SmolLM2-135M-Instruct.Q4_1.gguf (required; scripts/fetch-smollm2.sh
#                                   puts it at models/smollm2/, the default when it is there)
#   --llama-bin DIR    [LLAMA_BIN]  folder with llama-bench, llama-batched-bench, llama-quantize
#                                   (llama.cpp built from the sources inside the PyPI sdist of
#                                   llama-cpp-python: cmake -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
#                                   -DGGML_NATIVE=ON -DLLAMA_CURL=OFF; cmake --build build --target
#                                   llama-bench llama-batched-bench llama-quantize)
#   --python PATH      [PY]         a python with torch + transformers (for PyTorch)
#   --hf-dir DIR       [HF_DIR]     the dequantised HF checkpoint scripts/smollm2_reference.py writes
#   --threads N        [THREADS]    threads for every tool (default 2)
#   --torch-grouped    [TORCH_GROUPED=1]  also PyTorch's grouped rollout (several minutes on 2 cores)
#   --out FILE         [OUT]        where the results (JSON lines) go (default: a temporary file)
#
# llama.cpp runs on an F32 GGUF made from the same Q4_1 file by `llama-quantize
# --allow-requantize ... F32`: the very weights oxrl dequantises on load.
#
#   bash scripts/bench_side_by_side.sh --gguf G --llama-bin B --python P --hf-dir H 2>&1 | tee log
set -euo pipefail
cd "$(dirname "$0")/.."

OXRL=${OXRL:-target/release/oxrl}
GGUF=${GGUF:-}
LLAMA_BIN=${LLAMA_BIN:-}
PY=${PY:-}
HF_DIR=${HF_DIR:-}
THREADS=${THREADS:-2}
TORCH_GROUPED=${TORCH_GROUPED:-0}
OUT=${OUT:-}
while (($#)); do
  case $1 in
    --oxrl) OXRL=$2; shift 2 ;;
    --gguf) GGUF=$2; shift 2 ;;
    --llama-bin) LLAMA_BIN=$2; shift 2 ;;
    --python) PY=$2; shift 2 ;;
    --hf-dir) HF_DIR=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --torch-grouped) TORCH_GROUPED=1; shift ;;
    --out) OUT=$2; shift 2 ;;
    -h|--help) sed -n '2,32p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [[ -z $GGUF && -f models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf ]]; then
  GGUF=models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
fi
[[ -x $OXRL ]] || { echo "no oxrl binary at $OXRL (cargo build --release, or --oxrl)" >&2; exit 1; }
[[ -n $GGUF && -f $GGUF ]] || { echo "no GGUF: pass --gguf (scripts/fetch-smollm2.sh fetches it)" >&2; exit 1; }
OUT=${OUT:-$(mktemp -t oxrl-side-by-side.XXXXXX.jsonl)}
: > "$OUT"
F32_GGUF=${F32_GGUF:-${GGUF%.gguf}.F32.gguf}
export RAYON_NUM_THREADS=$THREADS OMP_NUM_THREADS=$THREADS

section() { echo; echo "=== $* ($(date -u +%H:%M:%S), load average: $(cut -d' ' -f1-3 /proc/loadavg))"; }
# result FIGURE TOOL VALUE UNIT: one line of the results file.
result() {
  local v=$3
  [[ $v =~ ^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$ ]] || v=null  # a figure a tool did not report
  printf '{"figure":"%s","tool":"%s","value":%s,"unit":"%s"}\n' "$1" "$2" "$v" "$4" >> "$OUT"
}
# json_field KEY: the value under KEY in the last JSON object on stdin (one line or pretty-printed).
json_field() {
  python3 -c '
import json, sys
lines = sys.stdin.read().splitlines()
for i in reversed(range(len(lines))):
    if lines[i].startswith("{"):
        try:
            print(json.loads("\n".join(lines[i:]))[sys.argv[1]])
            break
        except ValueError:
            pass
' "$1"
}

section machine
cpu=$(grep -m1 "model name" /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//' || true)
flags=$(grep -m1 -o -w -E 'avx2|fma|avx512f|avx512bw|avx512_vnni|avx512_bf16|avx512_fp16|amx_tile|amx_bf16' /proc/cpuinfo | sort -u | tr '\n' ' ' || true)
echo "cpu: $cpu"
echo "simd: $flags"
echo "logical CPUs: $(nproc), threads used: $THREADS"
"$OXRL" --version || true
git log -1 --format='oxrl commit %h %s' 2>/dev/null || true
printf '{"machine":{"cpu":"%s","simd":"%s","threads":%s}}\n' "$cpu" "${flags% }" "$THREADS" >> "$OUT"

have_llama=0
if [[ -n $LLAMA_BIN && -x $LLAMA_BIN/llama-bench && -x $LLAMA_BIN/llama-batched-bench ]]; then
  have_llama=1
  if [[ ! -f $F32_GGUF ]]; then
    "$LLAMA_BIN/llama-quantize" --allow-requantize "$GGUF" "$F32_GGUF" F32 >/dev/null 2>&1
  fi
else
  echo "llama.cpp: skipped (pass --llama-bin DIR with llama-bench and llama-batched-bench)"
fi
have_torch=0
if [[ -n $PY && -x $PY && -n $HF_DIR && -d $HF_DIR ]] && "$PY" -c "import torch, transformers" 2>/dev/null; then
  have_torch=1
else
  echo "PyTorch: skipped (pass --python with torch + transformers and --hf-dir)"
fi

section "f32 peak: 2048^3 matmul"
out=$("$OXRL" bench gemm --size 2048 --repeat 5 --json); echo "$out" | head -1
result peak oxrl "$(echo "$out" | tail -1 | json_field gflops)" "GFLOP/s"
if ((have_torch)); then
  t=$("$PY" -c "
import time, torch
torch.set_num_threads($THREADS)
a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
best = min((lambda s: (a @ b, time.perf_counter() - s)[1])(time.perf_counter()) for _ in range(6))
print(2 * 2048**3 / best / 1e9)")
  echo "PyTorch: $t GFLOP/s"
  result peak pytorch "$t" "GFLOP/s"
fi

section "train fwd+bwd, batch 8 x 256: oxrl"
out=$("$OXRL" bench train --model "$GGUF" --batch 8 --seq-len 256 --iters 3 --json); echo "$out" | head -1
result train oxrl "$(echo "$out" | tail -1 | json_field tokens_per_s)" "tok/s"
result train_rss oxrl "$(echo "$out" | tail -1 | json_field peak_rss_gib)" "GiB"
if ((have_torch)); then
  section "train fwd+bwd, batch 8 x 256: PyTorch"
  out=$("$PY" scripts/bench_torch.py --model "$HF_DIR" --threads "$THREADS" --only train); echo "$out" | tail -1
  result train pytorch "$(echo "$out" | tail -1 | json_field tokens_per_s)" "tok/s"
  result train_rss pytorch "$(echo "$out" | tail -1 | json_field peak_rss_gib)" "GiB"
fi

section "batch-1 decode, prompt 128, 128 new tokens: oxrl (greedy, best of 3)"
out=$("$OXRL" bench rollout --model "$GGUF" --prompts 1 --n 1 --prompt-tokens 128 --max-tokens 128 --temperature 0 --repeat 3 --json)
echo "$out" | grep -E "wall|decode|batch-1|per sequence" || true
result decode_b1 oxrl "$(echo "$out" | json_field decode_tokens_per_s)" "tok/s"
if ((have_llama)); then
  section "batch-1 decode: llama.cpp llama-bench (tg128, F32)"
  out=$("$LLAMA_BIN/llama-bench" -m "$F32_GGUF" -t "$THREADS" -p 0 -n 128 -r 3 -o json)
  v=$(echo "$out" | python3 -c 'import json,sys; print([r for r in json.load(sys.stdin) if r["n_gen"] == 128][0]["avg_ts"])')
  echo "llama-bench tg128: $v tok/s"
  result decode_b1 llama.cpp "$v" "tok/s"
fi
if ((have_torch)); then
  section "batch-1 decode: PyTorch"
  out=$("$PY" scripts/bench_torch.py --model "$HF_DIR" --threads "$THREADS" --only decode_b1); echo "$out" | tail -1
  result decode_b1 pytorch "$(echo "$out" | tail -1 | json_field tokens_per_s)" "tok/s"
fi

section "grouped rollout, 16 prompts x 8 samples x 128 tokens (prompt 128): oxrl (T=1, best of 2)"
out=$("$OXRL" bench rollout --model "$GGUF" --prompts 16 --n 8 --prompt-tokens 128 --max-tokens 128 --temperature 1 --repeat 2 --json)
echo "$out" | grep -v '^ *"' | grep -v '^[{}]' || true
result grouped oxrl "$(echo "$out" | json_field aggregate_tokens_per_s)" "tok/s"
result decode_step_128 oxrl "$(echo "$out" | json_field ms_per_decode_step)" "ms"
if ((have_llama)); then
  # generated tokens / total time of a llama-batched-bench row: TG * B / T.
  batched() {
    "$LLAMA_BIN/llama-batched-bench" -m "$F32_GGUF" -t "$THREADS" -c 33792 -b 2048 -ub 512 \
      -npp 128 -ntg 128 -npl 128 "$@" 2>/dev/null | grep -E "^\|" |
      python3 -c '
import sys
for line in sys.stdin:
    sys.stderr.write(line)  # the table, for the log (stdout carries the two numbers)
    c = [x.strip() for x in line.strip().strip("|").split("|")]
    if c and c[0].isdigit():
        pp, tg, b, t, ttg = int(c[0]), int(c[1]), int(c[2]), float(c[8]), float(c[6])
        print(tg * b / t, 1000 * ttg / tg)'
  }
  section "grouped rollout: llama.cpp llama-batched-bench, 128 sequences with their own prompts"
  read -r v step < <(batched)
  result grouped llama.cpp "$v" "tok/s"
  result decode_step_128 llama.cpp "$step" "ms"
  section "grouped rollout: llama.cpp llama-batched-bench, 128 sequences sharing one prompt (-pps)"
  read -r v _ < <(batched -pps)
  result grouped_pps llama.cpp "$v" "tok/s"
fi
if ((have_torch)) && [[ $TORCH_GROUPED == 1 ]]; then
  section "grouped rollout: PyTorch"
  out=$("$PY" scripts/bench_torch.py --model "$HF_DIR" --threads "$THREADS" --only decode_grouped); echo "$out" | tail -1
  result grouped pytorch "$(echo "$out" | tail -1 | json_field tokens_per_s)" "tok/s"
fi

section summary
echo "results: $OUT"
python3 - "$OUT" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
machine = next((r["machine"] for r in rows if "machine" in r), {})
val = {(r["figure"], r["tool"]): r["value"] for r in rows if "figure" in r}
peak = max((v for (f, _), v in val.items() if f == "peak"), default=None)
print(f"machine: {machine.get('cpu', '?')} [{machine.get('simd', '')}], {machine.get('threads', '?')} threads")
if peak:
    print(f"f32 peak (best 2048^3 matmul): {peak:.1f} GFLOP/s")
# model FLOPs per token (2 x 134.5 M weights forward; x3 with the backward)
flops = {"train": 6 * 134.5e6, "decode_b1": 2 * 134.5e6, "grouped": 2 * 134.5e6}
targets = {
    ("train", "pytorch"): 1.3, ("decode_b1", "llama.cpp"): 1.1,
    ("grouped", "llama.cpp"): 2.0, ("grouped_pps", "llama.cpp"): 1.3,
}
print()
print("| figure | oxrl | peer | peer's | oxrl / peer | target | oxrl, share of f32 peak |")
print("|---|---|---|---|---|---|---|")
for (fig, peer), target in list(targets.items()) + [(("train_rss", "pytorch"), None)]:
    mine = val.get(("grouped" if fig == "grouped_pps" else fig, "oxrl"))
    theirs = val.get((fig, peer))
    if mine is None or theirs is None:
        print(f"| {fig} | {mine} | {peer} | {theirs} | — (not run) | {target or ''} | |")
        continue
    if fig == "train_rss":
        print(f"| train peak RSS (GiB) | {mine:.2f} | {peer} | {theirs:.2f} | {mine / theirs:.2f} (lower is better) | ≤ 0.6 | |")
        continue
    share = f"{val[(fig if fig != 'grouped_pps' else 'grouped', 'oxrl')] * flops['grouped' if fig == 'grouped_pps' else fig] / 1e9 / peak:.1%}" if peak else ""
    ok = "met" if mine / theirs >= target else "missed"
    print(f"| {fig} (tok/s) | {mine:.1f} | {peer} | {theirs:.1f} | **{mine / theirs:.2f}×** | ≥ {target}× ({ok}) | {share} |")
for (fig, peer), v in sorted(val.items()):
    if peer == "pytorch" and fig in ("decode_b1", "grouped"):
        print(f"| {fig} (tok/s) | {val.get((fig, 'oxrl'), 0):.1f} | pytorch | {v:.1f} | {val.get((fig, 'oxrl'), 0) / v:.2f}× | | |")
if ("decode_step_128", "oxrl") in val:
    s = val[("decode_step_128", "oxrl")]
    other = val.get(("decode_step_128", "llama.cpp"))
    print(f"\ndecode step at 128 sequences: oxrl {s:.0f} ms" + (f", llama.cpp {other:.0f} ms" if other else ""))
PY
