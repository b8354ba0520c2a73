#!/usr/bin/env bash
# Runs `kiln bench gan-step` and the same step in PyTorch, interleaved on the
# same machine, at 1 and 2 threads, and prints kiln's speed as a ratio of
# PyTorch's. Needs a Python with torch: PYTHON=/path/to/python (default python3).
# Usage: scripts/bench-vs-pytorch.sh [CONFIGS] [THREADS...]   e.g. seed,article,toy 1 2
set -euo pipefail
cd "$(dirname "$0")/.."
configs=${1:-seed,article,toy}; shift || true
threads=("$@"); [ ${#threads[@]} -gt 0 ] || threads=(1 2)
py=${PYTHON:-python3}
"$py" -c 'import torch' 2>/dev/null || { echo "no torch in $py (set PYTHON=…)" >&2; exit 1; }
bin=${KILN_BIN:-target/release/kiln}
[ -x "$bin" ] || cargo build --release
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
echo "| config | threads | kiln steps/s | PyTorch steps/s | kiln / PyTorch |"
echo "|---|---|---|---|---|"
for t in "${threads[@]}"; do
  "$bin" bench gan-step --threads "$t" --preset "$configs" --json "$tmp/kiln.json" >/dev/null
  "$py" scripts/pytorch_gan_step.py --configs "$configs" --threads "$t" > "$tmp/torch.jsonl"
  "$py" - "$tmp/kiln.json" "$tmp/torch.jsonl" "$t" <<'PY'
import json, sys
kiln = {r["config"].replace("toy2d", "toy"): r for r in json.load(open(sys.argv[1]))["rows"]}
for line in open(sys.argv[2]):
    r = json.loads(line)
    k = kiln[r["config"]]
    print(f"| {r['config']} | {sys.argv[3]} | {k['steps_per_sec']:.1f} | {r['steps_per_sec']:.1f} | {k['steps_per_sec'] / r['steps_per_sec']:.2f}x |")
PY
done
