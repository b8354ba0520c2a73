#!/usr/bin/env bash
# Times the GEMMs of the GAN's linear layers in kiln (`kiln bench layers`, the
# engine's dispatch) and in PyTorch (scripts/pytorch_layers.py, torch.mm) on
# the same machine, and prints kiln's speed as a ratio of PyTorch's per GEMM.
#
# The two sides run one after the other, ROUNDS times (default 2), and each
# side's time for a case is its median over the rounds: on a shared machine
# whose speed changes every few seconds, alternating rounds gives both sides a
# share of the fast and the slow moments.
# Needs a Python with torch: PYTHON=/path/to/python (default python3).
# Usage: [ROUNDS=2] [PYTHON=python3] scripts/bench-layers-vs-pytorch.sh [THREADS]
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-1}
rounds=${ROUNDS:-2}
py=${PYTHON:-python3}
"$py" -c 'import torch' 2>/dev/null || { echo "no torch in $py (set PYTHON=…)" >&2; exit 1; }
bin=${KILN_BIN:-target/release/kiln}
[ -x "$bin" ] || cargo build --release
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
for r in $(seq "$rounds"); do
  "$bin" bench layers --threads "$threads" --impls dispatch --json "$tmp/kiln-$r.json" >/dev/null
  "$py" scripts/pytorch_layers.py --threads "$threads" > "$tmp/torch-$r.jsonl"
done
"$py" - "$tmp" "$rounds" "$threads" <<'PY'
import json, statistics, sys
tmp, rounds, threads = sys.argv[1], int(sys.argv[2]), sys.argv[3]
kiln, torch = {}, {}
for r in range(1, rounds + 1):
    for m in json.load(open(f"{tmp}/kiln-{r}.json"))["measurements"]:
        if m["status"] == "ok":
            kiln.setdefault(m["case"], []).append(m["time_median_s"])
    for line in open(f"{tmp}/torch-{r}.jsonl"):
        m = json.loads(line)
        torch.setdefault(m["case"], []).append(m["time_median_s"])
print(f"kiln bench layers (dispatch) vs torch.mm, {threads} thread(s), medians over {rounds} round(s)")
print("| case | kiln | torch.mm | kiln / torch speed |")
print("|---|---|---|---|")
ratios = []
fmt = lambda s: f"{s * 1e3:.3f} ms" if s >= 1e-3 else f"{s * 1e6:.1f} us"
for case, ts in kiln.items():
    if case not in torch:
        continue
    k, t = statistics.median(ts), statistics.median(torch[case])
    ratios.append(t / k)
    print(f"| {case} | {fmt(k)} | {fmt(t)} | {t / k:.2f}x |")
if ratios:
    wins = sum(r >= 1.0 for r in ratios)
    print(f"\n{wins} of {len(ratios)} GEMMs at least as fast as torch.mm; "
          f"geometric mean {statistics.geometric_mean(ratios):.2f}x, range {min(ratios):.2f}-{max(ratios):.2f}x")
PY
