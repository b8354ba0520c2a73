#!/usr/bin/env bash
# Times the GEMMs of the GAN's linear layers in kiln (`kiln bench layers`, the
# engine's dispatch) and in PyTorch (scripts/pytorch_layers.py, torch.mm) on
# the same machine, and prints kiln's speed as a ratio of PyTorch's per GEMM.
#
# The machine's speed changes every few seconds, so the two sides take turns
# on it (scripts/round_robin.py, SLICE seconds each, default 4): they start
# together and see the same mix of fast and slow moments. The slice is long
# next to one timed loop (0.1 s in kiln, 0.05 s in the PyTorch script), so
# few loops contain a pause and the medians step over them. PyTorch sweeps its
# list SWEEPS times (default 4: about as long as kiln's run) and reports each
# case's median over the sweeps. ROUNDS (default 1) repeats the pair; each
# side's time for a case is then its median over the rounds. A table is
# printed after every round, over the rounds done so far.
# Needs a Python with torch: PYTHON=/path/to/python (default python3).
# Usage: [ROUNDS=1] [SLICE=4] [SWEEPS=4] [PYTHON=python3] scripts/bench-layers-vs-pytorch.sh [THREADS]
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-1}
rounds=${ROUNDS:-1}
slice=${SLICE:-4}
sweeps=${SWEEPS:-4}
py=${PYTHON:-python3}
"$py" -c 'import torch' 2>/dev/null || { echo "no torch in $py (set PYTHON=…)" >&2; exit 1; }
bin=${KILN_BIN:-target/release/kiln}
[ -x "$bin" ] || cargo build --release
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
# The table over the rounds done so far (after each round, so that a run cut
# short by a time limit still leaves its finished rounds' table).
table() { # <rounds done>
  "$py" - "$tmp" "$1" "$threads" <<'PY'
import json, statistics, sys
tmp, rounds, threads = sys.argv[1], int(sys.argv[2]), sys.argv[3]
kiln, torch = {}, {}
for r in range(1, rounds + 1):
    # `kiln bench layers` always times its reference (matrixmultiply) next
    # to the implementations asked for: keep the dispatch's rows only, one
    # per case and round.
    for m in json.load(open(f"{tmp}/kiln-{r}.json"))["measurements"]:
        if m["status"] == "ok" and m["impl"].startswith("dispatch"):
            kiln.setdefault(m["case"], []).append(m["time_median_s"])
    for line in open(f"{tmp}/torch-{r}.jsonl"):
        m = json.loads(line)
        torch.setdefault(m["case"], []).append(m["time_median_s"])
bad = [c for c, ts in list(kiln.items()) + list(torch.items()) if len(ts) != rounds]
if bad:
    sys.exit(f"expected one time per case and round, got otherwise for: {bad}")
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
          f"geometric mean {statistics.geometric_mean(ratios):.2f}x, range {min(ratios):.2f}-{max(ratios):.2f}x", flush=True)
PY
}
for r in $(seq "$rounds"); do
  "$py" scripts/round_robin.py --slice "$slice" \
    "$bin bench layers --threads $threads --impls dispatch --json $tmp/kiln-$r.json >/dev/null" \
    "$py scripts/pytorch_layers.py --threads $threads --sweeps $sweeps > $tmp/torch-$r.jsonl"
  [ "$r" -eq 1 ] || echo
  table "$r"
done
