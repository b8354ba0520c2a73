#!/usr/bin/env bash
# Runs `kiln bench gan-step` and the same step in PyTorch on the same machine,
# at 1 and 2 threads, and prints kiln's speed as a ratio of PyTorch's.
#
# Shared machines drift by 10-30 % within minutes, so the two sides are
# interleaved: ROUNDS rounds (default 3), each timing kiln and PyTorch back to
# back, and the table gives the median of the per-round ratios with their
# range. Two pairings per config:
#   default: kiln's G step (backward into G's parameters only) against the
#            reference PyTorch step (`loss_g.backward()`, which also computes
#            D's weight gradients and throws them away);
#   same work, twice: kiln's default against PyTorch with
#            `loss_g.backward(inputs=G.params)` (both skip D's weight
#            gradients), and kiln --full-g-backward against the reference
#            step (both compute them).
# Needs a Python with torch: PYTHON=/path/to/python (default python3).
# Usage: [ROUNDS=3] scripts/bench-vs-pytorch.sh [CONFIGS] [THREADS...]   e.g. seed,article,toy 1 2
set -euo pipefail
cd "$(dirname "$0")/.."
configs=${1:-seed,article,toy}; shift || true
threads=("$@"); [ ${#threads[@]} -gt 0 ] || threads=(1 2)
rounds=${ROUNDS:-3}
py=${PYTHON:-python3}
"$py" -c 'import torch' 2>/dev/null || { echo "no torch in $py (set PYTHON=…)" >&2; exit 1; }
bin=${KILN_BIN:-target/release/kiln}
[ -x "$bin" ] || cargo build --release
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
for t in "${threads[@]}"; do
  for r in $(seq "$rounds"); do
    "$bin" bench gan-step --threads "$t" --preset "$configs" --repeats 3 --json "$tmp/kiln-$t-$r.json" >/dev/null
    "$py" scripts/pytorch_gan_step.py --configs "$configs" --threads "$t" --repeats 3 > "$tmp/torch-$t-$r.jsonl"
    "$bin" bench gan-step --threads "$t" --preset "$configs" --repeats 3 --full-g-backward \
      --json "$tmp/kilnfull-$t-$r.json" >/dev/null
    "$py" scripts/pytorch_gan_step.py --configs "$configs" --threads "$t" --repeats 3 --g-backward g-only \
      > "$tmp/torchg-$t-$r.jsonl"
  done
done
"$py" - "$tmp" "$rounds" "${threads[@]}" <<'PY'
import json, statistics, sys
tmp, rounds, threads = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
def kiln(f):
    return {r["config"].replace("toy2d", "toy"): r["steps_per_sec"] for r in json.load(open(f))["rows"]}
def torch(f):
    return {r["config"]: r["steps_per_sec"] for r in map(json.loads, open(f))}
def cell(xs):
    return f"**{statistics.median(xs):.2f}x** ({min(xs):.2f}-{max(xs):.2f})"
print("| config | threads | kiln steps/s | PyTorch steps/s | kiln / PyTorch | both G-only | both full | rounds |")
print("|---|---|---|---|---|---|---|---|")
for t in threads:
    runs = [(kiln(f"{tmp}/kiln-{t}-{r}.json"), torch(f"{tmp}/torch-{t}-{r}.jsonl"),
             kiln(f"{tmp}/kilnfull-{t}-{r}.json"), torch(f"{tmp}/torchg-{t}-{r}.jsonl"))
            for r in range(1, rounds + 1)]
    for c in runs[0][1]:
        k = [x[0][c] for x in runs]
        p = [x[1][c] for x in runs]
        default = [a / b for a, b in zip(k, p)]
        full = [x[2][c] / x[1][c] for x in runs]
        g_only = [x[0][c] / x[3][c] for x in runs]
        print(f"| {c} | {t} | {statistics.median(k):.1f} | {statistics.median(p):.1f} | {cell(default)} "
              f"| {cell(g_only)} | {cell(full)} | {rounds} |")
PY
